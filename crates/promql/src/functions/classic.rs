//! `histogram_quantile` and `histogram_fraction` over classic `le` buckets (and the
//! dispatch of `histogram_quantile` to native histograms).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use model::{FloatHistogram, Labels, METRIC_NAME};

use crate::error::Result;
use crate::eval::{Elem, Evaluator};
use crate::float::{almost_equal, format_float, parse_go_float};
use crate::histogram;
use crate::value::Annotations;

pub(crate) struct Bucket {
    upper: f64,
    count: f64,
}

pub(crate) fn histogram_quantile(
    ev: &mut Evaluator<'_>,
    q: f64,
    v: Vec<Elem>,
    ts: i64,
) -> Result<Vec<Elem>> {
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        ev.annotations
            .warn(format!("quantile value should be between 0 and 1, got {}", format_float(q)));
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<Bucket>)> = Vec::new();
    let mut natives: Vec<(Labels, Arc<FloatHistogram>)> = Vec::new();
    for e in v {
        if let Some(h) = e.h {
            natives.push((e.labels, h));
            continue;
        }
        let le = e.labels.get("le").unwrap_or("");
        let Some(upper) = parse_go_float(le) else {
            ev.annotations.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {:?}",
                e.labels.metric_name().unwrap_or("")
            ));
            continue;
        };
        let key = e.labels.without(&["le"]);
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(Bucket { upper, count: e.v });
    }
    let mut out = Vec::new();
    let mut conflicts = Vec::new();
    for (labels, h) in natives {
        let name = labels.metric_name().unwrap_or("").to_string();
        if index.contains_key(&labels) {
            ev.annotations.warn(format!(
                "vector contains a mix of classic and native histograms for metric name {name:?}"
            ));
            conflicts.push(labels);
            continue;
        }
        let v = histogram::quantile(q, &h);
        if h.sum.is_nan() && h.count > 0.0 {
            let how = if v.is_nan() { "NaN" } else { "skewed higher" };
            ev.annotations.info(format!(
                "input to histogram_quantile has NaN observations, result is {how} for metric name {name:?}"
            ));
        }
        out.push(Elem::derived(&labels, v, ts, ev.meta()));
    }
    for (labels, mut buckets) in groups {
        if conflicts.contains(&labels) {
            continue;
        }
        let (v, forced) = bucket_quantile(q, &mut buckets);
        if forced {
            ev.annotations.info(format!(
                "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {:?}",
                labels.metric_name().unwrap_or("")
            ));
        }
        out.push(Elem::float(labels.without(&[METRIC_NAME]), v, ts));
    }
    Ok(out)
}

/// `histogram_fraction` over classic `le` buckets, grouped like `histogram_quantile`.
pub(crate) fn classic_fraction(
    annos: &mut Annotations,
    lower: f64,
    upper: f64,
    v: &[Elem],
    ts: i64,
) -> Vec<Elem> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<Bucket>)> = Vec::new();
    let natives: HashSet<&Labels> = v.iter().filter(|e| e.h.is_some()).map(|e| &e.labels).collect();
    for e in v.iter().filter(|e| e.h.is_none()) {
        let Some(le) = e.labels.get("le") else { continue };
        let Some(upper) = parse_go_float(le) else {
            annos.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {:?}",
                e.labels.metric_name().unwrap_or("")
            ));
            continue;
        };
        let key = e.labels.without(&["le"]);
        if natives.contains(&key) {
            continue;
        }
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(Bucket { upper, count: e.v });
    }
    let mut out = Vec::new();
    for (labels, mut buckets) in groups {
        buckets.sort_by(|a, b| a.upper.partial_cmp(&b.upper).unwrap_or(std::cmp::Ordering::Equal));
        let v = bucket_fraction(lower, upper, &buckets);
        out.push(Elem::float(labels.without(&[METRIC_NAME]), v, ts));
    }
    out
}

pub(crate) fn bucket_fraction(lower: f64, upper: f64, sorted: &[Bucket]) -> f64 {
    if sorted.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return f64::NAN;
    }
    let mut buckets: Vec<Bucket> = Vec::with_capacity(sorted.len());
    for b in sorted {
        match buckets.last_mut() {
            Some(l) if l.upper == b.upper => l.count += b.count,
            _ => buckets.push(Bucket { upper: b.upper, count: b.count }),
        }
    }
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, b) in buckets.iter().enumerate() {
        let lb = if i > 0 { buckets[i - 1].upper } else { f64::NEG_INFINITY };
        let ub = b.upper;
        let interp = |v: f64| rank + (b.count - rank) * (v - lb) / (ub - lb);
        if !lower_set && lb >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lb >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lb < lower && ub > lower {
            lower_rank = interp(lower);
            lower_set = true;
        }
        if !upper_set && lb < upper && ub > upper {
            upper_rank = interp(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.upper.partial_cmp(&b.upper).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return (f64::NAN, false);
    }
    // Coalesce buckets with the same upper bound.
    let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.drain(..) {
        match merged.last_mut() {
            Some(l) if l.upper == b.upper => l.count += b.count,
            _ => merged.push(b),
        }
    }
    let buckets = &mut merged;
    let mut forced = false;
    let mut prev = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) {
            b.count = prev;
            continue;
        }
        if curr < prev {
            b.count = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    if buckets.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let n = buckets.len();
    let b = buckets[..n - 1].partition_point(|x| x.count < rank);
    if b == n - 1 {
        return (buckets[n - 2].upper, forced);
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return (buckets[0].upper, forced);
    }
    let mut start = 0.0;
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}
