//! Prometheus' XOR chunk, byte for byte as `tsdb/chunkenc/xor.go` writes it, for streamed
//! remote read answers (promlake's own head chunk omits the sample-count header).
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream: first sample as a signed
//! varint timestamp and 64 raw value bits; second sample as an unsigned varint time delta and
//! an XOR'd value; later samples as a delta-of-delta in 1/16/20/24/68 bits and an XOR'd value.
//! Like Go's `bstream`, a stream whose last write ended on a byte boundary through
//! `write_byte` carries one trailing zero byte; that byte is part of the chunk's bytes.

/// Samples per chunk, as Prometheus' head cuts them.
pub const MAX_SAMPLES_PER_CHUNK: usize = 120;

/// A bit stream written most significant bit first; `count` is how many low bits of the last
/// byte are still free.
struct BitStream {
    stream: Vec<u8>,
    count: u8,
}

impl BitStream {
    fn write_bit(&mut self, bit: bool) {
        if self.count == 0 {
            self.stream.push(0);
            self.count = 8;
        }
        if bit {
            let i = self.stream.len() - 1;
            self.stream[i] |= 1 << (self.count - 1);
        }
        self.count -= 1;
    }

    fn write_byte(&mut self, byte: u8) {
        if self.count == 0 {
            self.stream.push(0);
            self.count = 8;
        }
        let i = self.stream.len() - 1;
        self.stream[i] |= ((u16::from(byte)) >> (8 - self.count)) as u8;
        self.stream.push(((u16::from(byte)) << self.count) as u8);
    }

    /// Writes the `nbits` low bits of `u`, most significant first.
    fn write_bits(&mut self, u: u64, nbits: u32) {
        if nbits == 0 {
            return;
        }
        let mut u = u << (64 - nbits);
        let mut nbits = nbits;
        while nbits >= 8 {
            self.write_byte((u >> 56) as u8);
            u <<= 8;
            nbits -= 8;
        }
        while nbits > 0 {
            self.write_bit(u >> 63 == 1);
            u <<= 1;
            nbits -= 1;
        }
    }
}

/// Encodes float samples into one Prometheus XOR chunk.
pub struct XorEncoder {
    b: BitStream,
    num: u16,
    t: i64,
    v: f64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl XorEncoder {
    pub fn new() -> XorEncoder {
        XorEncoder {
            b: BitStream { stream: vec![0, 0], count: 0 },
            num: 0,
            t: 0,
            v: 0.0,
            t_delta: 0,
            leading: 0xff,
            trailing: 0,
        }
    }

    #[cfg(test)]
    pub fn num_samples(&self) -> usize {
        usize::from(self.num)
    }

    /// Appends a sample; callers keep timestamps increasing and at most `u16::MAX` samples.
    pub fn append(&mut self, t: i64, v: f64) {
        let mut t_delta = 0;
        if self.num == 0 {
            let mut buf = Vec::with_capacity(10);
            put_uvarint(&mut buf, ((t << 1) ^ (t >> 63)) as u64);
            for byte in buf {
                self.b.write_byte(byte);
            }
            self.b.write_bits(v.to_bits(), 64);
        } else if self.num == 1 {
            t_delta = t.wrapping_sub(self.t) as u64;
            let mut buf = Vec::with_capacity(10);
            put_uvarint(&mut buf, t_delta);
            for byte in buf {
                self.b.write_byte(byte);
            }
            self.write_v_delta(v);
        } else {
            t_delta = t.wrapping_sub(self.t) as u64;
            let dod = t_delta.wrapping_sub(self.t_delta) as i64;
            if dod == 0 {
                self.b.write_bit(false);
            } else if bit_range(dod, 14) {
                self.b.write_bits(0b10, 2);
                self.b.write_bits(dod as u64, 14);
            } else if bit_range(dod, 17) {
                self.b.write_bits(0b110, 3);
                self.b.write_bits(dod as u64, 17);
            } else if bit_range(dod, 20) {
                self.b.write_bits(0b1110, 4);
                self.b.write_bits(dod as u64, 20);
            } else {
                self.b.write_bits(0b1111, 4);
                self.b.write_bits(dod as u64, 64);
            }
            self.write_v_delta(v);
        }
        self.t = t;
        self.v = v;
        self.num += 1;
        self.b.stream[..2].copy_from_slice(&self.num.to_be_bytes());
        self.t_delta = t_delta;
    }

    fn write_v_delta(&mut self, v: f64) {
        let delta = v.to_bits() ^ self.v.to_bits();
        if delta == 0 {
            self.b.write_bit(false);
            return;
        }
        self.b.write_bit(true);
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.b.write_bit(false);
            self.b.write_bits(
                delta >> self.trailing,
                64 - u32::from(self.leading) - u32::from(self.trailing),
            );
        } else {
            self.leading = leading;
            self.trailing = trailing;
            self.b.write_bit(true);
            self.b.write_bits(u64::from(leading), 5);
            // 64 significant bits are written as 0 in the 6-bit field; readers map 0 back to 64.
            let sigbits = 64 - u32::from(leading) - u32::from(trailing);
            self.b.write_bits(u64::from(sigbits), 6);
            self.b.write_bits(delta >> trailing, sigbits);
        }
    }

    /// The chunk's bytes, count header included.
    #[cfg(test)]
    pub fn bytes(&self) -> &[u8] {
        &self.b.stream
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.b.stream
    }
}

/// Whether `x` fits the `nbits`-bit delta-of-delta field (Prometheus' asymmetric range).
fn bit_range(x: i64, nbits: u32) -> bool {
    -((1 << (nbits - 1)) - 1) <= x && x <= 1 << (nbits - 1)
}

fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push(x as u8 | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader following `xor.go`'s iterator, to check that what we write reads back.
    fn decode(b: &[u8]) -> Vec<(i64, u64)> {
        struct R<'a> {
            b: &'a [u8],
            pos: usize,
        }
        impl R<'_> {
            fn bit(&mut self) -> bool {
                let bit = self.b[self.pos / 8] >> (7 - self.pos % 8) & 1 == 1;
                self.pos += 1;
                bit
            }
            fn bits(&mut self, n: u32) -> u64 {
                (0..n).fold(0, |acc, _| acc << 1 | u64::from(self.bit()))
            }
            fn uvarint(&mut self) -> u64 {
                let (mut x, mut shift) = (0u64, 0);
                loop {
                    let byte = self.bits(8);
                    x |= (byte & 0x7f) << shift;
                    if byte < 0x80 {
                        return x;
                    }
                    shift += 7;
                }
            }
        }
        let n = u16::from_be_bytes([b[0], b[1]]);
        let mut r = R { b: &b[2..], pos: 0 };
        let mut out = Vec::new();
        let (mut t, mut v, mut t_delta, mut leading, mut trailing) = (0i64, 0u64, 0u64, 0u32, 0u32);
        for i in 0..n {
            if i == 0 {
                let z = r.uvarint();
                t = (z >> 1) as i64 ^ -((z & 1) as i64);
                v = r.bits(64);
                out.push((t, v));
                continue;
            }
            if i == 1 {
                t_delta = r.uvarint();
            } else {
                let mut d = 0;
                for _ in 0..4 {
                    d <<= 1;
                    if !r.bit() {
                        break;
                    }
                    d |= 1;
                }
                let sz = match d {
                    0b0 => 0,
                    0b10 => 14,
                    0b110 => 17,
                    0b1110 => 20,
                    _ => 64,
                };
                let mut dod = 0i64;
                if sz == 64 {
                    dod = r.bits(64) as i64;
                } else if sz != 0 {
                    let mut bits = r.bits(sz);
                    if bits > 1 << (sz - 1) {
                        bits = bits.wrapping_sub(1 << sz);
                    }
                    dod = bits as i64;
                }
                t_delta = (t_delta as i64 + dod) as u64;
            }
            t += t_delta as i64;
            if r.bit() {
                if r.bit() {
                    leading = r.bits(5) as u32;
                    let mut m = r.bits(6) as u32;
                    if m == 0 {
                        m = 64;
                    }
                    trailing = 64 - leading - m;
                }
                v ^= r.bits(64 - leading - trailing) << trailing;
            }
            out.push((t, v));
        }
        out
    }

    fn check(samples: &[(i64, f64)], expected_bytes: Option<&[u8]>) {
        let mut e = XorEncoder::new();
        for &(t, v) in samples {
            e.append(t, v);
        }
        if let Some(want) = expected_bytes {
            assert_eq!(e.bytes(), want, "bytes of {samples:?}");
        }
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(decode(e.bytes()), want);
        assert_eq!(e.num_samples(), samples.len());
    }

    #[test]
    fn chunks_read_back_and_match_known_bytes() {
        // t=1000 is zigzag 2000 = varint d0 0f; 1.0 is 3ff0...; then go's trailing zero byte.
        check(&[(1000, 1.0)], Some(&[0, 1, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0]));
        check(&[], Some(&[0, 0]));
        check(&[(-5, -0.0), (-4, f64::NAN), (100, f64::INFINITY)], None);
        let regular: Vec<(i64, f64)> =
            (0..120).map(|i| (1_700_000_000_000 + i * 15_000, (i % 7) as f64 * 0.1)).collect();
        check(&regular, None);
        // Every delta-of-delta width, both signs, and the field edges.
        let mut t = 0;
        let mut jittery = vec![(t, 0.0)];
        for (i, step) in [10, 10, 8202, 10, 65546, 10, 524298, 10, 1 << 40, 10, 8193, 1, 8194, 3]
            .iter()
            .enumerate()
        {
            t += step;
            jittery.push((t, i as f64 * 1e300));
        }
        check(&jittery, None);
        check(&[(0, 1.0), (1, 1.0), (2, 1.0), (3, 2.0), (4, 1.5), (5, -1.5), (6, 3e-300)], None);
    }
}
