//! `promlake bench compare`: promlake and each peer (Debian's Prometheus and VictoriaMetrics),
//! one after the other, each started fresh on 127.0.0.1 with a temporary data dir, under the
//! identical workload: the node-exporter-like series of [`super::workload`] remote-written by
//! [`ingest::run_load`], then the dashboard query set of [`query::run_queries`], then flush and
//! compaction for the bytes on disk. Writes `compare.json` (figures, machine, versions, command),
//! `compare.md` (the table) and `compare-*.png` (plots) into `--out`.
//!
//! Invariant: exactly one system runs at a time; each is killed (and its data dir removed)
//! before the next starts, so no system's figures include another's load.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::ingest::{self, IngestArgs, Payload};
use super::peers::{Peer, ensure_binary, peer_version, rss_bytes};
use super::query::{self, QueryArgs};

#[derive(clap::Args, Clone, Debug)]
pub struct CompareArgs {
    /// Peers to measure beside promlake, comma separated: prometheus, victoria-metrics.
    #[arg(long, default_value = "prometheus,victoria-metrics")]
    pub peers: String,
    /// Tiny scale for smoke runs (2,000 series, 40 scrapes, 2 runs per query): under 2 minutes.
    #[arg(long)]
    pub quick: bool,
    /// Directory for compare.json, compare.md and compare-*.png.
    #[arg(long, default_value = "docs/benchmarks")]
    pub out: PathBuf,
}

/// The size of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scale {
    pub series: usize,
    pub scrapes: i64,
    pub samples_per_request: usize,
    pub senders: usize,
    pub runs_per_query: usize,
    pub range: String,
    /// How long a data dir must stay unchanged before its size is read, seconds.
    pub settle_s: u64,
}

impl Scale {
    pub fn new(quick: bool) -> Scale {
        if quick {
            Scale {
                series: 2_000,
                scrapes: 40,
                samples_per_request: 500,
                senders: 4,
                runs_per_query: 2,
                range: "10m".into(),
                settle_s: 2,
            }
        } else {
            Scale {
                series: 20_000,
                scrapes: 240,
                samples_per_request: 2_000,
                senders: 4,
                runs_per_query: 5,
                range: "1h".into(),
                settle_s: 5,
            }
        }
    }
}

/// One figure of the table: JSON key, label, unit, and whether higher is better.
pub struct Figure {
    pub key: &'static str,
    pub label: &'static str,
    pub short: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
}

pub const FIGURES: &[Figure] = &[
    Figure {
        key: "ingest_samples_per_s",
        label: "remote write ingest",
        short: "ingest",
        unit: "samples/s",
        higher_is_better: true,
    },
    Figure {
        key: "write_p99_ms",
        label: "remote write p99 latency",
        short: "write p99",
        unit: "ms",
        higher_is_better: false,
    },
    Figure {
        key: "cpu_s_per_million_samples",
        label: "server CPU per million samples",
        short: "CPU/1M",
        unit: "CPU s",
        higher_is_better: false,
    },
    Figure {
        key: "bytes_per_sample",
        label: "bytes on disk per sample",
        short: "bytes/sample",
        unit: "bytes",
        higher_is_better: false,
    },
    Figure {
        key: "rss_bytes_per_series",
        label: "resident memory per active series",
        short: "RSS/series",
        unit: "bytes",
        higher_is_better: false,
    },
    Figure {
        key: "instant_query_p50_ms",
        label: "instant queries p50",
        short: "instant p50",
        unit: "ms",
        higher_is_better: false,
    },
    Figure {
        key: "instant_query_p95_ms",
        label: "instant queries p95",
        short: "instant p95",
        unit: "ms",
        higher_is_better: false,
    },
    Figure {
        key: "range_query_p50_ms",
        label: "range queries p50",
        short: "range p50",
        unit: "ms",
        higher_is_better: false,
    },
    Figure {
        key: "range_query_p95_ms",
        label: "range queries p95",
        short: "range p95",
        unit: "ms",
        higher_is_better: false,
    },
];

#[derive(Debug, Clone, serde::Serialize)]
pub struct SystemResult {
    pub system: String,
    pub version: String,
    /// Every key of [`FIGURES`].
    pub figures: BTreeMap<String, f64>,
    pub samples_accepted: u64,
    pub bytes_on_disk: u64,
    pub query_failures: usize,
    /// How `bytes_on_disk` was read.
    pub storage_method: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub ram_bytes: u64,
    pub kernel: String,
    pub os: String,
    pub load_average_1m_before: f64,
    /// Share of all cores busy in the 2 s before the run started (from /proc/stat).
    pub busy_share_before: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub date: String,
    pub command: String,
    pub promlake_commit: String,
    pub promlake_version: String,
    pub quick: bool,
    pub scale: Scale,
    pub series: usize,
    pub samples: u64,
    pub machine: Machine,
    pub wall_seconds: f64,
    pub systems: Vec<SystemResult>,
}

const KNOWN_PEERS: &[(&str, &str, &str)] = &[
    ("prometheus", "prometheus", "--version"),
    ("victoria-metrics", "victoria-metrics", "-version"),
];

pub fn run(args: &CompareArgs) -> Result<Report> {
    let started = Instant::now();
    let mut peers: Vec<&str> = Vec::new();
    for p in args.peers.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if !KNOWN_PEERS.iter().any(|k| k.0 == p) {
            bail!("unknown peer {p:?} in --peers (known: prometheus, victoria-metrics)");
        }
        if !peers.contains(&p) {
            peers.push(p);
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating --out {}", args.out.display()))?;
    // Find (or install) every peer before measuring anything.
    let mut versions = BTreeMap::new();
    versions.insert("promlake", format!("promlake {}", env!("CARGO_PKG_VERSION")));
    for (name, bin, flag) in KNOWN_PEERS.iter().filter(|k| peers.contains(&k.0)) {
        let path = ensure_binary(bin, name)?;
        versions.insert(*name, peer_version(&path, flag, name));
    }
    let machine = machine_info();
    let scale = Scale::new(args.quick);
    let ingest_args = IngestArgs {
        url: String::new(),
        series: scale.series,
        scrapes: scale.scrapes,
        batch: scale.samples_per_request,
        concurrency: scale.senders,
        tenant: None,
        pid: None,
        compare: false,
        json: None,
    };
    let query_args = QueryArgs {
        url: String::new(),
        series: scale.series,
        hours: 0.0,
        runs: scale.runs_per_query,
        range: scale.range.clone(),
        compare: false,
        json: None,
        refreshes: 0,
        refresh_every: 30,
        step: 15,
    };
    let start_ms = ingest::default_start_ms(scale.scrapes);
    let last_ms = start_ms + (scale.scrapes - 1) * 15_000;
    let payloads = ingest::encode_payloads(&ingest_args, start_ms);
    let samples: u64 = payloads.iter().map(|p| p.samples as u64).sum();
    let series = (samples / scale.scrapes.max(1) as u64) as usize;

    let systems: Vec<&str> = std::iter::once("promlake").chain(peers.iter().copied()).collect();
    let progress = Progress::new(systems.len() as u64 * 3);
    let mut results = Vec::new();
    for sys in &systems {
        let r = measure(sys, &payloads, &ingest_args, &query_args, &scale, last_ms, &progress)
            .with_context(|| format!("measuring {sys}"))?;
        results.push(SystemResult { version: versions[sys].clone(), ..r });
    }
    progress.overall.finish_and_clear();

    let report = Report {
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command: std::iter::once("promlake".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        promlake_commit: git_commit(),
        promlake_version: env!("CARGO_PKG_VERSION").into(),
        quick: args.quick,
        scale,
        series,
        samples,
        machine,
        wall_seconds: started.elapsed().as_secs_f64(),
        systems: results,
    };
    let table = markdown_table(&report.systems);
    println!("{table}");
    std::fs::write(args.out.join("compare.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(args.out.join("compare.md"), markdown_page(&report, &table))?;
    plot_figures(&args.out.join("compare-figures.png"), &report.systems)?;
    if report.systems.len() > 1 {
        plot_ratios(&args.out.join("compare-ratios.png"), &report.systems)?;
    }
    eprintln!(
        "wrote compare.json, compare.md and compare-*.png to {} in {:.0} s",
        args.out.display(),
        report.wall_seconds
    );
    Ok(report)
}

/// Starts `sys` fresh, remote-writes the payloads, reads its RSS, runs the queries, then
/// flushes/compacts and reads its bytes on disk. The peer is killed when this returns.
fn measure(
    sys: &str,
    payloads: &[Payload],
    ingest_args: &IngestArgs,
    query_args: &QueryArgs,
    scale: &Scale,
    last_ms: i64,
    progress: &Progress,
) -> Result<SystemResult> {
    let peer = match sys {
        "promlake" => Peer::promlake_uncached()?,
        "prometheus" => Peer::prometheus_receiver()?,
        _ => Peer::victoria_metrics()?,
    };
    // Let start-up work (WAL replay, caches, GC) finish before the baseline.
    std::thread::sleep(Duration::from_secs(1));
    let rss0 = rss_bytes(peer.pid())?;

    let bar = progress.phase(sys, "remote write", payloads.len() as u64);
    let url = format!("{}/api/v1/write", peer.url);
    let ing = ingest::run_load(sys, &url, payloads, ingest_args, Some(peer.pid()), &bar)?;
    progress.done(bar);
    if !ing.errors.is_empty() {
        bail!(
            "{sys} rejected {} of {} remote-write requests (status: count {:?}); its figures would be wrong",
            ing.errors.values().sum::<u64>(),
            ing.requests,
            ing.errors
        );
    }
    // Ingest buffers drain and the memory settles before RSS is read.
    std::thread::sleep(Duration::from_secs(2));
    let rss = rss_bytes(peer.pid())?.saturating_sub(rss0);
    let series = (ing.samples / ingest_args.scrapes.max(1) as u64).max(1);

    let runs = (query::QUERIES.len() * 2 * query_args.runs) as u64;
    let bar = progress.phase(sys, "queries", runs);
    let end_s = last_ms as f64 / 1000.0;
    let q = query::run_queries(sys, &peer.url, end_s, query_args, &bar)?;
    progress.done(bar);

    let bar = progress.phase(sys, "flush and compaction", 1);
    let quiet = Duration::from_secs(scale.settle_s);
    let first_ms = last_ms - (ingest_args.scrapes - 1) * 15_000;
    let (bytes, method) = match sys {
        "promlake" => (
            peer.promlake_flush(quiet)?,
            "whole data dir after POST /api/v1/admin/tsdb/flush and background compaction",
        ),
        "prometheus" => (
            peer.prometheus_snapshot_bytes()?,
            "TSDB snapshot (head written as one compacted block: index, chunks, meta); WAL not counted",
        ),
        _ => (
            peer.victoria_compact(first_ms, last_ms, quiet)?,
            "whole data dir after /internal/force_flush and /internal/force_merge",
        ),
    };
    progress.done(bar);

    let kind = |k: &str| q.by_kind.iter().find(|x| x.0 == k).map_or((0.0, 0.0), |x| (x.1, x.2));
    let (ip50, ip95) = kind("instant");
    let (rp50, rp95) = kind("range");
    let values = [
        ing.samples_per_s,
        ing.p99_ms,
        ing.server_cpu_s_per_million.unwrap_or(0.0),
        bytes as f64 / ing.samples as f64,
        rss as f64 / series as f64,
        ip50,
        ip95,
        rp50,
        rp95,
    ];
    Ok(SystemResult {
        system: sys.into(),
        version: String::new(),
        figures: FIGURES.iter().zip(values).map(|(f, v)| (f.key.to_string(), v)).collect(),
        samples_accepted: ing.samples,
        bytes_on_disk: bytes,
        query_failures: q.failures,
        storage_method: method.into(),
    })
}

/// An overall bar (one step per system and phase) and one bar per phase, on stderr when it is
/// a terminal; otherwise one line per phase.
struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    tty: bool,
}

impl Progress {
    fn new(steps: u64) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let target = if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(steps));
        if let Ok(s) =
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
        {
            overall.set_style(s.progress_chars("=> "));
        }
        overall.set_prefix("compare");
        Progress { multi, overall, tty }
    }

    fn phase(&self, sys: &str, what: &str, len: u64) -> ProgressBar {
        self.overall.set_message(format!("{sys}: {what}"));
        if !self.tty {
            eprintln!("{sys}: {what}");
        }
        let bar = self.multi.add(ProgressBar::new(len));
        if let Ok(s) =
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({per_sec})")
        {
            bar.set_style(s.progress_chars("=> "));
        }
        bar.set_prefix(sys.to_string());
        bar.set_message(what.to_string());
        bar
    }

    fn done(&self, bar: ProgressBar) {
        bar.finish_and_clear();
        self.multi.remove(&bar);
        self.overall.inc(1);
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// (busy, total) jiffies over all cores from /proc/stat.
fn cpu_jiffies() -> (u64, u64) {
    let stat = read("/proc/stat");
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    // idle + iowait are the 4th and 5th fields.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn machine_info() -> Machine {
    let (b0, t0) = cpu_jiffies();
    std::thread::sleep(Duration::from_secs(2));
    let (b1, t1) = cpu_jiffies();
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    let os = read("/etc/os-release");
    Machine {
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".into(), |x| x.1.trim().to_string()),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        ram_bytes: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        os: os
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map_or("unknown".into(), |v| v.trim_matches('"').to_string()),
        load_average_1m_before: read("/proc/loadavg")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        busy_share_before: (b1 - b0) as f64 / (t1 - t0).max(1) as f64,
    }
}

/// The commit of the checkout the command runs in (with `-dirty` for local changes).
fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}-dirty") } else { c }
        }
        None => "unknown (not run in a git checkout)".into(),
    }
}

/// Rounds for reading: thousands separated, fewer decimals as values grow.
fn fmt(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 1000.0 {
        let s = format!("{:.0}", v);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn markdown_table(rows: &[SystemResult]) -> String {
    let mut s = String::from("| figure |");
    for r in rows {
        s.push_str(&format!(" {} |", r.system));
    }
    for r in &rows[1..] {
        s.push_str(&format!(" promlake ÷ {} |", r.system));
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(rows.len() * 2 - 1));
    for f in FIGURES {
        let better = if f.higher_is_better { "higher is better" } else { "lower is better" };
        s.push_str(&format!("\n| {} ({}; {better}) |", f.label, f.unit));
        for r in rows {
            s.push_str(&format!(" {} |", fmt(r.figures[f.key])));
        }
        let own = rows[0].figures[f.key];
        for r in &rows[1..] {
            s.push_str(&format!(" {:.2}× |", own / r.figures[f.key]));
        }
    }
    s.push('\n');
    s
}

fn markdown_page(r: &Report, table: &str) -> String {
    let m = &r.machine;
    // The busy share is measured over the 2 s just before the run; the load average trails
    // by a minute or more (a benchmark that just ended still shows in it), so it is only
    // reported.
    let loaded = m.busy_share_before > 0.1;
    let load = if loaded {
        format!(
            "**Measured under load**: other processes kept {:.0}% of the cores busy in the 2 s \
             before the run (1-minute load average {:.2}); figures are indicative, re-run on a \
             quiet machine for final numbers.",
            m.busy_share_before * 100.0,
            m.load_average_1m_before
        )
    } else {
        format!(
            "The machine was quiet before the run ({:.0}% of the cores busy in the 2 s before; \
             1-minute load average {:.2}, which trails by a minute).",
            m.busy_share_before * 100.0,
            m.load_average_1m_before
        )
    };
    let versions: Vec<String> =
        r.systems.iter().map(|s| format!("{}: `{}`", s.system, s.version)).collect();
    let methods: Vec<String> =
        r.systems.iter().map(|s| format!("- {}: {}", s.system, s.storage_method)).collect();
    let sc = &r.scale;
    format!(
        "# `promlake bench compare`{quick}\n\n\
         Measured {date} with\n\n```sh\n{cmd}\n```\n\n\
         - promlake commit `{commit}` (version {pv}); {versions}\n\
         - machine: {cpu}, {cores} cores, {ram:.1} GiB RAM, Linux {kernel}, {os}\n\
         - {load}\n\
         - wall time of the whole run: {wall:.0} s\n\n\
         Workload, identical for every system, one system at a time, each started fresh on \
         127.0.0.1 with an empty temporary data dir: {series} node-exporter-like series \
         (about 10 labels; counters, gauges, histogram buckets) × {scrapes} scrapes 15 s apart \
         ({samples} samples, ending when the run started), remote-written (1.0, snappy) in \
         requests of {batch} samples by {senders} senders, each series always through the same \
         sender in time order; then {nq} dashboard PromQL queries as instant queries at the \
         newest scrape and as {range} range queries at a 15 s step, {runs} runs each; then flush \
         and compaction.\n\n{table}\n\
         ![every figure per system](compare-figures.png)\n\n{ratios}\
         ## How each figure is measured\n\n\
         - ingest samples/s: accepted samples ÷ wall time of the remote-write phase; p99 write \
         latency over all requests of that phase. Any rejected request aborts the run.\n\
         - server CPU per million samples: the server process' user + system CPU time \
         (/proc/PID/stat) during the remote-write phase ÷ millions of samples.\n\
         - resident memory per active series: the server's RSS 2 s after the remote-write phase \
         minus its RSS 1 s after start-up, ÷ series.\n\
         - queries: client-side latency of each HTTP request (VictoriaMetrics answers the same \
         PromQL through MetricsQL, its cache off); p50/p95 over every run of every query of that \
         kind; queries run before the flush, on data as each system holds its newest hour.\n\
         - bytes on disk per sample, after the queries:\n{methods}\n",
        quick =
            if r.quick { " (--quick: tiny scale, for smoke tests, not for quoting)" } else { "" },
        date = r.date,
        cmd = r.command,
        commit = r.promlake_commit,
        pv = r.promlake_version,
        versions = versions.join("; "),
        cpu = m.cpu_model,
        cores = m.cores,
        ram = m.ram_bytes as f64 / (1u64 << 30) as f64,
        kernel = m.kernel,
        os = m.os,
        wall = r.wall_seconds,
        series = fmt(r.series as f64),
        scrapes = sc.scrapes,
        samples = fmt(r.samples as f64),
        batch = fmt(sc.samples_per_request as f64),
        senders = sc.senders,
        nq = query::QUERIES.len(),
        range = sc.range,
        runs = sc.runs_per_query,
        methods = methods.join("\n"),
        ratios = if r.systems.len() > 1 {
            "![promlake ÷ peer per figure](compare-ratios.png)\n\n"
        } else {
            ""
        },
    )
}

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const COLORS: [plotters::style::RGBColor; 3] = [
    plotters::style::RGBColor(0x1f, 0x77, 0xb4),
    plotters::style::RGBColor(0xe6, 0x55, 0x0d),
    plotters::style::RGBColor(0x6a, 0x3d, 0x9a),
];

fn register_font() -> Result<()> {
    use plotters::style::FontStyle;
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow::anyhow!("the bundled DejaVu Sans font did not load"))
}

/// A 3×3 grid: one bar chart per figure, one bar per system, values written on the bars.
fn plot_figures(path: &Path, rows: &[SystemResult]) -> Result<()> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    register_font()?;
    let root = BitMapBackend::new(path, (1500, 1100)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root
        .titled("promlake bench compare: every figure per system", ("sans-serif", 30))
        .map_err(plot_err)?;
    let names: Vec<&str> = rows.iter().map(|r| r.system.as_str()).collect();
    for (area, f) in root.split_evenly((3, 3)).iter().zip(FIGURES) {
        let vals: Vec<f64> = rows.iter().map(|r| r.figures[f.key]).collect();
        let max = vals.iter().copied().fold(0.0, f64::max).max(f64::MIN_POSITIVE) * 1.25;
        let better = if f.higher_is_better { "higher is better" } else { "lower is better" };
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{} ({}, {better})", f.label, f.unit), ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(70)
            .build_cartesian_2d((0..rows.len() as i32 - 1).into_segmented(), 0.0..max)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i as usize).unwrap_or(&"").to_string(),
                _ => String::new(),
            })
            .y_label_formatter(&|v| fmt(*v))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(vals.iter().enumerate().map(|(i, v)| {
                let i = i as i32;
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *v)],
                    COLORS[i as usize % COLORS.len()].filled(),
                );
                bar.set_margin(0, 0, 18, 18);
                bar
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(vals.iter().enumerate().map(|(i, v)| {
                Text::new(
                    fmt(*v),
                    (SegmentValue::CenterOf(i as i32), *v + max * 0.03),
                    ("sans-serif", 15)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// promlake ÷ each peer for every figure, on a log scale around 1.
fn plot_ratios(path: &Path, rows: &[SystemResult]) -> Result<()> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    register_font()?;
    let peers = &rows[1..];
    let ratios: Vec<Vec<f64>> = peers
        .iter()
        .map(|p| FIGURES.iter().map(|f| rows[0].figures[f.key] / p.figures[f.key]).collect())
        .collect();
    let finite = ratios.iter().flatten().copied().filter(|r| r.is_finite() && *r > 0.0);
    let lo = finite.clone().fold(0.5f64, f64::min) / 1.6;
    let hi = finite.fold(2.0f64, f64::max) * 1.6;
    let root = BitMapBackend::new(path, (1500, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let n = FIGURES.len() as i32;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "promlake ÷ peer (log scale; below 1 means promlake is lower; for ingest higher is better, else lower)",
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0..n - 1).into_segmented(), (lo..hi).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => {
                FIGURES.get(*i as usize).map_or(String::new(), |f| f.short.to_string())
            }
            _ => String::new(),
        })
        .y_label_formatter(&|v| format!("{v:.2}×"))
        .label_style(("sans-serif", 15))
        .y_desc("promlake ÷ peer")
        .draw()
        .map_err(plot_err)?;
    let (w, _) = chart.plotting_area().dim_in_pixel();
    let group = w as f64 / n as f64;
    let bar_w = group * 0.8 / peers.len() as f64;
    for (k, (peer, rs)) in peers.iter().zip(&ratios).enumerate() {
        let color = COLORS[(k + 1) % COLORS.len()];
        let left = (group * 0.1 + k as f64 * bar_w) as u32;
        let right = (group - group * 0.1 - (k + 1) as f64 * bar_w).max(0.0) as u32;
        chart
            .draw_series(rs.iter().enumerate().map(|(i, r)| {
                let i = i as i32;
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(i), 1.0), (SegmentValue::Exact(i + 1), r.clamp(lo, hi))],
                    color.filled(),
                );
                bar.set_margin(0, 0, left, right);
                bar
            }))
            .map_err(plot_err)?
            .label(format!("promlake ÷ {}", peer.system))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        chart
            .draw_series(rs.iter().enumerate().map(|(i, r)| {
                let x = (left as f64 + bar_w / 2.0) as i32;
                let above = *r >= 1.0;
                EmptyElement::at((SegmentValue::Exact(i as i32), r.clamp(lo, hi)))
                    + Text::new(
                        format!("{r:.2}×"),
                        (x, if above { -4 } else { 4 }),
                        ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(
                            HPos::Center,
                            if above { VPos::Bottom } else { VPos::Top },
                        )),
                    )
            }))
            .map_err(plot_err)?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(SegmentValue::Exact(0), 1.0), (SegmentValue::Exact(n), 1.0)],
            BLACK.stroke_width(1),
        )))
        .map_err(plot_err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: f64, want: &str) {
        assert_eq!(fmt(v), want, "fmt({v})");
    }

    #[test]
    fn numbers_are_rounded_for_reading() {
        for (v, want) in [
            (0.0, "0"),
            (0.45678, "0.457"),
            (1.2345, "1.23"),
            (12.34, "12.3"),
            (512.4, "512"),
            (1_000.0, "1,000"),
            (1_234_567.8, "1,234,568"),
        ] {
            check(v, want);
        }
    }

    #[test]
    fn table_has_every_figure_and_a_ratio_per_peer() {
        let row = |name: &str, scale: f64| SystemResult {
            system: name.into(),
            version: String::new(),
            figures: FIGURES.iter().map(|f| (f.key.to_string(), 2.0 * scale)).collect(),
            samples_accepted: 1,
            bytes_on_disk: 1,
            query_failures: 0,
            storage_method: String::new(),
        };
        let t = markdown_table(&[row("promlake", 1.0), row("prometheus", 4.0), row("vm", 0.5)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + FIGURES.len(), "{t}");
        assert_eq!(
            lines[0],
            "| figure | promlake | prometheus | vm | promlake ÷ prometheus | promlake ÷ vm |"
        );
        assert!(lines[2].ends_with("| 2.00 | 8.00 | 1.00 | 0.25× | 2.00× |"), "{}", lines[2]);
    }
}
