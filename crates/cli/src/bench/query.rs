//! `promlake bench query`: a dashboard query set (rate, sum by, topk, histogram_quantile,
//! ratios, regex matchers, max_over_time) as instant and range queries, N runs each, with
//! p50/p95/p99 per query and overall. `--compare` starts promlake and Prometheus (Debian,
//! remote-write receiver on), writes the identical node-exporter-like data into both by
//! remote write, and runs the same queries against each, one system after the other.

use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::ProgressBar;
use model::WriteBatch;

use super::peers::Peer;
use super::workload::Workload;

#[derive(clap::Args, Clone, Debug)]
pub struct QueryArgs {
    /// Prometheus-compatible API base URL to query (ignored with --compare).
    #[arg(long, default_value = "http://127.0.0.1:9393")]
    pub url: String,
    /// Series to load (with --compare).
    #[arg(long, default_value_t = 20_000)]
    pub series: usize,
    /// Hours of data at 15 s to load (with --compare).
    #[arg(long, default_value_t = 1.0)]
    pub hours: f64,
    /// Runs per query.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Range of the range queries.
    #[arg(long, default_value = "1h")]
    pub range: String,
    /// Start promlake and Prometheus, load identical data, measure both.
    #[arg(long)]
    pub compare: bool,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Repeated-refresh mode: start promlake with the results cache and promlake without
    /// (`split_interval = "0s"`), load identical data up to now, then refresh the range queries
    /// this many times, moving start and end forward by `--refresh-every` each time and
    /// writing the scrapes of that interval in between. Reports the cache hit ratio (from
    /// `/metrics`) and refresh latency with and without the cache.
    #[arg(long, default_value_t = 0)]
    pub refreshes: usize,
    /// Seconds between refreshes (slept in real time, so the freshness window moves as for
    /// a real dashboard).
    #[arg(long, default_value_t = 30)]
    pub refresh_every: u64,
    /// Step of the range queries, in seconds.
    #[arg(long, default_value_t = 15)]
    pub step: u64,
}

pub const QUERIES: &[&str] = &[
    "sum by (mode) (rate(node_cpu_seconds_total[5m]))",
    "rate(node_network_receive_bytes_total[5m])",
    "topk(10, rate(node_network_receive_bytes_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.99, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))",
    "1 - node_memory_MemAvailable_bytes / on(instance) node_memory_Cached_bytes",
    "sum by (cluster) (rate(node_disk_written_bytes_total[5m]))",
    "max_over_time(node_load1[10m])",
    "avg by (region) (node_load5)",
    r#"sum(rate(node_network_transmit_bytes_total{device=~"eth.*"}[5m])) by (az)"#,
    r#"count(node_filesystem_avail_bytes{mountpoint=~"/mnt/sd.*"})"#,
    "sum by (instance) (rate(node_context_switches_total[5m])) > 100",
    "quantile(0.95, rate(node_forks_total[5m]))",
    r#"node_load15{env!="staging", team=~"team-(1|2|3)"}"#,
    "sum(node_memory_MemFree_bytes) / sum(node_memory_MemAvailable_bytes)",
];

#[derive(Debug, Clone, serde::Serialize)]
pub struct QueryFigures {
    pub system: String,
    pub per_query: Vec<(String, f64, f64)>,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// ("instant" | "range", p50 ms, p95 ms) over all queries of that kind.
    pub by_kind: Vec<(String, f64, f64)>,
    pub failures: usize,
    /// With --compare: the server's peak resident set during the query phase (VmRSS
    /// sampled every 10 ms while the queries ran), in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_peak_rss_bytes: Option<u64>,
    /// With --compare: the server's lifetime peak resident set (VmHWM, loading included)
    /// when the queries ended, in bytes. The kernel updates it lazily: it can be slightly
    /// below `query_peak_rss_bytes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime_peak_rss_bytes: Option<u64>,
}

/// Samples a process's VmRSS every 10 ms on its own thread until dropped; `peak` is the
/// largest sample seen.
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                if let Ok(b) = super::peers::rss_bytes(pid) {
                    peak = peak.max(b);
                }
                if s.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssSampler { stop, handle: Some(handle) }
    }

    /// Stops sampling; the peak VmRSS seen (0 when the process could not be read).
    fn peak(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or(0)
    }
}

/// A process's VmHWM (peak resident set over its life), in bytes.
fn hwm_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// `run_queries` against a server process, with its peak RSS during the queries and VmHWM.
fn run_queries_measured(
    system: &str,
    peer: &Peer,
    end_s: f64,
    args: &QueryArgs,
) -> Result<QueryFigures> {
    let sampler = RssSampler::start(peer.pid());
    let r = run_queries(system, &peer.url, end_s, args, &ProgressBar::hidden());
    let peak = sampler.peak();
    let mut f = r?;
    f.query_peak_rss_bytes = Some(peak).filter(|&p| p > 0);
    f.lifetime_peak_rss_bytes = hwm_bytes(peer.pid());
    Ok(f)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[((v.len() as f64 - 1.0) * p).round() as usize] }
}

/// Runs the query set against `base`; `end_s` is the newest data time (Unix seconds);
/// `progress` counts requests.
pub fn run_queries(
    system: &str,
    base: &str,
    end_s: f64,
    args: &QueryArgs,
    progress: &ProgressBar,
) -> Result<QueryFigures> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let range_s =
        promql_parser::util::parse_duration(&args.range).map(|d| d.as_secs_f64()).unwrap_or(3600.0);
    let (mut all, mut per_query, mut failures) = (Vec::new(), Vec::new(), 0);
    let mut kinds = [("instant", Vec::new()), ("range", Vec::new())];
    for q in QUERIES {
        for (kind, kind_lat) in &mut kinds {
            let kind = *kind;
            let mut lat = Vec::new();
            for _ in 0..args.runs {
                let t0 = Instant::now();
                let r = if kind == "instant" {
                    client
                        .post(format!("{base}/api/v1/query"))
                        .form(&[("query", q.to_string()), ("time", format!("{end_s}"))])
                        .send()
                } else {
                    client
                        .post(format!("{base}/api/v1/query_range"))
                        .form(&[
                            ("query", q.to_string()),
                            ("start", format!("{}", end_s - range_s)),
                            ("end", format!("{end_s}")),
                            ("step", args.step.to_string()),
                        ])
                        .send()
                };
                let ok = r.is_ok_and(|r| r.status().is_success() && r.bytes().is_ok());
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                progress.inc(1);
                if ok {
                    lat.push(ms);
                    all.push(ms);
                    kind_lat.push(ms);
                } else {
                    failures += 1;
                }
            }
            let p50 = pct(&mut lat.clone(), 0.5);
            let p95 = pct(&mut lat, 0.95);
            per_query.push((format!("{kind}: {q}"), p50, p95));
        }
    }
    let mut a = all.clone();
    Ok(QueryFigures {
        system: system.into(),
        per_query,
        p50_ms: pct(&mut a, 0.5),
        p95_ms: pct(&mut all.clone(), 0.95),
        p99_ms: pct(&mut all, 0.99),
        by_kind: kinds
            .into_iter()
            .map(|(k, mut v)| (k.to_string(), pct(&mut v, 0.5), pct(&mut v, 0.95)))
            .collect(),
        failures,
        query_peak_rss_bytes: None,
        lifetime_peak_rss_bytes: None,
    })
}

/// Writes the identical data into every URL, scrape by scrape (each system sees time order).
fn load(urls: &[&str], args: &QueryArgs) -> Result<f64> {
    Ok(load_until_now(urls, args)?.end as f64 / 1000.0)
}

/// Data loaded by `load_until_now`: the workload (to write later scrapes) and its range.
struct Loaded {
    w: Workload,
    start: i64,
    end: i64,
    scrapes: i64,
}

/// `args.hours` of scrapes 15 s apart, the last at the wall clock's 15 s boundary, written
/// into every URL.
fn load_until_now(urls: &[&str], args: &QueryArgs) -> Result<Loaded> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let scrapes = (args.hours * 240.0) as i64;
    let end = now / 15_000 * 15_000;
    let start = end - (scrapes - 1) * 15_000;
    let mut w = Workload::new(args.series, start, 15_000, 7);
    w.jitter_ms = 0;
    eprintln!("loading {} series x {} scrapes into {} systems", args.series, scrapes, urls.len());
    write_scrapes(urls, &mut w, 0..scrapes)?;
    Ok(Loaded { w, start, end, scrapes })
}

/// Remote-writes the scrapes `steps` of `w` into every URL, in time order.
fn write_scrapes(urls: &[&str], w: &mut Workload, steps: std::ops::Range<i64>) -> Result<()> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build()?;
    for step in steps {
        for chunk in w.scrape(step).chunks(5000) {
            let body = wire::snappy::compress(&wire::encode_write_v1(&WriteBatch {
                series: chunk.to_vec(),
                metadata: vec![],
            }));
            for url in urls {
                let r = client
                    .post(format!("{url}/api/v1/write"))
                    .header("content-type", "application/x-protobuf")
                    .header("content-encoding", "snappy")
                    .header("x-prometheus-remote-write-version", "0.1.0")
                    .body(body.clone())
                    .send()?;
                anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
            }
        }
    }
    Ok(())
}

pub fn run(args: &QueryArgs) -> Result<Vec<QueryFigures>> {
    if args.refreshes > 0 {
        refresh::run(args)?;
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    if args.compare {
        let pl = Peer::promlake_uncached()?;
        let pr = Peer::prometheus_receiver()?;
        let (pl_url, pr_url) = (pl.url.clone(), pr.url.clone());
        let end = load(&[&pl_url, &pr_url], args)?;
        // Both systems idle and settled before timing.
        std::thread::sleep(Duration::from_secs(2));
        eprintln!("querying promlake");
        rows.push(run_queries_measured("promlake", &pl, end, args)?);
        eprintln!("querying prometheus");
        rows.push(run_queries_measured("prometheus", &pr, end, args)?);
    } else {
        let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
        rows.push(run_queries("target", &args.url, end, args, &ProgressBar::hidden())?);
    }
    println!(
        "| query | {} |",
        rows.iter()
            .map(|r| format!("{} p50 ms | {} p95 ms", r.system, r.system))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|---|".repeat(rows.len()));
    for (i, (name, _, _)) in rows[0].per_query.iter().enumerate() {
        let cells: Vec<String> = rows
            .iter()
            .map(|r| format!("{:.1} | {:.1}", r.per_query[i].1, r.per_query[i].2))
            .collect();
        println!("| `{}` | {} |", name.replace('|', "\\|"), cells.join(" | "));
    }
    for r in &rows {
        println!(
            "{}: overall p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, failures {}",
            r.system, r.p50_ms, r.p95_ms, r.p99_ms, r.failures
        );
        if let (Some(q), Some(l)) = (r.query_peak_rss_bytes, r.lifetime_peak_rss_bytes) {
            println!(
                "{}: peak RSS during the queries {:.0} MiB (VmRSS every 10 ms), lifetime peak (VmHWM, loading included) {:.0} MiB",
                r.system,
                q as f64 / 1048576.0,
                l as f64 / 1048576.0
            );
        }
        for (kind, p50, p95) in &r.by_kind {
            println!("{}: {kind} p50 {p50:.1} ms, p95 {p95:.1} ms", r.system);
        }
    }
    if rows.len() == 2 {
        println!(
            "promlake / prometheus: p50 {:.2}x, p95 {:.2}x",
            rows[0].p50_ms / rows[1].p50_ms,
            rows[0].p95_ms / rows[1].p95_ms
        );
    }
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(rows)
}

/// The repeated-refresh mode (`--refreshes N`): a dashboard of the range queries above,
/// refreshed every `--refresh-every` seconds over `--range`, against promlake with its results
/// cache and promlake without it, on identical data that keeps arriving.
mod refresh {
    use super::*;

    /// The sum over label sets of a counter in a `/metrics` text.
    fn counter(client: &reqwest::blocking::Client, url: &str, name: &str) -> Result<f64> {
        let text = client.get(format!("{url}/metrics")).send()?.text()?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Runs every dashboard query as a range query over `[end - range, end]`; latencies in ms.
    fn dashboard(
        client: &reqwest::blocking::Client,
        url: &str,
        end_s: f64,
        args: &QueryArgs,
        out: &mut Vec<f64>,
    ) -> Result<()> {
        let range_s = promql_parser::util::parse_duration(&args.range)
            .map(|d| d.as_secs_f64())
            .unwrap_or(3600.0);
        for q in QUERIES {
            let t0 = Instant::now();
            let r = client
                .post(format!("{url}/api/v1/query_range"))
                .form(&[
                    ("query", q.to_string()),
                    ("start", format!("{}", end_s - range_s)),
                    ("end", format!("{end_s}")),
                    ("step", args.step.to_string()),
                ])
                .send()?;
            anyhow::ensure!(r.status().is_success(), "{url} {q}: {}", r.status());
            r.bytes()?;
            out.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(())
    }

    /// Writes the scrapes from `next` up to the wall clock; returns the newest scrape's time.
    fn catch_up(urls: &[&str], w: &mut Workload, start: i64, next: &mut i64) -> Result<i64> {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        let upto = (now - start).div_euclid(15_000) + 1;
        if upto > *next {
            write_scrapes(urls, w, *next..upto)?;
            *next = upto;
        }
        Ok(start + (*next - 1) * 15_000)
    }

    pub fn run(args: &QueryArgs) -> Result<()> {
        let cached = Peer::promlake_with("")?;
        let uncached = Peer::promlake_uncached()?;
        let urls = [cached.url.as_str(), uncached.url.as_str()];
        let super::Loaded { mut w, start, end, scrapes } = super::load_until_now(&urls, args)?;
        let client =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build()?;
        // Loading took a while: the scrapes since then arrive too, so data reaches now.
        let mut next_scrape = scrapes;
        let end = catch_up(&urls, &mut w, start, &mut next_scrape)?.max(end);
        // The first (cold) view fills the cache; it is not part of the figures.
        let mut cold = Vec::new();
        dashboard(&client, &cached.url, end as f64 / 1000.0, args, &mut cold)?;
        dashboard(&client, &uncached.url, end as f64 / 1000.0, args, &mut Vec::new())?;
        let names = [
            "promlake_query_cache_hits_total",
            "promlake_query_cache_misses_total",
            "promlake_query_cache_hit_steps_total",
            "promlake_query_cache_miss_steps_total",
            "promlake_query_cache_invalidations_total",
        ];
        let read = |c: &reqwest::blocking::Client| -> Result<Vec<f64>> {
            names.iter().map(|n| counter(c, &cached.url, n)).collect()
        };
        let before = read(&client)?;
        let (mut with_cache, mut without) = (Vec::new(), Vec::new());
        let mut view_end = end;
        for i in 1..=args.refreshes {
            std::thread::sleep(Duration::from_secs(args.refresh_every));
            // The scrapes of the interval arrive (up to now), the dashboard moves forward by
            // the interval and refreshes.
            catch_up(&urls, &mut w, start, &mut next_scrape)?;
            view_end += args.refresh_every as i64 * 1000;
            let e = view_end as f64 / 1000.0;
            dashboard(&client, &cached.url, e, args, &mut with_cache)?;
            dashboard(&client, &uncached.url, e, args, &mut without)?;
            eprintln!("refresh {i}/{} done", args.refreshes);
        }
        let after = read(&client)?;
        // What the cache holds at the end, and what it had to evict to stay within its size.
        let held_bytes = counter(&client, &cached.url, "promlake_query_cache_bytes")?;
        let evictions = counter(&client, &cached.url, "promlake_query_cache_evictions_total")?;
        let d: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let step_ratio = d[2] / (d[2] + d[3]).max(1.0);
        let extent_ratio = d[0] / (d[0] + d[1]).max(1.0);
        // Per query (the p95 over all is set by the slowest few): p50 with and without.
        let per_query: Vec<(String, f64, f64)> = QUERIES
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let of = |v: &[f64]| -> Vec<f64> {
                    v.iter().skip(i).step_by(QUERIES.len()).copied().collect()
                };
                let (mut c, mut u) = (of(&with_cache), of(&without));
                (q.to_string(), pct(&mut c, 0.5), pct(&mut u, 0.5))
            })
            .collect();
        let (mut c, mut u) = (with_cache.clone(), without.clone());
        let (c95, u95) = (pct(&mut c, 0.95), pct(&mut u, 0.95));
        let (c50, u50) = (pct(&mut with_cache, 0.5), pct(&mut without, 0.5));
        println!(
            "dashboard: {} range queries over {} at step {}s, {} refreshes every {}s, {} series",
            QUERIES.len(),
            args.range,
            args.step,
            args.refreshes,
            args.refresh_every,
            args.series
        );
        println!(
            "cache hit ratio (steps): {:.1}% ({} hit, {} computed); extents: {:.1}% ({} hit, {} computed); invalidations {}",
            step_ratio * 100.0,
            d[2],
            d[3],
            extent_ratio * 100.0,
            d[0],
            d[1],
            d[4]
        );
        println!(
            "refresh latency with cache: p50 {c50:.1} ms, p95 {c95:.1} ms; without: p50 {u50:.1} ms, p95 {u95:.1} ms; p95 ratio {:.3}",
            c95 / u95
        );
        println!(
            "results cache: {:.1} MiB held at the end, {evictions} intervals evicted",
            held_bytes / 1048576.0
        );
        for (q, c, u) in &per_query {
            println!("  p50 {c:>8.1} ms cached, {u:>8.1} ms uncached: {q}");
        }
        if let Some(p) = &args.json {
            let j = serde_json::json!({
                "per_query_p50_ms_cached_uncached": per_query,
                "series": args.series, "range": args.range, "step_s": args.step,
                "refreshes": args.refreshes, "refresh_every_s": args.refresh_every,
                "hit_ratio_steps": step_ratio, "hit_ratio_extents": extent_ratio,
                "invalidations": d[4], "cache_bytes_held": held_bytes, "cache_evictions": evictions,
                "cached_p50_ms": c50, "cached_p95_ms": c95,
                "uncached_p50_ms": u50, "uncached_p95_ms": u95,
            });
            std::fs::write(p, serde_json::to_string_pretty(&j)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The peak-memory figures read a live process: this test's own, which holds a buffer
    /// of known size while sampled, so both figures must be at least that.
    #[test]
    fn peak_rss_figures_read_a_live_process() {
        let pid = std::process::id();
        let sampler = RssSampler::start(pid);
        let held = vec![1u8; 64 << 20];
        std::thread::sleep(Duration::from_millis(50));
        let peak = sampler.peak();
        assert!(peak >= 64 << 20, "sampled peak {peak}");
        let hwm = hwm_bytes(pid).expect("VmHWM in /proc/self/status");
        // Not compared with `peak`: the kernel updates the high-water mark lazily, so a
        // sample taken just before memory is returned can exceed it by a little.
        assert!(hwm >= 64 << 20, "VmHWM {hwm}");
        assert_eq!(held.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
        assert_eq!(hwm_bytes(u32::MAX), None);
    }
}
