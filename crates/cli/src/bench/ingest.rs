//! `promlake bench ingest`: a remote-write load generator. Payloads (node-exporter-like series,
//! `--batch` samples per request, snappy-compressed remote write 1.0) are encoded before the
//! timed phase; concurrent senders then replay them. Reports accepted samples/s, latency
//! percentiles, errors by status, the server's CPU seconds per million samples (from
//! /proc/PID/stat) and, as the physical limit, the decode-only ceiling on one core.
//! `--compare` starts promlake and VictoriaMetrics on fresh data dirs and runs the identical
//! payloads against each, one after the other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::ProgressBar;

use model::{Interner, SeriesCache, SeriesHandle, SeriesKey, WriteBatch};

use super::peers::{Peer, cpu_seconds};
use super::workload::Workload;

#[derive(clap::Args, Clone, Debug)]
pub struct IngestArgs {
    /// Remote write URL of the system under test (ignored with --compare).
    #[arg(long, default_value = "http://127.0.0.1:9393/api/v1/write")]
    pub url: String,
    /// Active series.
    #[arg(long, default_value_t = 100_000)]
    pub series: usize,
    /// Scrapes to send (samples = series x scrapes).
    #[arg(long, default_value_t = 60)]
    pub scrapes: i64,
    /// Samples per request.
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Tenant header (X-Scope-OrgID).
    #[arg(long)]
    pub tenant: Option<String>,
    /// PID of the server, to report its CPU time per million samples.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Start promlake and VictoriaMetrics and measure both.
    #[arg(long)]
    pub compare: bool,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestFigures {
    pub system: String,
    pub samples: u64,
    pub requests: u64,
    pub seconds: f64,
    pub samples_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub errors: BTreeMap<u16, u64>,
    pub server_cpu_s_per_million: Option<f64>,
}

/// One encoded remote-write request.
pub struct Payload {
    pub body: Vec<u8>,
    pub samples: usize,
    /// Which sender sends it: the chunk's place in its scrape modulo the senders, so every
    /// series goes through one sender in time order (as Prometheus shards remote write), and
    /// systems that reject out-of-order samples see none.
    pub shard: usize,
}

/// Unix milliseconds of the first scrape of a run of `scrapes` ending now.
pub fn default_start_ms(scrapes: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    now - scrapes * 15_000
}

/// Encodes every request up front, scrapes 15 s apart from `start_ms`.
pub fn encode_payloads(args: &IngestArgs, start_ms: i64) -> Vec<Payload> {
    let mut w = Workload::new(args.series, start_ms, 15_000, 42);
    let mut out = Vec::new();
    for step in 0..args.scrapes {
        let scrape = w.scrape(step);
        for (i, chunk) in scrape.chunks(args.batch).enumerate() {
            let batch = WriteBatch { series: chunk.to_vec(), metadata: vec![] };
            out.push(Payload {
                body: wire::snappy::compress(&wire::encode_write_v1(&batch)),
                samples: chunk.len(),
                shard: i % args.concurrency.max(1),
            });
        }
    }
    out
}

/// Snappy + zero-copy decode of every payload on one core, cold: every series' labels parsed,
/// validated and interned, as for series a receiver has not seen (no series cache).
pub fn decode_ceiling(payloads: &[Payload]) -> f64 {
    let t0 = Instant::now();
    let mut n = 0usize;
    for Payload { body: p, .. } in payloads {
        let interner = Interner::new();
        if let Ok(d) = wire::decode_write(
            wire::WriteProtocol::V1,
            p,
            256 << 20,
            &interner,
            &wire::DecodeLimits::default(),
        ) {
            n += d.batch.sample_count();
        }
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// A series as the warm ceiling's cache holds it: never dropped.
struct BenchSeries(model::Labels);

impl SeriesHandle for BenchSeries {
    fn labels(&self) -> &model::Labels {
        &self.0
    }
    fn is_live(&self) -> bool {
        true
    }
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// The same decode, warm: a series cache (as a tenant's, filled from the first scrape's
/// payloads, untimed) resolves every series from its raw label bytes, as for a receiver that
/// has seen the series before, which is the steady state of remote write.
pub fn decode_ceiling_warm(payloads: &[Payload], series: usize, batch: usize) -> f64 {
    let cache = SeriesCache::new();
    let interner = Interner::new();
    let decode = |p: &[u8]| {
        wire::decode_write_cached(
            wire::WriteProtocol::V1,
            p,
            256 << 20,
            &interner,
            &wire::DecodeLimits::default(),
            Some(&cache),
        )
    };
    // Payloads go scrape by scrape, so the first `series / batch` of them hold every series.
    for Payload { body: p, .. } in payloads.iter().take(series.div_ceil(batch.max(1))) {
        if let Ok(d) = decode(p) {
            for s in d.batch.series {
                if let SeriesKey::Miss(id) = s.key {
                    cache.insert(id, Arc::new(BenchSeries(s.labels)));
                }
            }
        }
    }
    let t0 = Instant::now();
    let mut n = 0usize;
    for Payload { body: p, .. } in payloads {
        if let Ok(d) = decode(p) {
            n += d.batch.sample_count();
        }
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Replays the payloads against `url` with `concurrency` senders, each sending its shard in
/// order; `progress` counts requests.
pub fn run_load(
    system: &str,
    url: &str,
    payloads: &[Payload],
    args: &IngestArgs,
    pid: Option<u32>,
    progress: &ProgressBar,
) -> Result<IngestFigures> {
    let cpu0 = pid.map(cpu_seconds).transpose()?;
    let t0 = Instant::now();
    let results: Vec<Vec<(f64, u16, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.concurrency)
            .map(|shard| {
                s.spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(60))
                        .build()
                        .ok();
                    let mut out = Vec::new();
                    let Some(client) = client else { return out };
                    for p in payloads.iter().filter(|p| p.shard == shard) {
                        let mut req = client
                            .post(url)
                            .header("content-type", "application/x-protobuf")
                            .header("content-encoding", "snappy")
                            .header("x-prometheus-remote-write-version", "0.1.0")
                            .body(p.body.clone());
                        if let Some(t) = &args.tenant {
                            req = req.header("X-Scope-OrgID", t);
                        }
                        let s0 = Instant::now();
                        let status = req.send().map(|r| r.status().as_u16()).unwrap_or(0);
                        out.push((s0.elapsed().as_secs_f64() * 1000.0, status, p.samples));
                        progress.inc(1);
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = match (pid, cpu0) {
        (Some(p), Some(c0)) => Some(cpu_seconds(p)? - c0),
        _ => None,
    };
    let mut lat: Vec<f64> = Vec::new();
    let mut errors = BTreeMap::new();
    let (mut samples, mut requests) = (0u64, 0u64);
    for (ms, status, n) in results.into_iter().flatten() {
        requests += 1;
        lat.push(ms);
        if (200..300).contains(&status) {
            samples += n as u64;
        } else {
            *errors.entry(status).or_insert(0) += 1;
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(IngestFigures {
        system: system.into(),
        samples,
        requests,
        seconds,
        samples_per_s: samples as f64 / seconds,
        p50_ms: percentile(&lat, 0.5),
        p90_ms: percentile(&lat, 0.9),
        p99_ms: percentile(&lat, 0.99),
        errors,
        server_cpu_s_per_million: cpu.map(|c| c / (samples as f64 / 1e6)),
    })
}

pub fn run(args: &IngestArgs) -> Result<Vec<IngestFigures>> {
    eprintln!(
        "encoding {} series x {} scrapes in requests of {} samples...",
        args.series, args.scrapes, args.batch
    );
    let payloads = encode_payloads(args, default_start_ms(args.scrapes));
    let bytes: usize = payloads.iter().map(|p| p.body.len()).sum();
    eprintln!("{} requests, {:.1} MB compressed", payloads.len(), bytes as f64 / 1e6);
    let ceiling = decode_ceiling(&payloads);
    let warm = decode_ceiling_warm(&payloads, args.series, args.batch);
    eprintln!(
        "decode-only ceiling (snappy + zero-copy decode, one core): {ceiling:.0} samples/s cold (labels parsed), {warm:.0} warm (series cache hits)"
    );
    let mut rows = Vec::new();
    if args.compare {
        {
            let own = Peer::promlake()?;
            eprintln!("promlake: sending");
            rows.push(run_load(
                "promlake",
                &format!("{}/api/v1/write", own.url),
                &payloads,
                args,
                Some(own.pid()),
                &ProgressBar::hidden(),
            )?);
        }
        {
            let vm = Peer::victoria_metrics()?;
            eprintln!("victoria-metrics: sending");
            rows.push(run_load(
                "victoria-metrics",
                &format!("{}/api/v1/write", vm.url),
                &payloads,
                args,
                Some(vm.pid()),
                &ProgressBar::hidden(),
            )?);
        }
    } else {
        rows.push(run_load(
            "target",
            &args.url,
            &payloads,
            args,
            args.pid,
            &ProgressBar::hidden(),
        )?);
    }
    println!(
        "| system | samples | requests | seconds | samples/s | p50 ms | p90 ms | p99 ms | errors | server CPU s / 1M |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.1} | {:.1} | {:.1} | {:?} | {} |",
            r.system,
            r.samples,
            r.requests,
            r.seconds,
            r.samples_per_s,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.errors,
            r.server_cpu_s_per_million.map_or("-".into(), |c| format!("{c:.3}"))
        );
    }
    println!(
        "decode-only ceiling on one core: {ceiling:.0} samples/s cold, {warm:.0} warm (series cache hits)"
    );
    if let Some(r) = rows.first() {
        println!(
            "{} end to end (2 cores, WAL fsync, head) / warm decode ceiling (1 core): {:.2}x",
            r.system,
            r.samples_per_s / warm
        );
    }
    if rows.len() == 2 {
        let (a, b) = (&rows[0], &rows[1]);
        println!(
            "promlake / victoria-metrics: samples/s {:.2}x, p99 latency {:.2}x, CPU per million {}",
            a.samples_per_s / b.samples_per_s,
            a.p99_ms / b.p99_ms,
            match (a.server_cpu_s_per_million, b.server_cpu_s_per_million) {
                (Some(x), Some(y)) => format!("{:.2}x", x / y),
                _ => "-".into(),
            }
        );
    }
    if let Some(p) = &args.json {
        std::fs::write(
            p,
            serde_json::to_string_pretty(&serde_json::json!({
                "ceiling_samples_per_s": ceiling,
                "warm_ceiling_samples_per_s": warm,
                "rows": rows
            }))?,
        )?;
    }
    Ok(rows)
}
