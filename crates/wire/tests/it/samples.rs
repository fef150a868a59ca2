//! Valid payloads of every decoder's format, as seeds for mutation and for the corpus.

use prost::Message;
use wire::proto::{prompb, v2};

pub fn v1_request() -> Vec<u8> {
    let label = |n: &str, v: &str| prompb::Label { name: n.into(), value: v.into() };
    prompb::WriteRequest {
        timeseries: vec![
            prompb::TimeSeries {
                labels: vec![label("__name__", "up"), label("job", "node"), label("instance", "a")],
                samples: vec![prompb::Sample { value: 1.0, timestamp: 1000 }],
                exemplars: vec![prompb::Exemplar {
                    labels: vec![label("trace_id", "t1")],
                    value: 0.5,
                    timestamp: 999,
                }],
                histograms: vec![prompb::Histogram {
                    count: Some(prompb::histogram::Count::CountInt(4)),
                    schema: 0,
                    positive_spans: vec![prompb::BucketSpan { offset: 1, length: 2 }],
                    positive_deltas: vec![3, -2],
                    timestamp: 1000,
                    ..Default::default()
                }],
            },
            prompb::TimeSeries {
                labels: vec![label("__name__", "node_cpu_seconds_total"), label("cpu", "0")],
                samples: vec![prompb::Sample { value: 12.5, timestamp: 2000 }],
                ..Default::default()
            },
        ],
        metadata: vec![prompb::MetricMetadata {
            r#type: 1,
            metric_family_name: "node_cpu_seconds_total".into(),
            help: "CPU time.".into(),
            unit: "seconds".into(),
        }],
    }
    .encode_to_vec()
}

pub fn v2_request() -> Vec<u8> {
    let symbols = ["", "__name__", "up", "job", "node", "trace_id", "t1", "help"];
    v2::Request {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![v2::Sample { value: 1.0, timestamp: 1000 }],
            histograms: vec![v2::Histogram {
                count: Some(v2::histogram::Count::CountFloat(3.0)),
                positive_spans: vec![v2::BucketSpan { offset: 0, length: 1 }],
                positive_counts: vec![3.0],
                timestamp: 1000,
                ..Default::default()
            }],
            exemplars: vec![v2::Exemplar { labels_refs: vec![5, 6], value: 1.0, timestamp: 999 }],
            metadata: Some(v2::Metadata { r#type: 2, help_ref: 7, unit_ref: 0 }),
            created_timestamp: 10,
        }],
    }
    .encode_to_vec()
}

pub const PROM_TEXT: &str = r#"# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
msdos{path="C:\\DIR",error="x:\n\"y\""} 1.4e9
# TYPE h histogram
h_bucket{le="+Inf"} NaN
"#;

pub const OM_TEXT: &str = r#"# TYPE foo counter
# UNIT foo seconds
# HELP foo Help \"q\".
foo_total 17.0 1520879607.789 # {trace_id="KOO5S4vxi0o"} 0.67
foo_created 1520430000.123
# EOF
"#;
