//! PromQL over HTTP: identical answers to Debian's Prometheus on identical data (written into
//! both by remote write), promtool as a real client, and the query API's error rules.

use std::time::{Duration, Instant};

use model::{Labels, Sample, SeriesWrite, WriteBatch};
use serde_json::Value;

use crate::{Promlake, client, json};

struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Debian's prometheus with the remote-write receiver on.
    fn start() -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        std::fs::write(dir.path().join("p.yml"), "global: {}\n").unwrap();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("p.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("Debian's prometheus is installed (scripts/test.sh installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client().get(format!("{url}/-/ready")).send().is_ok_and(|r| r.status() == 200) {
            assert!(Instant::now() < deadline, "prometheus not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Prometheus { child, url, _dir: dir }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(url: &str, batch: &WriteBatch) {
    crate::remote_write(url, None, batch);
}

/// 30 minutes of node-like data at 15 s ending at `end`: counters, gauges, histogram buckets.
fn dataset(end: i64) -> WriteBatch {
    let start = end - 30 * 60_000;
    let mut series = Vec::new();
    let mk = |pairs: Vec<(&str, String)>, f: &dyn Fn(i64) -> f64| SeriesWrite {
        labels: Labels::from_pairs(pairs).unwrap(),
        samples: (0..=120).map(|i| Sample { t: start + i * 15_000, v: f(i) }).collect(),
        ..Default::default()
    };
    for inst in 0..4 {
        for job in ["api", "db"] {
            let base = |n: &str| {
                vec![
                    ("__name__", n.to_string()),
                    ("job", job.to_string()),
                    ("instance", format!("h{inst}")),
                ]
            };
            let k = (inst + 1) as f64;
            series.push(mk(base("http_requests_total"), &|i| {
                (i as f64 * 3.0 * k + if i > 60 { 5.0 } else { 0.0 }).floor()
            }));
            // Distinct per job too: topk/bottomk tie order is implementation-defined.
            let j = if job == "api" { 0.0 } else { 0.5 };
            series.push(mk(base("temperature_celsius"), &|i| {
                20.0 + j + ((i as f64) * 0.3 * k + j).sin() * 5.0
            }));
            let reset = move |i: i64| if inst == 2 && i == 80 { 0.0 } else { 1.0 };
            series.push(mk(base("cpu_seconds_total"), &|i| {
                ((i as f64 * 0.37 * k) * 100.0).round() / 100.0 * reset(i)
            }));
            for (j, le) in ["0.1", "0.5", "1", "+Inf"].iter().enumerate() {
                let mut l = base("req_duration_seconds_bucket");
                l.push(("le", le.to_string()));
                series.push(mk(l, &|i| (i as f64 * (j as f64 + 1.0) * k).floor()));
            }
        }
    }
    WriteBatch { series, metadata: vec![] }
}

fn get(url: &str, path: &str, params: &[(&str, String)]) -> Value {
    let r = client().get(format!("{url}{path}")).query(params).send().unwrap();
    let status = r.status();
    let v = json(&r.text().unwrap());
    assert_eq!(status, 200, "{url}{path} {params:?}: {v}");
    v["data"].clone()
}

fn close(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => false,
    }
}

/// Compares two API results, sorting series by labels and floats with a 1e-9 relative tolerance.
fn same(ours: &Value, theirs: &Value) -> Result<(), String> {
    if ours["resultType"] != theirs["resultType"] {
        return Err(format!("type {} vs {}", ours["resultType"], theirs["resultType"]));
    }
    let norm = |v: &Value| -> Vec<(String, Vec<(f64, String)>)> {
        let mut out: Vec<_> = match &v["result"] {
            Value::Array(a) if v["resultType"] != "scalar" && v["resultType"] != "string" => a
                .iter()
                .map(|s| {
                    let pts: Vec<Value> = if let Some(val) = s.get("value") {
                        vec![val.clone()]
                    } else {
                        s["values"].as_array().cloned().unwrap_or_default()
                    };
                    (
                        s["metric"].to_string(),
                        pts.iter()
                            .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().to_string()))
                            .collect(),
                    )
                })
                .collect(),
            other => vec![(
                String::new(),
                vec![(
                    other[0].as_f64().unwrap_or(0.0),
                    other[1].as_str().unwrap_or("").to_string(),
                )],
            )],
        };
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let (a, b) = (norm(ours), norm(theirs));
    if a.len() != b.len() {
        return Err(format!("{} series vs {}:\n{ours}\n{theirs}", a.len(), b.len()));
    }
    for (x, y) in a.iter().zip(&b) {
        if x.0 != y.0 || x.1.len() != y.1.len() {
            return Err(format!(
                "series differ: {} ({} points) vs {} ({} points)",
                x.0,
                x.1.len(),
                y.0,
                y.1.len()
            ));
        }
        for (p, q) in x.1.iter().zip(&y.1) {
            if p.0 != q.0 || !close(&p.1, &q.1) {
                return Err(format!("{}: {p:?} vs {q:?}", x.0));
            }
        }
    }
    Ok(())
}

#[test]
fn answers_match_prometheus_on_identical_data() {
    let p = Promlake::start(&[]);
    let prom = Prometheus::start();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    let end = now / 15_000 * 15_000;
    let data = dataset(end);
    write(&p.url, &data);
    write(&prom.url, &data);
    // Query times fall between samples (7 s after a scrape): Prometheus 2.42's closed range
    // boundaries and Prometheus 3's left-open ones then agree.
    let t = |back_s: i64| format!("{:.3}", (end - back_s * 1000 + 7_000) as f64 / 1000.0);
    let queries = [
        "http_requests_total",
        r#"http_requests_total{job=~"a.*", instance!="h1"}"#,
        "rate(http_requests_total[5m])",
        "sum by (job) (rate(http_requests_total[5m]))",
        "increase(cpu_seconds_total[10m])",
        "topk(3, temperature_celsius)",
        "histogram_quantile(0.9, sum by (le, job) (rate(req_duration_seconds_bucket[5m])))",
        "rate(http_requests_total[5m]) / on(job, instance) rate(cpu_seconds_total[5m])",
        "max_over_time(temperature_celsius[10m:1m])",
        "avg_over_time(temperature_celsius[15m]) > bool 20",
        "count by (instance) (http_requests_total) * 2",
        "resets(cpu_seconds_total[30m])",
        "deriv(temperature_celsius[10m])",
        "scalar(sum(http_requests_total)) + 1",
        "absent(nonexistent_metric)",
    ];
    let mut failures = Vec::new();
    for q in queries {
        for back in [0, 300, 1000] {
            let params = [("query", q.to_string()), ("time", t(back))];
            let (a, b) =
                (get(&p.url, "/api/v1/query", &params), get(&prom.url, "/api/v1/query", &params));
            if let Err(e) = same(&a, &b) {
                failures.push(format!("instant {q} @-{back}s: {e}"));
            }
        }
        let params = [
            ("query", q.to_string()),
            ("start", t(1500)),
            ("end", t(0)),
            ("step", "60".to_string()),
        ];
        let (a, b) = (
            get(&p.url, "/api/v1/query_range", &params),
            get(&prom.url, "/api/v1/query_range", &params),
        );
        if let Err(e) = same(&a, &b) {
            failures.push(format!("range {q}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn promtool_queries_promlake() {
    let p = Promlake::start(&[]);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    write(&p.url, &dataset(now / 15_000 * 15_000));
    let promtool = |args: &[&str]| {
        let o = std::process::Command::new("promtool")
            .args(["query"])
            .args(args)
            .output()
            .expect("promtool is installed");
        assert!(o.status.success(), "promtool {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let out =
        promtool(&["instant", &p.url, r#"sum by (job) (http_requests_total{instance="h0"})"#]);
    assert!(out.contains(r#"{job="api"} => 365"#) && out.contains(r#"{job="db"} => 365"#), "{out}");
    let now_s = (now / 1000).to_string();
    let start_s = (now / 1000 - 600).to_string();
    let out = promtool(&[
        "range",
        "--start",
        &start_s,
        "--end",
        &now_s,
        "--step",
        "60s",
        &p.url,
        r#"count(http_requests_total)"#,
    ]);
    assert!(out.contains("8 @["), "{out}");
    let out = promtool(&["series", "--match", r#"temperature_celsius{instance="h3"}"#, &p.url]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains(r#"instance="h3""#), "{out}");
    let out = promtool(&["labels", &p.url, "job"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["api", "db"]);
}

#[test]
fn query_errors_have_prometheus_types_and_get_post_agree() {
    let p = Promlake::start(&[]);
    let check = |path: &str, code: u16, etype: &str| {
        let (c, body) = p.get(path);
        assert_eq!(c, code, "{path}: {body}");
        assert_eq!(json(&body)["errorType"], etype, "{path}: {body}");
    };
    check("/api/v1/query?query=sum(", 400, "bad_data");
    check("/api/v1/query?query=", 400, "bad_data");
    check("/api/v1/query?query=1&time=abc", 400, "bad_data");
    check("/api/v1/query_range?query=1&start=10&end=0&step=1", 400, "bad_data");
    check("/api/v1/query_range?query=1&start=0&end=100000&step=1", 400, "bad_data");
    check("/api/v1/query_range?query=1&start=0&end=10&step=0", 400, "bad_data");
    // Grafana's health check, exactly as it sends it.
    let (c, body) = p.post("/api/v1/query", "query=1%2B1&time=4");
    assert_eq!(c, 200);
    assert_eq!(
        json(&body)["data"],
        serde_json::json!({"resultType": "scalar", "result": [4, "2"]})
    );
    let (c, body2) = p.get("/api/v1/query?query=1%2B1&time=4");
    assert_eq!((c, json(&body2)), (200, json(&body)), "GET and POST agree");
    let (c, body) = p.get("/api/v1/status/buildinfo");
    assert_eq!(c, 200);
    let b = json(&body);
    assert!(b["data"]["version"].as_str().unwrap().starts_with('3'));
    assert!(b["data"].get("features").is_none(), "no features map (Grafana would think Mimir)");
}
