//! Encoders for senders (the forwarder, load generators, tests): a `WriteBatch` as a remote
//! write 1.0 or 2.0 message, or as Prometheus text for a Pushgateway push. Built on the prost
//! types; the output is uncompressed (compress with `snappy::compress` for remote write).

use std::collections::HashMap;
use std::fmt::Write as _;

use model::{Labels, METRIC_NAME, MetricMetadata, MetricType, WriteBatch};
use prost::Message;

use crate::proto::{prompb, v2};
use crate::remote_read::{histogram_to_proto, labels_to_proto};

/// Encodes `batch` as a remote write 1.0 `WriteRequest`.
pub fn encode_write_v1(batch: &WriteBatch) -> Vec<u8> {
    let timeseries = batch
        .series
        .iter()
        .map(|s| prompb::TimeSeries {
            labels: labels_to_proto(&s.labels),
            samples: s
                .samples
                .iter()
                .map(|x| prompb::Sample { value: x.v, timestamp: x.t })
                .collect(),
            exemplars: s
                .exemplars
                .iter()
                .map(|e| prompb::Exemplar {
                    labels: labels_to_proto(&e.labels),
                    value: e.v,
                    timestamp: e.t,
                })
                .collect(),
            histograms: s.histograms.iter().map(|(t, h)| histogram_to_proto(*t, h)).collect(),
        })
        .collect();
    let metadata = batch
        .metadata
        .iter()
        .map(|m| prompb::MetricMetadata {
            r#type: metric_type_number(m.kind),
            metric_family_name: m.metric_family.clone(),
            help: m.help.clone(),
            unit: m.unit.clone(),
        })
        .collect();
    prompb::WriteRequest { timeseries, metadata }.encode_to_vec()
}

/// Encodes `batch` as a remote write 2.0 `Request`. Each series carries the metadata of its
/// family (found by metric name, or by the name without a `_total`, `_bucket`, `_count`,
/// `_sum`, `_created` or `_info` suffix).
pub fn encode_write_v2(batch: &WriteBatch) -> Vec<u8> {
    let mut symbols = Symbols::default();
    let families: HashMap<&str, &MetricMetadata> =
        batch.metadata.iter().map(|m| (m.metric_family.as_str(), m)).collect();
    let mut timeseries = Vec::with_capacity(batch.series.len());
    for s in &batch.series {
        let metadata =
            s.labels.metric_name().and_then(|n| family_of(&families, n)).map(|m| v2::Metadata {
                r#type: metric_type_number(m.kind),
                help_ref: symbols.get(&m.help),
                unit_ref: symbols.get(&m.unit),
            });
        timeseries.push(v2::TimeSeries {
            labels_refs: symbols.refs(&s.labels),
            samples: s.samples.iter().map(|x| v2::Sample { value: x.v, timestamp: x.t }).collect(),
            histograms: s.histograms.iter().map(|(t, h)| histogram_to_v2(*t, h)).collect(),
            exemplars: s
                .exemplars
                .iter()
                .map(|e| v2::Exemplar {
                    labels_refs: symbols.refs(&e.labels),
                    value: e.v,
                    timestamp: e.t,
                })
                .collect(),
            metadata,
            created_timestamp: 0,
        });
    }
    v2::Request { symbols: symbols.list, timeseries }.encode_to_vec()
}

fn histogram_to_v2(t: model::Timestamp, h: &model::FloatHistogram) -> v2::Histogram {
    let spans = |s: &[model::Span]| {
        s.iter().map(|s| v2::BucketSpan { offset: s.offset, length: s.length }).collect()
    };
    v2::Histogram {
        count: Some(v2::histogram::Count::CountFloat(h.count)),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: Some(v2::histogram::ZeroCount::ZeroCountFloat(h.zero_count)),
        negative_spans: spans(&h.negative_spans),
        negative_deltas: vec![],
        negative_counts: h.negative_buckets.clone(),
        positive_spans: spans(&h.positive_spans),
        positive_deltas: vec![],
        positive_counts: h.positive_buckets.clone(),
        reset_hint: i32::from(h.counter_reset_hint),
        timestamp: t,
        custom_values: h.custom_values.clone(),
    }
}

fn family_of<'m>(
    families: &HashMap<&str, &'m MetricMetadata>,
    name: &str,
) -> Option<&'m MetricMetadata> {
    if let Some(m) = families.get(name) {
        return Some(m);
    }
    ["_total", "_bucket", "_count", "_sum", "_created", "_info"]
        .iter()
        .find_map(|suffix| families.get(name.strip_suffix(suffix)?).copied())
}

/// The symbols table of a 2.0 request; index 0 is the empty string, as the spec requires.
struct Symbols {
    list: Vec<String>,
    index: HashMap<String, u32>,
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols { list: vec![String::new()], index: HashMap::from([(String::new(), 0)]) }
    }
}

impl Symbols {
    fn get(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }

    fn refs(&mut self, labels: &Labels) -> Vec<u32> {
        labels.iter().flat_map(|l| [self.get(&l.name), self.get(&l.value)]).collect()
    }
}

fn metric_type_number(t: MetricType) -> i32 {
    match t {
        MetricType::Unknown => 0,
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::GaugeHistogram => 4,
        MetricType::Summary => 5,
        MetricType::Info => 6,
        MetricType::StateSet => 7,
    }
}

/// Writes `batch` in the Prometheus text format 0.0.4 (`# HELP`/`# TYPE` from its metadata,
/// then every float sample with its timestamp). Native histograms and exemplars have no place
/// in that format and are left out; returns how many histogram samples were left out.
pub fn write_text(batch: &WriteBatch, out: &mut String) -> usize {
    for m in &batch.metadata {
        if !m.help.is_empty() {
            let help = m.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {} {help}", m.metric_family);
        }
        let kind = match m.kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            _ => "untyped",
        };
        let _ = writeln!(out, "# TYPE {} {kind}", m.metric_family);
    }
    let mut skipped = 0;
    for s in &batch.series {
        skipped += s.histograms.len();
        let name = s.labels.metric_name().unwrap_or("");
        let plain = is_plain_name(name);
        let mut head = String::new();
        if plain {
            head.push_str(name);
        }
        head.push('{');
        let mut first = true;
        if !plain {
            let _ = write!(head, "\"{}\"", escape(name));
            first = false;
        }
        for l in s.labels.iter().filter(|l| &*l.name != METRIC_NAME) {
            if !first {
                head.push(',');
            }
            first = false;
            if is_plain_name(&l.name) && !l.name.contains(':') {
                head.push_str(&l.name);
            } else {
                let _ = write!(head, "\"{}\"", escape(&l.name));
            }
            let _ = write!(head, "=\"{}\"", escape(&l.value));
        }
        head.push('}');
        for x in &s.samples {
            let v = match x.v {
                f64::INFINITY => "+Inf".to_string(),
                f64::NEG_INFINITY => "-Inf".to_string(),
                v if v.is_nan() => "NaN".to_string(),
                v => format!("{v:?}"),
            };
            let _ = writeln!(out, "{head} {v} {}", x.t);
        }
    }
    skipped
}

fn is_plain_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
