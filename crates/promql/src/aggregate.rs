//! Aggregation operators (`sum`, `avg`, `topk`, `quantile`, `count_values`, ...) with
//! `by` / `without` grouping, at one evaluation step.

use std::collections::HashMap;
use std::sync::Arc;

use model::{Label, Labels, METRIC_NAME};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::error::{Result, exec_err};
use crate::eval::{Elem, Evaluator, Val};
use crate::float::{
    avg, cmp_asc_nan_last, cmp_desc_nan_last, format_float, kahan_sum_inc, quantile,
};
use crate::histogram;

pub(crate) fn group_key(l: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        Some(LabelModifier::Include(by)) => {
            let names: Vec<&str> = by.labels.iter().map(String::as_str).collect();
            l.keep(&names)
        }
        Some(LabelModifier::Exclude(without)) => {
            let mut names: Vec<&str> = without.labels.iter().map(String::as_str).collect();
            names.push(METRIC_NAME);
            l.without(&names)
        }
        None => Labels::empty(),
    }
}

/// Groups element indexes by key, in order of first appearance. Keys are borrowed label
/// pairs; a group's label set is built once, when the group first appears, so no per-element
/// allocation or reference counting on (interned, thread-shared) label strings happens.
fn groups(v: &[Elem], modifier: &Option<LabelModifier>) -> Vec<(Labels, Vec<usize>)> {
    // `by`: keep the listed names; `without`: keep the others, never the metric name.
    let (include, names): (bool, Vec<&str>) = match modifier {
        Some(LabelModifier::Include(by)) => (true, by.labels.iter().map(String::as_str).collect()),
        Some(LabelModifier::Exclude(without)) => {
            let mut names: Vec<&str> = without.labels.iter().map(String::as_str).collect();
            names.push(METRIC_NAME);
            (false, names)
        }
        None => (true, Vec::new()),
    };
    let mut index: HashMap<Vec<&Label>, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut out: Vec<(Labels, Vec<usize>)> = Vec::new();
    for (i, e) in v.iter().enumerate() {
        let k: Vec<&Label> =
            e.labels.iter().filter(|l| names.contains(&&*l.name) == include).collect();
        match index.get(&k) {
            Some(&g) => out[g].1.push(i),
            None => {
                // A subset of sorted, unique, non-empty labels keeps the invariant.
                let labels =
                    Labels::from_sorted_unchecked(k.iter().map(|l| (*l).clone()).collect());
                index.insert(k, out.len());
                out.push((labels, vec![i]));
            }
        }
    }
    out
}

pub(crate) fn eval_aggregate(ev: &mut Evaluator<'_>, a: &AggregateExpr, ts: i64) -> Result<Val> {
    let op = a.op.to_string();
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, ts)?),
        None => None,
    };
    let input = ev.eval_vector(&a.expr, ts)?;
    let out = match op.as_str() {
        "topk" | "bottomk" | "limitk" => {
            let k = scalar_param(&param, &op)?;
            if k.is_nan() {
                return exec_err(format!("Parameter value is NaN for {op}"));
            }
            if k >= 9.223_372_036_854_776e18 || k <= -9.223_372_036_854_776e18 {
                return exec_err(format!("Scalar value {} overflows int64", format_float(k)));
            }
            let k = k as i64;
            if k < 1 {
                return Ok(Val::Vector(Vec::new()));
            }
            let k = usize::try_from(k).unwrap_or(usize::MAX);
            let mut out = Vec::new();
            if op != "limitk" && input.iter().any(|e| e.h.is_some()) {
                ev.annotations.info(format!("ignored histogram in {op} aggregation"));
            }
            for (_, idx) in groups(&input, &a.modifier) {
                let mut members: Vec<&Elem> = idx
                    .iter()
                    .map(|&i| &input[i])
                    .filter(|e| op == "limitk" || e.h.is_none())
                    .collect();
                match op.as_str() {
                    "topk" => members.sort_by(|x, y| cmp_desc_nan_last(x.v, y.v)),
                    "bottomk" => members.sort_by(|x, y| cmp_asc_nan_last(x.v, y.v)),
                    _ => {}
                }
                out.extend(members.into_iter().take(k).cloned());
            }
            out
        }
        "limit_ratio" => {
            let mut r = scalar_param(&param, &op)?;
            if r.is_nan() {
                return exec_err(format!("Ratio value is NaN for {op}"));
            }
            if !(-1.0..=1.0).contains(&r) {
                let capped = r.clamp(-1.0, 1.0);
                ev.annotations.warn(format!(
                    "ratio value should be between -1 and 1, got {}, capping to {}",
                    format_float(r),
                    format_float(capped)
                ));
                r = capped;
            }
            input
                .into_iter()
                .filter(|e| {
                    let offset = crate::hash::labels_hash(&e.labels) as f64 / u64::MAX as f64;
                    (r >= 0.0 && offset < r) || (r < 0.0 && offset >= 1.0 + r)
                })
                .collect()
        }
        "count_values" => {
            let Some(Val::Str(label)) = &param else {
                return exec_err("count_values requires a string parameter");
            };
            if label.is_empty() {
                return exec_err(format!("invalid label name {label:?}"));
            }
            let mut index: HashMap<Labels, usize> = HashMap::new();
            let mut out: Vec<Elem> = Vec::new();
            for e in &input {
                let value = match &e.h {
                    Some(h) => histogram::to_string(h),
                    None => format_float(e.v),
                };
                let key = group_key(&e.labels, &a.modifier).with(label, &value);
                match index.get(&key) {
                    Some(&i) => out[i].v += 1.0,
                    None => {
                        index.insert(key.clone(), out.len());
                        out.push(Elem::float(key, 1.0, ts));
                    }
                }
            }
            out
        }
        _ => {
            let q = if op == "quantile" {
                let q = scalar_param(&param, &op)?;
                if !(0.0..=1.0).contains(&q) {
                    ev.annotations.warn(format!(
                        "quantile value should be between 0 and 1, got {}",
                        format_float(q)
                    ));
                }
                q
            } else {
                0.0
            };
            let mut out = Vec::new();
            for (key, idx) in groups(&input, &a.modifier) {
                // Delayed name removal: a group keyed by a to-be-dropped name keeps the flag.
                let drop = key.get(METRIC_NAME).is_some() && idx.iter().any(|&i| input[i].drop);
                let mut push = |e: Elem| out.push(Elem { drop, ..e });
                let vals: Vec<f64> =
                    idx.iter().filter(|&&i| input[i].h.is_none()).map(|&i| input[i].v).collect();
                let hists: Vec<&Arc<model::FloatHistogram>> =
                    idx.iter().filter_map(|&i| input[i].h.as_ref()).collect();
                match op.as_str() {
                    "count" => {
                        push(Elem::float(key, idx.len() as f64, ts));
                        continue;
                    }
                    "group" => {
                        push(Elem::float(key, 1.0, ts));
                        continue;
                    }
                    "sum" | "avg" if !hists.is_empty() => {
                        if !vals.is_empty() {
                            ev.annotations.warn(
                                "encountered a mix of histograms and floats for aggregation".into(),
                            );
                            continue;
                        }
                        let mut acc = (**hists[0]).clone();
                        let mut failed = false;
                        for h in &hists[1..] {
                            match histogram::add(&acc, h, 1.0) {
                                Ok(s) => acc = s,
                                Err(e) => {
                                    ev.annotations.warn(histogram::incompatible_msg(e, ""));
                                    failed = true;
                                    break;
                                }
                            }
                        }
                        if failed {
                            continue;
                        }
                        if op == "avg" {
                            acc = histogram::divide(&acc, hists.len() as f64);
                        }
                        acc.counter_reset_hint = histogram::HINT_GAUGE;
                        push(Elem {
                            labels: key,
                            v: 0.0,
                            t: ts,
                            h: Some(Arc::new(histogram::compact(acc))),
                            drop,
                        });
                        continue;
                    }
                    _ => {}
                }
                if !hists.is_empty() && !matches!(op.as_str(), "sum" | "avg") {
                    ev.annotations.info(format!("ignored histogram in {op} aggregation"));
                }
                if vals.is_empty() {
                    continue;
                }
                let v = match op.as_str() {
                    "sum" => sum(&vals),
                    "avg" => avg(&vals),
                    "min" => vals
                        .iter()
                        .skip(1)
                        .fold(vals[0], |m, &v| if m > v || m.is_nan() { v } else { m }),
                    "max" => vals
                        .iter()
                        .skip(1)
                        .fold(vals[0], |m, &v| if m < v || m.is_nan() { v } else { m }),
                    "stddev" => stdvar(&vals).sqrt(),
                    "stdvar" => stdvar(&vals),
                    "quantile" => quantile(q, vals),
                    _ => return exec_err(format!("unsupported aggregation {op}")),
                };
                push(Elem::float(key, v, ts));
            }
            out
        }
    };
    Ok(Val::Vector(out))
}

fn scalar_param(p: &Option<Val>, op: &str) -> Result<f64> {
    match p {
        Some(Val::Scalar(v)) => Ok(*v),
        _ => exec_err(format!("{op} requires a scalar parameter")),
    }
}

fn sum(vals: &[f64]) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for &v in vals {
        (s, c) = kahan_sum_inc(v, s, c);
    }
    s + c
}

pub(crate) fn stdvar(vals: &[f64]) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for &v in vals {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        m2 += delta * (v - mean);
    }
    m2 / count
}
