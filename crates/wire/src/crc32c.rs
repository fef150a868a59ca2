//! CRC-32C (Castagnoli), which Prometheus' streamed remote read frames carry. A table-driven
//! byte-at-a-time implementation: frames are small and this is not on the ingest path.

const POLY: u32 = 0x82f6_3b78; // reversed Castagnoli polynomial

const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

pub(crate) fn checksum(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_vectors() {
        assert_eq!(super::checksum(b""), 0);
        assert_eq!(super::checksum(b"123456789"), 0xe306_9283);
        assert_eq!(super::checksum(&[0u8; 32]), 0x8a91_36aa);
    }
}
