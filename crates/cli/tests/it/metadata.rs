//! `/api/v1/metadata`: a real Prometheus remote-writes its metadata and promlake lists the same
//! type/help as Prometheus' own API; text pushes add theirs; all of it survives kill -9.

use std::time::{Duration, Instant};

use crate::{Daemon, Promlake, client, json};

/// Starts Debian's Prometheus scraping itself and remote-writing (metadata every second).
fn prometheus(target: &Promlake) -> Daemon {
    let write_url = format!("{}/api/v1/write", target.url);
    Daemon::start(
        "prometheus",
        |dir, port| {
            let cfg = format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prom\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\nremote_write:\n  - url: {write_url}\n    queue_config:\n      batch_send_deadline: 500ms\n    metadata_config:\n      send: true\n      send_interval: 1s\n"
            );
            std::fs::write(dir.join("prometheus.yml"), cfg).unwrap();
            vec![
                format!("--config.file={}", dir.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ]
        },
        "/-/ready",
    )
}

const FAMILIES: [&str; 3] =
    ["prometheus_http_requests_total", "go_goroutines", "prometheus_http_request_duration_seconds"];

#[test]
fn real_prometheus_metadata_matches_and_survives_kill_9() {
    let p = Promlake::start(&[]);
    let prom = prometheus(&p);
    let deadline = Instant::now() + Duration::from_secs(60);
    let ours = loop {
        let (code, body) = p.get("/api/v1/metadata");
        assert_eq!(code, 200, "{body}");
        let v = json(&body);
        if FAMILIES.iter().all(|f| v["data"][f].is_array()) {
            break v;
        }
        assert!(Instant::now() < deadline, "no metadata from prometheus: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ours["status"], "success");
    for f in FAMILIES {
        let theirs = json(
            &client()
                .get(format!("{}/api/v1/metadata?metric={f}", prom.url))
                .send()
                .unwrap()
                .text()
                .unwrap(),
        );
        assert_eq!(ours["data"][f], theirs["data"][f], "metadata of {f}");
    }
    assert_eq!(ours["data"]["prometheus_http_requests_total"][0]["type"], "counter");
    assert_eq!(ours["data"]["prometheus_http_request_duration_seconds"][0]["type"], "histogram");
    // Parameters: one family; limit; limit_per_metric.
    let one = json(&p.get("/api/v1/metadata?metric=go_goroutines").1);
    assert_eq!(one["data"].as_object().unwrap().len(), 1);
    assert_eq!(one["data"]["go_goroutines"][0]["type"], "gauge");
    let two = json(&p.get("/api/v1/metadata?limit=2&limit_per_metric=1").1);
    assert_eq!(two["data"].as_object().unwrap().len(), 2);
    assert_eq!(json(&p.get("/api/v1/metadata?limit=0").1)["data"], serde_json::json!({}));
    assert_eq!(p.get("/api/v1/metadata?limit=x").0, 400);
    drop(prom);
    // A push's HELP/TYPE lands too.
    let r = client()
        .put(format!("{}/metrics/job/batch", p.url))
        .body("# HELP batch_last_success Last success.\n# TYPE batch_last_success gauge\nbatch_last_success 1\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = json(&p.get("/api/v1/metadata").1);
    assert_eq!(
        before["data"]["batch_last_success"],
        serde_json::json!([{"type": "gauge", "help": "Last success.", "unit": ""}])
    );
    let p = p.restart(&[]);
    let after = json(&p.get("/api/v1/metadata").1);
    assert_eq!(after, before, "metadata survives kill -9 (WAL kind 4)");
    // Another tenant sees none of it.
    let r = client()
        .get(format!("{}/api/v1/metadata", p.url))
        .header("X-Scope-OrgID", "other")
        .send()
        .unwrap();
    assert_eq!(json(&r.text().unwrap()), serde_json::json!({"status": "success", "data": {}}));
}

/// Remote write 2.0 carries type/help/unit per series; 1.0 in its metadata list. Both land, and
/// a sender repeating its metadata adds nothing.
#[test]
fn remote_write_1_and_2_metadata_is_listed() {
    use model::{Labels, MetricMetadata, MetricType, Sample, SeriesWrite, WriteBatch};
    let p = Promlake::start(&[]);
    let batch = |name: &str, kind, help: &str, unit: &str| WriteBatch {
        series: vec![SeriesWrite {
            labels: Labels::from_pairs([("__name__", name)]).unwrap(),
            samples: [Sample { t: crate::now_ms(), v: 1.0 }].into(),
            ..Default::default()
        }],
        metadata: vec![MetricMetadata {
            metric_family: name.into(),
            kind,
            help: help.into(),
            unit: unit.into(),
        }],
    };
    let send = |body: Vec<u8>, ct: &str| {
        let r = client()
            .post(format!("{}/api/v1/write", p.url))
            .header("content-type", ct)
            .header("content-encoding", "snappy")
            .body(wire::snappy::compress(&body))
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
    };
    let v2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
    let b = batch("job_duration_seconds", MetricType::Gauge, "Job duration.", "seconds");
    send(wire::encode_write_v2(&b), v2);
    send(wire::encode_write_v2(&b), v2);
    let b = batch("jobs_total", MetricType::Counter, "Jobs run.", "");
    send(wire::encode_write_v1(&b), "application/x-protobuf");
    let got = json(&p.get("/api/v1/metadata").1);
    assert_eq!(
        got["data"],
        serde_json::json!({
            "job_duration_seconds": [{"type": "gauge", "help": "Job duration.", "unit": "seconds"}],
            "jobs_total": [{"type": "counter", "help": "Jobs run.", "unit": ""}],
        })
    );
    let metrics = p.get("/metrics").1;
    assert!(metrics.contains("promlake_metadata_families{tenant=\"default\"} 2"), "{metrics}");
}
