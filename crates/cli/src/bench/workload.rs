//! A node-exporter-like workload: about ten labels per series; counters, gauges and histogram
//! buckets with plausible values and increments (integers, short decimals, CPU seconds), and
//! scrape timestamps with a few milliseconds of jitter. Deterministic for a given seed.

use model::{Labels, Sample, SeriesWrite};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Integer counter, e.g. bytes or packets: grows by a random integer each scrape.
    IntCounter { rate: f64 },
    /// CPU-seconds counter: grows by a multiple of 0.01.
    CpuCounter { rate: f64 },
    /// Gauge with a fixed number of decimals around a base.
    Gauge { base: f64, spread: f64, decimals: i32 },
    /// Integer gauge that rarely changes (memory, filesystem sizes: multiples of 4096).
    SlowGauge { base: f64 },
    /// Cumulative histogram bucket counter; `share` is its fraction of observations.
    Bucket { rate: f64, share: f64 },
}

pub struct Series {
    pub labels: Labels,
    kind: Kind,
    value: f64,
}

pub struct Workload {
    pub series: Vec<Series>,
    pub interval_ms: i64,
    pub start_ms: i64,
    rng: SmallRng,
    pub jitter_ms: i64,
}

const MODES: [&str; 8] = ["idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"];
const LE: [&str; 10] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];

impl Workload {
    /// Builds about `n` series spread over hosts; each host contributes ~100 series.
    pub fn new(n: usize, start_ms: i64, interval_ms: i64, seed: u64) -> Workload {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut series = Vec::with_capacity(n);
        let mut host = 0;
        while series.len() < n {
            let common = |name: &str, extra: &[(&str, String)]| {
                let mut pairs: Vec<(String, String)> = vec![
                    ("__name__".into(), name.into()),
                    (
                        "instance".into(),
                        format!(
                            "10.{}.{}.{}:9100",
                            host / 65536 % 256,
                            host / 256 % 256,
                            host % 256
                        ),
                    ),
                    ("job".into(), "node".into()),
                    ("cluster".into(), format!("k8s-{}", host % 7)),
                    ("region".into(), ["eu-west-1", "us-east-1", "ap-south-1"][host % 3].into()),
                    ("az".into(), format!("az-{}", host % 3)),
                    ("env".into(), if host % 5 == 0 { "staging" } else { "prod" }.into()),
                    ("team".into(), format!("team-{}", host % 11)),
                ];
                pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
                Labels::from_pairs(pairs).unwrap_or_default()
            };
            let mut push = |labels: Labels, kind: Kind, value: f64| {
                series.push(Series { labels, kind, value })
            };
            for cpu in 0..4 {
                for mode in MODES {
                    let rate = if mode == "idle" { 0.9 } else { rng.random_range(0.001..0.2) };
                    let l = common(
                        "node_cpu_seconds_total",
                        &[("cpu", cpu.to_string()), ("mode", mode.into())],
                    );
                    push(
                        l,
                        Kind::CpuCounter { rate },
                        (rng.random_range(1e5..1e6f64) * 100.0).round() / 100.0,
                    );
                }
            }
            for dev in ["eth0", "eth1", "lo", "docker0"] {
                for m in [
                    "node_network_receive_bytes_total",
                    "node_network_transmit_bytes_total",
                    "node_network_receive_packets_total",
                ] {
                    let rate = rng.random_range(10.0..50_000.0);
                    push(
                        common(m, &[("device", dev.into())]),
                        Kind::IntCounter { rate },
                        rng.random_range(1e6..1e10f64).round(),
                    );
                }
            }
            for dev in ["sda", "sdb", "nvme0n1"] {
                let l = common("node_disk_io_time_seconds_total", &[("device", dev.into())]);
                push(
                    l,
                    Kind::CpuCounter { rate: rng.random_range(0.001..0.5) },
                    rng.random_range(1e3..1e5f64).round(),
                );
                let l = common("node_disk_written_bytes_total", &[("device", dev.into())]);
                push(
                    l,
                    Kind::IntCounter { rate: rng.random_range(1e3..1e7) },
                    rng.random_range(1e8..1e12f64).round(),
                );
                let l = common(
                    "node_filesystem_avail_bytes",
                    &[
                        ("device", format!("/dev/{dev}")),
                        ("fstype", "ext4".into()),
                        ("mountpoint", format!("/mnt/{dev}")),
                    ],
                );
                push(
                    l,
                    Kind::SlowGauge { base: (rng.random_range(1e6..1e8f64)).round() * 4096.0 },
                    0.0,
                );
            }
            for m in [
                "node_memory_MemAvailable_bytes",
                "node_memory_MemFree_bytes",
                "node_memory_Cached_bytes",
                "node_memory_Buffers_bytes",
            ] {
                push(
                    common(m, &[]),
                    Kind::SlowGauge { base: rng.random_range(1e5..4e6f64).round() * 4096.0 },
                    0.0,
                );
            }
            for m in ["node_load1", "node_load5", "node_load15"] {
                push(
                    common(m, &[]),
                    Kind::Gauge { base: rng.random_range(0.1..8.0), spread: 0.5, decimals: 2 },
                    0.0,
                );
            }
            push(
                common("node_time_seconds", &[]),
                Kind::Gauge { base: 0.0, spread: 0.0, decimals: 3 },
                0.0,
            );
            for handler in ["/api", "/metrics"] {
                let rate = rng.random_range(1.0..100.0);
                for (i, le) in LE.iter().enumerate() {
                    let l = common(
                        "http_request_duration_seconds_bucket",
                        &[("handler", handler.into()), ("le", le.to_string())],
                    );
                    let share = ((i + 1) as f64 / LE.len() as f64).powf(0.5);
                    push(l, Kind::Bucket { rate, share }, 0.0);
                }
            }
            for m in ["node_context_switches_total", "node_intr_total", "node_forks_total"] {
                push(
                    common(m, &[]),
                    Kind::IntCounter { rate: rng.random_range(10.0..5000.0) },
                    rng.random_range(1e6..1e9f64).round(),
                );
            }
            host += 1;
        }
        series.truncate(n);
        Workload { series, interval_ms, start_ms, rng, jitter_ms: 3 }
    }

    /// Advances every series by one scrape and returns its sample at scrape `step`.
    pub fn scrape(&mut self, step: i64) -> Vec<SeriesWrite> {
        let mut out = Vec::with_capacity(self.series.len());
        self.scrape_with(step, |s| out.push(s));
        out
    }

    /// [`Workload::scrape`] one series at a time, in the same order with the same values, so a
    /// caller can append in batches without holding the whole scrape (whose memory would count
    /// in the resident memory `bench storage` measures).
    pub fn scrape_with(&mut self, step: i64, mut f: impl FnMut(SeriesWrite)) {
        let base_t = self.start_ms + step * self.interval_ms;
        let secs = self.interval_ms as f64 / 1000.0;
        let jitter = self.rng.random_range(-self.jitter_ms..=self.jitter_ms);
        let t = base_t + jitter;
        for s in &mut self.series {
            let rng = &mut self.rng;
            s.value = match s.kind {
                Kind::IntCounter { rate } => {
                    s.value + (rate * secs * rng.random_range(0.5..1.5)).round()
                }
                Kind::CpuCounter { rate } => {
                    ((s.value + rate * secs * rng.random_range(0.8..1.2)) * 100.0).round() / 100.0
                }
                Kind::Gauge { base, spread, decimals } => {
                    if spread == 0.0 {
                        t as f64 / 1000.0
                    } else {
                        let p = 10f64.powi(decimals);
                        ((base + rng.random_range(-spread..spread)) * p).round() / p
                    }
                }
                Kind::SlowGauge { base } => {
                    if s.value == 0.0 || rng.random_bool(0.1) {
                        base + (rng.random_range(-1000.0..1000.0f64)).round() * 4096.0
                    } else {
                        s.value
                    }
                }
                Kind::Bucket { rate, share } => {
                    s.value + (rate * share * secs * rng.random_range(0.7..1.3)).round()
                }
            };
            f(SeriesWrite {
                labels: s.labels.clone(),
                samples: [Sample { t, v: s.value }].into(),
                ..Default::default()
            });
        }
    }
}

/// Prometheus text exposition of one scrape, with millisecond timestamps (for peers' import APIs).
pub fn to_text(series: &[SeriesWrite], out: &mut String) {
    use std::fmt::Write;
    for s in series {
        let name = s.labels.metric_name().unwrap_or("");
        out.push_str(name);
        out.push('{');
        let mut first = true;
        for l in s.labels.iter().filter(|l| &*l.name != model::METRIC_NAME) {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{}=\"{}\"", l.name, l.value);
        }
        out.push('}');
        for smp in &s.samples {
            let _ = writeln!(out, " {} {}", smp.v, smp.t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_and_deterministic() {
        let mut a = Workload::new(1000, 0, 15_000, 7);
        let mut b = Workload::new(1000, 0, 15_000, 7);
        assert_eq!(a.series.len(), 1000);
        let avg_labels = a.series.iter().map(|s| s.labels.len()).sum::<usize>() as f64 / 1000.0;
        assert!((9.0..=12.0).contains(&avg_labels), "{avg_labels} labels per series");
        let (x, y) = (a.scrape(3), b.scrape(3));
        assert_eq!(
            x.iter().map(|s| s.samples[0]).collect::<Vec<_>>(),
            y.iter().map(|s| s.samples[0]).collect::<Vec<_>>()
        );
        let mut text = String::new();
        to_text(&x[..2], &mut text);
        assert!(text.starts_with("node_cpu_seconds_total{az=\"az-0\""), "{text}");
    }
}
