//! Remote write into the running server: a real Prometheus as sender, and one test per
//! status-code rule with requests built from the spec's messages.

use std::time::{Duration, Instant};

use model::{Labels, Sample, SeriesWrite, WriteBatch};

use crate::{Promlake, client, json};

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> SeriesWrite {
    SeriesWrite {
        labels: Labels::from_pairs(pairs.iter().copied()).unwrap(),
        samples: samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
        ..Default::default()
    }
}

fn send(
    p: &Promlake,
    body: Vec<u8>,
    content_type: &str,
    extra: &[(&str, &str)],
) -> reqwest::blocking::Response {
    let mut r = client()
        .post(format!("{}/api/v1/write", p.url))
        .header("content-type", content_type)
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0");
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.body(body).send().unwrap()
}

const V1: &str = "application/x-protobuf";
const V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn v1(batch: &WriteBatch) -> Vec<u8> {
    wire::snappy::compress(&wire::encode_write_v1(batch))
}

fn values(p: &Promlake, name: &str) -> Vec<String> {
    let (code, body) = p.get(&format!("/api/v1/label/{name}/values"));
    assert_eq!(code, 200, "{body}");
    json(&body)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn v1_and_v2_store_and_answer_204_with_written_headers() {
    let p = Promlake::start(&[]);
    let b = WriteBatch {
        series: vec![series(
            &[("__name__", "a_total"), ("job", "x")],
            &[(1000, 1.0), (2000, f64::NAN)],
        )],
        metadata: vec![],
    };
    let r = send(&p, v1(&b), V1, &[]);
    assert_eq!(r.status(), 204);
    assert!(
        r.headers().get("x-prometheus-remote-write-samples-written").is_none(),
        "1.0 has no written headers"
    );
    let b2 = WriteBatch {
        series: vec![series(&[("__name__", "b"), ("job", "y")], &[(1000, 2.0)])],
        metadata: vec![],
    };
    let r = send(&p, wire::snappy::compress(&wire::encode_write_v2(&b2)), V2, &[]);
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["x-prometheus-remote-write-samples-written"], "1");
    assert_eq!(r.headers()["x-prometheus-remote-write-histograms-written"], "0");
    assert_eq!(values(&p, "__name__"), vec!["a_total", "b"]);
}

#[test]
fn status_codes_follow_the_spec() {
    let p = Promlake::start(&[]);
    let good = WriteBatch {
        series: vec![series(&[("__name__", "ok"), ("i", "1")], &[(1000, 1.0)])],
        metadata: vec![],
    };
    // 415: unsupported content type, proto message, encoding.
    assert_eq!(send(&p, v1(&good), "application/json", &[]).status(), 415);
    assert_eq!(send(&p, v1(&good), "application/x-protobuf;proto=foo.Bar", &[]).status(), 415);
    let r = client()
        .post(format!("{}/api/v1/write", p.url))
        .header("content-type", V1)
        .header("content-encoding", "gzip")
        .body(v1(&good))
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    // 400: not snappy, not protobuf.
    let r = send(&p, b"not snappy at all".to_vec(), V1, &[]);
    assert_eq!(r.status(), 400);
    assert!(json(&r.text().unwrap())["error"].as_str().unwrap().contains("snappy"));
    let r = send(&p, wire::snappy::compress(&[0xff, 0xff, 0xff]), V1, &[]);
    assert_eq!(r.status(), 400);
    // 413: a snappy header announcing a huge body (decompression bomb) and an oversized body.
    let mut bomb = vec![0x80, 0x80, 0x80, 0x80, 0x0f];
    bomb.extend_from_slice(&[0; 64]);
    let r = send(&p, bomb, V1, &[]);
    assert_eq!(r.status(), 413);
    assert!(r.text().unwrap().contains("max_decompressed_bytes"));
    let r = send(&p, vec![0u8; 65 << 20], V1, &[]);
    assert_eq!(r.status(), 413);
    // The good request still works and nothing bad was stored.
    assert_eq!(send(&p, v1(&good), V1, &[]).status(), 204);
    assert_eq!(values(&p, "__name__"), vec!["ok"]);
    // Invalid tenant header and dataset name: 400.
    assert_eq!(send(&p, v1(&good), V1, &[("x-scope-orgid", "a b")]).status(), 400);
    let r = client()
        .post(format!("{}/api/v1/stream/prometheus/bad..name%2F", p.url))
        .header("content-type", V1)
        .body(v1(&good))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn partial_failure_stores_the_valid_series_and_answers_400_naming_the_rest() {
    let p = Promlake::start(&[]);
    let b = WriteBatch {
        series: vec![
            series(&[("__name__", "good"), ("i", "1")], &[(60_000_000, 1.0)]),
            series(&[("i", "no-name")], &[(60_000_000, 1.0)]),
        ],
        metadata: vec![],
    };
    let r = send(&p, v1(&b), V1, &[]);
    assert_eq!(r.status(), 400);
    let msg = json(&r.text().unwrap())["error"].as_str().unwrap().to_string();
    assert!(msg.contains("no-name") && msg.contains("1 samples stored"), "{msg}");
    assert_eq!(values(&p, "__name__"), vec!["good"]);
    // Duplicate timestamp with another value, and a sample far older than the window: 400 naming them.
    let b = WriteBatch {
        series: vec![
            series(&[("__name__", "good"), ("i", "1")], &[(60_000_000, 2.0)]),
            series(&[("__name__", "good"), ("i", "2")], &[(1000, 2.0), (60_000_000, 3.0)]),
        ],
        metadata: vec![],
    };
    let r = send(&p, v1(&b), V2.split(';').next().unwrap(), &[]);
    assert_eq!(r.status(), 400);
    let msg = json(&r.text().unwrap())["error"].as_str().unwrap().to_string();
    assert!(msg.contains("duplicate sample") && msg.contains("too old"), "{msg}");
    assert_eq!(values(&p, "i"), vec!["1", "2"], "the valid sample of series i=2 is stored");
}

#[test]
fn stream_endpoint_uses_the_dataset_as_tenant() {
    let p = Promlake::start(&[]);
    let b = WriteBatch {
        series: vec![series(&[("__name__", "ds_metric")], &[(1000, 1.0)])],
        metadata: vec![],
    };
    let r = client()
        .post(format!("{}/api/v1/stream/prometheus/team-a", p.url))
        .header("content-type", V1)
        .header("content-encoding", "snappy")
        .body(v1(&b))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(values(&p, "__name__").is_empty(), "default tenant sees nothing");
    let r = client()
        .get(format!("{}/api/v1/label/__name__/values", p.url))
        .header("X-Scope-OrgID", "team-a")
        .send()
        .unwrap();
    assert_eq!(json(&r.text().unwrap())["data"], serde_json::json!(["ds_metric"]));
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let p = Promlake::start(&[]);
    for i in 0..20 {
        let b = WriteBatch {
            series: vec![series(&[("__name__", "k"), ("n", &i.to_string())], &[(1000, 1.0)])],
            metadata: vec![],
        };
        assert_eq!(send(&p, v1(&b), V1, &[]).status(), 204);
    }
    let p = p.restart(&[]);
    assert_eq!(values(&p, "n").len(), 20);
}

/// Debian's Prometheus scrapes itself and remote-writes to promlake; promlake must end up with
/// the same series Prometheus stores.
#[test]
fn real_prometheus_remote_writes_into_promlake() {
    let p = Promlake::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prom\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\nremote_write:\n  - url: {}/api/v1/write\n    queue_config:\n      batch_send_deadline: 500ms\n",
        p.url
    );
    std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
    let mut prom = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("Debian's prometheus is installed (scripts/test.sh installs it)");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let prom_guard =
        Kill(std::mem::replace(&mut prom, std::process::Command::new("true").spawn().unwrap()));
    let prom_url = format!("http://127.0.0.1:{port}");
    // Wait (bounded) until promlake has received a few scrapes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let up = loop {
        let names = values(&p, "__name__");
        if names.iter().any(|n| n == "up") && names.len() > 50 {
            break names;
        }
        assert!(Instant::now() < deadline, "promlake received no data from prometheus: {names:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Every metric name promlake stores, Prometheus stores too, and the label sets of a
    // well-known series are identical.
    let prom_names: Vec<String> = json(
        &client()
            .get(format!("{prom_url}/api/v1/label/__name__/values"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
    )["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for n in &up {
        assert!(prom_names.contains(n), "{n} is in promlake but not in prometheus");
    }
    let q = "/api/v1/series?match[]=prometheus_build_info";
    let ours = json(&p.get(q).1)["data"].clone();
    let theirs =
        json(&client().get(format!("{prom_url}{q}")).send().unwrap().text().unwrap())["data"]
            .clone();
    assert_eq!(ours, theirs);
    drop(prom_guard);
}

/// Label pairs exactly as sent: any order, empty values kept.
type RawPairs<'a> = &'a [(&'a str, &'a str)];

/// A 1.0 request with labels exactly as given, one sample (t, v) per series.
fn raw_v1(series: &[(RawPairs<'_>, i64, f64)]) -> Vec<u8> {
    use prost::Message;
    use wire::proto::prompb;
    let timeseries = series
        .iter()
        .map(|(pairs, t, v)| prompb::TimeSeries {
            labels: pairs
                .iter()
                .map(|(n, v)| prompb::Label { name: n.to_string(), value: v.to_string() })
                .collect(),
            samples: vec![prompb::Sample { value: *v, timestamp: *t }],
            ..Default::default()
        })
        .collect();
    wire::snappy::compress(&prompb::WriteRequest { timeseries, metadata: vec![] }.encode_to_vec())
}

/// Every series of `m` with its (t, v) samples, from a range query.
fn stored(p: &Promlake) -> Vec<(String, Vec<(f64, String)>)> {
    let (code, body) = p.get("/api/v1/query?query=m%5B1h%5D&time=100");
    assert_eq!(code, 200, "{body}");
    let mut out: Vec<_> = json(&body)["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let values = r["values"].as_array().unwrap().iter();
            let values =
                values.map(|x| (x[0].as_f64().unwrap(), x[1].as_str().unwrap().to_string()));
            (r["metric"].to_string(), values.collect())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The series cache (raw label bytes → series) must never send a sample to another series:
/// the same series in other byte forms (unsorted, with an empty-valued label, as 2.0) reaches
/// the same series, swapped values reach another one, and a rejected series stays rejected.
#[test]
fn the_same_series_in_any_byte_form_reaches_one_series_and_rejections_repeat() {
    let p = Promlake::start(&[]);
    let sorted: &[(&str, &str)] = &[("__name__", "m"), ("a", "1"), ("b", "2")];
    let swapped: &[(&str, &str)] = &[("__name__", "m"), ("a", "2"), ("b", "1")];
    let unsorted: &[(&str, &str)] = &[("b", "2"), ("__name__", "m"), ("a", "1")];
    let empty: &[(&str, &str)] = &[("__name__", "m"), ("a", "1"), ("b", "2"), ("c", "")];
    let dup: &[(&str, &str)] = &[("__name__", "m"), ("a", "1"), ("a", "3")];
    for (t, body) in [
        (1000, raw_v1(&[(sorted, 1000, 1.0)])),
        (2000, raw_v1(&[(sorted, 2000, 2.0), (swapped, 2000, 20.0)])),
        (3000, raw_v1(&[(unsorted, 3000, 3.0), (swapped, 3000, 30.0)])),
        (4000, raw_v1(&[(empty, 4000, 4.0), (sorted, 4500, 4.5)])),
    ] {
        let r = send(&p, body, V1, &[]);
        assert_eq!(r.status(), 204, "request at {t}: {}", r.text().unwrap());
    }
    let b2 = WriteBatch { series: vec![series(sorted, &[(5000, 5.0)])], metadata: vec![] };
    let r = send(&p, wire::snappy::compress(&wire::encode_write_v2(&b2)), V2, &[]);
    assert_eq!(r.status(), 204);
    for _ in 0..2 {
        let r = send(&p, raw_v1(&[(dup, 6000, 6.0), (sorted, 6000, 6.0)]), V1, &[]);
        assert_eq!(r.status(), 400, "a rejected series is rejected again");
        assert!(r.text().unwrap().contains("duplicate label name"));
    }
    let v = |pts: &[(f64, &str)]| pts.iter().map(|(t, v)| (*t, v.to_string())).collect();
    assert_eq!(
        stored(&p),
        vec![
            (
                r#"{"__name__":"m","a":"1","b":"2"}"#.to_string(),
                v(&[
                    (1.0, "1"),
                    (2.0, "2"),
                    (3.0, "3"),
                    (4.0, "4"),
                    (4.5, "4.5"),
                    (5.0, "5"),
                    (6.0, "6")
                ])
            ),
            (r#"{"__name__":"m","a":"2","b":"1"}"#.to_string(), v(&[(2.0, "20"), (3.0, "30")])),
        ]
    );
}
