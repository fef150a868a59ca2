//! Measures remote write decoding on a synthetic node-exporter-like load: snappy alone, prost's
//! owned decode, and the zero-copy walk into a `WriteBatch` (1.0 and 2.0), cold and with every
//! series a series cache hit, single-threaded.
//!
//! Run: `cargo run -p wire --release --example decode_bench [series] [samples_per_request]`
//! (defaults 100000 and 2000: 50 requests of 2,000 series with one sample each, ~10 labels).
//!
//! Measured 2026-11-22 on the shared 2-core dev machine (other builds running; best round of
//! each, one core; "samples/s" = series/s here, as each series carries one sample). Dropping
//! the decoded batch is inside the timing.
//!
//! ```text
//! 50 requests, 100000 series/samples; 1.0: 23181493 B raw, 2584399 B snappy; 2.0: 4248745 B raw
//! snappy decompress (1.0 bodies)                  4.36 ms/round    22.92 M samples/s
//! prost owned decode 1.0                        169.12 ms/round     0.59 M samples/s
//! prost owned decode 2.0                         27.86 ms/round     3.59 M samples/s
//! walk 1.0 -> WriteBatch, cold interner         116.77 ms/round     0.86 M samples/s
//! walk 1.0 -> WriteBatch, warm interner         116.94 ms/round     0.86 M samples/s
//! walk 2.0 -> WriteBatch, warm interner          76.83 ms/round     1.30 M samples/s
//! snappy + walk 1.0, warm interner              122.14 ms/round     0.82 M samples/s
//! ```
//!
//! The walk produces interned `model::Labels` (prost 2.0 only produces symbol indices, no
//! label sets). Its cost is per series, not per sample: two allocations for the label set
//! (`Vec<Label>` then `Arc<[Label]>`), one for the samples, and an atomic increment (and later
//! decrement) per label string for the `Arc<str>` clones.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::{Interner, Labels, SeriesCache, SeriesHandle, SeriesKey};
use prost::Message;
use wire::proto::{prompb, v2};
use wire::{
    DecodeLimits, decode_write_v1, decode_write_v1_cached, decode_write_v2, decode_write_v2_cached,
    snappy,
};

const METRICS: &[&str] = &[
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_filesystem_avail_bytes",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    "node_load1",
    "node_context_switches_total",
    "node_vmstat_pgfault",
];

/// Label pairs of series `i`: ~10 labels, values shared the way a fleet shares them.
fn series_labels(i: usize) -> Vec<(String, String)> {
    let host = i / 200;
    let mut l = vec![
        ("__name__".to_string(), METRICS[i % METRICS.len()].to_string()),
        ("instance".into(), format!("host-{host}.example.net:9100")),
        ("job".into(), "node".into()),
        ("cluster".into(), format!("cluster-{}", host % 7)),
        ("region".into(), ["eu-west-1", "us-east-1", "ap-south-1"][host % 3].into()),
        ("env".into(), "production".into()),
        ("team".into(), format!("team-{}", host % 13)),
        ("cpu".into(), format!("{}", (i / METRICS.len()) % 16)),
        ("mode".into(), ["user", "system", "idle", "iowait", "irq"][(i / 3) % 5].into()),
        ("device".into(), format!("dev{}", (i / 160) % 10)),
    ];
    l.sort();
    l
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n_series = args.first().copied().unwrap_or(100_000);
    let per_req = args.get(1).copied().unwrap_or(2_000);

    // Build the requests: 1.0 and 2.0 encodings of the same data, plus snappy bodies.
    let mut v1_reqs = Vec::new();
    let mut v2_reqs = Vec::new();
    for start in (0..n_series).step_by(per_req) {
        let end = (start + per_req).min(n_series);
        let mut ts1 = Vec::new();
        let mut symbols = vec![String::new()];
        let mut index = std::collections::HashMap::new();
        let mut ts2 = Vec::new();
        for i in start..end {
            let labels = series_labels(i);
            let sample = (1_700_000_000_000 + i as i64, i as f64 * 1.5);
            ts1.push(prompb::TimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| prompb::Label { name: n.clone(), value: v.clone() })
                    .collect(),
                samples: vec![prompb::Sample { value: sample.1, timestamp: sample.0 }],
                ..Default::default()
            });
            let mut sym = |s: &String| -> u32 {
                *index.entry(s.clone()).or_insert_with(|| {
                    symbols.push(s.clone());
                    (symbols.len() - 1) as u32
                })
            };
            ts2.push(v2::TimeSeries {
                labels_refs: labels.iter().flat_map(|(n, v)| [sym(n), sym(v)]).collect(),
                samples: vec![v2::Sample { value: sample.1, timestamp: sample.0 }],
                ..Default::default()
            });
        }
        v1_reqs.push(prompb::WriteRequest { timeseries: ts1, metadata: vec![] }.encode_to_vec());
        v2_reqs.push(v2::Request { symbols, timeseries: ts2 }.encode_to_vec());
    }
    let v1_snappy: Vec<Vec<u8>> = v1_reqs.iter().map(|r| snappy::compress(r)).collect();
    let samples = n_series as f64;
    let bytes = |rs: &[Vec<u8>]| rs.iter().map(Vec::len).sum::<usize>();
    println!(
        "{} requests, {n_series} series/samples; 1.0: {} B raw, {} B snappy; 2.0: {} B raw",
        v1_reqs.len(),
        bytes(&v1_reqs),
        bytes(&v1_snappy),
        bytes(&v2_reqs)
    );

    let limits = DecodeLimits::default();
    let warm = Interner::new();
    report("snappy decompress (1.0 bodies)", samples, || {
        for r in &v1_snappy {
            black_box(snappy::decompress_capped(r, 64 << 20).unwrap());
        }
    });
    report("prost owned decode 1.0", samples, || {
        for r in &v1_reqs {
            black_box(prompb::WriteRequest::decode(&r[..]).unwrap());
        }
    });
    report("prost owned decode 2.0", samples, || {
        for r in &v2_reqs {
            black_box(v2::Request::decode(&r[..]).unwrap());
        }
    });
    report("walk 1.0 -> WriteBatch, cold interner", samples, || {
        let i = Interner::new();
        for r in &v1_reqs {
            black_box(decode_write_v1(r, &i, &limits).unwrap());
        }
    });
    report("walk 1.0 -> WriteBatch, warm interner", samples, || {
        for r in &v1_reqs {
            black_box(decode_write_v1(r, &warm, &limits).unwrap());
        }
    });
    report("walk 2.0 -> WriteBatch, warm interner", samples, || {
        for r in &v2_reqs {
            black_box(decode_write_v2(r, &warm, &limits).unwrap());
        }
    });
    report("snappy + walk 1.0, warm interner", samples, || {
        for r in &v1_snappy {
            let body = snappy::decompress_capped(r, 64 << 20).unwrap();
            black_box(decode_write_v1(&body, &warm, &limits).unwrap());
        }
    });
    // Every series known to the series cache (the steady state of a scrape-driven sender).
    let cache = SeriesCache::new();
    let mut held = Vec::new();
    for r in &v1_reqs {
        for w in decode_write_v1_cached(r, &warm, &limits, Some(&cache)).unwrap().batch.series {
            if let SeriesKey::Miss(id) = w.key {
                let s = Arc::new(Held(w.labels));
                cache.insert(id, s.clone());
                held.push(s);
            }
        }
    }
    assert_eq!(cache.len(), n_series, "every series cached");
    report("walk 1.0, every series a cache hit", samples, || {
        for r in &v1_reqs {
            black_box(decode_write_v1_cached(r, &warm, &limits, Some(&cache)).unwrap());
        }
    });
    report("walk 2.0, every series a cache hit", samples, || {
        for r in &v2_reqs {
            black_box(decode_write_v2_cached(r, &warm, &limits, Some(&cache)).unwrap());
        }
    });
    report("snappy + walk 1.0, every series a hit", samples, || {
        for r in &v1_snappy {
            let body = snappy::decompress_capped(r, 64 << 20).unwrap();
            black_box(decode_write_v1_cached(&body, &warm, &limits, Some(&cache)).unwrap());
        }
    });
}

/// A stored series, as storage would hand it to the cache.
struct Held(Labels);

impl SeriesHandle for Held {
    fn labels(&self) -> &Labels {
        &self.0
    }
    fn is_live(&self) -> bool {
        true
    }
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// Runs `f` until about a second has passed (at least 3 times) and prints the best round.
fn report(name: &str, samples: f64, mut f: impl FnMut()) {
    let mut best = Duration::MAX;
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < 3 || started.elapsed() < Duration::from_secs(1) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
        rounds += 1;
    }
    println!(
        "{name:<42} {:>9.2} ms/round  {:>7.2} M samples/s  ({rounds} rounds)",
        best.as_secs_f64() * 1e3,
        samples / best.as_secs_f64() / 1e6
    );
}
