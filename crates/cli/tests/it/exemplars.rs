//! `/api/v1/query_exemplars`: exemplars sent by remote write 1.0 and 2.0, counted in 2.0's
//! written header, selected by the query's selectors and time range, kept across kill -9.

use model::{Exemplar, Labels, Sample, SeriesWrite, WriteBatch};
use serde_json::json as j;

use crate::{Promlake, client, json};

fn write(p: &Promlake, batch: &WriteBatch, v2: bool) -> reqwest::blocking::Response {
    let (body, ct) = if v2 {
        (
            wire::encode_write_v2(batch),
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
    } else {
        (wire::encode_write_v1(batch), "application/x-protobuf")
    };
    client()
        .post(format!("{}/api/v1/write", p.url))
        .header("content-type", ct)
        .header("content-encoding", "snappy")
        .body(wire::snappy::compress(&body))
        .send()
        .unwrap()
}

fn series(name: &str, le: &str, t: i64, exemplars: &[(&str, i64, f64)]) -> SeriesWrite {
    SeriesWrite {
        labels: Labels::from_pairs([("__name__", name), ("job", "api"), ("le", le)]).unwrap(),
        samples: [Sample { t, v: 1.0 }].into(),
        exemplars: exemplars
            .iter()
            .map(|&(trace, t, v)| Exemplar {
                labels: Labels::from_pairs([("trace_id", trace)]).unwrap(),
                t,
                v,
            })
            .collect(),
        ..Default::default()
    }
}

fn query(p: &Promlake, params: &str) -> serde_json::Value {
    let (code, body) = p.get(&format!("/api/v1/query_exemplars?{params}"));
    assert_eq!(code, 200, "{body}");
    json(&body)
}

#[test]
fn exemplars_are_stored_queried_and_survive_kill_9() {
    let p = Promlake::start(&[]);
    // Grafana's start-up probe on an empty database: a valid empty answer.
    assert_eq!(
        query(&p, "query=%7B__name__%3D~%22.%2B%22%7D"),
        j!({"status": "success", "data": []})
    );
    let b1 = WriteBatch {
        series: vec![series("req_bucket", "0.5", 1000, &[("aaa", 1000, 0.25)])],
        metadata: vec![],
    };
    assert_eq!(write(&p, &b1, false).status(), 204);
    let b2 = WriteBatch {
        series: vec![
            series("req_bucket", "0.5", 2000, &[("bbb", 1500, 0.375)]),
            series("req_bucket", "+Inf", 2000, &[("ccc", 2000, 7.0)]),
            series("other", "1", 2000, &[("ddd", 2000, 1.0)]),
        ],
        metadata: vec![],
    };
    let r = write(&p, &b2, true);
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["x-prometheus-remote-write-exemplars-written"], "3");
    // A retry of the same request writes no exemplar twice.
    let r = write(&p, &b2, true);
    assert_eq!(r.headers()["x-prometheus-remote-write-exemplars-written"], "0");
    let expected = j!({"status": "success", "data": [
        {"seriesLabels": {"__name__": "req_bucket", "job": "api", "le": "+Inf"},
         "exemplars": [{"labels": {"trace_id": "ccc"}, "value": "7", "timestamp": 2}]},
        {"seriesLabels": {"__name__": "req_bucket", "job": "api", "le": "0.5"},
         "exemplars": [{"labels": {"trace_id": "aaa"}, "value": "0.25", "timestamp": 1},
                       {"labels": {"trace_id": "bbb"}, "value": "0.375", "timestamp": 1.5}]},
    ]});
    // Selectors anywhere in the query count; start/end bound the exemplars' timestamps.
    let q =
        "query=histogram_quantile(0.9%2C+sum+by+(le)+(rate(req_bucket%5B5m%5D)))&start=0&end=10";
    assert_eq!(query(&p, q), expected);
    let narrow = query(&p, "query=req_bucket&start=1.2&end=1.8");
    assert_eq!(
        narrow["data"][0]["exemplars"],
        j!([{"labels": {"trace_id": "bbb"}, "value": "0.375", "timestamp": 1.5}])
    );
    assert_eq!(query(&p, "query=req_bucket+or+other")["data"].as_array().unwrap().len(), 3);
    // POST form works as GET does; a bad query is a 400.
    let (code, body) = p.post("/api/v1/query_exemplars", "query=req_bucket&start=0&end=10");
    assert_eq!((code, json(&body)), (200, expected.clone()));
    let (code, body) = p.get("/api/v1/query_exemplars?query=rate(x%5B");
    assert_eq!(code, 400, "{body}");
    assert_eq!(json(&body)["errorType"], "bad_data");
    let metrics = p.get("/metrics").1;
    assert!(
        metrics.contains("promlake_ingested_exemplars_total{tenant=\"default\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("promlake_exemplars{tenant=\"default\"} 4"), "{metrics}");
    let p = p.restart(&[]);
    assert_eq!(query(&p, q), expected, "exemplars survive kill -9 (WAL kind 5)");
}

/// Serves one fixed OpenMetrics payload to every request (a scrape target with exemplars).
fn serve_openmetrics(payload: String) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                payload.len()
            );
        }
    });
    port
}

/// Debian's Prometheus (exemplar storage on) scrapes a target exposing exemplars and
/// remote-writes them; promlake answers `query_exemplars` exactly as Prometheus does.
#[test]
fn real_prometheus_exemplars_match() {
    let p = Promlake::start(&[]);
    let ts = crate::now_ms() / 1000 - 60;
    let target = serve_openmetrics(format!(
        "# TYPE req counter\n# HELP req Requests.\nreq_total{{path=\"/\"}} 5 # {{trace_id=\"abc123\"}} 1.5 {ts}.25\nreq_total{{path=\"/x\"}} 7 # {{trace_id=\"def456\",span=\"9\"}} 2 {ts}.5\n# EOF\n"
    ));
    let write_url = format!("{}/api/v1/write", p.url);
    let prom = crate::Daemon::start(
        "prometheus",
        |dir, port| {
            let cfg = format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\nremote_write:\n  - url: {write_url}\n    send_exemplars: true\n    queue_config:\n      batch_send_deadline: 500ms\n"
            );
            std::fs::write(dir.join("prometheus.yml"), cfg).unwrap();
            vec![
                format!("--config.file={}", dir.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--enable-feature=exemplar-storage".into(),
            ]
        },
        "/-/ready",
    );
    let q = "/api/v1/query_exemplars?query=req_total";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let ours = loop {
        let v = query(&p, "query=req_total");
        if v["data"].as_array().is_some_and(|a| a.len() == 2) {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "no exemplars from prometheus: {v}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let theirs = json(&client().get(format!("{}{q}", prom.url)).send().unwrap().text().unwrap());
    let sorted = |v: &serde_json::Value| {
        let mut a = v["data"].as_array().unwrap().clone();
        a.sort_by_key(|x| x["seriesLabels"].to_string());
        a
    };
    assert_eq!(sorted(&ours), sorted(&theirs));
    assert_eq!(ours["data"][0]["exemplars"][0]["labels"], j!({"trace_id": "abc123"}));
}
