//! Round trips through the encoders: a random valid `WriteBatch` encoded as remote write 1.0,
//! 2.0 or Prometheus text decodes back to itself (up to what each format can carry).

use std::collections::BTreeMap;

use model::{
    Exemplar, FloatHistogram, Interner, Labels, MetricMetadata, MetricType, Sample, SeriesWrite,
    Span, WriteBatch,
};
use proptest::prelude::*;
use wire::{
    DecodeLimits, TextFormat, TextOptions, decode_write_v1, decode_write_v2, encode_write_v1,
    encode_write_v2, parse_text, write_text,
};

fn labels(name: String, extra: BTreeMap<String, String>) -> Labels {
    Labels::from_pairs(extra.into_iter().chain([("__name__".to_string(), name)])).unwrap()
}

/// Any float but -0: proto3 (prost, like Prometheus' gogo code) omits a field equal to 0.0,
/// so -0 arrives as +0.
fn float() -> impl Strategy<Value = f64> {
    any::<f64>().prop_map(|v| if v == 0.0 { 0.0 } else { v })
}

fn histogram() -> impl Strategy<Value = FloatHistogram> {
    (any::<bool>(), -4i32..9, 0u32..4, float(), 0u8..4).prop_map(|(neg, schema, n, sum, hint)| {
        let buckets: Vec<f64> = (0..n).map(|i| f64::from(i) + 0.5).collect();
        let spans = vec![Span { offset: -1, length: n }];
        FloatHistogram {
            counter_reset_hint: hint,
            schema,
            zero_threshold: 1e-3,
            zero_count: 2.0,
            count: buckets.iter().sum::<f64>() + 2.0,
            sum,
            negative_spans: if neg { spans.clone() } else { vec![] },
            negative_buckets: if neg { buckets.clone() } else { vec![] },
            positive_spans: spans,
            positive_buckets: buckets,
            custom_values: vec![],
        }
    })
}

/// A batch of distinct series (names m0, m1, ...) with metadata for some of them.
fn batch(text_only: bool) -> impl Strategy<Value = WriteBatch> {
    let kinds = if text_only {
        vec![MetricType::Unknown, MetricType::Counter, MetricType::Gauge, MetricType::Summary]
    } else {
        vec![
            MetricType::Counter,
            MetricType::GaugeHistogram,
            MetricType::Info,
            MetricType::StateSet,
        ]
    };
    let value = if text_only {
        any::<f64>().prop_map(|v| if v.is_nan() { f64::NAN } else { v }).boxed()
    } else {
        float().boxed()
    };
    let series = (
        prop::collection::btree_map("[a-z][a-z0-9_]{0,4}", "\\PC{1,6}", 0..4),
        prop::collection::vec((any::<i64>(), value), 0..3),
        prop::collection::vec((any::<i64>(), histogram()), 0..2),
        prop::collection::vec((any::<i64>(), float(), "[a-z]{1,4}"), 0..2),
        prop::option::of((prop::sample::select(kinds), "\\PC{0,8}", "[a-z]{0,3}")),
    );
    prop::collection::vec(series, 0..5).prop_map(move |v| {
        let mut b = WriteBatch::default();
        for (i, (extra, samples, hs, exs, meta)) in v.into_iter().enumerate() {
            let name = format!("m{i}");
            b.series.push(SeriesWrite {
                labels: labels(name.clone(), extra),
                samples: samples.into_iter().map(|(t, v)| Sample { t, v }).collect(),
                histograms: if text_only { vec![] } else { hs },
                exemplars: if text_only {
                    vec![]
                } else {
                    exs.into_iter()
                        .map(|(t, v, id)| Exemplar {
                            labels: Labels::from_pairs([("trace_id", id)]).unwrap(),
                            t,
                            v,
                        })
                        .collect()
                },
                ..Default::default()
            });
            if let Some((kind, help, unit)) = meta {
                let unit = if text_only { String::new() } else { unit };
                b.metadata.push(MetricMetadata { metric_family: name, kind, help, unit });
            }
        }
        b
    })
}

fn assert_same(got: &WriteBatch, want: &WriteBatch) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.series.len(), want.series.len());
    for (g, w) in got.series.iter().zip(&want.series) {
        prop_assert_eq!(&g.labels, &w.labels);
        prop_assert_eq!(&g.samples, &w.samples);
        prop_assert_eq!(g.histograms.len(), w.histograms.len());
        for ((gt, gh), (wt, wh)) in g.histograms.iter().zip(&w.histograms) {
            prop_assert_eq!(gt, wt);
            // Compare bit for bit (sums may be NaN).
            prop_assert_eq!(format!("{gh:?}"), format!("{wh:?}"));
        }
        prop_assert_eq!(g.exemplars.len(), w.exemplars.len());
        for (ge, we) in g.exemplars.iter().zip(&w.exemplars) {
            prop_assert_eq!((&ge.labels, ge.t, ge.v.to_bits()), (&we.labels, we.t, we.v.to_bits()));
        }
    }
    let mut gm = got.metadata.clone();
    let mut wm = want.metadata.clone();
    gm.sort_by(|a, b| a.metric_family.cmp(&b.metric_family));
    wm.sort_by(|a, b| a.metric_family.cmp(&b.metric_family));
    prop_assert_eq!(gm, wm);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn remote_write_v1(b in batch(false)) {
        let d = decode_write_v1(&encode_write_v1(&b), &Interner::new(), &DecodeLimits::default()).unwrap();
        prop_assert!(d.invalid.is_empty());
        assert_same(&d.batch, &b)?;
    }

    #[test]
    fn remote_write_v2(b in batch(false)) {
        let d = decode_write_v2(&encode_write_v2(&b), &Interner::new(), &DecodeLimits::default()).unwrap();
        prop_assert!(d.invalid.is_empty());
        // 2.0 carries metadata per series; only series' families come back.
        assert_same(&d.batch, &b)?;
    }

    #[test]
    fn prometheus_text(b in batch(true)) {
        let mut text = String::new();
        prop_assert_eq!(write_text(&b, &mut text), 0);
        let opts = TextOptions::new(TextFormat::Prometheus, 0);
        let got = parse_text(text.as_bytes(), &opts, &Interner::new()).unwrap();
        // Series without samples do not appear in text.
        let mut want = b.clone();
        want.series.retain(|s| !s.samples.is_empty());
        assert_same(&got, &want)?;
    }
}
