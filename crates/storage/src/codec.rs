//! Sample encoding inside block Parquet files: each series' timestamps and values are one
//! byte string each, tagged with an encoding byte. Layout: docs/format/block.md.
//!
//! Encoding chosen by measurement (docs/benchmarks/storage.md): pco beats Gorilla XOR and
//! plain Parquet columns several-fold on real metric values, losslessly. Tiny runs where pco's
//! header outweighs its gain are stored raw.

use model::{FloatHistogram, Span};

use crate::error::{Result, StorageError};

/// Raw little-endian 8-byte numbers.
pub const ENC_RAW: u8 = 0;
/// pco standalone format.
pub const ENC_PCO: u8 = 1;

fn pco_config() -> pco::ChunkConfig {
    pco::ChunkConfig::default().with_compression_level(8)
}

/// pco when it is smaller, else raw little-endian 8-byte words; `bits` gives a number's word.
fn encode<T: pco::data_types::Number>(xs: &[T], bits: impl Fn(&T) -> u64) -> Vec<u8> {
    let raw = || {
        let mut out = Vec::with_capacity(1 + xs.len() * 8);
        out.push(ENC_RAW);
        xs.iter().for_each(|x| out.extend_from_slice(&bits(x).to_le_bytes()));
        out
    };
    if xs.len() < 4 {
        return raw();
    }
    match pco::standalone::simple_compress(xs, &pco_config()) {
        Ok(c) if c.len() + 1 < xs.len() * 8 => {
            let mut out = Vec::with_capacity(c.len() + 1);
            out.push(ENC_PCO);
            out.extend_from_slice(&c);
            out
        }
        _ => raw(),
    }
}

pub fn encode_i64(xs: &[i64]) -> Vec<u8> {
    encode(xs, |x| *x as u64)
}

pub fn encode_f64(xs: &[f64]) -> Vec<u8> {
    encode(xs, |x| x.to_bits())
}

fn corrupt(what: &str) -> StorageError {
    StorageError::BlockCorrupt { block: String::new(), reason: what.to_string() }
}

pub fn decode_i64(b: &[u8], n: usize) -> Result<Vec<i64>> {
    let (tag, body) = b.split_first().ok_or_else(|| corrupt("empty timestamp column"))?;
    let v = match *tag {
        ENC_RAW => body
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect(),
        ENC_PCO => {
            pco::standalone::simple_decompress::<i64>(body).map_err(|e| corrupt(&e.to_string()))?
        }
        t => return Err(corrupt(&format!("unknown timestamp encoding {t}"))),
    };
    if v.len() != n {
        return Err(corrupt("timestamp count mismatch"));
    }
    Ok(v)
}

pub fn decode_f64(b: &[u8], n: usize) -> Result<Vec<f64>> {
    let (tag, body) = b.split_first().ok_or_else(|| corrupt("empty value column"))?;
    let v: Vec<f64> = match *tag {
        ENC_RAW => body
            .chunks_exact(8)
            .map(|c| f64::from_bits(u64::from_le_bytes(c.try_into().unwrap_or_default())))
            .collect(),
        ENC_PCO => {
            pco::standalone::simple_decompress::<f64>(body).map_err(|e| corrupt(&e.to_string()))?
        }
        t => return Err(corrupt(&format!("unknown value encoding {t}"))),
    };
    if v.len() != n {
        return Err(corrupt("value count mismatch"));
    }
    Ok(v)
}

/// Version byte of the native histogram encoding (docs/format/wal.md, "Histogram encoding").
pub const HISTOGRAM_V1: u8 = 1;
/// Longest span, bucket or custom-value list a decoder accepts (a guard, not a model limit).
const MAX_HISTOGRAM_ITEMS: usize = 1 << 20;

/// Encodes a native histogram: version, hint, schema, the four scalars, then the spans, bucket
/// lists and custom values, each preceded by its u32 length. All numbers little-endian.
pub fn encode_histogram(h: &FloatHistogram, out: &mut Vec<u8>) {
    out.push(HISTOGRAM_V1);
    out.push(h.counter_reset_hint);
    out.extend_from_slice(&h.schema.to_le_bytes());
    for f in [h.zero_threshold, h.zero_count, h.count, h.sum] {
        out.extend_from_slice(&f.to_bits().to_le_bytes());
    }
    for spans in [&h.positive_spans, &h.negative_spans] {
        out.extend_from_slice(&(spans.len() as u32).to_le_bytes());
        for s in spans.iter() {
            out.extend_from_slice(&s.offset.to_le_bytes());
            out.extend_from_slice(&s.length.to_le_bytes());
        }
    }
    for list in [&h.positive_buckets, &h.negative_buckets, &h.custom_values] {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for f in list.iter() {
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
    }
}

/// A bounds-checked reader over an encoded histogram.
struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let (head, rest) = self.b.split_at_checked(N).ok_or("histogram truncated")?;
        self.b = rest;
        head.try_into().map_err(|_| "histogram truncated".to_string())
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn i32(&mut self) -> std::result::Result<i32, String> {
        Ok(i32::from_le_bytes(self.take()?))
    }
    fn f64(&mut self) -> std::result::Result<f64, String> {
        Ok(f64::from_bits(u64::from_le_bytes(self.take()?)))
    }
    /// A length prefix for items of `size` bytes, checked against the bytes left.
    fn len(&mut self, size: usize) -> std::result::Result<usize, String> {
        let n = self.u32()? as usize;
        if n > MAX_HISTOGRAM_ITEMS || n.saturating_mul(size) > self.b.len() {
            return Err(format!("histogram list of {n} items runs past the end"));
        }
        Ok(n)
    }
    fn floats(&mut self) -> std::result::Result<Vec<f64>, String> {
        let n = self.len(8)?;
        (0..n).map(|_| self.f64()).collect()
    }
    fn spans(&mut self) -> std::result::Result<Vec<Span>, String> {
        let n = self.len(8)?;
        (0..n).map(|_| Ok(Span { offset: self.i32()?, length: self.u32()? })).collect()
    }
}

/// Decodes [`encode_histogram`]'s bytes; every length is checked, trailing bytes are an error.
pub fn decode_histogram(b: &[u8]) -> std::result::Result<FloatHistogram, String> {
    let mut r = Reader { b };
    let version = r.u8()?;
    if version != HISTOGRAM_V1 {
        return Err(format!("unknown histogram encoding version {version}"));
    }
    let counter_reset_hint = r.u8()?;
    let schema = r.i32()?;
    let (zero_threshold, zero_count, count, sum) = (r.f64()?, r.f64()?, r.f64()?, r.f64()?);
    let positive_spans = r.spans()?;
    let negative_spans = r.spans()?;
    let positive_buckets = r.floats()?;
    let negative_buckets = r.floats()?;
    let custom_values = r.floats()?;
    if !r.b.is_empty() {
        return Err(format!("{} trailing bytes after a histogram", r.b.len()));
    }
    Ok(FloatHistogram {
        counter_reset_hint,
        schema,
        zero_threshold,
        zero_count,
        count,
        sum,
        positive_spans,
        negative_spans,
        positive_buckets,
        negative_buckets,
        custom_values,
    })
}

/// Histograms are equal as stored: every float compared bit for bit.
pub fn histogram_bits_eq(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let fe = |x: &[f64], y: &[f64]| {
        x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
    };
    a.counter_reset_hint == b.counter_reset_hint
        && a.schema == b.schema
        && fe(
            &[a.zero_threshold, a.zero_count, a.count, a.sum],
            &[b.zero_threshold, b.zero_count, b.count, b.sum],
        )
        && a.positive_spans == b.positive_spans
        && a.negative_spans == b.negative_spans
        && fe(&a.positive_buckets, &b.positive_buckets)
        && fe(&a.negative_buckets, &b.negative_buckets)
        && fe(&a.custom_values, &b.custom_values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hist(seed: u32) -> FloatHistogram {
        FloatHistogram {
            counter_reset_hint: (seed % 4) as u8,
            schema: seed as i32 - 53,
            zero_threshold: 0.001,
            zero_count: seed as f64,
            count: 10.0 + seed as f64,
            sum: -0.0,
            positive_spans: vec![Span { offset: -2, length: 2 }, Span { offset: 3, length: 1 }],
            negative_spans: vec![Span { offset: 0, length: 1 }],
            positive_buckets: vec![1.0, 2.0, f64::NAN],
            negative_buckets: vec![model::stale_nan()],
            custom_values: vec![0.1, 0.5, f64::INFINITY],
        }
    }

    #[test]
    fn histogram_roundtrip_and_every_truncation_is_an_error() {
        for h in [hist(0), hist(7), FloatHistogram::default()] {
            let mut b = Vec::new();
            encode_histogram(&h, &mut b);
            let back = decode_histogram(&b).unwrap();
            assert!(histogram_bits_eq(&h, &back), "{h:?} != {back:?}");
            for cut in 0..b.len() {
                assert!(decode_histogram(&b[..cut]).is_err(), "cut at {cut}");
            }
            b.push(0);
            assert!(decode_histogram(&b).unwrap_err().contains("trailing"));
        }
        assert!(decode_histogram(&[2]).unwrap_err().contains("version 2"));
        assert!(!histogram_bits_eq(&hist(1), &hist(2)));
    }

    proptest! {
        #[test]
        fn roundtrip_bit_for_bit(ts in proptest::collection::vec(any::<i64>(), 0..600),
                                 vs in proptest::collection::vec(proptest::num::f64::ANY, 0..600)) {
            prop_assert_eq!(decode_i64(&encode_i64(&ts), ts.len()).unwrap(), ts);
            let back = decode_f64(&encode_f64(&vs), vs.len()).unwrap();
            prop_assert_eq!(back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), vs.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }

        #[test]
        fn histogram_roundtrip_bit_for_bit(
            hint in 0u8..4, schema in -53i32..9, scalars in proptest::array::uniform4(proptest::num::f64::ANY),
            spans in proptest::collection::vec((any::<i32>(), any::<u32>()), 0..6),
            buckets in proptest::collection::vec(proptest::num::f64::ANY, 0..20),
            custom in proptest::collection::vec(proptest::num::f64::ANY, 0..5),
        ) {
            let spans: Vec<Span> = spans.into_iter().map(|(offset, length)| Span { offset, length }).collect();
            let h = FloatHistogram {
                counter_reset_hint: hint, schema,
                zero_threshold: scalars[0], zero_count: scalars[1], count: scalars[2], sum: scalars[3],
                positive_spans: spans.clone(), negative_spans: spans.into_iter().rev().collect(),
                positive_buckets: buckets.clone(), negative_buckets: buckets.into_iter().rev().collect(),
                custom_values: custom,
            };
            let mut b = Vec::new();
            encode_histogram(&h, &mut b);
            prop_assert!(histogram_bits_eq(&decode_histogram(&b).unwrap(), &h));
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(b in proptest::collection::vec(any::<u8>(), 0..100), n in 0usize..50) {
            let _ = decode_i64(&b, n);
            let _ = decode_f64(&b, n);
            let _ = decode_histogram(&b);
        }
    }

    #[test]
    fn special_floats_survive() {
        let vs =
            [f64::NAN, model::stale_nan(), -0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY, 1.5, 2.5];
        let back = decode_f64(&encode_f64(&vs), vs.len()).unwrap();
        assert!(model::is_stale_nan(back[1]));
        assert_eq!(back[2].to_bits(), (-0.0f64).to_bits());
    }
}
