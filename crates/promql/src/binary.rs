//! Binary operators: arithmetic, comparisons (with and without `bool`), `atan2`, the set
//! operators, and vector matching (`on`, `ignoring`, `group_left`, `group_right`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use model::{FloatHistogram, Labels};
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::error::{Result, exec_err};
use crate::eval::{Elem, Evaluator, MetaLabels, NAME_ONLY, Val, check_unique, drop_name};
use crate::histogram::{self, Incompatible};
use crate::value::Annotations;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            _ => return None,
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }
}

/// Applies `op` to two floats: `(value, keep)`. Comparisons keep the left value when true.
fn apply(op: Op, l: f64, r: f64) -> (f64, bool) {
    match op {
        Op::Add => (l + r, true),
        Op::Sub => (l - r, true),
        Op::Mul => (l * r, true),
        Op::Div => (l / r, true),
        Op::Mod => (l % r, true),
        Op::Pow => (l.powf(r), true),
        Op::Atan2 => (l.atan2(r), true),
        Op::Eq => (l, l == r),
        Op::Ne => (l, l != r),
        Op::Gt => (l, l > r),
        Op::Lt => (l, l < r),
        Op::Ge => (l, l >= r),
        Op::Le => (l, l <= r),
        Op::And | Op::Or | Op::Unless => (l, false),
    }
}

/// Why an element pair produced no result: an annotation to raise.
enum Dropped {
    Info(String),
    Warn(String),
}

type Hist = Option<Arc<FloatHistogram>>;

/// `op` on two elements, either of which may be a histogram: `(value, histogram, keep)`.
fn elem_binop(
    op: Op,
    op_str: &str,
    l: f64,
    lh: &Hist,
    r: f64,
    rh: &Hist,
    name: &str,
) -> Result<(f64, Hist, bool), Dropped> {
    let incompatible = |a: &str, b: &str| {
        Dropped::Info(format!(
            "incompatible sample types encountered for binary operator {op_str:?}: {a} {op_str} {b}"
        ))
    };
    let combine_err = |e: Incompatible| match e {
        Incompatible::MixedSchemas => Dropped::Warn(format!(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"
        )),
        Incompatible::CustomBounds => Dropped::Warn(format!(
            "vector contains histograms with incompatible custom buckets for metric name {name:?}"
        )),
    };
    match (lh, rh) {
        (None, None) => {
            let (v, keep) = apply(op, l, r);
            Ok((v, None, keep))
        }
        (None, Some(h)) => match op {
            Op::Mul => Ok((0.0, Some(Arc::new(histogram::scale(h, l))), true)),
            _ => Err(incompatible("float", "histogram")),
        },
        (Some(h), None) => match op {
            Op::Mul => Ok((0.0, Some(Arc::new(histogram::scale(h, r))), true)),
            Op::Div => Ok((0.0, Some(Arc::new(histogram::divide(h, r))), true)),
            _ => Err(incompatible("histogram", "float")),
        },
        (Some(a), Some(b)) => match op {
            Op::Add | Op::Sub => {
                let sign = if op == Op::Add { 1.0 } else { -1.0 };
                let mut res = histogram::add(a, b, sign).map_err(combine_err)?;
                res.counter_reset_hint = histogram::HINT_GAUGE;
                Ok((0.0, Some(Arc::new(histogram::compact(res))), true))
            }
            Op::Eq => Ok((0.0, Some(a.clone()), histogram::equals(a, b))),
            Op::Ne => Ok((0.0, Some(a.clone()), !histogram::equals(a, b))),
            _ => Err(incompatible("histogram", "histogram")),
        },
    }
}

/// Labels a binary operator derived from its operands' label sets (matching signatures,
/// result labels), memoised across the steps of a query: a range query evaluated step by
/// step meets the same input label sets (clones of one `Arc`) at every step, and building
/// the derived set again at each step dominated its time.
///
/// *Invariant:* an entry is keyed by the addresses of its input label sets and holds clones
/// of them, so while it exists no other label set can have those addresses: a hit is always
/// for the very same inputs, and returns exactly what the computation would.
/// *Invariant:* memory stays bounded: the memo is cleared when it reaches `MEMO_CAP`
/// entries (inputs that are rebuilt at every step then only cost one clear per `MEMO_CAP`).
#[derive(Default)]
pub(crate) struct LabelMemo {
    map: HashMap<(usize, Derived, usize, usize), MemoEntry, foldhash::fast::RandomState>,
}

/// What a memo entry derived.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Derived {
    /// The vector-matching signature (`signature` with `NAME_ONLY`).
    Sig,
    /// The set operators' signature (`signature` with the evaluator's metric labels).
    SetSig,
    /// The result labels of a matched pair (`result_metric`, then `drop_name` with `bool`).
    Result,
    /// The labels of a vector-scalar result (`drop_name`).
    DropName,
}

struct MemoEntry {
    /// Keep the inputs alive, so their addresses keep naming them.
    _inputs: (Labels, Labels),
    out: Labels,
}

const MEMO_CAP: usize = 1 << 18;

impl LabelMemo {
    /// `f()`, the labels `node` derives as `what` from `a` and `b`, computed once per input
    /// pair.
    fn get(
        &mut self,
        node: usize,
        what: Derived,
        a: &Labels,
        b: &Labels,
        f: impl FnOnce() -> Labels,
    ) -> Labels {
        let key = (node, what, a.addr(), b.addr());
        if let Some(e) = self.map.get(&key) {
            return e.out.clone();
        }
        if self.map.len() >= MEMO_CAP {
            self.map.clear();
        }
        let out = f();
        self.map.insert(key, MemoEntry { _inputs: (a.clone(), b.clone()), out: out.clone() });
        out
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

fn annotate(annos: &mut Annotations, d: Dropped) {
    match d {
        Dropped::Info(m) => annos.info(m),
        Dropped::Warn(m) => annos.warn(m),
    }
}

pub(crate) fn eval_binary(ev: &mut Evaluator<'_>, be: &BinaryExpr, ts: i64) -> Result<Val> {
    let node = std::ptr::from_ref(be) as usize;
    let op_str = be.op.to_string();
    let Some(op) = Op::parse(&op_str) else {
        return exec_err(format!("unknown binary operator {op_str:?}"));
    };
    let return_bool = be.return_bool();
    let lhs = ev.eval(&be.lhs, ts)?;
    let rhs = ev.eval(&be.rhs, ts)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let (v, keep) = apply(op, l, r);
            if op.is_comparison() {
                // The parser only allows comparisons of scalars with `bool`.
                return Ok(Val::Scalar(if keep { 1.0 } else { 0.0 }));
            }
            Ok(Val::Scalar(v))
        }
        (Val::Vector(l), Val::Scalar(r)) => {
            let out = vector_scalar(ev, node, op, &op_str, l, r, false, return_bool);
            check_unique(&out)?;
            Ok(Val::Vector(out))
        }
        (Val::Scalar(l), Val::Vector(r)) => {
            let out = vector_scalar(ev, node, op, &op_str, r, l, true, return_bool);
            check_unique(&out)?;
            Ok(Val::Vector(out))
        }
        (Val::Vector(l), Val::Vector(r)) => {
            let default = BinModifier::default();
            let m = be.modifier.as_ref().unwrap_or(&default);
            let out = match op {
                Op::And => set_and(ev, node, l, r, m, false),
                Op::Unless => set_and(ev, node, l, r, m, true),
                Op::Or => set_or(ev, node, l, r, m),
                _ => vector_vector(ev, node, op, &op_str, l, r, m, return_bool)?,
            };
            check_unique(&out)?;
            Ok(Val::Vector(out))
        }
        (l, r) => exec_err(format!(
            "binary operator {op_str} not allowed between {} and {}",
            l.type_name(),
            r.type_name()
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn vector_scalar(
    ev: &mut Evaluator<'_>,
    node: usize,
    op: Op,
    op_str: &str,
    vec: Vec<Elem>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Vec<Elem> {
    let mut out = Vec::with_capacity(vec.len());
    for mut e in vec {
        let name = e.labels.metric_name().unwrap_or("");
        let res = if swap {
            elem_binop(op, op_str, s, &None, e.v, &e.h, name)
        } else {
            elem_binop(op, op_str, e.v, &e.h, s, &None, name)
        };
        let (mut v, mut h, mut keep) = match res {
            Ok(x) => x,
            Err(d) => {
                annotate(&mut ev.annotations, d);
                continue;
            }
        };
        if op.is_comparison() && swap {
            v = e.v;
        }
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
            h = None;
            keep = true;
        }
        if keep {
            if !op.is_comparison() || return_bool {
                let meta = ev.meta();
                e.labels = ev.label_memo.get(node, Derived::DropName, &e.labels, &e.labels, || {
                    drop_name(&e.labels, meta)
                });
                e.drop = ev.meta().delayed;
            }
            e.v = v;
            e.h = h;
            out.push(e);
        }
    }
    out
}

/// The matching signature of a series: the `on` labels, or all but the `ignoring` labels
/// and the metric name.
fn signature(l: &Labels, matching: &Option<LabelModifier>, meta: MetaLabels) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => {
            let names: Vec<&str> = on.labels.iter().map(String::as_str).collect();
            l.keep(&names)
        }
        Some(LabelModifier::Exclude(ign)) => {
            let mut names: Vec<&str> = ign.labels.iter().map(String::as_str).collect();
            names.extend_from_slice(meta.names);
            l.without(&names)
        }
        None => l.without(meta.names),
    }
}

/// The set operators' signature of `l`, memoised.
fn set_sig(ev: &mut Evaluator<'_>, node: usize, l: &Labels, m: &BinModifier) -> Labels {
    let meta = ev.meta();
    ev.label_memo.get(node, Derived::SetSig, l, l, || signature(l, &m.matching, meta))
}

fn set_and(
    ev: &mut Evaluator<'_>,
    node: usize,
    l: Vec<Elem>,
    r: Vec<Elem>,
    m: &BinModifier,
    unless: bool,
) -> Vec<Elem> {
    let sigs: HashSet<Labels, foldhash::fast::RandomState> =
        r.iter().map(|e| set_sig(ev, node, &e.labels, m)).collect();
    l.into_iter().filter(|e| sigs.contains(&set_sig(ev, node, &e.labels, m)) != unless).collect()
}

fn set_or(
    ev: &mut Evaluator<'_>,
    node: usize,
    l: Vec<Elem>,
    r: Vec<Elem>,
    m: &BinModifier,
) -> Vec<Elem> {
    let sigs: HashSet<Labels, foldhash::fast::RandomState> =
        l.iter().map(|e| set_sig(ev, node, &e.labels, m)).collect();
    let mut out = l;
    out.extend(r.into_iter().filter(|e| !sigs.contains(&set_sig(ev, node, &e.labels, m))));
    out
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    ev: &mut Evaluator<'_>,
    node: usize,
    op: Op,
    op_str: &str,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    m: &BinModifier,
    return_bool: bool,
) -> Result<Vec<Elem>> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let (card_one_to_many, include): (bool, Vec<String>) = match &m.card {
        VectorMatchCardinality::OneToMany(ls) => (true, ls.labels.clone()),
        VectorMatchCardinality::ManyToOne(ls) => (false, ls.labels.clone()),
        _ => (false, Vec::new()),
    };
    let one_to_one =
        matches!(m.card, VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany);
    let (many, one) = if card_one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut right: HashMap<Labels, &Elem, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(one.len(), Default::default());
    let memo = &mut ev.label_memo;
    let sig_of = |memo: &mut LabelMemo, l: &Labels| {
        memo.get(node, Derived::Sig, l, l, || signature(l, &m.matching, NAME_ONLY))
    };
    for rs in &one {
        let sig = sig_of(memo, &rs.labels);
        if let Some(dup) = right.get(&sig) {
            let side = if card_one_to_many { "left" } else { "right" };
            return exec_err(format!(
                "found duplicate series for the match group {sig} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                rs.labels, dup.labels
            ));
        }
        right.insert(sig, rs);
    }
    let mut matched: HashMap<
        Labels,
        HashSet<Labels, foldhash::fast::RandomState>,
        foldhash::fast::RandomState,
    > = HashMap::default();
    let mut out = Vec::new();
    let meta = ev.meta();
    for ls in &many {
        let sig = sig_of(&mut ev.label_memo, &ls.labels);
        let Some(rs) = right.get(&sig) else { continue };
        let (l, r) = if card_one_to_many { (*rs, ls) } else { (ls, *rs) };
        let name = ls.labels.metric_name().unwrap_or("");
        let (mut v, mut h, keep) = match elem_binop(op, op_str, l.v, &l.h, r.v, &r.h, name) {
            Ok(x) => x,
            Err(d) => {
                annotate(&mut ev.annotations, d);
                continue;
            }
        };
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
            h = None;
        } else if !keep {
            continue;
        }
        let metric = ev.label_memo.get(node, Derived::Result, &ls.labels, &rs.labels, || {
            let metric = result_metric(meta, &ls.labels, &rs.labels, op, m, one_to_one, &include);
            if return_bool { drop_name(&metric, meta) } else { metric }
        });
        let drop = if return_bool || (!op.is_comparison() && !op.is_set()) {
            ev.meta().delayed && metric.get(model::METRIC_NAME).is_some()
        } else {
            ls.drop
        };
        if one_to_one {
            if matched.contains_key(&sig) {
                return exec_err(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                );
            }
            matched.insert(sig, HashSet::default());
        } else {
            let set = matched.entry(sig).or_default();
            if !set.insert(metric.clone()) {
                return exec_err(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                );
            }
        }
        out.push(Elem { labels: metric, v, t: ls.t, h, drop });
    }
    Ok(out)
}

fn result_metric(
    meta: MetaLabels,
    many: &Labels,
    one: &Labels,
    op: Op,
    m: &BinModifier,
    one_to_one: bool,
    include: &[String],
) -> Labels {
    let mut l =
        if !op.is_comparison() && !op.is_set() { drop_name(many, meta) } else { many.clone() };
    if one_to_one {
        match &m.matching {
            Some(LabelModifier::Include(on)) => {
                let names: Vec<&str> = on.labels.iter().map(String::as_str).collect();
                l = l.keep(&names);
            }
            Some(LabelModifier::Exclude(ign)) => {
                let names: Vec<&str> = ign.labels.iter().map(String::as_str).collect();
                l = l.without(&names);
            }
            None => {}
        }
    }
    for name in include {
        l = l.with(name, one.get(name).unwrap_or(""));
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied()).expect("valid labels")
    }

    /// The memo computes once per input pair (a clone of an input hits), tells apart equal
    /// but separately built inputs, nodes and kinds, and clears itself at `MEMO_CAP`.
    #[test]
    fn label_memo_computes_once_per_input_pair() {
        let mut memo = LabelMemo::default();
        let a = labels(&[("__name__", "m"), ("instance", "a")]);
        let b = labels(&[("__name__", "m"), ("instance", "a")]);
        let strip = |l: &Labels| l.without(&["__name__"]);
        let mut calls = 0;
        let mut check = |memo: &mut LabelMemo, node, what, x: &Labels, computed: bool| {
            let before = calls;
            let out = memo.get(node, what, x, x, || {
                calls += 1;
                strip(x)
            });
            assert_eq!(out, strip(x));
            assert_eq!(calls > before, computed, "node {node}, input {x}");
        };
        check(&mut memo, 1, Derived::Sig, &a, true);
        check(&mut memo, 1, Derived::Sig, &a.clone(), false);
        check(&mut memo, 1, Derived::Sig, &b, true);
        check(&mut memo, 2, Derived::Sig, &a, true);
        check(&mut memo, 1, Derived::SetSig, &a, true);
        assert_eq!(memo.len(), 4);
        for i in 0..MEMO_CAP {
            let l = labels(&[("i", &i.to_string())]);
            memo.get(3, Derived::Result, &l, &l, || l.clone());
        }
        assert!(memo.len() <= MEMO_CAP);
        check(&mut memo, 1, Derived::Sig, &a, true);
    }
}
