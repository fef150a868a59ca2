//! `promlake bench compare --quick` against the real Debian Prometheus and VictoriaMetrics:
//! every figure of every system present and positive, the Markdown page and the PNG plots
//! written into a temporary `--out` (never into the repository).

use std::process::Command;
use std::time::{Duration, Instant};

/// The figures `bench compare` promises for each system (its `FIGURES` keys).
const FIGURES: &[&str] = &[
    "ingest_samples_per_s",
    "write_p99_ms",
    "cpu_s_per_million_samples",
    "bytes_per_sample",
    "rss_bytes_per_series",
    "instant_query_p50_ms",
    "instant_query_p95_ms",
    "range_query_p50_ms",
    "range_query_p95_ms",
];

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

#[test]
fn quick_compare_writes_every_figure_and_plot() {
    for bin in ["prometheus", "victoria-metrics"] {
        if !on_path(bin) {
            eprintln!("skipped: {bin} is not installed (apt-get install {bin})");
            return;
        }
    }
    let out = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_promlake"))
        .args(["bench", "compare", "--quick", "--out"])
        .arg(out.path())
        .env("PROMLAKE_LOG", "warn")
        .output()
        .unwrap();
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench compare failed: {stderr}");
    assert!(took < Duration::from_secs(180), "--quick took {took:?}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("compare.json")).unwrap()).unwrap();
    let systems = report["systems"].as_array().unwrap();
    let names: Vec<&str> = systems.iter().map(|s| s["system"].as_str().unwrap()).collect();
    assert_eq!(names, ["promlake", "prometheus", "victoria-metrics"]);
    for s in systems {
        let figures = s["figures"].as_object().unwrap();
        assert_eq!(figures.len(), FIGURES.len(), "{figures:?}");
        for key in FIGURES {
            let v = figures.get(*key).and_then(|v| v.as_f64());
            assert!(v.is_some_and(|v| v.is_finite() && v > 0.0), "{} {key} = {v:?}", s["system"]);
        }
        assert_eq!(s["query_failures"], 0, "{s}");
        assert!(s["version"].as_str().is_some_and(|v| !v.is_empty() && v != "unknown"), "{s}");
    }
    assert_eq!(report["quick"], true);
    for key in ["cpu_model", "kernel"] {
        assert!(report["machine"][key].as_str().is_some_and(|v| !v.is_empty()), "{key}");
    }
    assert!(report["machine"]["cores"].as_u64().is_some_and(|c| c > 0));
    assert!(report["command"].as_str().unwrap().contains("bench compare --quick"));

    let md = std::fs::read_to_string(out.path().join("compare.md")).unwrap();
    assert!(md.contains("| remote write ingest"), "{md}");
    assert!(md.contains("promlake ÷ prometheus"), "{md}");
    for png in ["compare-figures.png", "compare-ratios.png"] {
        let bytes = std::fs::read(out.path().join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{png}");
    }
}

#[test]
fn unknown_peer_is_named() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_promlake"))
        .args(["bench", "compare", "--quick", "--peers", "prometheus,influxdb", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("unknown peer \"influxdb\""), "{stderr}");
    assert!(std::fs::read_dir(out.path()).unwrap().next().is_none(), "nothing written");
}
