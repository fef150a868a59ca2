//! PromQL functions: argument handling and the dispatch of `eval_call`. Range-vector
//! functions live in `range.rs`, label functions in `labels.rs`, classic-bucket histogram
//! functions in `classic.rs`.

mod classic;
mod labels;
mod range;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use model::{FloatHistogram, Labels};
use promql_parser::parser::{Call, Expr};

use crate::error::{Result, exec_err};
use crate::eval::{
    Elem, Evaluator, MatrixVal, MetaLabels, RangeElem, Val, check_unique, drop_name,
};
use crate::float::{cmp_asc_nan_last, cmp_desc_nan_last, format_float, go_max, go_min, quantile};
use crate::histogram;
use crate::value::{Annotations, Point};
use classic::{classic_fraction, histogram_quantile};
use labels::{absent_labels, label_join, label_replace, natural_cmp};
use range::{
    any_over_time, double_exp_smoothing, histogram_over_time, histogram_rate, instant_value,
    resets_or_changes,
};
pub(crate) use range::{
    extrapolated_rate, extrapolated_rate_scan, instant_float, linear_regression, over_time,
};

pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

pub(crate) fn scalar_arg(args: &[Val], i: usize, name: &str) -> Result<f64> {
    match args.get(i) {
        Some(Val::Scalar(v)) => Ok(*v),
        _ => exec_err(format!("expected scalar as argument {} of {name}()", i + 1)),
    }
}

pub(crate) fn string_arg(args: &[Val], i: usize, name: &str) -> Result<String> {
    match args.get(i) {
        Some(Val::Str(v)) => Ok(v.clone()),
        _ => exec_err(format!("expected string as argument {} of {name}()", i + 1)),
    }
}

pub(crate) fn take_vector(args: &mut [Val], i: usize, name: &str) -> Result<Vec<Elem>> {
    match args.get_mut(i) {
        Some(Val::Vector(v)) => Ok(std::mem::take(v)),
        _ => exec_err(format!("expected instant vector as argument {} of {name}()", i + 1)),
    }
}

pub(crate) fn take_matrix(args: &mut [Val], i: usize, name: &str) -> Result<MatrixVal> {
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
pub(crate) enum Out {
    F(f64),
    H(FloatHistogram),
}

/// Applies `f` to each series of a range vector; the metric name is dropped unless `keep`.
pub(crate) fn over_matrix(
    meta: MetaLabels,
    m: &MatrixVal,
    ts: i64,
    keep: bool,
    mut f: impl FnMut(&RangeElem) -> Option<Out>,
) -> Vec<Elem> {
    m.series
        .iter()
        .filter_map(|s| {
            let (labels, drop) = if keep {
                (s.labels.clone(), s.drop)
            } else if meta.delayed {
                (s.labels.clone(), true)
            } else {
                (s.dropped.clone().unwrap_or_else(|| drop_name(&s.labels, meta)), false)
            };
            let (v, h) = match f(s)? {
                Out::F(v) => (v, None),
                Out::H(h) => (0.0, Some(Arc::new(h))),
            };
            Some(Elem { labels, v, t: ts, h, drop })
        })
        .collect()
}

/// For float-only range functions: the float points, with an info when histograms were
/// ignored beside them.
pub(crate) fn floats_only<'s>(annos: &mut Annotations, s: &'s RangeElem) -> Option<&'s [Point]> {
    if !s.histograms.is_empty() && !s.points.is_empty() {
        annos.info(format!(
            "ignored histograms in a range containing both floats and histograms for metric name {:?}",
            s.labels.metric_name().unwrap_or("")
        ));
    }
    if s.points.is_empty() { None } else { Some(&s.points) }
}

pub(crate) fn mixed_warning(annos: &mut Annotations, s: &RangeElem) {
    annos.warn(format!(
        "encountered a mix of histograms and floats for metric name {:?}",
        s.labels.metric_name().unwrap_or("")
    ));
}

/// Applies `f` to float elements; histograms are dropped, as Prometheus' simple functions do.
pub(crate) fn map_vector(meta: MetaLabels, v: Vec<Elem>, f: impl Fn(f64) -> f64) -> Vec<Elem> {
    v.into_iter()
        .filter(|e| e.h.is_none())
        .map(|e| Elem::derived(&e.labels, f(e.v), e.t, meta))
        .collect()
}

/// Applies `f` to histogram elements; floats are dropped.
pub(crate) fn map_histograms(
    meta: MetaLabels,
    v: Vec<Elem>,
    ts: i64,
    f: impl Fn(&FloatHistogram) -> f64,
) -> Vec<Elem> {
    v.into_iter()
        .filter_map(|e| e.h.as_ref().map(|h| Elem::derived(&e.labels, f(h), ts, meta)))
        .collect()
}

pub(crate) fn eval_call(ev: &mut Evaluator<'_>, call: &Call, ts: i64) -> Result<Val> {
    let name = call.func.name;
    let meta = ev.meta();
    let exprs = &call.args.args;
    if name == "timestamp"
        && let Some(Expr::VectorSelector(vs)) = exprs.first().map(|e| unwrap_parens(e))
    {
        let v = ev.eval_vector_selector(vs, ts)?;
        let out: Vec<Elem> = v
            .into_iter()
            .map(|e| Elem::derived(&e.labels, e.t as f64 / 1000.0, ts, meta))
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
            v.into_iter().map(|e| Elem::derived(&e.labels, ts as f64 / 1000.0, ts, meta)).collect()
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
        "histogram_count" => {
            map_histograms(meta, take_vector(&mut args, 0, name)?, ts, |h| h.count)
        }
        "histogram_sum" => map_histograms(meta, take_vector(&mut args, 0, name)?, ts, |h| h.sum),
        "histogram_avg" => {
            map_histograms(meta, take_vector(&mut args, 0, name)?, ts, |h| h.sum / h.count)
        }
        "histogram_stddev" => map_histograms(meta, take_vector(&mut args, 0, name)?, ts, |h| {
            histogram::stdvar(h).sqrt()
        }),
        "histogram_stdvar" => {
            map_histograms(meta, take_vector(&mut args, 0, name)?, ts, histogram::stdvar)
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
            let mut out = map_histograms(meta, keep, ts, |h| histogram::fraction(lo, hi, h));
            let native: HashSet<Labels> = out.iter().map(|e| e.labels.clone()).collect();
            classic_out.retain(|e| !native.contains(&e.labels));
            out.extend(classic_out);
            out
        }
        "round" => {
            let v = take_vector(&mut args, 0, name)?;
            let to = if args.len() > 1 { scalar_arg(&args, 1, name)? } else { 1.0 };
            let inv = 1.0 / to;
            map_vector(meta, v, |x| (x * inv + 0.5).floor() / inv)
        }
        "clamp" => {
            let v = take_vector(&mut args, 0, name)?;
            let (lo, hi) = (scalar_arg(&args, 1, name)?, scalar_arg(&args, 2, name)?);
            if hi < lo { Vec::new() } else { map_vector(meta, v, |x| go_max(lo, go_min(hi, x))) }
        }
        "clamp_min" => {
            let v = take_vector(&mut args, 0, name)?;
            let lo = scalar_arg(&args, 1, name)?;
            map_vector(meta, v, |x| go_max(lo, x))
        }
        "clamp_max" => {
            let v = take_vector(&mut args, 0, name)?;
            let hi = scalar_arg(&args, 1, name)?;
            map_vector(meta, v, |x| go_min(hi, x))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = if args.is_empty() {
                vec![Elem::float(Labels::empty(), ts as f64 / 1000.0, ts)]
            } else {
                take_vector(&mut args, 0, name)?
            };
            map_vector(meta, v, |x| date_part(name, x))
        }
        "rate" | "increase" | "delta" => {
            let m = take_matrix(&mut args, 0, name)?;
            let (counter, rate) = (name != "delta", name == "rate");
            let out = over_matrix(meta, &m, ts, false, |s| {
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
            over_matrix(meta, &m, ts, false, |s| instant_value(annos, s, name == "irate"))
        }
        "deriv" => {
            let m = take_matrix(&mut args, 0, name)?;
            over_matrix(meta, &m, ts, false, |s| {
                let p = floats_only(annos, s)?;
                if p.len() < 2 { None } else { Some(Out::F(linear_regression(p, p[0].t).0)) }
            })
        }
        "predict_linear" => {
            let m = take_matrix(&mut args, 0, name)?;
            let d = scalar_arg(&args, 1, name)?;
            over_matrix(meta, &m, ts, false, |s| {
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
            over_matrix(meta, &m, ts, false, |s| {
                Some(Out::F(resets_or_changes(s, name == "resets")))
            })
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
            over_matrix(meta, &m, ts, false, |s| {
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
            over_matrix(meta, &m, ts, keep, |s| any_over_time(name, s))
        }
        "sum_over_time" | "avg_over_time" => {
            let m = take_matrix(&mut args, 0, name)?;
            over_matrix(meta, &m, ts, false, |s| {
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
            over_matrix(meta, &m, ts, false, |s| {
                over_time(name, floats_only(annos, s)?).map(Out::F)
            })
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
            over_matrix(meta, &m, ts, false, |s| {
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
            map_vector(meta, v, f)
        }
    };
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

pub(crate) fn date_part(name: &str, x: f64) -> f64 {
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
