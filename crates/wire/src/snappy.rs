//! Snappy (block format, as remote write uses it) with a cap on the decompressed size that is
//! checked against the length header before anything is allocated.

use crate::WireError;

/// Decompresses a snappy block of at most `max_len` decompressed bytes.
///
/// The block's length header is read first; a body announcing more than `max_len` bytes is
/// refused without allocating. The output buffer is sized from the header, so a lying header
/// cannot make the decoder write past it.
pub fn decompress_capped(input: &[u8], max_len: usize) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    let n = decompress_capped_into(input, max_len, &mut out)?.len();
    out.truncate(n);
    Ok(out)
}

/// [`decompress_capped`] into a buffer the caller reuses: returns the decompressed bytes, a
/// prefix of `buf`. `buf` only grows (zero-filled where it does), so a reused buffer costs
/// neither an allocation nor a zero-fill; bytes past the returned prefix are left over from
/// earlier use and never read.
pub fn decompress_capped_into<'b>(
    input: &[u8],
    max_len: usize,
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], WireError> {
    let len =
        snap::raw::decompress_len(input).map_err(|e| WireError::SnappyCorrupt(e.to_string()))?;
    if len > max_len {
        return Err(WireError::SnappyTooLarge { len, max: max_len });
    }
    // No snappy element expands more than 64 output bytes per 3 input bytes (a 2-byte-offset
    // copy), so a header promising more than 32 times the input is a lie: refuse it before
    // allocating what it promises.
    if len > input.len().saturating_mul(32) {
        return Err(WireError::SnappyCorrupt(format!(
            "length header says {len} bytes, impossible from {} compressed bytes",
            input.len()
        )));
    }
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let n = snap::raw::Decoder::new()
        .decompress(input, &mut buf[..len])
        .map_err(|e| WireError::SnappyCorrupt(e.to_string()))?;
    Ok(&buf[..n])
}

/// Compresses `input` as one snappy block (what remote write senders do).
pub fn compress(input: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; snap::raw::max_compress_len(input.len())];
    // Compression into a buffer of `max_compress_len` bytes only fails for inputs larger than
    // snappy's 4 GiB block limit; an empty block is the honest answer to an impossible request.
    match snap::raw::Encoder::new().compress(input, &mut out) {
        Ok(n) => {
            out.truncate(n);
            out
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `decompress_capped`, and `decompress_capped_into` with a fresh buffer and with
    /// reused ones (shorter and longer than the output, full of other bytes): same answer.
    fn check(input: &[u8], max: usize, expected: Result<&[u8], WireError>) {
        let got = decompress_capped(input, max);
        assert_eq!(got.as_deref().map_err(Clone::clone), expected);
        for mut buf in [Vec::new(), vec![0xaa; 7], vec![0x55; 4096]] {
            let len = buf.len();
            let got = decompress_capped_into(input, max, &mut buf).map_err(|e| e.clone());
            assert_eq!(got, expected, "into a buffer of {len} bytes");
        }
    }

    #[test]
    fn round_trips_and_caps() {
        let body = b"hello hello hello hello snappy".repeat(10);
        let c = compress(&body);
        check(&c, body.len(), Ok(&body));
        check(&c, body.len() - 1, Err(WireError::SnappyTooLarge { len: 300, max: 299 }));
        check(&compress(b""), 0, Ok(b""));
    }

    #[test]
    fn rejects_huge_header_without_allocating() {
        // uvarint 0xffff_ffff: announces 4 GiB.
        check(
            &[0xff, 0xff, 0xff, 0xff, 0x0f],
            1 << 20,
            Err(WireError::SnappyTooLarge { len: 0xffff_ffff, max: 1 << 20 }),
        );
    }

    #[test]
    fn highly_compressible_input_stays_under_the_ratio_bound() {
        let body = vec![0u8; 1 << 20];
        let c = compress(&body);
        assert!(c.len() * 32 >= body.len(), "{} compressed bytes", c.len());
        check(&c, 1 << 20, Ok(&body));
        // A 4-byte input claiming 1 MiB is refused without allocating 1 MiB.
        assert!(matches!(
            decompress_capped(&[0x80, 0x80, 0x40, 0x00], 1 << 24),
            Err(WireError::SnappyCorrupt(m)) if m.contains("impossible")
        ));
    }

    #[test]
    fn corrupt_blocks_are_errors() {
        assert!(matches!(decompress_capped(&[], 10), Err(WireError::SnappyCorrupt(_))));
        // Header says 5 bytes, body is a literal of 1 byte.
        assert!(matches!(decompress_capped(&[5, 0, b'a'], 10), Err(WireError::SnappyCorrupt(_))));
        // Truncated header.
        assert!(matches!(decompress_capped(&[0x80], 10), Err(WireError::SnappyCorrupt(_))));
    }
}
