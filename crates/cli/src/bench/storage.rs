//! `promlake bench storage`: the same node-exporter-like samples into promlake (in process,
//! WAL fsync on, batches of 2,000) and into VictoriaMetrics (its import API), then bytes on disk
//! per sample after flush and compaction, resident memory per series, and append throughput.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use model::{Appendable, SeriesWrite, TenantId, WriteBatch};

use super::peers::{Peer, cpu_seconds, dir_bytes, rss_bytes};
use super::workload::{Workload, to_text};

#[derive(clap::Args, Clone, Debug)]
pub struct StorageArgs {
    /// Active series.
    #[arg(long, default_value_t = 100_000)]
    pub series: usize,
    /// Samples per series (480 = 2 h at 15 s).
    #[arg(long, default_value_t = 480)]
    pub samples: i64,
    /// Samples per append batch.
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
    /// Replace every value by a random full-precision float (the codec's worst case).
    #[arg(long)]
    pub random_values: bool,
    /// Peers to measure side by side (victoria-metrics), comma separated; empty for none.
    #[arg(long, default_value = "victoria-metrics")]
    pub peers: String,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StorageFigures {
    pub system: String,
    pub series: usize,
    pub samples: u64,
    pub bytes_on_disk: u64,
    pub bytes_per_sample: f64,
    pub rss_per_series_bytes: f64,
    pub ingest_samples_per_s: f64,
    pub cpu_seconds_per_million: f64,
}

fn scrape(w: &mut Workload, step: i64, random: bool, rng: &mut u64) -> Vec<SeriesWrite> {
    let mut s = Vec::with_capacity(w.series.len());
    scrape_with(w, step, random, rng, |x| s.push(x));
    s
}

/// One scrape, series by series; `random` replaces every value by a random full-precision
/// float (xorshift: a full-entropy mantissa in [1, 2)).
fn scrape_with(
    w: &mut Workload,
    step: i64,
    random: bool,
    rng: &mut u64,
    mut f: impl FnMut(SeriesWrite),
) {
    w.scrape_with(step, |mut x| {
        if random {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            x.samples[0].v = f64::from_bits(0x3ff0_0000_0000_0000 | (*rng >> 12));
        }
        f(x)
    });
}

pub fn run(args: &StorageArgs) -> Result<Vec<StorageFigures>> {
    let mut out = vec![run_promlake(args)?];
    for peer in args.peers.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match peer {
            "victoria-metrics" => out.push(run_victoria(args)?),
            other => anyhow::bail!("unknown peer {other:?} (known: victoria-metrics)"),
        }
    }
    print_table(&out);
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&out)?)?;
    }
    Ok(out)
}

fn start_ms(args: &StorageArgs) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    // Aligned so the data falls into as few blocks as possible, ending before now.
    let span = args.samples * 15_000;
    (now - span - 3_600_000).div_euclid(7_200_000) * 7_200_000
}

fn run_promlake(args: &StorageArgs) -> Result<StorageFigures> {
    let dir = tempfile::tempdir()?;
    let db = storage::Db::open(storage::Options::new(dir.path()))?;
    let tenant = TenantId::default_tenant();
    let mut w = Workload::new(args.series, start_ms(args), 15_000, 42);
    let pid = std::process::id();
    let rss0 = rss_bytes(pid)?;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let (mut append_wall, mut append_cpu, mut total) = (Duration::ZERO, 0.0, 0u64);
    eprintln!("promlake: appending {} series x {} samples", args.series, args.samples);
    let batch_len = args.batch.max(1);
    let mut append = |series: Vec<SeriesWrite>| -> Result<()> {
        let (c0, t0) = (cpu_seconds(pid)?, Instant::now());
        let o = db.append(&tenant, WriteBatch { series, metadata: vec![] })?;
        append_wall += t0.elapsed();
        append_cpu += cpu_seconds(pid)? - c0;
        total += o.samples_written as u64;
        Ok(())
    };
    for step in 0..args.samples {
        // Batch by batch as generated: the process whose memory is measured holds one batch of
        // the client's data at a time, not a whole scrape of every series.
        let mut batch = Vec::with_capacity(batch_len);
        let mut res = Ok(());
        scrape_with(&mut w, step, args.random_values, &mut rng, |x| {
            batch.push(x);
            if batch.len() == batch_len && res.is_ok() {
                res = append(std::mem::replace(&mut batch, Vec::with_capacity(batch_len)));
            }
        });
        res?;
        if !batch.is_empty() {
            append(batch)?;
        }
        if step % 60 == 59 {
            eprintln!("  {}/{} scrapes", step + 1, args.samples);
        }
    }
    let rss = rss_bytes(pid)?.saturating_sub(rss0);
    db.flush(None)?;
    for t in db.tenants() {
        t.compact()?;
    }
    let bytes = dir_bytes(dir.path());
    if std::env::var_os("PROMLAKE_BENCH_LIST").is_some() {
        for sub in ["wal", "blocks", "head_chunks"] {
            eprintln!("{sub}: {} bytes", dir_bytes(&dir.path().join(sub)));
        }
    }
    Ok(StorageFigures {
        system: "promlake".into(),
        series: args.series,
        samples: total,
        bytes_on_disk: bytes,
        bytes_per_sample: bytes as f64 / total as f64,
        rss_per_series_bytes: rss as f64 / args.series as f64,
        ingest_samples_per_s: total as f64 / append_wall.as_secs_f64(),
        cpu_seconds_per_million: append_cpu / (total as f64 / 1e6),
    })
}

fn run_victoria(args: &StorageArgs) -> Result<StorageFigures> {
    let peer = Peer::victoria_metrics()?;
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build()?;
    let mut w = Workload::new(args.series, start_ms(args), 15_000, 42);
    let rss0 = rss_bytes(peer.pid())?;
    let cpu0 = cpu_seconds(peer.pid())?;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let (mut wall, mut total) = (Duration::ZERO, 0u64);
    let mut text = String::new();
    eprintln!("victoria-metrics: importing {} series x {} samples", args.series, args.samples);
    for step in 0..args.samples {
        let s = scrape(&mut w, step, args.random_values, &mut rng);
        for chunk in s.chunks(args.batch.max(20_000)) {
            text.clear();
            to_text(chunk, &mut text);
            let t0 = Instant::now();
            let r = client
                .post(format!("{}/api/v1/import/prometheus", peer.url))
                .body(text.clone())
                .send()?;
            wall += t0.elapsed();
            anyhow::ensure!(r.status().is_success(), "victoria-metrics import: {}", r.status());
            total += chunk.len() as u64;
        }
        if step % 60 == 59 {
            eprintln!("  {}/{} scrapes", step + 1, args.samples);
        }
    }
    let cpu = cpu_seconds(peer.pid())? - cpu0;
    client.get(format!("{}/internal/force_flush", peer.url)).send().context("force_flush")?;
    // Series become visible and RSS settles after the flush.
    std::thread::sleep(Duration::from_secs(2));
    let rss = rss_bytes(peer.pid())?.saturating_sub(rss0);
    let s0 = start_ms(args);
    let bytes = peer.victoria_compact(s0, s0 + args.samples * 15_000, Duration::from_secs(5))?;
    Ok(StorageFigures {
        system: "victoria-metrics".into(),
        series: args.series,
        samples: total,
        bytes_on_disk: bytes,
        bytes_per_sample: bytes as f64 / total as f64,
        rss_per_series_bytes: rss as f64 / args.series as f64,
        ingest_samples_per_s: total as f64 / wall.as_secs_f64(),
        cpu_seconds_per_million: cpu / (total as f64 / 1e6),
    })
}

pub fn print_table(rows: &[StorageFigures]) {
    println!(
        "| system | series | samples | bytes on disk | bytes/sample | RSS/series | append samples/s | CPU s per 1M |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.3} | {:.0} B | {:.0} | {:.3} |",
            r.system,
            r.series,
            r.samples,
            r.bytes_on_disk,
            r.bytes_per_sample,
            r.rss_per_series_bytes,
            r.ingest_samples_per_s,
            r.cpu_seconds_per_million
        );
    }
    if let (Some(p), true) = (rows.first(), rows.len() > 1) {
        for peer in &rows[1..] {
            println!(
                "promlake / {}: bytes per sample {:.2}x, RSS per series {:.2}x",
                peer.system,
                p.bytes_per_sample / peer.bytes_per_sample,
                p.rss_per_series_bytes / peer.rss_per_series_bytes,
            );
        }
    }
}
