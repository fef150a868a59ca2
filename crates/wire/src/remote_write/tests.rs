//! Remote write decoding, data-driven: requests are built with the prost types, encoded,
//! walked by the zero-copy decoder, and the result rendered to text compared with the
//! expected rendering.

use std::fmt::Write as _;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use model::{Interner, Labels, SeriesCache, SeriesHandle, SeriesKey, is_stale_nan};
use prost::Message;

use super::*;
use crate::proto::{prompb, v2 as pb2};

/// Renders a decode result one line per series / metadata / rejection.
fn render(d: &DecodedWrite) -> String {
    let mut s = String::new();
    for w in &d.batch.series {
        // A hit may leave its labels to the handle (remote write 1.0 does).
        match &w.key {
            SeriesKey::Hit(h) if w.labels.is_empty() => write!(s, "{}", h.labels()).unwrap(),
            _ => write!(s, "{}", w.labels).unwrap(),
        }
        for x in &w.samples {
            let v = if is_stale_nan(x.v) { "stale".to_string() } else { format!("{:?}", x.v) };
            write!(s, " {v}@{}", x.t).unwrap();
        }
        for (t, h) in &w.histograms {
            write!(
                s,
                " H@{t}[schema={} count={:?} sum={:?} zt={:?} zc={:?} hint={} +{:?}{:?} -{:?}{:?} cv={:?}]",
                h.schema,
                h.count,
                h.sum,
                h.zero_threshold,
                h.zero_count,
                h.counter_reset_hint,
                h.positive_spans.iter().map(|s| (s.offset, s.length)).collect::<Vec<_>>(),
                h.positive_buckets,
                h.negative_spans.iter().map(|s| (s.offset, s.length)).collect::<Vec<_>>(),
                h.negative_buckets,
                h.custom_values,
            )
            .unwrap();
        }
        for e in &w.exemplars {
            write!(s, " ex{}{:?}@{}", e.labels, e.v, e.t).unwrap();
        }
        s.push('\n');
    }
    for m in &d.batch.metadata {
        writeln!(s, "meta {} {} {:?} {:?}", m.metric_family, m.kind.as_str(), m.help, m.unit)
            .unwrap();
    }
    for i in &d.invalid {
        writeln!(s, "invalid {i} (dropped {}/{}/{})", i.samples, i.histograms, i.exemplars)
            .unwrap();
    }
    s
}

/// Checks the decode of `bytes`, then decodes it twice more through a series cache backed by
/// a [`FakeStore`] (the first pass fills it, the second hits it): every case of this file must
/// decode identically with and without the cache.
fn check_v1(bytes: &[u8], limits: &DecodeLimits, expected: &str) {
    let got = match decode_write_v1(bytes, &Interner::new(), limits) {
        Ok(d) => render(&d),
        Err(e) => format!("error: {e}\n"),
    };
    assert_eq!(got.trim_end(), expected.trim(), "\n--- got:\n{got}");
    let (cache, store) = (SeriesCache::new(), FakeStore::default());
    for pass in 0..2 {
        let cached = match decode_write_v1_cached(bytes, &Interner::new(), limits, Some(&cache)) {
            Ok(d) => store.apply(&cache, &d),
            Err(e) => format!("error: {e}\n"),
        };
        assert_eq!(cached, got, "pass {pass} through the series cache");
    }
}

fn check_v2(bytes: &[u8], limits: &DecodeLimits, expected: &str) {
    let got = match decode_write_v2(bytes, &Interner::new(), limits) {
        Ok(d) => render(&d),
        Err(e) => format!("error: {e}\n"),
    };
    assert_eq!(got.trim_end(), expected.trim(), "\n--- got:\n{got}");
    let (cache, store) = (SeriesCache::new(), FakeStore::default());
    for pass in 0..2 {
        let cached = match decode_write_v2_cached(bytes, &Interner::new(), limits, Some(&cache)) {
            Ok(d) => store.apply(&cache, &d),
            Err(e) => format!("error: {e}\n"),
        };
        assert_eq!(cached, got, "pass {pass} through the series cache");
    }
}

/// Storage's part of the series cache, in miniature: one series per label set, cached under
/// the hash of each `Miss`; a `Hit` must name the very label set the decoder would have built.
#[derive(Default)]
struct FakeStore {
    series: std::sync::Mutex<std::collections::HashMap<Labels, Arc<FakeSeries>>>,
}

struct FakeSeries {
    labels: Labels,
    live: AtomicBool,
}

impl SeriesHandle for FakeSeries {
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl FakeStore {
    fn get(&self, l: &Labels) -> Arc<FakeSeries> {
        let mut m = self.series.lock().unwrap();
        m.entry(l.clone())
            .or_insert_with(|| Arc::new(FakeSeries { labels: l.clone(), live: true.into() }))
            .clone()
    }

    /// "Stores" a decode: caches its misses; returns its rendering.
    fn apply(&self, cache: &SeriesCache, d: &DecodedWrite) -> String {
        for w in &d.batch.series {
            match &w.key {
                SeriesKey::Hit(h) => assert!(
                    w.labels.is_empty() || h.labels() == &w.labels,
                    "a hit names its series or leaves the labels to the handle"
                ),
                SeriesKey::Miss(hash) => {
                    cache.insert(*hash, self.get(&w.labels));
                }
                SeriesKey::None => {}
            }
        }
        render(d)
    }

    fn drop_series(&self, l: &Labels) {
        if let Some(s) = self.series.lock().unwrap().remove(l) {
            s.live.store(false, Ordering::Release);
        }
    }
}

/// Each series' resolution, in order: `hit`, `miss` (cacheable) or `none` (not cacheable).
fn keys(d: &DecodedWrite) -> String {
    let k = |w: &model::SeriesWrite| match w.key {
        SeriesKey::Hit(_) => "hit",
        SeriesKey::Miss(_) => "miss",
        SeriesKey::None => "none",
    };
    d.batch.series.iter().map(k).collect::<Vec<_>>().join(" ")
}

fn labels(pairs: &[(&str, &str)]) -> Vec<prompb::Label> {
    pairs.iter().map(|(n, v)| prompb::Label { name: n.to_string(), value: v.to_string() }).collect()
}

fn ts(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> prompb::TimeSeries {
    prompb::TimeSeries {
        labels: labels(pairs),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| prompb::Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn req(series: Vec<prompb::TimeSeries>) -> Vec<u8> {
    prompb::WriteRequest { timeseries: series, metadata: vec![] }.encode_to_vec()
}

/// Replaces the 8-byte marker `BADUTF8!` with bytes that are not UTF-8 (same length, so every
/// length prefix stays right).
fn break_utf8(mut b: Vec<u8>) -> Vec<u8> {
    let m = b"BADUTF8!";
    let i = b.windows(m.len()).position(|w| w == m).expect("marker");
    b[i..i + m.len()].copy_from_slice(b"bad\xff\xfe!!!");
    b
}

fn d() -> DecodeLimits {
    DecodeLimits::default()
}

#[test]
fn v1_samples_and_labels() {
    let b = req(vec![
        ts(
            &[("job", "node"), ("__name__", "up"), ("instance", "a:9100")],
            &[(1000, 1.0), (2000, 0.0)],
        ),
        ts(&[("__name__", "x"), ("empty", "")], &[(5, f64::INFINITY), (6, model::stale_nan())]),
        ts(&[("__name__", "nosamples")], &[]),
    ]);
    check_v1(
        &b,
        &d(),
        r#"
up{instance="a:9100", job="node"} 1.0@1000 0.0@2000
x{} inf@5 stale@6
nosamples{}
"#,
    );
    check_v1(&[], &d(), "");
}

#[test]
fn v1_validation_rules() {
    let one = |pairs: &[(&str, &str)]| {
        req(vec![ts(pairs, &[(1, 1.0)]), ts(&[("__name__", "ok")], &[(1, 2.0)])])
    };
    check_v1(
        &one(&[("job", "a")]),
        &d(),
        r#"
ok{} 2.0@1
invalid series has no metric name (__name__ label) for series {job="a"} (dropped 1/0/0)
"#,
    );
    check_v1(
        &one(&[("__name__", ""), ("job", "a")]),
        &d(),
        r#"
ok{} 2.0@1
invalid series has no metric name (__name__ label) for series {job="a"} (dropped 1/0/0)
"#,
    );
    check_v1(
        &one(&[("__name__", "m"), ("", "a")]),
        &d(),
        r#"
ok{} 2.0@1
invalid label name is empty for series m{="a"} (dropped 1/0/0)
"#,
    );
    check_v1(
        &one(&[("__name__", "m"), ("b", "1"), ("a", "x"), ("b", "2")]),
        &d(),
        r#"
ok{} 2.0@1
invalid duplicate label name "b" for series m{a="x", b="1", b="2"} (dropped 1/0/0)
"#,
    );
    check_v1(
        &break_utf8(one(&[("__name__", "m"), ("a", "BADUTF8!")])),
        &d(),
        r#"
ok{} 2.0@1
invalid label value is not valid UTF-8 for series m{a="bad��!!!"} (dropped 1/0/0)
"#,
    );
    check_v1(
        &break_utf8(one(&[("__name__", "m"), ("BADUTF8!", "v")])),
        &d(),
        r#"
ok{} 2.0@1
invalid label name is not valid UTF-8 for series m{bad��!!!="v"} (dropped 1/0/0)
"#,
    );
    let small = DecodeLimits {
        max_labels_per_series: 2,
        max_label_name_length: 8,
        max_label_value_length: 3,
        ..d()
    };
    check_v1(
        &one(&[("__name__", "m"), ("a", "1"), ("b", "2")]),
        &small,
        r#"
ok{} 2.0@1
invalid series has 3 labels, more than limits.max_labels_per_series=2 for series m{a="1", b="2"} (dropped 1/0/0)
"#,
    );
    check_v1(
        &one(&[("__name__", "m"), ("abcdefghi", "1")]),
        &small,
        r#"
ok{} 2.0@1
invalid label name "abcdefghi" is 9 bytes long, more than limits.max_label_name_length=8 for series m{abcdefghi="1"} (dropped 1/0/0)
"#,
    );
    check_v1(
        &one(&[("__name__", "m"), ("abcdefgh", "123")]),
        &small,
        r#"
m{abcdefgh="123"} 1.0@1
ok{} 2.0@1
"#,
    );
    check_v1(
        &one(&[("__name__", "m"), ("a", "1234")]),
        &small,
        r#"
ok{} 2.0@1
invalid value of label "a" is 4 bytes long, more than limits.max_label_value_length=3 for series m{a="1234"} (dropped 1/0/0)
"#,
    );
}

#[test]
fn v1_request_limits_are_hard_errors() {
    let b = req(vec![
        ts(&[("__name__", "a")], &[(1, 1.0), (2, 2.0)]),
        ts(&[("__name__", "b")], &[(1, 1.0)]),
    ]);
    check_v1(
        &b,
        &DecodeLimits { max_samples_per_request: 3, ..d() },
        r#"
a{} 1.0@1 2.0@2
b{} 1.0@1
"#,
    );
    check_v1(
        &b,
        &DecodeLimits { max_samples_per_request: 2, ..d() },
        "error: request exceeds limits.max_samples_per_request=2",
    );
    check_v1(
        &b,
        &DecodeLimits { max_series_per_request: 1, ..d() },
        "error: request exceeds limits.max_series_per_request=1",
    );
}

fn int_hist(t: i64) -> prompb::Histogram {
    prompb::Histogram {
        count: Some(prompb::histogram::Count::CountInt(12)),
        sum: 18.4,
        schema: 1,
        zero_threshold: 1e-128,
        zero_count: Some(prompb::histogram::ZeroCount::ZeroCountInt(2)),
        negative_spans: vec![prompb::BucketSpan { offset: 0, length: 2 }],
        negative_deltas: vec![1, 1],
        positive_spans: vec![
            prompb::BucketSpan { offset: 0, length: 2 },
            prompb::BucketSpan { offset: 1, length: 2 },
        ],
        positive_deltas: vec![1, 1, -1, 0],
        reset_hint: prompb::histogram::ResetHint::No as i32,
        timestamp: t,
        ..Default::default()
    }
}

#[test]
fn v1_histograms_exemplars_metadata() {
    let float_hist = prompb::Histogram {
        count: Some(prompb::histogram::Count::CountFloat(3.5)),
        sum: -1.0,
        schema: -53,
        zero_count: Some(prompb::histogram::ZeroCount::ZeroCountFloat(0.5)),
        positive_spans: vec![prompb::BucketSpan { offset: -2, length: 2 }],
        positive_counts: vec![1.5, 1.5],
        // Deltas of a float histogram are ignored, as Prometheus does.
        positive_deltas: vec![7],
        custom_values: vec![0.1, 1.0],
        reset_hint: prompb::histogram::ResetHint::Gauge as i32,
        timestamp: 20,
        ..Default::default()
    };
    let mut s = ts(&[("__name__", "h")], &[]);
    s.histograms = vec![int_hist(10), float_hist];
    s.exemplars = vec![
        prompb::Exemplar { labels: labels(&[("trace_id", "abc")]), value: 0.5, timestamp: 9 },
        prompb::Exemplar { labels: vec![], value: 1.5, timestamp: 8 },
        prompb::Exemplar { labels: labels(&[("a", "1"), ("a", "2")]), value: 1.0, timestamp: 7 },
    ];
    let mut bad = ts(&[("__name__", "bad")], &[(1, 1.0)]);
    let mut h = int_hist(30);
    h.positive_deltas.pop();
    bad.histograms = vec![h];
    // An invalid exemplar of a rejected series is counted with the series.
    bad.exemplars =
        vec![prompb::Exemplar { labels: labels(&[("", "x")]), value: 1.0, timestamp: 1 }];
    let b = prompb::WriteRequest {
        timeseries: vec![s, bad],
        metadata: vec![
            prompb::MetricMetadata {
                r#type: prompb::metric_metadata::MetricType::Counter as i32,
                metric_family_name: "http_requests".into(),
                help: "Requests.".into(),
                unit: "".into(),
            },
            prompb::MetricMetadata {
                r#type: 99,
                metric_family_name: "weird".into(),
                help: "BADUTF8!".into(),
                unit: "s".into(),
            },
        ],
    }
    .encode_to_vec();
    check_v1(
        &break_utf8(b),
        &d(),
        r#"
h{} H@10[schema=1 count=12.0 sum=18.4 zt=1e-128 zc=2.0 hint=2 +[(0, 2), (1, 2)][1.0, 2.0, 1.0, 1.0] -[(0, 2)][1.0, 2.0] cv=[]] H@20[schema=-53 count=3.5 sum=-1.0 zt=0.0 zc=0.5 hint=3 +[(-2, 2)][1.5, 1.5] -[][] cv=[0.1, 1.0]] ex{trace_id="abc"}0.5@9 ex{}1.5@8
meta http_requests counter "Requests." ""
invalid exemplar dropped: duplicate label name "a" for series h{} (dropped 0/0/1)
invalid native histogram positive spans describe 4 buckets but 3 are given for series bad{} (dropped 1/1/1)
invalid metadata help is not valid UTF-8 for series weird{} (dropped 0/0/0)
"#,
    );
}

/// Appends one unknown field of every wire type.
fn unknown_fields(b: &mut Vec<u8>) {
    b.extend_from_slice(&[0xf8, 0x01, 0x96, 0x01]); // field 31 varint
    b.extend_from_slice(&[0xf9, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]); // field 31 i64
    b.extend_from_slice(&[0xfa, 0x01, 3, 0xff, 0x00, 0x01]); // field 31 len, not UTF-8
    b.extend_from_slice(&[0xfd, 0x01, 1, 2, 3, 4]); // field 31 i32
    b.extend_from_slice(&[0xfb, 0x01, 0x08, 0x01, 0x13, 0x14, 0xfc, 0x01]); // group 31 {1:1, group 2{}}
}

/// Wraps `inner` as a length-delimited field.
fn field(num: u8, inner: &[u8]) -> Vec<u8> {
    let mut b = vec![num << 3 | 2];
    prost::encoding::encode_varint(inner.len() as u64, &mut b);
    b.extend_from_slice(inner);
    b
}

#[test]
fn v1_skips_unknown_fields_everywhere() {
    let mut sample = prompb::Sample { value: 2.0, timestamp: 3 }.encode_to_vec();
    unknown_fields(&mut sample);
    let mut label = prompb::Label { name: "__name__".into(), value: "m".into() }.encode_to_vec();
    unknown_fields(&mut label);
    let mut series = [field(1, &label), field(2, &sample)].concat();
    unknown_fields(&mut series);
    let mut b = field(1, &series);
    unknown_fields(&mut b);
    b.extend_from_slice(&[0x12, 0x00]); // reserved field 2 (Cortex' source), empty
    check_v1(&b, &d(), "m{} 2.0@3");
}

#[test]
fn v1_packed_and_unpacked_repeated_scalars() {
    // Histogram with unpacked positive_deltas (field 12, zigzag varints 2, -1) and one span.
    let span = field(1, &[0x10, 0x02]); // BucketSpan{length: 2} as field 1... re-tagged below
    let mut h = vec![0x08, 0x03]; // count_int 3
    h.extend_from_slice(&[0x5a]); // field 11, LEN
    h.extend_from_slice(&span[1..]);
    h.extend_from_slice(&[0x60, 0x04, 0x60, 0x01]); // field 12 varint 4 (=2), 1 (=-1)
    let series = [
        field(1, &prompb::Label { name: "__name__".into(), value: "h".into() }.encode_to_vec()),
        field(4, &h),
    ]
    .concat();
    check_v1(
        &field(1, &series),
        &d(),
        "h{} H@0[schema=0 count=3.0 sum=0.0 zt=0.0 zc=0.0 hint=0 +[(0, 2)][2.0, 1.0] -[][] cv=[]]",
    );
}

#[test]
fn v1_malformed_is_a_hard_error() {
    let good = req(vec![ts(&[("__name__", "m")], &[(1, 1.0)])]);
    check_v1(
        &good[..good.len() - 1],
        &d(),
        "error: malformed protobuf in WriteRequest at byte 2: length 28 runs past the end (27 bytes left)",
    );
    check_v1(
        &[0x08, 0x01],
        &d(),
        "error: malformed protobuf in WriteRequest at byte 1: field 1 has wire type 0, expected 2",
    );
    // A sample whose value is sent as a varint.
    check_v1(
        &field(1, &field(2, &[0x08, 0x01])),
        &d(),
        "error: malformed protobuf in Sample at byte 5: field 1 has wire type 0, expected 1",
    );
    check_v1(
        &[0x0a, 0x01, 0x12],
        &d(),
        "error: malformed protobuf in TimeSeries at byte 3: truncated varint",
    );
    check_v1(
        &[0x0f],
        &d(),
        "error: malformed protobuf in WriteRequest at byte 1: invalid wire type 7 for field 1",
    );
}

// ---- remote write 2.0 ----

fn symbols(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

fn ts2(refs: &[u32], samples: &[(i64, f64)]) -> pb2::TimeSeries {
    pb2::TimeSeries {
        labels_refs: refs.to_vec(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| pb2::Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn v2_symbols_samples_metadata() {
    let sym = symbols(&["", "__name__", "up", "job", "node", "help text", "seconds", "other"]);
    let mut a = ts2(&[1, 2, 3, 4], &[(1000, 1.0)]);
    a.metadata = Some(pb2::Metadata { r#type: 2, help_ref: 5, unit_ref: 6 });
    let mut b = ts2(&[3, 7, 1, 2], &[(2000, 0.0)]); // unsorted, same metric name
    b.metadata = Some(pb2::Metadata { r#type: 1, help_ref: 0, unit_ref: 0 });
    b.created_timestamp = 5;
    let c = ts2(&[1, 7, 3, 0], &[]); // empty value: the label is dropped
    let mut e = ts2(&[1, 7], &[]);
    e.exemplars = vec![
        pb2::Exemplar { labels_refs: vec![3, 4], value: 2.0, timestamp: 9 },
        pb2::Exemplar { labels_refs: vec![3], value: 2.0, timestamp: 9 },
    ];
    let mut h = ts2(&[1, 7], &[]);
    let hp = int_hist(10).encode_to_vec();
    h.histograms = vec![pb2::Histogram::decode(&hp[..]).unwrap()];
    let r = pb2::Request { symbols: sym, timeseries: vec![a, b, c, e, h] }.encode_to_vec();
    check_v2(
        &r,
        &d(),
        r#"
up{job="node"} 1.0@1000
up{job="other"} 0.0@2000
other{}
other{} ex{job="node"}2.0@9
other{} H@10[schema=1 count=12.0 sum=18.4 zt=1e-128 zc=2.0 hint=2 +[(0, 2), (1, 2)][1.0, 2.0, 1.0, 1.0] -[(0, 2)][1.0, 2.0] cv=[]]
meta up gauge "help text" "seconds"
invalid exemplar dropped: labels_refs has 1 entries, not (name, value) pairs for series other{} (dropped 0/0/1)
"#,
    );
}

#[test]
fn v2_validation_rules() {
    let sym = symbols(&["", "__name__", "m", "a", "BADUTF8!"]);
    let check = |refs: &[u32], expected: &str| {
        let r = pb2::Request { symbols: sym.clone(), timeseries: vec![ts2(refs, &[(1, 1.0)])] };
        check_v2(&break_utf8(r.encode_to_vec()), &d(), expected);
    };
    check(&[1, 2, 3, 2], r#"m{a="m"} 1.0@1"#);
    check(
        &[3, 2],
        r#"invalid series has no metric name (__name__ label) for series {a="m"} (dropped 1/0/0)"#,
    );
    check(
        &[1, 2, 3],
        "invalid labels_refs has 3 entries, not (name, value) pairs for series {} (dropped 1/0/0)",
    );
    check(
        &[1, 2, 3, 9],
        r#"invalid symbol reference 9 is out of range of the 5-entry symbols table for series m{} (dropped 1/0/0)"#,
    );
    check(&[1, 2, 0, 2], r#"invalid label name is empty for series m{="m"} (dropped 1/0/0)"#);
    check(
        &[1, 2, 3, 2, 3, 1],
        r#"invalid duplicate label name "a" for series m{a="m", a="__name__"} (dropped 1/0/0)"#,
    );
    check(
        &[1, 2, 3, 4],
        r#"invalid label value is not valid UTF-8 for series m{a="bad��!!!"} (dropped 1/0/0)"#,
    );
}

#[test]
fn v2_symbols_after_series_and_unpacked_refs() {
    // TimeSeries{labels_refs unpacked: 1, 2; sample} before the symbols.
    let mut series = vec![0x08, 0x01, 0x08, 0x02];
    series.extend(field(2, &pb2::Sample { value: 4.0, timestamp: 7 }.encode_to_vec()));
    unknown_fields(&mut series);
    let mut b = field(5, &series);
    for s in ["", "__name__", "late"] {
        b.extend(field(4, s.as_bytes()));
    }
    unknown_fields(&mut b);
    check_v2(&b, &d(), "late{} 4.0@7");
}

#[test]
fn v2_rejects_v1_and_malformed() {
    let v1 = req(vec![ts(&[("__name__", "m")], &[(1, 1.0)])]);
    check_v2(
        &v1,
        &d(),
        "error: remote write 2.0 request carries field 1, reserved for remote write 1.0 (was the request sent with the wrong Content-Type?)",
    );
    check_v2(
        &[0x22, 0x05, b'a'],
        &d(),
        "error: malformed protobuf in Request at byte 2: length 5 runs past the end (1 bytes left)",
    );
    check_v2(
        &field(5, &[0x0a, 0x01, 0x80]),
        &d(),
        "error: malformed protobuf in TimeSeries at byte 5: truncated varint",
    );
    let r = pb2::Request {
        symbols: symbols(&["", "__name__", "m"]),
        timeseries: vec![ts2(&[1, 2], &[(1, 1.0), (2, 2.0)])],
    };
    check_v2(
        &r.encode_to_vec(),
        &DecodeLimits { max_samples_per_request: 1, ..d() },
        "error: request exceeds limits.max_samples_per_request=1",
    );
}

#[test]
fn interning_shares_strings_across_requests() {
    let interner = Interner::new();
    let b = req(vec![ts(&[("__name__", "up"), ("job", "a")], &[(1, 1.0)])]);
    let x = decode_write_v1(&b, &interner, &d()).unwrap();
    let y = decode_write_v1(&b, &interner, &d()).unwrap();
    let (lx, ly) = (&x.batch.series[0].labels, &y.batch.series[0].labels);
    assert!(model::LabelStr::ptr_eq(&lx.as_slice()[0].value, &ly.as_slice()[0].value));
    assert_eq!(interner.len(), 4);
    assert_eq!(x.received, DecodeCounts { series: 1, samples: 1, ..Default::default() });
}

#[test]
fn content_types_and_snappy_entry_point() {
    let f = WriteProtocol::from_content_type;
    assert_eq!(f(""), Ok(WriteProtocol::V1));
    assert_eq!(f("application/x-protobuf"), Ok(WriteProtocol::V1));
    assert_eq!(f("application/x-protobuf;proto=prometheus.WriteRequest"), Ok(WriteProtocol::V1));
    assert_eq!(
        f("application/x-protobuf; proto=io.prometheus.write.v2.Request"),
        Ok(WriteProtocol::V2)
    );
    for p in [WriteProtocol::V1, WriteProtocol::V2] {
        assert_eq!(f(p.content_type()), Ok(p));
    }
    assert!(matches!(
        f("application/x-protobuf;proto=foo.Bar"),
        Err(crate::WireError::UnsupportedContentType(_))
    ));
    assert!(matches!(f("application/json"), Err(crate::WireError::UnsupportedContentType(_))));

    let body = crate::snappy::compress(&req(vec![ts(&[("__name__", "m")], &[(1, 1.0)])]));
    let got = decode_write(WriteProtocol::V1, &body, 1 << 20, &Interner::new(), &d()).unwrap();
    assert_eq!(render(&got), "m{} 1.0@1\n");
    assert!(matches!(
        decode_write(WriteProtocol::V1, &body, 4, &Interner::new(), &d()),
        Err(crate::WireError::SnappyTooLarge { max: 4, .. })
    ));
}

#[test]
fn rejections_are_counted_and_details_capped() {
    let mut series: Vec<prompb::TimeSeries> =
        (0..MAX_INVALID_DETAILS + 5).map(|_| ts(&[("job", "x")], &[(1, 1.0), (2, 2.0)])).collect();
    let mut with_bad_exemplar = ts(&[("__name__", "ok")], &[(1, 1.0)]);
    with_bad_exemplar.exemplars =
        vec![prompb::Exemplar { labels: labels(&[("", "v")]), value: 1.0, timestamp: 1 }];
    series.push(with_bad_exemplar);
    let mut b = req(series);
    b.extend(field(
        3,
        &prompb::MetricMetadata { help: "BADUTF8!".into(), ..Default::default() }.encode_to_vec(),
    ));
    let got = decode_write_v1(&break_utf8(b), &Interner::new(), &d()).unwrap();
    assert_eq!(got.invalid.len(), MAX_INVALID_DETAILS);
    assert_eq!(
        got.received,
        DecodeCounts { series: 1006, samples: 2011, histograms: 0, exemplars: 1, metadata: 1 }
    );
    assert_eq!(
        got.rejected,
        DecodeCounts { series: 1005, samples: 2010, histograms: 0, exemplars: 1, metadata: 1 }
    );
    assert_eq!(got.batch.series.len(), 1);
}

// ---- the series cache ----

#[test]
fn series_cache_resolves_only_identical_canonical_bytes() {
    let (cache, store) = (SeriesCache::new(), FakeStore::default());
    let dec = |b: &[u8]| {
        let d = decode_write_v1_cached(b, &Interner::new(), &d(), Some(&cache)).unwrap();
        let text = store.apply(&cache, &d);
        format!("{}\n{text}", keys(&d))
    };
    let sorted = [("__name__", "m"), ("a", "1"), ("b", "2")];
    let first = req(vec![ts(&sorted, &[(1, 1.0)])]);
    assert_eq!(dec(&first), "miss\nm{a=\"1\", b=\"2\"} 1.0@1\n");
    assert_eq!(cache.len(), 1);
    // Swapped values are another series; label order and an empty-valued label change the raw
    // bytes but not the series: those are not canonical, so they are never cached.
    let b = req(vec![
        ts(&sorted, &[(2, 2.0)]),
        ts(&[("__name__", "m"), ("a", "2"), ("b", "1")], &[(2, 3.0)]),
        ts(&[("b", "2"), ("__name__", "m"), ("a", "1")], &[(2, 4.0)]),
        ts(&[("__name__", "m"), ("a", "1"), ("b", "2"), ("c", "")], &[(2, 5.0)]),
        ts(&[("__name__", "m"), ("a", "1")], &[(2, 6.0)]),
    ]);
    let want = r#"hit miss none none miss
m{a="1", b="2"} 2.0@2
m{a="2", b="1"} 3.0@2
m{a="1", b="2"} 4.0@2
m{a="1", b="2"} 5.0@2
m{a="1"} 6.0@2
"#;
    assert_eq!(dec(&b), want);
    assert_eq!(cache.len(), 3);
    let want_again = want.replacen("hit miss none none miss", "hit hit none none hit", 1);
    assert_eq!(dec(&b), want_again);
    // A 1.0 hit carries only the handle: its labels are left to storage to read from it.
    let d1 = decode_write_v1_cached(&first, &Interner::new(), &d(), Some(&cache)).unwrap();
    let w = &d1.batch.series[0];
    assert!(matches!(w.key, SeriesKey::Hit(_)) && w.labels.is_empty(), "{w:?}");

    // Remote write 2.0 shares the entries: its resolved pairs are keyed like 1.0's fields.
    let syms = symbols(&["", "__name__", "m", "a", "1", "b", "2"]);
    let b2 =
        pb2::Request { symbols: syms, timeseries: vec![ts2(&[1, 2, 3, 4, 5, 6], &[(3, 7.0)])] }
            .encode_to_vec();
    let d2 = decode_write_v2_cached(&b2, &Interner::new(), &d(), Some(&cache)).unwrap();
    assert_eq!((keys(&d2), render(&d2)), ("hit".into(), "m{a=\"1\", b=\"2\"} 7.0@3\n".into()));

    // A series dropped by storage is never resolved to its old handle again.
    store.drop_series(&Labels::from_pairs(sorted).unwrap());
    assert_eq!(dec(&first), "miss\nm{a=\"1\", b=\"2\"} 1.0@1\n");
    assert_eq!(dec(&first), "hit\nm{a=\"1\", b=\"2\"} 1.0@1\n", "re-cached");
}

#[test]
fn series_cache_hits_only_on_the_full_128_bit_identity() {
    // Another series planted in the same bucket as these exact bytes (equal low 64 bits of the
    // identity, other high 64, as a 64-bit hash collision would be): not a hit, the bytes are
    // decoded, and the second series stays on the slow path (its Miss never displaces the
    // live entry) request after request.
    let (cache, store) = (SeriesCache::new(), FakeStore::default());
    let mut raw = Vec::new();
    for (n, v) in [("__name__", "m"), ("a", "1")] {
        super::common::push_canonical(&mut raw, n.as_bytes(), v.as_bytes());
    }
    let other = Labels::from_pairs([("__name__", "m"), ("a", "2")]).unwrap();
    assert!(cache.insert(cache.identity(&raw) ^ (1 << 64), store.get(&other)));
    let b = req(vec![ts(&[("__name__", "m"), ("a", "1")], &[(1, 1.0)])]);
    for _ in 0..2 {
        let d = decode_write_v1_cached(&b, &Interner::new(), &d(), Some(&cache)).unwrap();
        let text = store.apply(&cache, &d);
        assert_eq!((keys(&d), text), ("miss".into(), "m{a=\"1\"} 1.0@1\n".into()));
        assert_eq!(d.cache_hits, 0);
    }
    assert_eq!(cache.len(), 1);
    // Under the full identity the cache answers with what it holds, without reading labels:
    // the rule is "equal 128-bit seeded identity means equal bytes" (ARCHITECTURE.md argues it).
    let planted = store.get(&other);
    let fresh = SeriesCache::new();
    fresh.insert(fresh.identity(&raw), planted);
    let d = decode_write_v1_cached(&b, &Interner::new(), &d(), Some(&fresh)).unwrap();
    assert_eq!((keys(&d), d.cache_hits), ("hit".into(), 1));
}

#[test]
fn series_cache_never_holds_a_rejected_series() {
    let (cache, store) = (SeriesCache::new(), FakeStore::default());
    let bad = req(vec![
        ts(&[("__name__", "m"), ("a", "1"), ("a", "2")], &[(1, 1.0)]),
        ts(&[("a", "1")], &[(1, 1.0)]),
    ]);
    for _ in 0..2 {
        let d = decode_write_v1_cached(&bad, &Interner::new(), &d(), Some(&cache)).unwrap();
        store.apply(&cache, &d);
        assert_eq!(d.batch.series.len(), 0);
        assert_eq!(d.rejected.series, 2, "rejected again when re-sent");
    }
    assert_eq!(cache.len(), 0);
    // A valid series whose histogram is invalid is rejected even when its labels are cached.
    let good = ts(&[("__name__", "h")], &[]);
    let first =
        decode_write_v1_cached(&req(vec![good.clone()]), &Interner::new(), &d(), Some(&cache));
    store.apply(&cache, &first.unwrap());
    assert_eq!(cache.len(), 1);
    let mut h = int_hist(5);
    h.positive_spans.clear();
    let with_bad_hist = prompb::TimeSeries { histograms: vec![h], ..good };
    let d = decode_write_v1_cached(&req(vec![with_bad_hist]), &Interner::new(), &d(), Some(&cache))
        .unwrap();
    assert_eq!((d.batch.series.len(), d.rejected.series), (0, 1));
}

#[test]
fn canonical_bytes_are_exactly_the_sorted_encoding() {
    let l = Labels::from_pairs([("__name__", "m"), ("a", "x".repeat(200).as_str())]).unwrap();
    let mut raw = Vec::new();
    for x in l.iter() {
        super::common::push_canonical(&mut raw, x.name.as_bytes(), x.value.as_bytes());
    }
    // What prost writes for the same labels, multi-byte lengths included.
    assert_eq!(raw, {
        let t = prompb::TimeSeries {
            labels: labels(&[("__name__", "m"), ("a", &"x".repeat(200))]),
            ..Default::default()
        };
        t.encode_to_vec()
    });
    assert!(super::common::is_canonical(&raw, &l));
    assert!(!super::common::is_canonical(&raw[..raw.len() - 1], &l));
    let mut longer = raw.clone();
    longer.push(0);
    assert!(!super::common::is_canonical(&longer, &l));
    assert!(!super::common::is_canonical(&raw, &l.with("b", "1")));
    assert!(super::common::is_canonical(&[], &Labels::empty()));
}

/// The batched lookup (`get_many` after the walk) keeps the batch in request order when
/// misses between hits are rejected: the same series, rejections and counts as without a
/// cache, on the pass that fills the cache and on the one that hits it.
#[test]
fn batched_lookups_keep_order_around_rejected_misses() {
    let (cache, store) = (SeriesCache::new(), FakeStore::default());
    let b = req(vec![
        ts(&[("__name__", "a")], &[(1, 1.0)]),
        ts(&[("__name__", "m"), ("x", "1"), ("x", "2")], &[(1, 2.0)]),
        ts(&[("__name__", "c"), ("z", "9")], &[(1, 3.0), (2, 4.0)]),
        ts(&[("y", "1")], &[(1, 5.0)]),
        ts(&[("__name__", "a")], &[(2, 6.0)]),
        ts(&[("__name__", "e")], &[(1, 7.0)]),
    ]);
    let plain = render(&decode_write_v1(&b, &Interner::new(), &d()).unwrap());
    for (pass, want) in [(0, "miss miss miss miss"), (1, "hit hit hit hit")] {
        let got = decode_write_v1_cached(&b, &Interner::new(), &d(), Some(&cache)).unwrap();
        assert_eq!(keys(&got), want, "pass {pass}");
        assert_eq!(got.rejected.series, 2);
        assert_eq!(got.cache_hits, if pass == 0 { 0 } else { 4 });
        assert_eq!(store.apply(&cache, &got), plain, "pass {pass}");
    }
    assert_eq!(cache.len(), 3, "a, c and e");
}
