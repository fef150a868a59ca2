//! Criterion benchmark of the PromQL engine over the in-memory backend: the four queries of
//! issue #4 (rate, sum by, histogram_quantile, topk) over 10,000 node-exporter-like series ×
//! 6 h at 15 s, as instant queries at the last sample and as range queries over all 6 h at a
//! 60 s step.
//!
//! `cargo bench -p promql --bench engine`. The whole-system comparison with Prometheus is
//! `promlake bench query --compare`; peak memory per query is in `promlake bench promql`.

use criterion::{Criterion, criterion_group, criterion_main};
use model::{Appendable, Labels, Sample, SeriesWrite, TenantId, WriteBatch};
use promql::testing::MemStorage;
use promql::{Engine, EngineOptions};
use std::hint::black_box;
use std::time::Duration;

const SCRAPE_MS: i64 = 15_000;
const SAMPLES: i64 = 6 * 3600 * 1000 / SCRAPE_MS; // 6 h at 15 s
const INSTANCES: usize = 100;

/// 100 hosts × (32 cpu-mode counters + 60 histogram buckets + 8 network counters) = 10,000
/// series. Values are deterministic, increasing counters with varying increments.
fn series() -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    let modes = ["user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice"];
    let les =
        ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
    let handlers = ["/", "/api", "/login", "/metrics", "/static"];
    for i in 0..INSTANCES {
        let instance = format!("host-{i:03}:9100");
        for cpu in 0..4 {
            for (m, mode) in modes.iter().enumerate() {
                let l = Labels::from_pairs([
                    ("__name__", "node_cpu_seconds_total"),
                    ("cpu", &cpu.to_string()),
                    ("instance", &instance),
                    ("job", "node"),
                    ("mode", mode),
                ]);
                out.push((l.expect("valid labels"), 0.1 + m as f64));
            }
        }
        for handler in handlers {
            for (b, le) in les.iter().enumerate() {
                let l = Labels::from_pairs([
                    ("__name__", "http_request_duration_seconds_bucket"),
                    ("handler", handler),
                    ("instance", &instance),
                    ("job", "api"),
                    ("le", le),
                ]);
                out.push((l.expect("valid labels"), 1.0 + b as f64));
            }
        }
        for dev in 0..8 {
            let l = Labels::from_pairs([
                ("__name__", "node_network_receive_bytes_total"),
                ("device", &format!("eth{dev}")),
                ("instance", &instance),
                ("job", "node"),
            ]);
            out.push((l.expect("valid labels"), 1000.0 * (dev + 1) as f64));
        }
    }
    out
}

fn storage() -> MemStorage {
    let storage = MemStorage::new();
    let tenant = TenantId::default_tenant();
    for (n, (labels, rate)) in series().into_iter().enumerate() {
        let mut v = 0.0;
        let samples = (0..SAMPLES)
            .map(|i| {
                // A varying increment, so rates differ from step to step.
                v += rate * (1.0 + ((i as usize + n) % 7) as f64 / 10.0);
                Sample { t: i * SCRAPE_MS, v }
            })
            .collect();
        let batch = WriteBatch {
            series: vec![SeriesWrite { labels, samples, ..Default::default() }],
            ..Default::default()
        };
        storage.append(&tenant, batch).expect("append");
    }
    storage
}

const QUERIES: [&str; 4] = [
    "rate(node_network_receive_bytes_total[5m])",
    "sum by (mode) (rate(node_cpu_seconds_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "topk(10, rate(node_cpu_seconds_total[5m]))",
];

fn bench(c: &mut Criterion) {
    let storage = storage();
    let tenant = TenantId::default_tenant();
    let end = (SAMPLES - 1) * SCRAPE_MS;
    for workers in [1, 2] {
        let engine = Engine::new(EngineOptions { parallel_workers: workers, ..Default::default() });
        let mut g = c.benchmark_group(format!("workers={workers}"));
        g.sample_size(10).measurement_time(Duration::from_secs(10));
        for q in QUERIES {
            g.bench_function(format!("instant {q}"), |b| {
                b.iter(|| {
                    black_box(engine.instant_query(&storage, &tenant, q, end).expect("query"))
                })
            });
            g.bench_function(format!("range 6h/60s {q}"), |b| {
                b.iter(|| {
                    black_box(
                        engine.range_query(&storage, &tenant, q, 0, end, 60_000).expect("query"),
                    )
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
