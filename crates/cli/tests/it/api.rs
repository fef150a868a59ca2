//! The rest of the Prometheus HTTP API against the running binary: parse_query, federate
//! (scraped by Debian's Prometheus), delete_series through restarts and flushes, snapshots
//! served by a second promlake, per-query limits, `stats`, `limit`, and the self-metrics.

use std::time::{Duration, Instant};

use model::{Labels, Sample, SeriesWrite, WriteBatch};
use serde_json::{Value, json as j};

use crate::{Daemon, Promlake, client, json, now_ms, remote_write};

/// `n` series `api_test_total{instance="i<k>"}`, one sample per minute over the last
/// `minutes`, value `k * 1000 + minute`.
fn data(n: usize, minutes: i64, end: i64) -> WriteBatch {
    WriteBatch {
        series: (0..n)
            .map(|k| SeriesWrite {
                labels: Labels::from_pairs([
                    ("__name__", "api_test_total".to_string()),
                    ("job", "api".to_string()),
                    ("instance", format!("i{k}")),
                ])
                .unwrap(),
                samples: (0..minutes)
                    .map(|m| Sample {
                        t: end - (minutes - 1 - m) * 60_000,
                        v: (k * 1000) as f64 + m as f64,
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        metadata: vec![],
    }
}

/// The `data.result` of an instant query as (instance, value) pairs.
fn instant(p: &Promlake, q: &str, t: i64) -> Vec<(String, String)> {
    let (code, body) =
        p.get(&format!("/api/v1/query?query={}&time={}", urlencode(q), t as f64 / 1000.0));
    assert_eq!(code, 200, "{q}: {body}");
    let v = json(&body);
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["instance"].as_str().unwrap_or("").to_string(),
                s["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn parse_query_answers_the_tree_get_and_post_alike() {
    let p = Promlake::start(&[]);
    let q = "sum by (job) (rate(x[5m]))";
    let (code, get) = p.get(&format!("/api/v1/parse_query?query={}", urlencode(q)));
    assert_eq!(code, 200, "{get}");
    let (code, post) = p.post("/api/v1/parse_query", &format!("query={}", urlencode(q)));
    assert_eq!(code, 200);
    assert_eq!(json(&get), json(&post));
    let v = json(&get);
    assert_eq!(v["data"]["type"], "aggregation");
    assert_eq!(v["data"]["grouping"], j!(["job"]));
    assert_eq!(v["data"]["expr"]["args"][0]["range"], 300_000);
    let (code, body) = p.get("/api/v1/parse_query?query=sum(");
    assert_eq!(code, 400, "{body}");
    assert_eq!(json(&body)["errorType"], "bad_data");
}

/// A real Prometheus scrapes `/federate` and ends up with the same newest samples that
/// promlake's own instant query answers; the text also parses with our parser.
#[test]
fn federate_is_scraped_by_prometheus() {
    let p = Promlake::start(&[]);
    let now = now_ms();
    remote_write(&p.url, None, &data(3, 3, now));
    let (code, text) = p.get(&format!("/federate?match[]={}", urlencode("{job=\"api\"}")));
    assert_eq!(code, 200, "{text}");
    assert!(text.starts_with("# TYPE api_test_total untyped\n"), "{text}");
    let opts = wire::TextOptions::new(wire::TextFormat::Prometheus, 0);
    let parsed = wire::parse_text(text.as_bytes(), &opts, &model::Interner::new()).unwrap();
    assert_eq!(parsed.series.len(), 3);
    let mut ours = instant(&p, "api_test_total", now);
    ours.sort();
    for s in &parsed.series {
        let inst = s.labels.get("instance").unwrap().to_string();
        assert_eq!(s.samples.len(), 1);
        assert_eq!(s.samples[0].t, now, "the newest sample's own timestamp");
        assert!(ours.contains(&(inst, s.samples[0].v.to_string())), "{ours:?} {s:?}");
    }
    let (code, _) = p.get("/federate?match[]=%7B");
    assert_eq!(code, 400);

    let target = p.url.trim_start_matches("http://").to_string();
    let prom = Daemon::start(
        "prometheus",
        |dir, port| {
            std::fs::write(
                dir.join("p.yml"),
                format!(
                    "scrape_configs:\n- job_name: federate\n  scrape_interval: 1s\n  honor_labels: true\n  metrics_path: /federate\n  params:\n    'match[]': ['{{job=\"api\"}}']\n  static_configs:\n  - targets: ['{target}']\n"
                ),
            )
            .unwrap();
            vec![
                format!("--config.file={}", dir.join("p.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ]
        },
        "/-/ready",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let theirs = loop {
        let r = client()
            .get(format!("{}/api/v1/query", prom.url))
            .query(&[("query", "api_test_total"), ("time", &format!("{}", now as f64 / 1000.0))])
            .send()
            .unwrap();
        let v: Value = json(&r.text().unwrap());
        let got: Vec<(String, String)> = v["data"]["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        (
                            s["metric"]["instance"].as_str().unwrap_or("").to_string(),
                            s["value"][1].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if got.len() == 3 || Instant::now() > deadline {
            let mut got = got;
            got.sort();
            break got;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(theirs, ours, "Prometheus scraped from /federate what promlake answers");
}

/// Deleted data stays deleted through kill -9 (WAL replay), a flush into blocks and
/// compaction; a snapshot is a data directory another promlake serves, unchanged by later
/// writes.
#[test]
fn delete_series_and_snapshot() {
    let p = Promlake::start(&[]);
    let now = now_ms();
    remote_write(&p.url, None, &data(3, 30, now));
    remote_write(&p.url, Some("other"), &data(3, 30, now));
    let sum =
        |p: &Promlake| instant(p, "sum by (instance) (count_over_time(api_test_total[1h]))", now);
    assert_eq!(sum(&p).len(), 3);
    let other_count = |p: &Promlake| {
        let t = (now as f64 / 1000.0).to_string();
        let body = client()
            .get(format!("{}/api/v1/query", p.url))
            .header("x-scope-orgid", "other")
            .query(&[("query", "count(api_test_total)"), ("time", t.as_str())])
            .send()
            .unwrap()
            .text()
            .unwrap();
        json(&body)["data"]["result"][0]["value"][1].clone()
    };
    assert_eq!(other_count(&p), "3");
    let (code, body) = p.post("/api/v1/admin/tsdb/delete_series", "");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("no match[] parameter provided"), "{body}");
    let (code, body) = p.post(
        "/api/v1/admin/tsdb/delete_series",
        &format!("match[]={}", urlencode("api_test_total{instance=\"i1\"}")),
    );
    assert_eq!(code, 204, "{body}");
    // Half of i2: its ten newest minutes.
    let (code, _) = p.post(
        "/api/v1/admin/tsdb/delete_series",
        &format!(
            "match[]={}&start={}",
            urlencode("{instance=\"i2\"}"),
            (now - 9 * 60_000) as f64 / 1000.0
        ),
    );
    assert_eq!(code, 204);
    let want = vec![("i0".to_string(), "30".to_string()), ("i2".to_string(), "20".to_string())];
    assert_eq!(sum(&p), want, "right after the deletes");
    assert_eq!(other_count(&p), "3", "another tenant's identical series are untouched");
    let p = p.restart(&[]);
    assert_eq!(sum(&p), want, "after kill -9 and WAL replay");
    let (code, _) = p.post("/api/v1/admin/tsdb/flush", "");
    assert_eq!(code, 200);
    assert_eq!(sum(&p), want, "after the flush into blocks");
    // Snapshot, then write more: the snapshot keeps what it had.
    let (code, body) = p.post("/api/v1/admin/tsdb/snapshot", "");
    assert_eq!(code, 200, "{body}");
    let name = json(&body)["data"]["name"].as_str().unwrap().to_string();
    assert!(name.len() > 17 && name.contains('-'), "{name}");
    let (code, _) = p.post("/api/v1/admin/tsdb/snapshot", "skip_head=maybe");
    assert_eq!(code, 400);
    remote_write(&p.url, None, &data(5, 1, now + 60_000));
    let snap = p.dir.path().join("data").join("snapshots").join(&name);
    let copy_dir = tempfile::tempdir().unwrap();
    std::fs::rename(&snap, copy_dir.path().join("data")).unwrap();
    let copy = Promlake::start_in(copy_dir, &[]);
    assert_eq!(sum(&copy), want, "the snapshot serves the data as it was");
    assert_eq!(
        instant(&copy, "api_test_total", now + 60_000),
        vec![("i0".to_string(), "29".to_string())],
        "none of the later writes"
    );
    let p = p.restart(&[]);
    assert_eq!(sum(&p), want, "after a restart with the data in blocks");
}

fn config(p: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("promlake.toml");
    std::fs::write(&cfg, p).unwrap();
    (dir, cfg)
}

/// Each limit: its status, its errorType and a message naming it and its value; each
/// counted in `promlake_queries_rejected_total{limit}`.
#[test]
fn query_limits_name_themselves() {
    let (_d, cfg) = config(
        "[query]\nmax_series = 2\nmax_response_bytes = 2000\nmax_concurrent_queries = 1\nmax_queued_queries = 0\ntimeout = \"3s\"\nmax_samples = 1000000000000000\n",
    );
    let p = Promlake::start(&["--config", cfg.to_str().unwrap()]);
    let now = now_ms();
    remote_write(&p.url, None, &data(3, 30, now));
    let check = |q: &str, code: u16, error_type: &str, needle: &str| {
        let (c, body) = p.get(&format!("/api/v1/query?query={}&time={}", urlencode(q), now / 1000));
        assert_eq!(c, code, "{q}: {body}");
        let v = json(&body);
        assert_eq!(v["errorType"], error_type, "{body}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{body}");
    };
    check("api_test_total", 422, "execution", "query.max_series = 2");
    assert_eq!(instant(&p, "api_test_total{instance!=\"i0\"}", now).len(), 2, "at the limit");
    let (c, body) = p.get(&format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=1",
        urlencode("api_test_total{instance=\"i0\"}"),
        now / 1000 - 1800,
        now / 1000
    ));
    assert_eq!(c, 422, "{body}");
    assert!(body.contains("query.max_response_bytes = 2000"), "{body}");
    let (c, body) = p.get("/api/v1/series?match[]=api_test_total");
    assert_eq!(c, 200, "{body}");
    let (c, body) = p.get(&format!(
        "/api/v1/series?match[]=api_test_total&match[]={}",
        urlencode("{__name__=~\".+\"}")
    ));
    assert_eq!(c, 200, "{body}");
    remote_write(&p.url, None, &data(40, 1, now + 60_000));
    let (c, body) = p.get("/api/v1/series?match[]=api_test_total");
    assert_eq!(c, 422, "{body}");
    assert!(body.contains("query.max_response_bytes = 2000"), "{body}");
    // One slot, no queue: a second query while a slow one runs is refused at once. (If a
    // probe holds the slot when the slow query arrives, the slow one is refused: try again.)
    let mut refused = false;
    for _ in 0..5 {
        let url = p.url.clone();
        let slow = std::thread::spawn(move || {
            client()
                .get(format!("{url}/api/v1/query"))
                .query(&[("query", "count_over_time(vector(1)[1y:1ms])"), ("time", "0")])
                .send()
                .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
        });
        std::thread::sleep(Duration::from_millis(300));
        while !slow.is_finished() && !refused {
            let (c, body) = p.get("/api/v1/query?query=1");
            if c == 503 {
                assert_eq!(json(&body)["errorType"], "unavailable");
                assert!(body.contains("query.max_concurrent_queries = 1"), "{body}");
                assert!(body.contains("query.max_queued_queries = 0"), "{body}");
                refused = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (code, body) = slow.join().unwrap().unwrap();
        if body.contains("too many queries") {
            continue;
        }
        assert_eq!(code, 503, "the slow query hit query.timeout: {body}");
        assert!(body.contains("query.timeout = 3s"), "{body}");
        if refused {
            break;
        }
    }
    assert!(refused, "a query beyond the slot and queue was never refused");
    let (_, metrics) = p.get("/metrics");
    for limit in [
        "query.max_series",
        "query.max_response_bytes",
        "query.max_queued_queries",
        "query.timeout",
    ] {
        let line = format!("promlake_queries_rejected_total{{limit=\"{limit}\"}} ");
        assert!(
            metrics.lines().any(|l| l.starts_with(&line) && !l.ends_with(" 0")),
            "{line} in {metrics}"
        );
    }
}

/// `stats` on query and query_range; `limit` on series, labels and label values.
#[test]
fn stats_and_limit_parameters() {
    let p = Promlake::start(&[]);
    let now = now_ms();
    remote_write(&p.url, None, &data(3, 30, now));
    let t = now / 1000;
    let (c, body) = p.get(&format!("/api/v1/query?query=api_test_total&time={t}&stats=all"));
    assert_eq!(c, 200);
    let v = json(&body);
    let stats = &v["data"]["stats"];
    assert!(stats["timings"]["evalTotalTime"].as_f64().unwrap() > 0.0, "{stats}");
    assert!(
        stats["timings"]["execTotalTime"].as_f64().unwrap()
            >= stats["timings"]["evalTotalTime"].as_f64().unwrap()
    );
    // Three series, five minutes of lookback at one sample a minute, read from storage.
    let loaded = stats["samples"]["totalQueryableSamples"].as_u64().unwrap();
    assert!((3..=3 * 6).contains(&loaded), "{stats}");
    let (_, body) = p.get(&format!("/api/v1/query?query=api_test_total&time={t}"));
    assert!(json(&body)["data"].get("stats").is_none());
    let (c, body) = p.post(
        "/api/v1/query_range",
        &format!("query=api_test_total&start={}&end={t}&step=60&stats=1", t - 600),
    );
    assert_eq!(c, 200);
    assert!(
        json(&body)["data"]["stats"]["samples"]["totalQueryableSamples"].as_u64().unwrap() >= 30
    );

    for (path, n) in [
        ("/api/v1/series?match[]=api_test_total&limit=2", 2),
        ("/api/v1/labels?limit=2", 2),
        ("/api/v1/label/instance/values?limit=1", 1),
    ] {
        let (c, body) = p.get(path);
        assert_eq!(c, 200, "{path}: {body}");
        let v = json(&body);
        assert_eq!(v["data"].as_array().unwrap().len(), n, "{path}: {body}");
        assert_eq!(v["warnings"], j!(["results truncated due to limit"]), "{path}");
    }
}

/// After writes and queries, the new metric families are present with plausible values.
#[test]
fn self_metrics_cover_queries_wal_and_head() {
    let p = Promlake::start(&[]);
    let now = now_ms();
    remote_write(&p.url, None, &data(3, 30, now));
    let t = now / 1000;
    for _ in 0..3 {
        assert_eq!(p.get(&format!("/api/v1/query?query=api_test_total&time={t}")).0, 200);
    }
    assert_eq!(
        p.get(&format!(
            "/api/v1/query_range?query=api_test_total&start={}&end={t}&step=60",
            t - 600
        ))
        .0,
        200
    );
    assert_eq!(p.get("/api/v1/parse_query?query=up").0, 200);
    let (_, m) = p.get("/metrics");
    let value = |prefix: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing in\n{m}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("promlake_query_duration_seconds_count{endpoint=\"instant\"}"), 3.0);
    assert_eq!(value("promlake_query_duration_seconds_count{endpoint=\"range\"}"), 1.0);
    assert!(value("promlake_query_duration_seconds_sum{endpoint=\"instant\"}") > 0.0);
    assert!(value("promlake_query_samples_loaded_sum{endpoint=\"instant\"}") >= 9.0);
    assert!(value("promlake_wal_fsync_duration_seconds_count{tenant=\"default\"}") >= 1.0);
    assert!(value("promlake_wal_fsync_duration_seconds_sum{tenant=\"default\"}") > 0.0);
    // Buckets are cumulated once: the +Inf bucket is the count.
    assert_eq!(
        value("promlake_wal_fsync_duration_seconds_bucket{le=\"+Inf\",tenant=\"default\"}"),
        value("promlake_wal_fsync_duration_seconds_count{tenant=\"default\"}")
    );
    assert!(value("promlake_head_chunks{tenant=\"default\"}") >= 3.0);
    assert_eq!(value("promlake_head_series{tenant=\"default\"}"), 3.0);
    assert!(value("promlake_wal_bytes_written{tenant=\"default\"}") > 0.0);
    assert_eq!(
        value("promlake_http_request_duration_seconds_count{handler=\"/api/v1/parse_query\"}"),
        1.0
    );
}
