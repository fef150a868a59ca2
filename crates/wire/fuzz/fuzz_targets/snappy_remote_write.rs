//! Fuzzes the capped snappy decompressor and what a server does next with its output.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = wire::snappy::decompress_capped(data, 1 << 20) {
        assert!(body.len() <= 1 << 20);
        let interner = model::Interner::new();
        let _ = wire::decode_write_v1(&body, &interner, &wire::DecodeLimits::default());
    }
});
