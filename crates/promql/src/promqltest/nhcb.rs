//! `load_with_nhcb`: converts classic histogram series (`_bucket` with `le`, `_count`, `_sum`)
//! into native histograms with custom buckets, as Prometheus' test loader does.

use std::collections::HashMap;

use model::{FloatHistogram, Labels, METRIC_NAME, Span};

use super::parse::{SeqValue, SeriesDef};
use crate::float::parse_go_float;
use crate::histogram::CUSTOM_SCHEMA;

#[derive(Default)]
struct Group<'a> {
    buckets: Vec<(f64, &'a [SeqValue])>,
    count: Option<&'a [SeqValue]>,
    sum: Option<&'a [SeqValue]>,
}

fn value_at(vals: &[SeqValue], i: usize) -> Option<f64> {
    match vals.get(i) {
        Some(SeqValue::Value(v)) => Some(*v),
        _ => None,
    }
}

/// The native histogram series made from the classic histograms among `series`.
pub fn convert(series: &[SeriesDef]) -> Vec<SeriesDef> {
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Group<'_>> = HashMap::new();
    for s in series {
        let Some(name) = s.labels.metric_name() else { continue };
        let (base, kind) = if let Some(b) = name.strip_suffix("_bucket") {
            (b, 0)
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, 1)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (b, 2)
        } else {
            continue;
        };
        let key = s.labels.without(&["le"]).with(METRIC_NAME, base);
        let g = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Group::default()
        });
        match kind {
            0 => {
                let Some(le) = s.labels.get("le").and_then(parse_go_float) else { continue };
                g.buckets.push((le, &s.values));
            }
            1 => g.count = Some(&s.values),
            _ => g.sum = Some(&s.values),
        }
    }
    let mut out = Vec::new();
    for key in order {
        let Some(g) = groups.get_mut(&key) else { continue };
        if g.buckets.is_empty() {
            continue;
        }
        g.buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        g.buckets.dedup_by(|a, b| a.0 == b.0);
        let custom_values: Vec<f64> =
            g.buckets.iter().map(|b| b.0).filter(|le| le.is_finite()).collect();
        let len = g.buckets.iter().map(|b| b.1.len()).max().unwrap_or(0);
        let mut values = Vec::with_capacity(len);
        for i in 0..len {
            let cumulative: Option<Vec<f64>> = g.buckets.iter().map(|b| value_at(b.1, i)).collect();
            let Some(cumulative) = cumulative else {
                values.push(SeqValue::Omitted);
                continue;
            };
            let mut buckets = Vec::with_capacity(cumulative.len());
            let mut prev = 0.0;
            for c in &cumulative {
                buckets.push(c - prev);
                prev = *c;
            }
            let count = g.count.and_then(|c| value_at(c, i)).unwrap_or(prev);
            let sum = g.sum.and_then(|s| value_at(s, i)).unwrap_or(0.0);
            let h = FloatHistogram {
                schema: CUSTOM_SCHEMA,
                count,
                sum,
                positive_spans: vec![Span { offset: 0, length: buckets.len() as u32 }],
                positive_buckets: buckets,
                custom_values: custom_values.clone(),
                ..FloatHistogram::default()
            };
            values.push(SeqValue::Histogram(Box::new(h)));
        }
        out.push(SeriesDef { labels: key, values });
    }
    out
}
