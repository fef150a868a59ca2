//! Native histogram math: bucket boundaries, arithmetic across schemas and zero thresholds,
//! counter-reset detection, and the quantile, fraction and standard-deviation estimators.

use std::collections::BTreeMap;

use model::{FloatHistogram, Span};

/// `FloatHistogram::counter_reset_hint` values, as Prometheus numbers them.
pub const HINT_UNKNOWN: u8 = 0;
pub const HINT_RESET: u8 = 1;
pub const HINT_NOT_RESET: u8 = 2;
pub const HINT_GAUGE: u8 = 3;

/// The schema of histograms with custom bucket bounds (classic histograms converted).
pub const CUSTOM_SCHEMA: i32 = -53;

pub fn uses_custom(h: &FloatHistogram) -> bool {
    h.schema == CUSTOM_SCHEMA
}

/// Why two histograms cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incompatible {
    /// One has exponential buckets, the other custom ones.
    MixedSchemas,
    /// Both have custom buckets, with different bounds.
    CustomBounds,
}

/// The warning text for two histograms that cannot be combined.
pub fn incompatible_msg(e: Incompatible, name: &str) -> String {
    match e {
        Incompatible::MixedSchemas => format!(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"
        ),
        Incompatible::CustomBounds => {
            format!(
                "vector contains histograms with incompatible custom buckets for metric name {name:?}"
            )
        }
    }
}

/// Expands spans + absolute bucket counts into `(index, count)`.
pub fn expand(spans: &[Span], buckets: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(buckets.len());
    let mut idx: i32 = 0;
    let mut b = 0;
    for (i, s) in spans.iter().enumerate() {
        idx = if i == 0 { s.offset } else { idx.saturating_add(s.offset) };
        for _ in 0..s.length {
            if let Some(&c) = buckets.get(b) {
                out.push((idx, c));
            }
            b += 1;
            idx = idx.saturating_add(1);
        }
    }
    out
}

/// Collapses `(index, count)` pairs (sorted, unique) into spans and buckets.
pub fn collapse(items: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut buckets = Vec::with_capacity(items.len());
    let mut next: Option<i32> = None;
    for &(i, c) in items {
        match next {
            Some(n) if n == i => {
                if let Some(last) = spans.last_mut() {
                    last.length += 1;
                }
            }
            Some(n) => spans.push(Span { offset: i - n, length: 1 }),
            None => spans.push(Span { offset: i, length: 1 }),
        }
        buckets.push(c);
        next = Some(i + 1);
    }
    (spans, buckets)
}

/// The upper bound of exponential bucket `idx` of `schema`.
pub fn bound(idx: i32, schema: i32) -> f64 {
    if schema <= 0 {
        let exp = i64::from(idx) << (-schema).min(62);
        if exp >= 1024 {
            return f64::MAX;
        }
        return 2f64.powi(exp.clamp(-1100, 1100) as i32);
    }
    let e = f64::from(idx) / f64::from(1u32 << schema.min(8));
    2f64.powf(e)
}

/// One bucket seen by the iterators: `(lower, upper]` with its count.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub count: f64,
}

/// All buckets from the lowest to the highest: negative, zero, positive (or custom).
pub fn all_buckets(h: &FloatHistogram) -> Vec<Bucket> {
    let mut out = Vec::new();
    if uses_custom(h) {
        for (i, c) in expand(&h.positive_spans, &h.positive_buckets) {
            let i = usize::try_from(i).unwrap_or(usize::MAX);
            let lower = if i == 0 {
                f64::NEG_INFINITY
            } else {
                h.custom_values.get(i - 1).copied().unwrap_or(f64::INFINITY)
            };
            let upper = h.custom_values.get(i).copied().unwrap_or(f64::INFINITY);
            out.push(Bucket { lower, upper, count: c });
        }
        return out;
    }
    for (i, c) in expand(&h.negative_spans, &h.negative_buckets).into_iter().rev() {
        out.push(Bucket { lower: -bound(i, h.schema), upper: -bound(i - 1, h.schema), count: c });
    }
    if h.zero_count > 0.0 || h.zero_threshold > 0.0 {
        out.push(Bucket { lower: -h.zero_threshold, upper: h.zero_threshold, count: h.zero_count });
    }
    for (i, c) in expand(&h.positive_spans, &h.positive_buckets) {
        out.push(Bucket { lower: bound(i - 1, h.schema), upper: bound(i, h.schema), count: c });
    }
    out
}

/// Buckets as index maps, for arithmetic.
struct Maps {
    pos: BTreeMap<i32, f64>,
    neg: BTreeMap<i32, f64>,
}

fn maps(h: &FloatHistogram) -> Maps {
    Maps {
        pos: expand(&h.positive_spans, &h.positive_buckets).into_iter().collect(),
        neg: expand(&h.negative_spans, &h.negative_buckets).into_iter().collect(),
    }
}

fn reduce(m: BTreeMap<i32, f64>, from: i32, to: i32) -> BTreeMap<i32, f64> {
    if from <= to {
        return m;
    }
    let shift = (from - to).min(31);
    let mut out = BTreeMap::new();
    for (i, c) in m {
        *out.entry(((i - 1) >> shift) + 1).or_insert(0.0) += c;
    }
    out
}

/// Moves buckets whose upper bound is within `zt` into the zero bucket; returns their count.
fn trim_into_zero(m: &mut BTreeMap<i32, f64>, schema: i32, zt: f64) -> f64 {
    let mut moved = 0.0;
    m.retain(|&i, c| {
        if bound(i, schema) <= zt {
            moved += *c;
            false
        } else {
            true
        }
    });
    moved
}

fn store(h: &mut FloatHistogram, m: Maps) {
    let pos: Vec<(i32, f64)> = m.pos.into_iter().collect();
    let neg: Vec<(i32, f64)> = m.neg.into_iter().collect();
    (h.positive_spans, h.positive_buckets) = collapse(&pos);
    (h.negative_spans, h.negative_buckets) = collapse(&neg);
}

/// A copy of `h` at the lower resolution `schema` (no-op for custom buckets).
pub fn to_schema(h: &FloatHistogram, schema: i32) -> FloatHistogram {
    if uses_custom(h) || schema >= h.schema {
        return h.clone();
    }
    let m = maps(h);
    let mut out = h.clone();
    let m = Maps { pos: reduce(m.pos, h.schema, schema), neg: reduce(m.neg, h.schema, schema) };
    out.schema = schema;
    store(&mut out, m);
    out
}

/// `a + sign * b`, reconciling schemas and zero thresholds as Prometheus does.
pub fn add(
    a: &FloatHistogram,
    b: &FloatHistogram,
    sign: f64,
) -> Result<FloatHistogram, Incompatible> {
    if uses_custom(a) != uses_custom(b) {
        return Err(Incompatible::MixedSchemas);
    }
    if uses_custom(a) {
        if a.custom_values != b.custom_values {
            return Err(Incompatible::CustomBounds);
        }
        let mut out = a.clone();
        let mut m = maps(a);
        for (i, c) in expand(&b.positive_spans, &b.positive_buckets) {
            *m.pos.entry(i).or_insert(0.0) += sign * c;
        }
        out.count += sign * b.count;
        out.sum += sign * b.sum;
        store(&mut out, m);
        return Ok(out);
    }
    let schema = a.schema.min(b.schema);
    let ma = maps(a);
    let mb = maps(b);
    let mut pa =
        Maps { pos: reduce(ma.pos, a.schema, schema), neg: reduce(ma.neg, a.schema, schema) };
    let mut pb =
        Maps { pos: reduce(mb.pos, b.schema, schema), neg: reduce(mb.neg, b.schema, schema) };
    let zt = a.zero_threshold.max(b.zero_threshold);
    let mut za = a.zero_count;
    let mut zb = b.zero_count;
    if a.zero_threshold < zt {
        za += trim_into_zero(&mut pa.pos, schema, zt) + trim_into_zero(&mut pa.neg, schema, zt);
    }
    if b.zero_threshold < zt {
        zb += trim_into_zero(&mut pb.pos, schema, zt) + trim_into_zero(&mut pb.neg, schema, zt);
    }
    for (i, c) in pb.pos {
        *pa.pos.entry(i).or_insert(0.0) += sign * c;
    }
    for (i, c) in pb.neg {
        *pa.neg.entry(i).or_insert(0.0) += sign * c;
    }
    let mut out = a.clone();
    out.schema = schema;
    out.zero_threshold = zt;
    out.zero_count = za + sign * zb;
    out.count = a.count + sign * b.count;
    out.sum = a.sum + sign * b.sum;
    store(&mut out, pa);
    Ok(out)
}

/// Every count and the sum multiplied by `f`.
pub fn scale(h: &FloatHistogram, f: f64) -> FloatHistogram {
    let mut out = h.clone();
    out.count *= f;
    out.sum *= f;
    out.zero_count *= f;
    out.positive_buckets.iter_mut().for_each(|c| *c *= f);
    out.negative_buckets.iter_mut().for_each(|c| *c *= f);
    out
}

/// Every count and the sum divided by `f`; division by zero drops all buckets, as in
/// Prometheus.
pub fn divide(h: &FloatHistogram, f: f64) -> FloatHistogram {
    let mut out = h.clone();
    out.count /= f;
    out.sum /= f;
    out.zero_count /= f;
    if f == 0.0 {
        out.positive_spans.clear();
        out.negative_spans.clear();
        out.positive_buckets.clear();
        out.negative_buckets.clear();
        return out;
    }
    out.positive_buckets.iter_mut().for_each(|c| *c /= f);
    out.negative_buckets.iter_mut().for_each(|c| *c /= f);
    out
}

/// Drops empty buckets.
pub fn compact(mut h: FloatHistogram) -> FloatHistogram {
    let m = maps(&h);
    let m = Maps {
        pos: m.pos.into_iter().filter(|(_, c)| *c != 0.0).collect(),
        neg: m.neg.into_iter().filter(|(_, c)| *c != 0.0).collect(),
    };
    store(&mut h, m);
    h
}

/// Whether `curr` follows a counter reset after `prev`.
pub fn detect_reset(curr: &FloatHistogram, prev: &FloatHistogram) -> bool {
    match curr.counter_reset_hint {
        HINT_RESET => return true,
        HINT_NOT_RESET | HINT_GAUGE => return false,
        _ => {}
    }
    if curr.count < prev.count {
        return true;
    }
    if uses_custom(curr) != uses_custom(prev) {
        return true;
    }
    if uses_custom(curr) {
        if curr.custom_values != prev.custom_values {
            return true;
        }
    } else if curr.schema > prev.schema || curr.zero_threshold < prev.zero_threshold {
        return true;
    }
    if curr.zero_count < prev.zero_count {
        return true;
    }
    let schema = curr.schema;
    let mp = maps(prev);
    let mc = maps(curr);
    let pp = reduce(mp.pos, prev.schema, schema);
    let pn = reduce(mp.neg, prev.schema, schema);
    let dropped = |p: &BTreeMap<i32, f64>, c: &BTreeMap<i32, f64>| {
        p.iter().any(|(i, pc)| c.get(i).copied().unwrap_or(0.0) < *pc)
    };
    dropped(&pp, &mc.pos) || dropped(&pn, &mc.neg)
}

/// Go's `%g` for the bucket notation of `FloatHistogram.String()`.
fn go_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// Prometheus' `FloatHistogram.String()`, used by `count_values` on histograms.
pub fn to_string(h: &FloatHistogram) -> String {
    let mut s = format!("{{count:{}, sum:{}", go_g(h.count), go_g(h.sum));
    for b in all_buckets(h) {
        if b.count == 0.0 {
            continue;
        }
        let zero = !uses_custom(h) && b.lower <= 0.0 && b.upper >= 0.0;
        let (open, close) = if zero {
            ('[', ']')
        } else if b.upper <= 0.0 && !uses_custom(h) {
            ('[', ')')
        } else {
            ('(', ']')
        };
        s.push_str(&format!(
            ", {open}{},{}{close}:{}",
            go_g(b.lower),
            go_g(b.upper),
            go_g(b.count)
        ));
    }
    s.push('}');
    s
}

/// Exact equality as PromQL's `==` between histograms sees it (empty buckets ignored).
pub fn equals(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let ca = compact(a.clone());
    let cb = compact(b.clone());
    ca.schema == cb.schema
        && ca.zero_threshold == cb.zero_threshold
        && ca.zero_count == cb.zero_count
        && ca.count == cb.count
        && (ca.sum == cb.sum || (ca.sum.is_nan() && cb.sum.is_nan()))
        && ca.custom_values == cb.custom_values
        && ca.positive_spans == cb.positive_spans
        && ca.negative_spans == cb.negative_spans
        && ca.positive_buckets == cb.positive_buckets
        && ca.negative_buckets == cb.negative_buckets
}

/// The φ-quantile estimated from a native histogram.
pub fn quantile(q: f64, h: &FloatHistogram) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let buckets = all_buckets(h);
    let forward = h.sum.is_nan() || q < 0.5;
    let rank = if forward { q * h.count } else { (1.0 - q) * h.count };
    let mut count = 0.0;
    let mut bucket = Bucket { lower: 0.0, upper: 0.0, count: 0.0 };
    let iter: Box<dyn Iterator<Item = &Bucket>> =
        if forward { Box::new(buckets.iter()) } else { Box::new(buckets.iter().rev()) };
    for b in iter {
        if b.count == 0.0 {
            continue;
        }
        bucket = *b;
        count += b.count;
        if count >= rank {
            break;
        }
    }
    let has_neg = !h.negative_buckets.is_empty();
    let has_pos = !h.positive_buckets.is_empty();
    if !uses_custom(h) && bucket.lower < 0.0 && bucket.upper > 0.0 {
        if !has_neg && has_pos {
            bucket.lower = 0.0;
        } else if !has_pos && has_neg {
            bucket.upper = 0.0;
        }
    } else if uses_custom(h) {
        if bucket.lower == f64::NEG_INFINITY {
            if bucket.upper <= 0.0 {
                return bucket.upper;
            }
            bucket.lower = 0.0;
        } else if bucket.upper == f64::INFINITY {
            return bucket.lower;
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        if h.sum.is_nan() {
            return f64::NAN;
        }
        return if forward { bucket.upper } else { bucket.lower };
    }
    let mut fraction = (rank - (count - bucket.count)) / bucket.count;
    if !forward {
        fraction = 1.0 - fraction;
    }
    if uses_custom(h) || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
        return bucket.lower + (bucket.upper - bucket.lower) * fraction;
    }
    let log_lower = bucket.lower.abs().log2();
    let log_upper = bucket.upper.abs().log2();
    if bucket.lower > 0.0 {
        return (log_lower + (log_upper - log_lower) * fraction).exp2();
    }
    -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
}

/// The estimated fraction of observations between `lower` and `upper`.
pub fn fraction(lower: f64, upper: f64, h: &FloatHistogram) -> f64 {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let has_neg = !h.negative_buckets.is_empty();
    let has_pos = !h.positive_buckets.is_empty();
    let custom = uses_custom(h);
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for mut b in all_buckets(h) {
        let mut zero = false;
        if !custom && b.lower <= 0.0 && b.upper >= 0.0 {
            zero = true;
            if !has_neg && has_pos {
                b.lower = 0.0;
            } else if !has_pos && has_neg {
                b.upper = 0.0;
            }
        }
        if custom && b.lower == f64::NEG_INFINITY && b.upper > 0.0 {
            b.lower = 0.0;
        }
        let linear = |v: f64| rank + b.count * (v - b.lower) / (b.upper - b.lower);
        let exponential = |v: f64| {
            let ll = b.lower.abs().log2();
            let lu = b.upper.abs().log2();
            let lv = v.abs().log2();
            let f = if v > 0.0 { (lv - ll) / (lu - ll) } else { 1.0 - (lv - lu) / (ll - lu) };
            rank + b.count * f
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = if custom || zero { linear(lower) } else { exponential(lower) };
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = if custom || zero { linear(upper) } else { exponential(upper) };
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += b.count;
    }
    if !lower_set {
        lower_rank = rank;
    }
    if !upper_set {
        upper_rank = rank;
    }
    lower_rank = lower_rank.min(h.count);
    upper_rank = upper_rank.min(h.count);
    (upper_rank - lower_rank) / h.count
}

/// The estimated variance of the observations (bucket midpoints, geometric for exponential
/// buckets), as `histogram_stdvar` computes it.
pub fn stdvar(h: &FloatHistogram) -> f64 {
    if h.count == 0.0 {
        return f64::NAN;
    }
    let mean = h.sum / h.count;
    let (mut var, mut c) = (0.0, 0.0);
    let custom = uses_custom(h);
    for b in all_buckets(h) {
        if b.count == 0.0 {
            continue;
        }
        let val = if b.lower <= 0.0 && b.upper >= 0.0 && !custom {
            0.0
        } else if custom {
            if b.lower == f64::NEG_INFINITY {
                b.upper
            } else if b.upper == f64::INFINITY {
                b.lower
            } else {
                (b.lower + b.upper) / 2.0
            }
        } else {
            let m = (b.lower * b.upper).abs().sqrt();
            if b.upper < 0.0 { -m } else { m }
        };
        let delta = val - mean;
        (var, c) = crate::float::kahan_sum_inc(b.count * delta * delta, var, c);
    }
    (var + c) / h.count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, offset: i32, buckets: &[f64]) -> FloatHistogram {
        FloatHistogram {
            schema,
            count: buckets.iter().sum(),
            positive_spans: vec![Span { offset, length: buckets.len() as u32 }],
            positive_buckets: buckets.to_vec(),
            ..FloatHistogram::default()
        }
    }

    #[test]
    fn bucket_bounds() {
        for (idx, schema, want) in
            [(0, 0, 1.0), (1, 0, 2.0), (-1, 0, 0.5), (1, 1, 2f64.sqrt()), (1, -1, 4.0)]
        {
            assert!((bound(idx, schema) - want).abs() < 1e-12, "bound({idx}, {schema})");
        }
    }

    #[test]
    fn add_reduces_to_the_coarser_schema() {
        // Schema 1 buckets 1..=4 are (1,√2], (√2,2], (2,2√2], (2√2,4]: schema 0 buckets 1 and 2.
        let fine = h(1, 1, &[1.0, 2.0, 3.0, 4.0]);
        let coarse = h(0, 1, &[10.0, 20.0]);
        let sum = add(&fine, &coarse, 1.0).unwrap();
        assert_eq!(sum.schema, 0);
        assert_eq!(expand(&sum.positive_spans, &sum.positive_buckets), [(1, 13.0), (2, 27.0)]);
        assert_eq!(sum.count, 40.0);
        let mixed = add(&fine, &FloatHistogram { schema: CUSTOM_SCHEMA, ..fine.clone() }, 1.0);
        assert_eq!(mixed, Err(Incompatible::MixedSchemas));
    }

    #[test]
    fn quantile_interpolates_exponentially() {
        // 4 observations: 1 in (0.5,1], 2 in (1,2], 1 in (2,4]. The median is √2.
        let x = h(0, 0, &[1.0, 2.0, 1.0]);
        assert!((quantile(0.5, &x) - 2f64.sqrt()).abs() < 1e-12);
        assert!((fraction(1.0, 2.0, &x) - 0.5).abs() < 1e-12);
        assert!(detect_reset(&h(0, 0, &[1.0, 1.0, 1.0]), &x));
    }
}
