//! Fuzzes the zero-copy remote write 1.0 and 2.0 walkers and the remote read decoders.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let interner = model::Interner::new();
    let limits = wire::DecodeLimits::default();
    let _ = wire::decode_write_v1(data, &interner, &limits);
    let _ = wire::decode_write_v2(data, &interner, &limits);
    let _ = wire::remote_read::decode_read_request(data);
    let _ = wire::remote_read::read_chunked_frame(data, 1 << 20);
});
