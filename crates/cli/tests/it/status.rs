//! Status endpoints Grafana and promtool call, through one data-driven check.

use model::{Labels, Sample, SeriesWrite, WriteBatch};

use crate::{Promlake, json};

/// GETs `path` and checks the status and that `pointer` (a JSON pointer into the body) holds
/// `expected`.
fn check(p: &Promlake, path: &str, status: u16, pointer: &str, expected: serde_json::Value) {
    let (code, body) = p.get(path);
    assert_eq!(code, status, "{path}: {body}");
    let v = json(&body);
    assert_eq!(v.pointer(pointer), Some(&expected), "{path} {pointer}: {body}");
}

#[test]
fn status_endpoints_answer_like_prometheus() {
    let p = Promlake::start(&[]);
    let series = (0..6)
        .map(|i| SeriesWrite {
            labels: Labels::from_pairs([
                ("__name__", if i < 4 { "a_total" } else { "b" }.to_string()),
                ("job", "j".to_string()),
                ("i", i.to_string()),
            ])
            .unwrap(),
            samples: [Sample { t: 1_000, v: 1.0 }].into(),
            ..Default::default()
        })
        .collect();
    crate::remote_write(&p.url, None, &WriteBatch { series, metadata: vec![] });
    use serde_json::json as j;
    check(&p, "/api/v1/status/tsdb", 200, "/data/headStats/numSeries", j!(6));
    check(
        &p,
        "/api/v1/status/tsdb",
        200,
        "/data/seriesCountByMetricName",
        j!([{"name": "a_total", "value": 4}, {"name": "b", "value": 2}]),
    );
    check(
        &p,
        "/api/v1/status/tsdb?limit=1",
        200,
        "/data/labelValueCountByLabelName",
        j!([{"name": "i", "value": 6}]),
    );
    check(
        &p,
        "/api/v1/status/tsdb?limit=1",
        200,
        "/data/seriesCountByLabelValuePair",
        j!([{"name": "job=j", "value": 6}]),
    );
    check(&p, "/api/v1/status/tsdb?limit=x", 400, "/errorType", j!("bad_data"));
    check(&p, "/api/v1/rules", 200, "/data/groups", j!([]));
    check(&p, "/api/v1/alerts", 200, "/data/alerts", j!([]));
    check(&p, "/api/v1/status/flags", 200, "/data/query.lookback-delta", j!("5m"));
    check(&p, "/api/v1/status/runtimeinfo", 200, "/data/storageRetention", j!("15days"));
    check(
        &p,
        "/api/v1/format_query?query=sum(rate(x[5m]))by(job)",
        200,
        "/data",
        j!("sum by (job) (rate(x[5m]))"),
    );
    check(&p, "/api/v1/format_query?query=sum(", 400, "/errorType", j!("bad_data"));
    let (code, body) = p.get("/api/v1/status/config");
    assert_eq!(code, 200);
    let yaml = json(&body)["data"]["yaml"].as_str().unwrap().to_string();
    assert!(yaml.contains("[storage]") && yaml.contains("retention = \"15days\""), "{yaml}");
}
