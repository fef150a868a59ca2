//! Gorilla-style XOR chunks for the in-memory head: delta-of-delta timestamps and XOR'd
//! float values, bit-packed. The byte layout is in docs/format/chunk.md.

/// Appends bits MSB-first into a byte vector: a view of an [`XorChunk`]'s buffer and bit
/// position, which the chunk holds as its own fields so that they pack with its other small
/// ones (a struct of the two would pad to 32 bytes and the chunk to 72).
struct BitWriter<'a> {
    buf: &'a mut Vec<u8>,
    /// Bits used in the last byte (0 means the last byte is full or there is none).
    used: &'a mut u8,
}

impl BitWriter<'_> {
    /// Appends a zero byte, growing in small exact steps: thousands of open chunks live at
    /// once, and doubling would leave a quarter of their bytes unused on average. The last
    /// step stops at [`CHUNK_BYTES`], so a chunk cut at its budget holds one allocation of
    /// exactly that size.
    fn push_byte(&mut self) {
        self.push(0);
    }

    /// Appends one byte, growing the buffer as described at [`Self::push_byte`].
    #[inline]
    fn push(&mut self, b: u8) {
        let cap = self.buf.capacity();
        if self.buf.len() == cap {
            let step = if cap < CHUNK_BYTES { (CHUNK_BYTES - cap).min(32) } else { 32 };
            self.buf.reserve_exact(step);
        }
        self.buf.push(b);
    }

    fn write_bit(&mut self, bit: bool) {
        if *self.used == 0 {
            self.push_byte();
        }
        if bit {
            let last = self.buf.len() - 1;
            self.buf[last] |= 1 << (7 - *self.used);
        }
        *self.used = (*self.used + 1) % 8;
    }

    /// Appends the low `n` bits of `value` (`n` ≤ 64), MSB first: first the free bits of the
    /// last byte, then whole bytes at once (a word's big-endian bytes), rather than byte by
    /// byte. Same bytes and same capacity steps as writing them one bit at a time
    /// (`word_writes_equal_bit_writes`).
    fn write_bits(&mut self, value: u64, n: u8) {
        if n == 0 {
            return;
        }
        let mut rem = u32::from(n.min(64));
        let value = if rem == 64 { value } else { value & ((1u64 << rem) - 1) };
        let free = match *self.used {
            0 => 0,
            u => 8 - u32::from(u),
        };
        if free > 0 {
            let last = self.buf.len() - 1;
            if rem <= free {
                self.buf[last] |= (value << (free - rem)) as u8;
                *self.used = ((u32::from(*self.used) + rem) % 8) as u8;
                return;
            }
            self.buf[last] |= (value >> (rem - free)) as u8;
            rem -= free;
        }
        // `rem` (1..=64) bits left, starting on a byte boundary: left-align them in a word.
        let word = if rem == 64 { value } else { (value & ((1u64 << rem) - 1)) << (64 - rem) };
        let bytes = rem.div_ceil(8) as usize;
        let word = word.to_be_bytes();
        if self.buf.capacity() - self.buf.len() < bytes {
            // Growth on the way: byte by byte, in `push_byte`'s steps.
            for &b in &word[..bytes] {
                self.push(b);
            }
        } else {
            self.buf.extend_from_slice(&word[..bytes]);
        }
        *self.used = (rem % 8) as u8;
    }
}

/// Reads bits MSB-first. Every read is bounds-checked: a truncated chunk is an error, not a panic.
struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.buf.get(self.pos / 8)?;
        let bit = byte & (1 << (7 - (self.pos % 8))) != 0;
        self.pos += 1;
        Some(bit)
    }

    fn read_bits(&mut self, n: u8) -> Option<u64> {
        if self.pos + n as usize > self.buf.len() * 8 {
            return None;
        }
        if n == 0 {
            return Some(0);
        }
        let byte = self.pos / 8;
        let off = (self.pos % 8) as u32;
        // Fast path: the eight bytes from the current one hold the `n` bits.
        if n as u32 + off <= 64
            && let Some(w) = self.buf.get(byte..byte + 8)
        {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            let v = (u64::from_be_bytes(a) << off) >> (64 - n as u32);
            self.pos += n as usize;
            return Some(v);
        }
        let mut v = 0u64;
        let mut n = n;
        while n > 0 {
            let byte = self.buf[self.pos / 8];
            let off = (self.pos % 8) as u8;
            let avail = 8 - off;
            let take = avail.min(n);
            let bits = (byte >> (avail - take)) & ((1u16 << take) - 1) as u8;
            v = (v << take) | bits as u64;
            self.pos += take as usize;
            n -= take;
        }
        Some(v)
    }
}

/// Samples per chunk at most (as Prometheus): the head closes its open chunk at this count.
pub const CHUNK_SAMPLES: usize = 120;

/// Encoded bytes per open chunk at most: the head closes its open chunk before an append could
/// take it past this (see [`XorChunk::is_full`]), so an open chunk's buffer, the head's biggest
/// per-series cost, is bounded whatever the values. 248 bytes is a 256-byte glibc allocation;
/// the choice (against 120 samples only, and other budgets) is measured in
/// docs/benchmarks/storage.md.
pub const CHUNK_BYTES: usize = 248;

/// Most bytes one append can add to a chunk: the second sample's 10-byte varint delta and a
/// 77-bit value (flag, flag, 5-bit leading, 6-bit length, 64 bits) is 157 bits, 20 new bytes
/// at most; a later sample is at most 68 + 77 bits; the first is 16 bytes.
pub const MAX_APPEND_BYTES: usize = 20;

const _: () = assert!(CHUNK_SAMPLES <= u8::MAX as usize && CHUNK_BYTES <= u16::MAX as usize);

/// Buckets for delta-of-delta timestamps: (prefix bits, prefix len, value bits).
const DOD_BUCKETS: [(u64, u8, u8); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

fn fits(v: i64, bits: u8) -> bool {
    let lim = 1i64 << (bits - 1);
    -lim < v && v <= lim
}

/// An append-only XOR chunk. Appends must have increasing timestamps (the head guarantees it).
#[derive(Clone, Default)]
pub struct XorChunk {
    buf: Vec<u8>,
    /// Bits used in the last byte of `buf` (see [`BitWriter`]).
    used: u8,
    count: u16,
    first_t: i64,
    last_t: i64,
    last_delta: i64,
    last_v: u64,
    leading: u8,
    trailing: u8,
    /// `last_t` and `last_v` hold the previous chunk's newest sample while this one is empty
    /// (set by [`XorChunk::recycle`]): the head reads a series' newest sample from its open
    /// chunk, so it keeps no copy of its own. Sits in padding: the chunk stays 64 bytes.
    carried: bool,
}

impl XorChunk {
    pub fn new() -> Self {
        XorChunk { leading: 0xff, ..Default::default() }
    }

    /// An empty chunk that keeps this one's byte buffer (cleared): a series' next chunk is
    /// usually about as long as its last, so it fills the same allocation without growing it
    /// step by step (each step a reallocation that can move it and leave a hole behind).
    /// It carries this chunk's newest sample ([`XorChunk::last`]) until its own first append.
    pub fn recycle(mut self) -> Self {
        self.buf.clear();
        let last = self.last();
        XorChunk {
            buf: self.buf,
            last_t: last.map_or(0, |l| l.0),
            last_v: last.map_or(0, |l| l.1),
            carried: last.is_some(),
            ..XorChunk::new()
        }
    }

    /// Like [`XorChunk::recycle`] but frees the byte buffer: for a series whose chunk left
    /// the head and may not be written again soon.
    pub fn retire(self) -> Self {
        let mut c = self.recycle();
        c.buf = Vec::new();
        c
    }

    /// The newest sample appended (time and value bits), or the one carried over from the
    /// chunk this one was recycled from while it is empty; `None` for a new, empty chunk.
    pub fn last(&self) -> Option<(i64, u64)> {
        (self.count > 0 || self.carried).then_some((self.last_t, self.last_v))
    }

    fn bits(&mut self) -> BitWriter<'_> {
        BitWriter { buf: &mut self.buf, used: &mut self.used }
    }

    pub fn count(&self) -> usize {
        self.count as usize
    }

    pub fn min_time(&self) -> i64 {
        self.first_t
    }

    pub fn max_time(&self) -> i64 {
        self.last_t
    }

    /// True when the next append must go to a new chunk: this one holds [`CHUNK_SAMPLES`], or
    /// one more sample could take it past [`CHUNK_BYTES`].
    pub fn is_full(&self) -> bool {
        self.count as usize >= CHUNK_SAMPLES || self.buf.len() + MAX_APPEND_BYTES > CHUNK_BYTES
    }

    /// Bytes allocated for the encoded samples.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Encoded size in bytes (what the chunk costs in memory, besides its fixed fields).
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Where the next append writes first (the last byte, or the buffer's start): for
    /// prefetching only, never dereferenced.
    pub fn tail_ptr(&self) -> *const u8 {
        self.buf.as_ptr().wrapping_add(self.buf.len().saturating_sub(1))
    }

    pub fn append(&mut self, t: i64, v: f64) {
        let vb = v.to_bits();
        match self.count {
            0 => {
                self.bits().write_bits(t as u64, 64);
                self.bits().write_bits(vb, 64);
                self.first_t = t;
            }
            1 => {
                let delta = t - self.last_t;
                write_varint(&mut self.bits(), delta);
                self.write_value(vb);
                self.last_delta = delta;
            }
            _ => {
                let delta = t - self.last_t;
                let dod = delta.wrapping_sub(self.last_delta);
                if dod == 0 {
                    self.bits().write_bit(false);
                } else if let Some(&(prefix, plen, vbits)) =
                    DOD_BUCKETS.iter().find(|(_, _, b)| fits(dod, *b))
                {
                    self.bits().write_bits(prefix, plen);
                    self.bits().write_bits(dod as u64 & ((1 << vbits) - 1), vbits);
                } else {
                    self.bits().write_bits(0b1111, 4);
                    self.bits().write_bits(dod as u64, 64);
                }
                self.write_value(vb);
                self.last_delta = delta;
            }
        }
        self.last_t = t;
        self.last_v = vb;
        self.count += 1;
    }

    fn write_value(&mut self, vb: u64) {
        let x = vb ^ self.last_v;
        if x == 0 {
            self.bits().write_bit(false);
            return;
        }
        self.bits().write_bit(true);
        let mut leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.bits().write_bit(false);
            let sig = 64 - self.leading - self.trailing;
            let trailing = self.trailing;
            self.bits().write_bits(x >> trailing, sig);
            return;
        }
        self.bits().write_bit(true);
        if leading > 31 {
            leading = 31;
        }
        let sig = 64 - leading - trailing;
        self.bits().write_bits(leading as u64, 5);
        // 64 significant bits is stored as 0: it cannot otherwise occur.
        self.bits().write_bits((sig % 64) as u64, 6);
        self.bits().write_bits(x >> trailing, sig);
        self.leading = leading;
        self.trailing = trailing;
    }

    /// Decodes every sample into `out`.
    pub fn decode_into(&self, out: &mut Vec<(i64, f64)>) {
        // Our own encoder wrote these bytes; a decode failure here is a bug, so stop at it.
        let _ = decode(&self.buf, self.count as usize, out);
    }

    /// Decodes the samples in `[mint, maxt]` into `out` (see [`decode_range`]).
    pub fn decode_range(&self, mint: i64, maxt: i64, out: &mut Vec<model::Sample>) {
        let _ = decode_range(&self.buf, self.count as usize, mint, maxt, out);
    }
}

fn write_varint(w: &mut BitWriter<'_>, v: i64) {
    // zig-zag, then 7-bit groups with a continuation bit, as bytes.
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (u & 0x7f) as u8;
        u >>= 7;
        if u == 0 {
            w.write_bits(byte as u64, 8);
            return;
        }
        w.write_bits((byte | 0x80) as u64, 8);
    }
}

fn read_varint(r: &mut BitReader<'_>) -> Option<i64> {
    let mut u = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = r.read_bits(8)? as u8;
        u |= ((byte & 0x7f) as u64).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(((u >> 1) as i64) ^ -((u & 1) as i64));
        }
    }
    None
}

/// Decodes `count` samples of an XOR chunk. Returns `None` if the bytes are truncated or
/// malformed; samples decoded before the fault stay in `out`.
pub fn decode(buf: &[u8], count: usize, out: &mut Vec<(i64, f64)>) -> Option<()> {
    decode_with(buf, count, |t, v| {
        out.push((t, v));
        true
    })
}

/// Decodes the samples of an XOR chunk with `mint <= t <= maxt` into `out`, stopping at the
/// first sample after `maxt` (timestamps in a chunk increase). `None` as for [`decode`].
pub fn decode_range(
    buf: &[u8],
    count: usize,
    mint: i64,
    maxt: i64,
    out: &mut Vec<model::Sample>,
) -> Option<()> {
    decode_with(buf, count, |t, v| {
        if t > maxt {
            return false;
        }
        if t >= mint {
            out.push(model::Sample { t, v });
        }
        true
    })
}

/// Decodes samples in order, handing each to `f` until it returns false.
fn decode_with(buf: &[u8], count: usize, mut f: impl FnMut(i64, f64) -> bool) -> Option<()> {
    if count == 0 {
        return Some(());
    }
    let mut r = BitReader { buf, pos: 0 };
    let mut t = r.read_bits(64)? as i64;
    let mut v = r.read_bits(64)?;
    if !f(t, f64::from_bits(v)) {
        return Some(());
    }
    let mut delta = 0i64;
    let (mut leading, mut trailing) = (0u8, 0u8);
    for i in 1..count {
        if i == 1 {
            delta = read_varint(&mut r)?;
        } else {
            let mut prefix = 0u8;
            while prefix < 4 && r.read_bit()? {
                prefix += 1;
            }
            let dod = match prefix {
                0 => 0,
                1..=3 => {
                    let bits = DOD_BUCKETS[prefix as usize - 1].2;
                    let raw = r.read_bits(bits)? as i64;
                    // sign-extend
                    if raw > (1 << (bits - 1)) { raw - (1 << bits) } else { raw }
                }
                _ => r.read_bits(64)? as i64,
            };
            delta = delta.wrapping_add(dod);
        }
        t = t.wrapping_add(delta);
        if r.read_bit()? {
            if r.read_bit()? {
                leading = r.read_bits(5)? as u8;
                let mut sig = r.read_bits(6)? as u8;
                if sig == 0 {
                    sig = 64;
                }
                trailing = 64u8.checked_sub(leading + sig)?;
            }
            let sig = 64u8.checked_sub(leading + trailing)?;
            let bits = r.read_bits(sig)?;
            v ^= bits << trailing;
        }
        if !f(t, f64::from_bits(v)) {
            return Some(());
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(samples: &[(i64, f64)]) {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        let mut out = Vec::new();
        decode(c.bytes(), c.count(), &mut out).expect("decodes");
        assert_eq!(out.len(), samples.len());
        for (a, b) in out.iter().zip(samples) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "value bits at t={}", a.0);
        }
    }

    #[test]
    fn special_values_survive_bit_for_bit() {
        roundtrip(&[
            (1000, 1.0),
            (16000, f64::NAN),
            (31000, model::stale_nan()),
            (46000, f64::INFINITY),
            (61000, f64::NEG_INFINITY),
            (76000, -0.0),
            (91000, 0.0),
            (91001, f64::MIN_POSITIVE),
            (i64::MAX / 2, f64::MAX),
        ]);
    }

    #[test]
    fn regular_counter_is_small() {
        let mut c = XorChunk::new();
        for i in 0..120 {
            c.append(1_700_000_000_000 + i * 15_000, (i * 3) as f64);
        }
        // 16 bytes for the first sample; regular steps cost a bit or two plus a few value bits.
        assert!(c.byte_len() < 16 + 120 * 3, "{} bytes", c.byte_len());
    }

    #[test]
    fn truncated_bytes_are_an_error_not_a_panic() {
        let mut c = XorChunk::new();
        for i in 0..50 {
            c.append(i * 1000 + (i % 7) * 13, (i as f64).sqrt());
        }
        for cut in 0..c.bytes().len() {
            let mut out = Vec::new();
            let _ = decode(&c.bytes()[..cut], c.count(), &mut out);
            assert!(out.len() < c.count());
        }
    }

    /// The bit-at-a-time writer `write_bits` replaced, kept as the reference of its format.
    fn write_bits_one_by_one(w: &mut BitWriter<'_>, value: u64, n: u8) {
        for i in (0..n).rev() {
            w.write_bit(value >> i & 1 == 1);
        }
    }

    proptest! {
        /// Word writes give exactly the bytes, bit position and capacity of bit writes, for any
        /// sequence of widths (0..=64) and values (bits above the width ignored).
        #[test]
        fn word_writes_equal_bit_writes(
            writes in proptest::collection::vec((any::<u64>(), 0u8..=64), 0..200),
        ) {
            let (mut a, mut b) = (XorChunk::new(), XorChunk::new());
            for &(v, n) in &writes {
                a.bits().write_bits(v, n);
                write_bits_one_by_one(&mut b.bits(), v, n);
                prop_assert_eq!(a.used, b.used);
            }
            prop_assert_eq!(a.bytes(), b.bytes());
            prop_assert_eq!(a.buf.capacity(), b.buf.capacity());
        }

        #[test]
        fn any_increasing_series_roundtrips(
            start in -1_000_000_000_000i64..4_000_000_000_000,
            deltas in proptest::collection::vec(1i64..10_000_000, 0..300),
            values in proptest::collection::vec(proptest::num::f64::ANY, 300),
        ) {
            let mut t = start;
            let mut s = vec![(t, values[0])];
            for (i, d) in deltas.iter().enumerate() {
                t += d;
                s.push((t, values[(i + 1) % values.len()]));
            }
            roundtrip(&s);
        }

        /// `decode_range` is `decode` filtered to the range, whatever the range.
        #[test]
        fn decode_range_is_decode_filtered(
            deltas in proptest::collection::vec(1i64..100_000, 0..200),
            values in proptest::collection::vec(proptest::num::f64::ANY, 200),
            mint in -10_000i64..10_000_000,
            len in 0i64..10_000_000,
        ) {
            let mut c = XorChunk::new();
            let mut t = 0;
            c.append(t, values[0]);
            for (i, d) in deltas.iter().enumerate() {
                t += d;
                c.append(t, values[(i + 1) % values.len()]);
            }
            let mut all = Vec::new();
            decode(c.bytes(), c.count(), &mut all).expect("decodes");
            let want: Vec<(i64, u64)> = all
                .iter()
                .filter(|s| s.0 >= mint && s.0 <= mint + len)
                .map(|s| (s.0, s.1.to_bits()))
                .collect();
            let mut got = Vec::new();
            c.decode_range(mint, mint + len, &mut got);
            let got: Vec<(i64, u64)> = got.iter().map(|s| (s.t, s.v.to_bits())).collect();
            prop_assert_eq!(got, want);
        }

        /// A recycled chunk encodes exactly as a new one, in the old chunk's allocation.
        #[test]
        fn recycled_chunk_encodes_as_a_new_one(
            first in proptest::collection::vec((1i64..100_000, proptest::num::f64::ANY), 1..150),
            second in proptest::collection::vec((1i64..100_000, proptest::num::f64::ANY), 0..150),
        ) {
            let fill = |c: &mut XorChunk, s: &[(i64, f64)]| {
                let mut t = 0;
                for &(d, v) in s {
                    t += d;
                    c.append(t, v);
                }
            };
            let mut old = XorChunk::new();
            fill(&mut old, &first);
            let (len, ptr) = (old.byte_len(), old.bytes().as_ptr());
            let newest = old.last();
            let newest_t: i64 = first.iter().map(|s| s.0).sum();
            prop_assert_eq!(newest, Some((newest_t, first.last().unwrap().1.to_bits())));
            let mut recycled = old.recycle();
            prop_assert_eq!(recycled.count(), 0);
            prop_assert_eq!(recycled.last(), newest, "carried until the first append");
            prop_assert_eq!(recycled.clone().recycle().last(), newest, "and through an empty recycle");
            prop_assert_eq!(recycled.clone().retire().last(), newest);
            prop_assert_eq!(recycled.clone().retire().buf.capacity(), 0, "retire frees the buffer");
            prop_assert!(recycled.buf.capacity() >= len);
            fill(&mut recycled, &second);
            let mut fresh = XorChunk::new();
            fill(&mut fresh, &second);
            prop_assert_eq!(recycled.bytes(), fresh.bytes());
            prop_assert_eq!(recycled.count(), fresh.count());
            prop_assert_eq!(recycled.last(), if second.is_empty() { newest } else { fresh.last() });
            if fresh.byte_len() <= len {
                prop_assert_eq!(recycled.bytes().as_ptr(), ptr, "no reallocation");
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), n in 0usize..200) {
            let mut out = Vec::new();
            let _ = decode(&bytes, n, &mut out);
        }
    }
}
