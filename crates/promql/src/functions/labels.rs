//! Label functions: `label_replace`, `label_join`, the labels of `absent()`, and the natural
//! ordering of `sort_by_label`.

use model::{Labels, METRIC_NAME};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::Expr;
use regex::Regex;

use super::{string_arg, take_vector};
use crate::error::{Result, exec_err};
use crate::eval::{Elem, Val};

/// Labels of `absent()`'s output: the equality matchers of a lone selector argument.
pub(crate) fn absent_labels(e: &Expr) -> Labels {
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

pub(crate) fn valid_label_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| ('\u{80}'..='\u{ff}').contains(&c) && c != '\u{a0}')
}

pub(crate) fn label_replace(args: &mut [Val]) -> Result<Vec<Elem>> {
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
            if dst == METRIC_NAME {
                e.drop = false;
            }
        }
        out.push(e);
    }
    Ok(out)
}

pub(crate) fn label_join(args: &mut [Val]) -> Result<Vec<Elem>> {
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
            if dst == METRIC_NAME {
                e.drop = false;
            }
            e
        })
        .collect())
}

/// Compares strings with runs of digits compared as numbers ("a2" < "a10").
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
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
