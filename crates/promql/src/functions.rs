//! PromQL functions: range-vector functions (`rate`, `*_over_time`, ...), instant-vector math,
//! label manipulation, date functions, `histogram_quantile` over classic buckets, and sorting.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use std::sync::Arc;

use model::{FloatHistogram, Labels, METRIC_NAME};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr};
use regex::Regex;

use crate::aggregate::{avg, cmp_asc_nan_last, cmp_desc_nan_last};
use crate::error::{Result, exec_err};
use crate::eval::{Elem, Evaluator, MatrixVal, RangeElem, Val, check_unique, drop_name};
use crate::histogram;
use crate::value::{Annotations, Point};

/// Neumaier's improvement of Kahan summation: adds `inc` to `sum` with compensation `c`.
pub(crate) fn kahan_sum_inc(inc: f64, sum: f64, mut c: f64) -> (f64, f64) {
    let t = sum + inc;
    if t.is_infinite() {
        c = 0.0;
    } else if sum.abs() >= inc.abs() {
        c += (sum - t) + inc;
    } else {
        c += (inc - t) + sum;
    }
    (t, c)
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`, as Prometheus prints values in labels.
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{f}")
    }
}

/// The φ-quantile of `values` with linear interpolation, as Prometheus computes it.
pub(crate) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// Labels of `absent()`'s output: the equality matchers of a lone selector argument.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        let has = pairs.iter().position(|(n, _)| *n == m.name);
        match (&m.op, has) {
            (PMatchOp::Equal, None) => pairs.push((m.name.clone(), Some(m.value.clone()))),
            (_, Some(i)) => pairs[i].1 = None,
            (_, None) => pairs.push((m.name.clone(), None)),
        }
    }
    Labels::from_pairs(pairs.into_iter().filter_map(|(n, v)| v.map(|v| (n, v)))).unwrap_or_default()
}

fn scalar_arg(args: &[Val], i: usize, name: &str) -> Result<f64> {
    match args.get(i) {
        Some(Val::Scalar(v)) => Ok(*v),
        _ => exec_err(format!("expected scalar as argument {} of {name}()", i + 1)),
    }
}

fn string_arg(args: &[Val], i: usize, name: &str) -> Result<String> {
    match args.get(i) {
        Some(Val::Str(v)) => Ok(v.clone()),
        _ => exec_err(format!("expected string as argument {} of {name}()", i + 1)),
    }
}

fn take_vector(args: &mut [Val], i: usize, name: &str) -> Result<Vec<Elem>> {
    match args.get_mut(i) {
        Some(Val::Vector(v)) => Ok(std::mem::take(v)),
        _ => exec_err(format!("expected instant vector as argument {} of {name}()", i + 1)),
    }
}

fn take_matrix(args: &mut [Val], i: usize, name: &str) -> Result<MatrixVal> {
    match args.get_mut(i) {
        Some(Val::Matrix(m)) => Ok(MatrixVal {
            series: std::mem::take(&mut m.series),
            range_start: m.range_start,
            range_end: m.range_end,
        }),
        _ => exec_err(format!("expected range vector as argument {} of {name}()", i + 1)),
    }
}

/// Output of a range function for one series: a float or a histogram.
enum Out {
    F(f64),
    H(FloatHistogram),
}

/// Applies `f` to each series of a range vector; the metric name is dropped unless `keep`.
fn over_matrix(
    m: &MatrixVal,
    ts: i64,
    keep: bool,
    mut f: impl FnMut(&RangeElem) -> Option<Out>,
) -> Vec<Elem> {
    m.series
        .iter()
        .filter_map(|s| {
            let labels = if keep { s.labels.clone() } else { drop_name(&s.labels) };
            match f(s)? {
                Out::F(v) => Some(Elem::float(labels, v, ts)),
                Out::H(h) => Some(Elem { labels, v: 0.0, t: ts, h: Some(Arc::new(h)) }),
            }
        })
        .collect()
}

/// For float-only range functions: the float points, with an info when histograms were
/// ignored beside them.
fn floats_only<'s>(annos: &mut Annotations, s: &'s RangeElem) -> Option<&'s [Point]> {
    if !s.histograms.is_empty() && !s.points.is_empty() {
        annos.info(format!(
            "ignored histograms in a range containing both floats and histograms for metric name {:?}",
            s.labels.metric_name().unwrap_or("")
        ));
    }
    if s.points.is_empty() { None } else { Some(&s.points) }
}

fn mixed_warning(annos: &mut Annotations, s: &RangeElem) {
    annos.warn(format!(
        "encountered a mix of histograms and floats for metric name {:?}",
        s.labels.metric_name().unwrap_or("")
    ));
}

/// Applies `f` to float elements; histograms are dropped, as Prometheus' simple functions do.
fn map_vector(v: Vec<Elem>, f: impl Fn(f64) -> f64) -> Vec<Elem> {
    v.into_iter()
        .filter(|e| e.h.is_none())
        .map(|e| Elem::float(drop_name(&e.labels), f(e.v), e.t))
        .collect()
}

/// Applies `f` to histogram elements; floats are dropped.
fn map_histograms(v: Vec<Elem>, ts: i64, f: impl Fn(&FloatHistogram) -> f64) -> Vec<Elem> {
    v.into_iter()
        .filter_map(|e| e.h.as_ref().map(|h| Elem::float(drop_name(&e.labels), f(h), ts)))
        .collect()
}

pub(crate) fn eval_call(ev: &mut Evaluator<'_>, call: &Call, ts: i64) -> Result<Val> {
    let name = call.func.name;
    let exprs = &call.args.args;
    if name == "timestamp"
        && let Some(Expr::VectorSelector(vs)) = exprs.first().map(|e| unwrap_parens(e))
    {
        let v = ev.eval_vector_selector(vs, ts)?;
        let out: Vec<Elem> = v
            .into_iter()
            .map(|e| Elem::float(drop_name(&e.labels), e.t as f64 / 1000.0, ts))
            .collect();
        check_unique(&out)?;
        return Ok(Val::Vector(out));
    }
    let mut args = Vec::with_capacity(exprs.len());
    for e in exprs {
        args.push(ev.eval(e, ts)?);
    }
    let annos = &mut ev.annotations;
    let out = match name {
        "time" => return Ok(Val::Scalar(ts as f64 / 1000.0)),
        "pi" => return Ok(Val::Scalar(std::f64::consts::PI)),
        "scalar" => {
            let v = take_vector(&mut args, 0, name)?;
            let floats: Vec<f64> = v.iter().filter(|e| e.h.is_none()).map(|e| e.v).collect();
            return Ok(Val::Scalar(if floats.len() == 1 { floats[0] } else { f64::NAN }));
        }
        "vector" => vec![Elem::float(Labels::empty(), scalar_arg(&args, 0, name)?, ts)],
        "absent" => {
            let v = take_vector(&mut args, 0, name)?;
            if v.is_empty() {
                vec![Elem::float(absent_labels(unwrap_parens(&exprs[0])), 1.0, ts)]
            } else {
                Vec::new()
            }
        }
        "absent_over_time" => {
            let m = take_matrix(&mut args, 0, name)?;
            if m.series.is_empty() {
                vec![Elem::float(absent_labels(unwrap_parens(&exprs[0])), 1.0, ts)]
            } else {
                Vec::new()
            }
        }
        "timestamp" => {
            let v = take_vector(&mut args, 0, name)?;
            v.into_iter()
                .map(|e| Elem::float(drop_name(&e.labels), ts as f64 / 1000.0, ts))
                .collect()
        }
        "label_replace" => label_replace(&mut args)?,
        "label_join" => label_join(&mut args)?,
        "sort" | "sort_desc" => {
            let mut v = take_vector(&mut args, 0, name)?;
            v.retain(|e| e.h.is_none());
            if name == "sort" {
                v.sort_by(|a, b| cmp_asc_nan_last(a.v, b.v));
            } else {
                v.sort_by(|a, b| cmp_desc_nan_last(a.v, b.v));
            }
            v
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = take_vector(&mut args, 0, name)?;
            let mut names = Vec::new();
            for i in 1..args.len() {
                names.push(string_arg(&args, i, name)?);
            }
            v.sort_by(|a, b| {
                let mut ord = std::cmp::Ordering::Equal;
                for n in &names {
                    ord = natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                    if ord != std::cmp::Ordering::Equal {
                        break;
                    }
                }
                if ord == std::cmp::Ordering::Equal {
                    ord = a.labels.cmp(&b.labels);
                }
                if name == "sort_by_label_desc" { ord.reverse() } else { ord }
            });
            v
        }
        "histogram_quantile" => {
            let q = scalar_arg(&args, 0, name)?;
            let v = take_vector(&mut args, 1, name)?;
            histogram_quantile(ev, q, v, ts)?
        }
        "histogram_count" => map_histograms(take_vector(&mut args, 0, name)?, ts, |h| h.count),
        "histogram_sum" => map_histograms(take_vector(&mut args, 0, name)?, ts, |h| h.sum),
        "histogram_avg" => {
            map_histograms(take_vector(&mut args, 0, name)?, ts, |h| h.sum / h.count)
        }
        "histogram_stddev" => {
            map_histograms(take_vector(&mut args, 0, name)?, ts, |h| histogram::stdvar(h).sqrt())
        }
        "histogram_stdvar" => {
            map_histograms(take_vector(&mut args, 0, name)?, ts, histogram::stdvar)
        }
        "histogram_fraction" => {
            let lo = scalar_arg(&args, 0, name)?;
            let hi = scalar_arg(&args, 1, name)?;
            let v = take_vector(&mut args, 2, name)?;
            let mut classic_out = classic_fraction(annos, lo, hi, &v, ts);
            let classic: HashSet<Labels> =
                v.iter().filter(|e| e.h.is_none()).map(|e| e.labels.without(&["le"])).collect();
            let mut keep = Vec::with_capacity(v.len());
            for e in v {
                let Some(h) = &e.h else { continue };
                let n = e.labels.metric_name().unwrap_or("");
                if classic.contains(&e.labels) {
                    annos.warn(format!(
                        "vector contains a mix of classic and native histograms for metric name {n:?}"
                    ));
                    continue;
                }
                if h.sum.is_nan() && h.count > 0.0 {
                    annos.info(format!(
                        "input to histogram_fraction has NaN observations, which are excluded from all fractions for metric name {n:?}"
                    ));
                }
                keep.push(e);
            }
            let mut out = map_histograms(keep, ts, |h| histogram::fraction(lo, hi, h));
            let native: HashSet<Labels> = out.iter().map(|e| e.labels.clone()).collect();
            classic_out.retain(|e| !native.contains(&e.labels));
            out.extend(classic_out);
            out
        }
        "round" => {
            let v = take_vector(&mut args, 0, name)?;
            let to = if args.len() > 1 { scalar_arg(&args, 1, name)? } else { 1.0 };
            let inv = 1.0 / to;
            map_vector(v, |x| (x * inv + 0.5).floor() / inv)
        }
        "clamp" => {
            let v = take_vector(&mut args, 0, name)?;
            let (lo, hi) = (scalar_arg(&args, 1, name)?, scalar_arg(&args, 2, name)?);
            if hi < lo { Vec::new() } else { map_vector(v, |x| go_max(lo, go_min(hi, x))) }
        }
        "clamp_min" => {
            let v = take_vector(&mut args, 0, name)?;
            let lo = scalar_arg(&args, 1, name)?;
            map_vector(v, |x| go_max(lo, x))
        }
        "clamp_max" => {
            let v = take_vector(&mut args, 0, name)?;
            let hi = scalar_arg(&args, 1, name)?;
            map_vector(v, |x| go_min(hi, x))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = if args.is_empty() {
                vec![Elem::float(Labels::empty(), ts as f64 / 1000.0, ts)]
            } else {
                take_vector(&mut args, 0, name)?
            };
            map_vector(v, |x| date_part(name, x))
        }
        "rate" | "increase" | "delta" => {
            let m = take_matrix(&mut args, 0, name)?;
            let (counter, rate) = (name != "delta", name == "rate");
            let out = over_matrix(&m, ts, false, |s| {
                if !s.points.is_empty() && !s.histograms.is_empty() {
                    mixed_warning(annos, s);
                    return None;
                }
                if s.histograms.len() > 1 {
                    return histogram_rate(annos, &m, s, counter, rate).map(Out::H);
                }
                extrapolated_rate(&m, &s.points, counter, rate).map(Out::F)
            });
            if counter {
                for s in &m.series {
                    let n = s.labels.metric_name().unwrap_or("");
                    if !n.is_empty()
                        && s.points.len() > 1
                        && !["_total", "_sum", "_count", "_bucket"].iter().any(|x| n.ends_with(x))
                    {
                        annos.info(format!(
                            "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"
                        ));
                    }
                }
            }
            out
        }
        "irate" | "idelta" => {
            let m = take_matrix(&mut args, 0, name)?;
            over_matrix(&m, ts, false, |s| instant_value(annos, s, name == "irate"))
        }
        "deriv" => {
            let m = take_matrix(&mut args, 0, name)?;
            over_matrix(&m, ts, false, |s| {
                let p = floats_only(annos, s)?;
                if p.len() < 2 { None } else { Some(Out::F(linear_regression(p, p[0].t).0)) }
            })
        }
        "predict_linear" => {
            let m = take_matrix(&mut args, 0, name)?;
            let d = scalar_arg(&args, 1, name)?;
            over_matrix(&m, ts, false, |s| {
                let p = floats_only(annos, s)?;
                if p.len() < 2 {
                    None
                } else {
                    let (slope, intercept) = linear_regression(p, ts);
                    Some(Out::F(slope * d + intercept))
                }
            })
        }
        "resets" | "changes" => {
            let m = take_matrix(&mut args, 0, name)?;
            over_matrix(&m, ts, false, |s| Some(Out::F(resets_or_changes(s, name == "resets"))))
        }
        "double_exponential_smoothing" | "holt_winters" => {
            let m = take_matrix(&mut args, 0, name)?;
            let sf = scalar_arg(&args, 1, name)?;
            let tf = scalar_arg(&args, 2, name)?;
            if !(sf > 0.0 && sf < 1.0) {
                return exec_err(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                ));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return exec_err(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                ));
            }
            over_matrix(&m, ts, false, |s| {
                double_exp_smoothing(floats_only(annos, s)?, sf, tf).map(Out::F)
            })
        }
        "count_over_time"
        | "present_over_time"
        | "last_over_time"
        | "first_over_time"
        | "ts_of_last_over_time"
        | "ts_of_first_over_time" => {
            let m = take_matrix(&mut args, 0, name)?;
            let keep = name == "last_over_time" || name == "first_over_time";
            over_matrix(&m, ts, keep, |s| any_over_time(name, s))
        }
        "sum_over_time" | "avg_over_time" => {
            let m = take_matrix(&mut args, 0, name)?;
            over_matrix(&m, ts, false, |s| {
                if !s.points.is_empty() && !s.histograms.is_empty() {
                    mixed_warning(annos, s);
                    return None;
                }
                if !s.histograms.is_empty() {
                    return histogram_over_time(annos, s, name == "avg_over_time").map(Out::H);
                }
                over_time(name, &s.points).map(Out::F)
            })
        }
        "min_over_time"
        | "max_over_time"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "mad_over_time"
        | "ts_of_max_over_time"
        | "ts_of_min_over_time" => {
            let m = take_matrix(&mut args, 0, name)?;
            over_matrix(&m, ts, false, |s| over_time(name, floats_only(annos, s)?).map(Out::F))
        }
        "quantile_over_time" => {
            let q = scalar_arg(&args, 0, name)?;
            let m = take_matrix(&mut args, 1, name)?;
            if !(0.0..=1.0).contains(&q) {
                annos.warn(format!(
                    "quantile value should be between 0 and 1, got {}",
                    format_float(q)
                ));
            }
            over_matrix(&m, ts, false, |s| {
                let p = floats_only(annos, s)?;
                Some(Out::F(quantile(q, p.iter().map(|x| x.v).collect())))
            })
        }
        _ => {
            let f: fn(f64) -> f64 = match name {
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "exp" => f64::exp,
                "sqrt" => f64::sqrt,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                "sin" => f64::sin,
                "cos" => f64::cos,
                "tan" => f64::tan,
                "asin" => f64::asin,
                "acos" => f64::acos,
                "atan" => f64::atan,
                "sinh" => f64::sinh,
                "cosh" => f64::cosh,
                "tanh" => f64::tanh,
                "asinh" => f64::asinh,
                "acosh" => f64::acosh,
                "atanh" => f64::atanh,
                "deg" => |x: f64| x * 180.0 / std::f64::consts::PI,
                "rad" => |x: f64| x * std::f64::consts::PI / 180.0,
                "sgn" => |x: f64| {
                    if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else {
                        x
                    }
                },
                _ => return exec_err(format!("function {name}() is not supported")),
            };
            let v = take_vector(&mut args, 0, name)?;
            map_vector(v, f)
        }
    };
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

/// `count_over_time` and friends, which look at floats and histograms alike.
fn any_over_time(name: &str, s: &RangeElem) -> Option<Out> {
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
fn histogram_over_time(
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
fn resets_or_changes(s: &RangeElem, resets: bool) -> f64 {
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
fn histogram_rate(
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

/// Go's `math.Max`: NaN wins, +0 beats -0.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`: NaN wins, -0 beats +0.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

fn over_time(name: &str, p: &[Point]) -> Option<f64> {
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

fn extrapolated_rate(m: &MatrixVal, p: &[Point], counter: bool, rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.v - first.v;
    if counter {
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

fn instant_value(annos: &mut Annotations, s: &RangeElem, rate: bool) -> Option<Out> {
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
        (P::F(p), P::F(l)) => {
            let mut v = if rate && l < p { *l } else { l - p };
            if rate {
                v /= secs;
            }
            Some(Out::F(v))
        }
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

fn linear_regression(p: &[Point], intercept_time: i64) -> (f64, f64) {
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

fn double_exp_smoothing(p: &[Point], sf: f64, tf: f64) -> Option<f64> {
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

fn date_part(name: &str, x: f64) -> f64 {
    let Some(t) = DateTime::<Utc>::from_timestamp(x as i64, 0) else { return f64::NAN };
    match name {
        "day_of_month" => t.day() as f64,
        "day_of_week" => t.weekday().num_days_from_sunday() as f64,
        "day_of_year" => t.ordinal() as f64,
        "hour" => t.hour() as f64,
        "minute" => t.minute() as f64,
        "month" => t.month() as f64,
        "year" => t.year() as f64,
        _ => {
            let (y, m) = (t.year(), t.month());
            let next = if m == 12 {
                NaiveDate::from_ymd_opt(y + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(y, m + 1, 1)
            };
            let this = NaiveDate::from_ymd_opt(y, m, 1);
            match (next, this) {
                (Some(n), Some(t)) => (n - t).num_days() as f64,
                _ => f64::NAN,
            }
        }
    }
}

fn valid_label_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| ('\u{80}'..='\u{ff}').contains(&c) && c != '\u{a0}')
}

fn label_replace(args: &mut [Val]) -> Result<Vec<Elem>> {
    let name = "label_replace";
    let v = take_vector(args, 0, name)?;
    let dst = string_arg(args, 1, name)?;
    let repl = string_arg(args, 2, name)?;
    let src = string_arg(args, 3, name)?;
    let re_str = string_arg(args, 4, name)?;
    let Ok(re) = Regex::new(&format!("^(?s:{re_str})$")) else {
        return exec_err(format!("invalid regular expression in label_replace(): {re_str}"));
    };
    if !valid_label_name(&dst) {
        return exec_err(format!("invalid destination label name in label_replace(): {dst}"));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut e in v {
        let sv = e.labels.get(&src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&sv) {
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            e.labels = e.labels.with(&dst, &res);
        }
        out.push(e);
    }
    Ok(out)
}

fn label_join(args: &mut [Val]) -> Result<Vec<Elem>> {
    let name = "label_join";
    let v = take_vector(args, 0, name)?;
    let dst = string_arg(args, 1, name)?;
    let sep = string_arg(args, 2, name)?;
    let mut srcs = Vec::new();
    for i in 3..args.len() {
        srcs.push(string_arg(args, i, name)?);
    }
    if !valid_label_name(&dst) {
        return exec_err(format!("invalid destination label name in label_join(): {dst}"));
    }
    Ok(v.into_iter()
        .map(|mut e| {
            let joined: Vec<&str> = srcs.iter().map(|s| e.labels.get(s).unwrap_or("")).collect();
            e.labels = e.labels.with(&dst, &joined.join(&sep));
            e
        })
        .collect())
}

/// Compares strings with runs of digits compared as numbers ("a2" < "a10").
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if ab[i] != bb[j] {
                return ab[i].cmp(&bb[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

struct Bucket {
    upper: f64,
    count: f64,
}

fn histogram_quantile(ev: &mut Evaluator<'_>, q: f64, v: Vec<Elem>, ts: i64) -> Result<Vec<Elem>> {
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
        out.push(Elem::float(drop_name(&labels), v, ts));
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
fn classic_fraction(
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

fn bucket_fraction(lower: f64, upper: f64, sorted: &[Bucket]) -> f64 {
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

/// Parses a float as Go's `strconv.ParseFloat` does for the spellings Prometheus emits.
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() || t != s {
        return None;
    }
    match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).ok().map(|x| x as f64);
    }
    t.replace('_', "").parse::<f64>().ok()
}

fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, bool) {
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

/// Prometheus' `almost.Equal`: true for two NaNs, or a relative difference below `epsilon`.
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::MIN_POSITIVE;
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < epsilon * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}
