//! `promlake bench promql`: query latency and memory of the PromQL engine, in process, over
//! node-exporter-like data in the in-memory backend and in real storage flushed into blocks.
//!
//! Peak RSS growth: a side thread reads `VmRSS` from `/proc/self/status` every few
//! milliseconds while a query runs; the figure is the highest reading minus the reading just
//! before the query. (`VmHWM` cannot be reset from inside the process, so it cannot give a
//! per-query peak.) Memory the allocator reuses from earlier queries does not show as growth,
//! and a spike shorter than the sampling interval can be missed: the figure is a lower bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use model::{Appendable, Queryable, Sample, SeriesWrite, TenantId, WriteBatch};
use promql::{Engine, EngineOptions, Value};

use super::peers::{cpu_seconds, rss_bytes};
use super::workload::Workload;

/// The queries measured, as instant and as range queries.
pub const QUERIES: [&str; 4] = [
    "rate(node_cpu_seconds_total[5m])",
    "sum by (mode) (rate(node_cpu_seconds_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "topk(10, rate(node_network_receive_bytes_total[5m]))",
];

#[derive(clap::Args, Clone, Debug)]
pub struct PromqlArgs {
    /// Series loaded (about 100 per simulated host).
    #[arg(long, default_value_t = 10_000)]
    pub series: usize,
    /// Samples per series at 15 s (1,440 = 6 h).
    #[arg(long, default_value_t = 1440)]
    pub samples: i64,
    /// Runs of each query; p50 and p95 are taken over these.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Step of the range queries, in seconds (they span all the data).
    #[arg(long, default_value_t = 60)]
    pub step: i64,
    /// Engine worker counts to measure (`parallel_workers`), comma separated: `1` is the
    /// single-threaded baseline.
    #[arg(long, default_value = "1,2")]
    pub workers: String,
    /// Backends: `memory` (promql::testing::MemStorage) and/or `storage` (storage::Db, blocks).
    #[arg(long, default_value = "memory,storage")]
    pub backends: String,
    /// Range evaluation modes, comma separated: `series` (series-at-a-time where covered,
    /// the default engine) and/or `step` (step by step only, the evaluator before it).
    #[arg(long, default_value = "series")]
    pub modes: String,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct QueryFigures {
    pub backend: String,
    pub kind: &'static str,
    pub workers: usize,
    /// `series` or `step` (see `PromqlArgs::modes`).
    pub mode: String,
    pub query: String,
    pub runs: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    /// Median CPU time (user + system, all threads; 10 ms resolution) per run.
    pub p50_cpu_ms: f64,
    /// Highest RSS growth over the runs (see the module docs for the method).
    pub peak_rss_growth_bytes: u64,
    /// Series in the result (the same on every backend and worker count).
    pub result_series: usize,
}

/// Samples VmRSS every few milliseconds on a side thread, keeping the maximum.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const RSS_INTERVAL: Duration = Duration::from_millis(2);

impl RssSampler {
    fn start() -> RssSampler {
        let pid = std::process::id();
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(r) = rss_bytes(pid) {
                    p.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(RSS_INTERVAL);
            }
        });
        RssSampler { peak, stop, thread: Some(thread) }
    }

    /// Stops sampling; returns the peak including a last reading.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let last = rss_bytes(std::process::id()).unwrap_or(0);
        self.peak.load(Ordering::Relaxed).max(last)
    }
}

fn start_ms(samples: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    // Aligned to the 2 h block range, ending at least an hour before now.
    (now - samples * 15_000 - 3_600_000).div_euclid(7_200_000) * 7_200_000
}

/// Feeds the workload to `sinks` in time order, 15 minutes of scrapes at a time, series in
/// batches of 1,000 (real storage only accepts samples within its out-of-order window).
fn load(args: &PromqlArgs, start: i64, sinks: &[&dyn Appendable]) -> Result<u64> {
    let tenant = TenantId::default_tenant();
    let mut w = Workload::new(args.series, start, 15_000, 42);
    let labels: Vec<_> = w.series.iter().map(|s| s.labels.clone()).collect();
    let mut total = 0u64;
    let mut step = 0;
    while step < args.samples {
        let window = (args.samples - step).min(60);
        let mut samples: Vec<Vec<Sample>> = vec![Vec::with_capacity(window as usize); labels.len()];
        for s in step..step + window {
            for (i, sw) in w.scrape(s).into_iter().enumerate() {
                samples[i].extend(sw.samples);
            }
        }
        step += window;
        let series: Vec<SeriesWrite> = labels
            .iter()
            .zip(samples)
            .map(|(l, s)| SeriesWrite {
                labels: l.clone(),
                samples: s.into(),
                ..Default::default()
            })
            .collect();
        for chunk in series.chunks(1000) {
            for sink in sinks {
                let o =
                    sink.append(&tenant, WriteBatch { series: chunk.to_vec(), metadata: vec![] })?;
                anyhow::ensure!(o.rejected.is_empty(), "samples rejected: {:?}", o.rejected[0]);
            }
            total += chunk.iter().map(|s| s.samples.len() as u64).sum::<u64>();
        }
        if step % 240 == 0 {
            eprintln!("  {step}/{} scrapes loaded", args.samples);
        }
    }
    Ok(total)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn result_series(v: &Value) -> usize {
    match v {
        Value::Vector(v) => v.len(),
        Value::Matrix(m) => m.len(),
        Value::Scalar { .. } | Value::String { .. } => 1,
    }
}

struct Case<'a> {
    backend: &'a str,
    storage: &'a dyn Queryable,
    kind: &'static str,
    query: &'a str,
}

fn measure(
    args: &PromqlArgs,
    engine: &Engine,
    (workers, mode): (usize, &str),
    c: &Case<'_>,
    (start, end): (i64, i64),
) -> Result<QueryFigures> {
    let tenant = TenantId::default_tenant();
    let mut times = Vec::with_capacity(args.runs);
    let mut cpu = Vec::with_capacity(args.runs);
    let pid = std::process::id();
    let (mut growth, mut n) = (0u64, 0);
    for _ in 0..args.runs {
        let before = rss_bytes(std::process::id())?;
        let sampler = RssSampler::start();
        let c0 = cpu_seconds(pid)?;
        let t0 = Instant::now();
        let r = if c.kind == "instant" {
            engine.instant_query(c.storage, &tenant, c.query, end)
        } else {
            engine.range_query(c.storage, &tenant, c.query, start, end, args.step * 1000)
        }
        .with_context(|| format!("{} {} on {}", c.kind, c.query, c.backend))?;
        let elapsed = t0.elapsed();
        cpu.push((cpu_seconds(pid)? - c0) * 1000.0);
        n = result_series(&r.value);
        drop(r);
        growth = growth.max(sampler.finish().saturating_sub(before));
        times.push(elapsed.as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    Ok(QueryFigures {
        backend: c.backend.to_string(),
        kind: c.kind,
        workers,
        mode: mode.to_string(),
        query: c.query.to_string(),
        runs: args.runs,
        p50_ms: percentile(&times, 50.0),
        p95_ms: percentile(&times, 95.0),
        p50_cpu_ms: percentile(&cpu, 50.0),
        peak_rss_growth_bytes: growth,
        result_series: n,
    })
}

pub fn run(args: &PromqlArgs) -> Result<Vec<QueryFigures>> {
    anyhow::ensure!(args.runs > 0 && args.samples > 0 && args.step > 0, "nothing to measure");
    let workers: Vec<usize> = args
        .workers
        .split(',')
        .map(|w| w.trim().parse().context("--workers: comma-separated counts"))
        .collect::<Result<_>>()?;
    let modes: Vec<&str> = args.modes.split(',').map(str::trim).collect();
    for m in &modes {
        anyhow::ensure!(["series", "step"].contains(m), "unknown mode {m:?}");
    }
    let backends: Vec<&str> = args.backends.split(',').map(str::trim).collect();
    for b in &backends {
        anyhow::ensure!(["memory", "storage"].contains(b), "unknown backend {b:?}");
    }
    let start = start_ms(args.samples);
    let end = start + (args.samples - 1) * 15_000;

    let mem = promql::testing::MemStorage::new();
    let dir = tempfile::tempdir()?;
    let mut opts = storage::Options::new(dir.path());
    opts.wal.fsync = false;
    let db = storage::Db::open(opts)?;
    let mut sinks: Vec<&dyn Appendable> = Vec::new();
    if backends.contains(&"memory") {
        sinks.push(&mem);
    }
    if backends.contains(&"storage") {
        sinks.push(&db);
    }
    eprintln!("loading {} series x {} samples into {}", args.series, args.samples, args.backends);
    let t0 = Instant::now();
    let total = load(args, start, &sinks)?;
    if backends.contains(&"storage") {
        let blocks = db.flush(None)?;
        eprintln!("storage: flushed into {} blocks", blocks.len());
    }
    eprintln!("{total} samples per backend loaded in {:.1}s", t0.elapsed().as_secs_f64());

    // Worker counts and modes interleaved per query, so that drift in the machine's load
    // hits all of them.
    let mut engines: Vec<(usize, &str, Engine)> = Vec::new();
    for &w in &workers {
        for &m in &modes {
            let opts = EngineOptions {
                parallel_workers: w,
                series_at_a_time: m == "series",
                ..EngineOptions::default()
            };
            engines.push((w, m, Engine::new(opts)));
        }
    }
    let mut out = Vec::new();
    for backend in &backends {
        let storage: &dyn Queryable = if *backend == "memory" { &mem } else { &db };
        for kind in ["instant", "range"] {
            for query in QUERIES {
                for (w, m, engine) in &engines {
                    let c = Case { backend, storage, kind, query };
                    let f = measure(args, engine, (*w, m), &c, (start, end))?;
                    eprintln!("  {backend} {kind} workers={w} {m} {query}: p50 {:.1} ms", f.p50_ms);
                    out.push(f);
                }
            }
        }
    }
    print_table(&out);
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&out)?)?;
    }
    Ok(out)
}

pub fn print_table(rows: &[QueryFigures]) {
    println!(
        "| backend | kind | query | workers | mode | p50 ms | p95 ms | p50 CPU ms | peak RSS growth | series |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | `{}` | {} | {} | {:.1} | {:.1} | {:.0} | {:.1} MiB | {} |",
            r.backend,
            r.kind,
            r.query,
            r.workers,
            r.mode,
            r.p50_ms,
            r.p95_ms,
            r.p50_cpu_ms,
            r.peak_rss_growth_bytes as f64 / (1024.0 * 1024.0),
            r.result_series
        );
    }
}
