//! Decoding head XOR chunks: the first cost of every query over recent data. An instant query
//! with a 5m window over a full 120-sample chunk decodes the whole chunk to keep its last 20
//! samples (XOR chunks are sequential), so the decoder's per-sample speed matters.
//!
//! `cargo bench -p storage --bench chunk`

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use storage::chunk::XorChunk;

/// 120 samples at 15 s with a few ms of jitter, values like node exporter's: a CPU-seconds
/// counter with two decimals and a page-multiple memory gauge.
fn chunks() -> Vec<(&'static str, XorChunk)> {
    let mut counter = XorChunk::new();
    let mut gauge = XorChunk::new();
    let (mut c, mut g) = (12_345.67f64, 8_000_000_000f64);
    for i in 0..120i64 {
        let t = 1_700_000_000_000 + i * 15_000 + (i * 7919) % 7 - 3;
        c = ((c + 0.37 + (i % 5) as f64 * 0.11) * 100.0).round() / 100.0;
        g += ((i * 31) % 17 - 8) as f64 * 4096.0;
        counter.append(t, c);
        gauge.append(t, g);
    }
    vec![("counter", counter), ("gauge", gauge)]
}

fn bench(c: &mut Criterion) {
    let mut out = Vec::with_capacity(120);
    for (name, chunk) in chunks() {
        c.bench_function(&format!("decode_range/{name}/all_120"), |b| {
            b.iter(|| {
                out.clear();
                chunk.decode_range(i64::MIN, i64::MAX, &mut out);
                black_box(out.len())
            })
        });
        // The last 5 minutes: the whole chunk is walked, 20 samples kept.
        let last = 1_700_000_000_000 + 119 * 15_000;
        c.bench_function(&format!("decode_range/{name}/last_5m"), |b| {
            b.iter(|| {
                out.clear();
                chunk.decode_range(last - 300_000, last + 10, &mut out);
                black_box(out.len())
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
