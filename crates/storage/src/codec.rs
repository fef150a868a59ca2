//! Sample encoding inside block Parquet files: each series' timestamps and values are one
//! byte string each, tagged with an encoding byte. Layout: docs/format/block.md.
//!
//! Encoding chosen by measurement (docs/benchmarks/storage.md): pco beats Gorilla XOR and
//! plain Parquet columns several-fold on real metric values, losslessly. Tiny runs where pco's
//! header outweighs its gain are stored raw.

use crate::error::{Result, StorageError};

/// Raw little-endian 8-byte numbers.
pub const ENC_RAW: u8 = 0;
/// pco standalone format.
pub const ENC_PCO: u8 = 1;

fn pco_config() -> pco::ChunkConfig {
    pco::ChunkConfig::default().with_compression_level(8)
}

pub fn encode_i64(xs: &[i64]) -> Vec<u8> {
    let raw = || {
        let mut out = Vec::with_capacity(1 + xs.len() * 8);
        out.push(ENC_RAW);
        xs.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
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

pub fn encode_f64(xs: &[f64]) -> Vec<u8> {
    let raw = || {
        let mut out = Vec::with_capacity(1 + xs.len() * 8);
        out.push(ENC_RAW);
        xs.iter().for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip_bit_for_bit(ts in proptest::collection::vec(any::<i64>(), 0..600),
                                 vs in proptest::collection::vec(proptest::num::f64::ANY, 0..600)) {
            prop_assert_eq!(decode_i64(&encode_i64(&ts), ts.len()).unwrap(), ts);
            let back = decode_f64(&encode_f64(&vs), vs.len()).unwrap();
            prop_assert_eq!(back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), vs.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(b in proptest::collection::vec(any::<u8>(), 0..100), n in 0usize..50) {
            let _ = decode_i64(&b, n);
            let _ = decode_f64(&b, n);
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
