//! Range-vector functions: `rate` and friends (floats and native histograms), `deriv`,
//! `predict_linear`, `resets`, `changes`, smoothing and the `*_over_time` family.

use model::FloatHistogram;

use super::{Out, mixed_warning};
use crate::eval::{MatrixVal, RangeElem};
use crate::float::{avg, kahan_sum_inc, quantile};
use crate::histogram;
use crate::value::{Annotations, Point};

/// `count_over_time` and friends, which look at floats and histograms alike.
pub(crate) fn any_over_time(name: &str, s: &RangeElem) -> Option<Out> {
    let last_f = s.points.last();
    let last_h = s.histograms.last();
    let first_f = s.points.first();
    let first_h = s.histograms.first();
    let n = s.points.len() + s.histograms.len();
    if n == 0 {
        return None;
    }
    let last_is_h = match (last_f, last_h) {
        (Some(f), Some(h)) => h.t > f.t,
        (None, Some(_)) => true,
        _ => false,
    };
    let first_is_h = match (first_f, first_h) {
        (Some(f), Some(h)) => h.t < f.t,
        (None, Some(_)) => true,
        _ => false,
    };
    Some(match name {
        "count_over_time" => Out::F(n as f64),
        "present_over_time" => Out::F(1.0),
        "last_over_time" => match (last_is_h, last_h, last_f) {
            (true, Some(h), _) => Out::H((*h.h).clone()),
            (_, _, Some(f)) => Out::F(f.v),
            _ => return None,
        },
        "first_over_time" => match (first_is_h, first_h, first_f) {
            (true, Some(h), _) => Out::H((*h.h).clone()),
            (_, _, Some(f)) => Out::F(f.v),
            _ => return None,
        },
        "ts_of_last_over_time" => {
            let t = last_f.map_or(i64::MIN, |f| f.t).max(last_h.map_or(i64::MIN, |h| h.t));
            Out::F(t as f64 / 1000.0)
        }
        _ => {
            let t = first_f.map_or(i64::MAX, |f| f.t).min(first_h.map_or(i64::MAX, |h| h.t));
            Out::F(t as f64 / 1000.0)
        }
    })
}

/// `sum_over_time` / `avg_over_time` of histograms.
pub(crate) fn histogram_over_time(
    annos: &mut Annotations,
    s: &RangeElem,
    avg: bool,
) -> Option<FloatHistogram> {
    let mut acc = (*s.histograms[0].h).clone();
    for p in &s.histograms[1..] {
        match histogram::add(&acc, &p.h, 1.0) {
            Ok(h) => acc = h,
            Err(e) => {
                annos.warn(histogram::incompatible_msg(e, s.labels.metric_name().unwrap_or("")));
                return None;
            }
        }
    }
    if avg {
        acc = histogram::divide(&acc, s.histograms.len() as f64);
    }
    acc.counter_reset_hint = histogram::HINT_GAUGE;
    Some(histogram::compact(acc))
}

/// `resets` / `changes` over floats and histograms merged in time order.
pub(crate) fn resets_or_changes(s: &RangeElem, resets: bool) -> f64 {
    enum P<'a> {
        F(f64),
        H(&'a FloatHistogram),
    }
    let mut all: Vec<(i64, P<'_>)> = s.points.iter().map(|p| (p.t, P::F(p.v))).collect();
    all.extend(s.histograms.iter().map(|h| (h.t, P::H(&h.h))));
    all.sort_by_key(|x| x.0);
    let mut n = 0;
    for w in all.windows(2) {
        let hit = match (&w[0].1, &w[1].1) {
            (P::F(a), P::F(b)) => {
                if resets {
                    b < a
                } else {
                    a != b && !(a.is_nan() && b.is_nan())
                }
            }
            (P::H(a), P::H(b)) => {
                if resets {
                    histogram::detect_reset(b, a)
                } else {
                    !histogram::equals(a, b)
                }
            }
            _ => true,
        };
        if hit {
            n += 1;
        }
    }
    n as f64
}

/// `rate`, `increase` and `delta` of native histograms.
pub(crate) fn histogram_rate(
    annos: &mut Annotations,
    m: &MatrixVal,
    s: &RangeElem,
    counter: bool,
    rate: bool,
) -> Option<FloatHistogram> {
    let name = s.labels.metric_name().unwrap_or("");
    let pts = &s.histograms;
    let first = &pts[0].h;
    let last = &pts[pts.len() - 1].h;
    // A reset between the first two samples nulls the first one, so its layout is moot.
    let first_reset = counter && histogram::detect_reset(&pts[1].h, first);
    let relevant = if first_reset { &pts[1..] } else { &pts[..] };
    if relevant
        .iter()
        .any(|p| histogram::uses_custom(&p.h) != histogram::uses_custom(&relevant[0].h))
    {
        annos.warn(histogram::incompatible_msg(histogram::Incompatible::MixedSchemas, name));
        return None;
    }
    if counter && pts.iter().any(|p| p.h.counter_reset_hint == histogram::HINT_GAUGE) {
        annos.warn(format!("this native histogram metric is not a counter: {name:?}"));
    }
    if !counter
        && (first.counter_reset_hint != histogram::HINT_GAUGE
            || last.counter_reset_hint != histogram::HINT_GAUGE)
    {
        annos.warn(format!("this native histogram metric is not a gauge: {name:?}"));
    }
    let min_schema = relevant.iter().map(|p| p.h.schema).min().unwrap_or(first.schema);
    let mut prev: FloatHistogram = (**first).clone();
    if first_reset {
        prev = FloatHistogram {
            schema: pts[1].h.schema,
            custom_values: pts[1].h.custom_values.clone(),
            ..FloatHistogram::default()
        };
    }
    let last_c = histogram::to_schema(last, min_schema);
    let mut h = match histogram::add(&last_c, &prev, -1.0) {
        Ok(h) => h,
        Err(e) => {
            annos.warn(histogram::incompatible_msg(e, name));
            return None;
        }
    };
    if counter {
        let mut p: &FloatHistogram = &prev;
        for cur in &pts[1..] {
            if histogram::detect_reset(&cur.h, p) {
                match histogram::add(&h, p, 1.0) {
                    Ok(x) => h = x,
                    Err(e) => {
                        annos.warn(histogram::incompatible_msg(e, name));
                        return None;
                    }
                }
            }
            p = &cur.h;
        }
    }
    let first_t = pts[0].t;
    let last_t = pts[pts.len() - 1].t;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_between = sampled / (pts.len() - 1) as f64;
    let threshold = avg_between * 1.1;
    let mut to_start = (first_t - m.range_start) as f64 / 1000.0;
    let mut to_end = (m.range_end - last_t) as f64 / 1000.0;
    if to_start >= threshold {
        to_start = avg_between / 2.0;
    }
    if to_end >= threshold {
        to_end = avg_between / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if rate {
        factor /= m.range_secs();
    }
    let mut h = histogram::scale(&h, factor);
    h.counter_reset_hint = histogram::HINT_GAUGE;
    Some(histogram::compact(h))
}

pub(crate) fn over_time(name: &str, p: &[Point]) -> Option<f64> {
    let first = p.first()?;
    let last = p.last()?;
    Some(match name {
        "avg_over_time" => avg(&p.iter().map(|x| x.v).collect::<Vec<_>>()),
        "sum_over_time" => {
            let (mut s, mut c) = (0.0, 0.0);
            for x in p {
                (s, c) = kahan_sum_inc(x.v, s, c);
            }
            s + c
        }
        "count_over_time" => p.len() as f64,
        "min_over_time" => {
            p.iter().skip(1).fold(first.v, |m, x| if m > x.v || m.is_nan() { x.v } else { m })
        }
        "max_over_time" => {
            p.iter().skip(1).fold(first.v, |m, x| if m < x.v || m.is_nan() { x.v } else { m })
        }
        "last_over_time" => last.v,
        "first_over_time" => first.v,
        "present_over_time" => 1.0,
        "ts_of_last_over_time" => last.t as f64 / 1000.0,
        "ts_of_first_over_time" => first.t as f64 / 1000.0,
        "ts_of_max_over_time" | "ts_of_min_over_time" => {
            let mut best = *first;
            for x in &p[1..] {
                let better =
                    if name == "ts_of_max_over_time" { x.v >= best.v } else { x.v <= best.v };
                if better || best.v.is_nan() {
                    best = *x;
                }
            }
            best.t as f64 / 1000.0
        }
        "stddev_over_time" | "stdvar_over_time" => {
            let (mut count, mut mean, mut cm, mut aux, mut ca) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for x in p {
                count += 1.0;
                let delta = x.v - (mean + cm);
                (mean, cm) = kahan_sum_inc(delta / count, mean, cm);
                (aux, ca) = kahan_sum_inc(delta * (x.v - (mean + cm)), aux, ca);
            }
            let var = (aux + ca) / count;
            if name == "stddev_over_time" { var.sqrt() } else { var }
        }
        "mad_over_time" => {
            let vals: Vec<f64> = p.iter().map(|x| x.v).collect();
            let median = quantile(0.5, vals.clone());
            quantile(0.5, vals.iter().map(|v| (v - median).abs()).collect())
        }
        _ => return None,
    })
}

pub(crate) fn extrapolated_rate(
    m: &MatrixVal,
    p: &[Point],
    counter: bool,
    rate: bool,
) -> Option<f64> {
    extrapolated_rate_scan(m, p, counter, rate, counter)
}

/// `extrapolated_rate` where the caller says whether `p` may hold a counter reset
/// (`scan_resets`): false only when it knows no sample in `p` is below its predecessor, in
/// which case the reset scan would add nothing and is skipped (same result, bit for bit).
pub(crate) fn extrapolated_rate_scan(
    m: &MatrixVal,
    p: &[Point],
    counter: bool,
    rate: bool,
    scan_resets: bool,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.v - first.v;
    if counter && scan_resets {
        let mut prev = first.v;
        for x in &p[1..] {
            if x.v < prev {
                result += prev;
            }
            prev = x.v;
        }
    }
    let mut to_start = (first.t - m.range_start) as f64 / 1000.0;
    let mut to_end = (m.range_end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_between = sampled / (p.len() - 1) as f64;
    let threshold = avg_between * 1.1;
    if to_start >= threshold {
        to_start = avg_between / 2.0;
    }
    if counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_between / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if rate {
        factor /= m.range_secs();
    }
    Some(result * factor)
}

pub(crate) fn instant_value(annos: &mut Annotations, s: &RangeElem, rate: bool) -> Option<Out> {
    enum P<'a> {
        F(f64),
        H(&'a FloatHistogram),
    }
    let mut all: Vec<(i64, P<'_>)> = s.points.iter().map(|p| (p.t, P::F(p.v))).collect();
    all.extend(s.histograms.iter().map(|h| (h.t, P::H(&h.h))));
    all.sort_by_key(|x| x.0);
    if all.len() < 2 {
        return None;
    }
    let (prev, last) = (&all[all.len() - 2], &all[all.len() - 1]);
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    let secs = interval as f64 / 1000.0;
    let name = s.labels.metric_name().unwrap_or("");
    match (&prev.1, &last.1) {
        (P::F(p), P::F(l)) => Some(Out::F(float_change(*p, *l, secs, rate))),
        (P::H(p), P::H(l)) => {
            if rate
                && (p.counter_reset_hint == histogram::HINT_GAUGE
                    || l.counter_reset_hint == histogram::HINT_GAUGE)
            {
                annos.warn(format!("this native histogram metric is not a counter: {name:?}"));
            }
            if !rate
                && (p.counter_reset_hint != histogram::HINT_GAUGE
                    || l.counter_reset_hint != histogram::HINT_GAUGE)
            {
                annos.warn(format!("this native histogram metric is not a gauge: {name:?}"));
            }
            let mut h = if rate && histogram::detect_reset(l, p) {
                (*l).clone()
            } else {
                match histogram::add(l, p, -1.0) {
                    Ok(h) => h,
                    Err(e) => {
                        annos.warn(histogram::incompatible_msg(e, name));
                        return None;
                    }
                }
            };
            if rate {
                h = histogram::divide(&h, secs);
            }
            h.counter_reset_hint = histogram::HINT_GAUGE;
            Some(Out::H(histogram::compact(h)))
        }
        _ => {
            mixed_warning(annos, s);
            None
        }
    }
}

/// `irate` / `idelta` between two floats `secs` apart.
fn float_change(p: f64, l: f64, secs: f64, rate: bool) -> f64 {
    let mut v = if rate && l < p { l } else { l - p };
    if rate {
        v /= secs;
    }
    v
}

/// `irate` / `idelta` of float points only (no histograms in the window).
pub(crate) fn instant_float(p: &[Point], rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    Some(float_change(prev.v, last.v, interval as f64 / 1000.0, rate))
}

pub(crate) fn linear_regression(p: &[Point], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = p[0].v;
    let mut const_y = true;
    for (i, s) in p.iter().enumerate() {
        if const_y && i > 0 && s.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (s.t - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_sum_inc(x, sx, cx);
        (sy, cy) = kahan_sum_inc(s.v, sy, cy);
        (sxy, cxy) = kahan_sum_inc(x * s.v, sxy, cxy);
        (sx2, cx2) = kahan_sum_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

pub(crate) fn double_exp_smoothing(p: &[Point], sf: f64, tf: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, p[0].v);
    let mut b = p[1].v - p[0].v;
    for (i, x) in p.iter().enumerate().skip(1) {
        let xv = sf * x.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = xv + y;
    }
    Some(s1)
}
