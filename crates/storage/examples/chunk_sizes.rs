//! Measures head chunk encodings on node-exporter-like runs: XOR vs pco, 120 vs 480 samples.
//! `cargo run --release -p storage --example chunk_sizes`

use storage::chunk::XorChunk;
use storage::codec;

/// A value generator: (sample index, random source) -> value.
type Gen = Box<dyn Fn(usize, &mut dyn FnMut() -> u64) -> f64>;

fn main() {
    let mut seed = 0x1234_5678u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let kinds: [(&str, Gen); 4] = [
        ("int counter", Box::new(|i, r| (i as f64) * 1500.0 + (r() % 700) as f64)),
        (
            "cpu seconds",
            Box::new(|i, r| {
                ((i as f64 * 13.7 + (r() % 100) as f64 / 100.0) * 100.0).round() / 100.0
            }),
        ),
        ("2-dec gauge", Box::new(|_, r| (r() % 800) as f64 / 100.0)),
        ("random float", Box::new(|_, r| f64::from_bits(0x3ff0_0000_0000_0000 | (r() >> 12)))),
    ];
    for n in [120usize, 480] {
        for (name, f) in &kinds {
            let mut ts = Vec::new();
            let mut vs = Vec::new();
            let mut acc = 0.0;
            for i in 0..n {
                ts.push(1_700_000_000_000 + i as i64 * 15_000 + (rnd() % 7) as i64 - 3);
                let v = f(i, &mut rnd);
                acc = if name.contains("counter") || name.contains("cpu") {
                    acc + v / (i as f64 + 1.0)
                } else {
                    v
                };
                vs.push(if name.contains("counter") { acc.round() } else { v });
            }
            let mut x = XorChunk::new();
            for (t, v) in ts.iter().zip(&vs) {
                x.append(*t, *v);
            }
            let p = codec::encode_i64(&ts).len() + codec::encode_f64(&vs).len();
            println!(
                "{n:4} samples {name:13}: xor {:6.2} B/sample, pco {:6.2} B/sample",
                x.byte_len() as f64 / n as f64,
                p as f64 / n as f64
            );
        }
    }
}
