//! Checks one evaluation against what the script expects, as Prometheus' runner does: values
//! within a relative epsilon, series matched by label set, order only when asked for.

use std::collections::HashMap;

use model::Labels;
use regex::Regex;

use model::FloatHistogram;

use super::parse::{EvalCmd, EvalKind, MsgMatch, SeqValue};
use crate::float::almost_equal;
use crate::histogram;
use crate::value::{Annotations, Value};

const EPSILON: f64 = 0.000001;

fn msg_matches(m: &MsgMatch, text: &str) -> bool {
    match m {
        MsgMatch::Any => true,
        MsgMatch::Exact(s) => s == text,
        MsgMatch::Regex(r) => Regex::new(r).is_ok_and(|re| re.is_match(text)),
    }
}

/// The query failed: fine if a failure was expected with a matching message.
pub(crate) fn check_failure(cmd: &EvalCmd, err: &str) -> Result<(), String> {
    match &cmd.fail {
        None => Err(format!("unexpected error: {err}")),
        Some(m) if msg_matches(m, err) => Ok(()),
        Some(m) => Err(format!("expected error matching {m:?}, got {err:?}")),
    }
}

fn check_kind(kind: &str, exps: &[MsgMatch], none: bool, got: &[String]) -> Result<(), String> {
    if none && !got.is_empty() {
        return Err(format!("expected no {kind} annotations, got {got:?}"));
    }
    if exps.is_empty() {
        return Ok(());
    }
    for e in exps {
        if !got.iter().any(|g| msg_matches(e, g)) {
            return Err(format!("expected {kind} annotation matching {e:?}, got {got:?}"));
        }
    }
    for g in got {
        if !exps.iter().any(|e| msg_matches(e, g)) {
            return Err(format!("unexpected {kind} annotation {g:?}"));
        }
    }
    Ok(())
}

pub(crate) fn check_annotations(cmd: &EvalCmd, a: &Annotations) -> Result<(), String> {
    check_kind("warn", &cmd.warn, cmd.no_warn, &a.warnings)?;
    check_kind("info", &cmd.info, cmd.no_info, &a.infos)
}

/// Histogram equality as upstream's runner sees it: same schema, zero threshold and custom
/// bounds; counts, sum and non-empty buckets almost equal.
fn histogram_matches(exp: &FloatHistogram, got: &FloatHistogram) -> bool {
    let buckets = |h: &FloatHistogram, neg: bool| -> Vec<(i32, f64)> {
        let (s, b) = if neg {
            (&h.negative_spans, &h.negative_buckets)
        } else {
            (&h.positive_spans, &h.positive_buckets)
        };
        histogram::expand(s, b).into_iter().filter(|(_, c)| *c != 0.0).collect()
    };
    let same = |a: &[(i32, f64)], b: &[(i32, f64)]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && almost_equal(x.1, y.1, EPSILON))
    };
    exp.schema == got.schema
        && almost_equal(exp.count, got.count, EPSILON)
        && almost_equal(exp.sum, got.sum, EPSILON)
        && exp.zero_threshold == got.zero_threshold
        && almost_equal(exp.zero_count, got.zero_count, EPSILON)
        && (!histogram::uses_custom(exp) || exp.custom_values == got.custom_values)
        && same(&buckets(exp, false), &buckets(got, false))
        && same(&buckets(exp, true), &buckets(got, true))
}

fn fmt_h(h: &FloatHistogram) -> String {
    format!(
        "{{{{schema:{} count:{} sum:{} z_bucket:{} z_bucket_w:{} buckets:{:?} n_buckets:{:?} custom_values:{:?}}}}}",
        h.schema,
        fmt_f(h.count),
        fmt_f(h.sum),
        fmt_f(h.zero_count),
        fmt_f(h.zero_threshold),
        histogram::expand(&h.positive_spans, &h.positive_buckets),
        histogram::expand(&h.negative_spans, &h.negative_buckets),
        h.custom_values
    )
}

fn fmt_f(v: f64) -> String {
    crate::float::format_float(v)
}

/// Compares a query value with the expected series, scalar or string.
pub(crate) fn compare(cmd: &EvalCmd, value: &Value) -> Result<(), String> {
    let expected: HashMap<&Labels, (usize, &Vec<SeqValue>)> =
        cmd.expected.iter().enumerate().map(|(i, s)| (&s.labels, (i, &s.values))).collect();
    match value {
        Value::Scalar { v, .. } => {
            let Some(e) = cmd.expected_scalar else {
                return Err(format!("expected vector or matrix result, got scalar {}", fmt_f(*v)));
            };
            if !almost_equal(e, *v, EPSILON) {
                return Err(format!("expected scalar {} but got {}", fmt_f(e), fmt_f(*v)));
            }
            Ok(())
        }
        Value::String { v, .. } => match &cmd.expected_string {
            Some(e) if e == v => Ok(()),
            e => Err(format!("expected string {e:?} but got {v:?}")),
        },
        Value::Vector(samples) => {
            if cmd.expected_scalar.is_some() || cmd.expected_string.is_some() {
                return Err(format!(
                    "expected scalar or string result, got vector of {}",
                    samples.len()
                ));
            }
            for (pos, s) in samples.iter().enumerate() {
                let Some((epos, vals)) = expected.get(&s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, has value {}",
                        s.labels,
                        fmt_f(s.v)
                    ));
                };
                if cmd.ordered && *epos != pos {
                    return Err(format!(
                        "expected metric {} at position {} but was at {}",
                        s.labels,
                        epos + 1,
                        pos + 1
                    ));
                }
                match (vals.first(), &s.h) {
                    (Some(SeqValue::Value(e)), None) => {
                        if !almost_equal(*e, s.v, EPSILON) {
                            return Err(format!(
                                "expected {} for {} but got {}",
                                fmt_f(*e),
                                s.labels,
                                fmt_f(s.v)
                            ));
                        }
                    }
                    (Some(SeqValue::Histogram(e)), Some(h)) => {
                        if !histogram_matches(e, h) {
                            return Err(format!(
                                "expected {} for {} but got {}",
                                fmt_h(e),
                                s.labels,
                                fmt_h(h)
                            ));
                        }
                    }
                    (_, Some(h)) => {
                        return Err(format!(
                            "expected a float for {}, got histogram {}",
                            s.labels,
                            fmt_h(h)
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "expected a histogram for {}, got {}",
                            s.labels,
                            fmt_f(s.v)
                        ));
                    }
                }
            }
            if samples.len() != cmd.expected.len() {
                let got: Vec<&Labels> = samples.iter().map(|s| &s.labels).collect();
                for e in &cmd.expected {
                    if !got.contains(&&e.labels) {
                        return Err(format!("expected metric {} not found", e.labels));
                    }
                }
                return Err(format!(
                    "expected {} series, got {}",
                    cmd.expected.len(),
                    samples.len()
                ));
            }
            Ok(())
        }
        Value::Matrix(series) => {
            if cmd.ordered {
                return Err("expected ordered result, but query returned a matrix".into());
            }
            if cmd.expected_scalar.is_some() || cmd.expected_string.is_some() {
                return Err("expected scalar or string result, got matrix".into());
            }
            let (start, end, step) = match cmd.kind {
                EvalKind::Range { start, end, step } => (start, end, step),
                EvalKind::Instant { at } => (at, at, 0),
            };
            for s in series {
                let Some((_, vals)) = expected.get(&s.labels) else {
                    return Err(format!("unexpected metric {} in result", s.labels));
                };
                let mut exp = Vec::new();
                let mut exp_h = Vec::new();
                for (i, v) in vals.iter().enumerate() {
                    let t = start + i as i64 * step;
                    if t > end {
                        return Err(format!(
                            "expected {} points for {}, but query time range cannot return this many points",
                            vals.len(),
                            s.labels
                        ));
                    }
                    match v {
                        SeqValue::Value(v) => exp.push((t, *v)),
                        SeqValue::Stale => exp.push((t, model::stale_nan())),
                        SeqValue::Histogram(h) => exp_h.push((t, h)),
                        SeqValue::Omitted => {}
                    }
                }
                if exp_h.len() != s.histograms.len() {
                    return Err(format!(
                        "expected {} histogram points for {}, got {}",
                        exp_h.len(),
                        s.labels,
                        s.histograms.len()
                    ));
                }
                for ((t, e), p) in exp_h.iter().zip(&s.histograms) {
                    if *t != p.t || !histogram_matches(e, &p.h) {
                        return Err(format!(
                            "expected {} at {t} for {}, got {} at {}",
                            fmt_h(e),
                            s.labels,
                            fmt_h(&p.h),
                            p.t
                        ));
                    }
                }
                if exp.len() != s.points.len() {
                    return Err(format!(
                        "expected {} points for {}, got {}: {:?}",
                        exp.len(),
                        s.labels,
                        s.points.len(),
                        s.points.iter().map(|p| (p.t, p.v)).collect::<Vec<_>>()
                    ));
                }
                for ((t, v), p) in exp.iter().zip(&s.points) {
                    if *t != p.t {
                        return Err(format!(
                            "expected point at {t} for {}, got one at {} (value {})",
                            s.labels,
                            p.t,
                            fmt_f(p.v)
                        ));
                    }
                    if !almost_equal(*v, p.v, EPSILON) {
                        return Err(format!(
                            "expected {} at {t} for {} but got {}",
                            fmt_f(*v),
                            s.labels,
                            fmt_f(p.v)
                        ));
                    }
                }
            }
            for e in &cmd.expected {
                if !series.iter().any(|s| s.labels == e.labels) {
                    return Err(format!("expected metric {} not found", e.labels));
                }
            }
            Ok(())
        }
    }
}
