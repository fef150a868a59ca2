//! Series-at-a-time evaluation of range queries: the nodes it covers are computed for one
//! series across all steps at once (moving indices over that series' samples, group keys
//! computed once per series), into a step-aligned matrix. A covered root answers the query
//! directly; a covered node under an uncovered parent is handed to the step-by-step
//! evaluator, which reads it at each step instead of evaluating it (`Evaluator::eval`).
//!
//! Covered: instant vector selectors, the common range functions over a matrix selector,
//! and `sum`/`avg`/`min`/`max`/`count`/`group`/`stddev`/`stdvar`/`quantile` aggregations
//! over those, all without `@`, on float samples only, without delayed name removal.
//! Everything else (subqueries and what is under them, binary operators, histograms, ...)
//! stays step by step.
//!
//! *Invariant:* at every step, a precomputed node gives exactly the vector the step
//! evaluator would: the same elements, labels, values (the same helper functions, fed the
//! same values in the same order) and element order, and it counts the same samples for
//! the samples limit (`StepMatrix::step_in`). Whenever that cannot be guaranteed (possible
//! duplicate label sets, a samples limit that would be hit, histograms) the node is simply
//! not covered, so the step evaluator produces its exact answer or error.
//! *Invariant:* memory stays bounded: a node is only precomputed while the cells of all
//! precomputed matrices stay within `max_samples`; deadline and cancellation are checked
//! for every series.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use model::{Labels, is_stale_nan};
use promql_parser::parser::{AggregateExpr, Call, Expr};

use crate::aggregate::{group_key, stdvar};
use crate::error::{Error, Result};
use crate::eval::{Elem, Evaluator, Loaded, MatrixVal, duration_ms, offset_ms};
use crate::float::{avg, kahan_sum_inc, quantile};
use crate::functions::{extrapolated_rate_scan, instant_float, linear_regression, over_time};
use crate::value::{Point, Series};

/// The evaluation times of a range query: `start + k * step` for `k < n`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub start: i64,
    pub step: i64,
    pub n: usize,
}

impl Grid {
    fn t(&self, k: usize) -> i64 {
        // k < n, and start + (n - 1) * step <= end: no overflow.
        self.start.saturating_add((k as i64).saturating_mul(self.step))
    }

    /// The step index of `ts`, when `ts` is one of the grid's times.
    pub fn index(&self, ts: i64) -> Option<usize> {
        let d = ts.checked_sub(self.start)?;
        if d < 0 || d % self.step != 0 {
            return None;
        }
        usize::try_from(d / self.step).ok().filter(|&k| k < self.n)
    }
}

/// A range function over a matrix selector, at every step of a grid.
struct RangeFn<'n> {
    name: &'n str,
    grid: Grid,
    off: i64,
    range: i64,
    /// `rate` or `increase`: counter resets matter.
    counter: bool,
}

impl RangeFn<'_> {
    /// One series' values at every step (`None`: absent at every step), adding the samples
    /// each step reads to `step_in`; the flag: some window held more than one sample.
    /// `resets` is scratch space.
    fn row(
        &self,
        p: &[Point],
        step_in: &mut [usize],
        resets: &mut Vec<u32>,
    ) -> (Option<Vec<Option<f64>>>, bool) {
        let (name, grid, counter) = (self.name, self.grid, self.counter);
        // resets[i]: how many samples in p[1..=i] are below their predecessor. A window
        // p[lo..hi] holds a reset iff resets[hi - 1] > resets[lo]; most windows hold none,
        // and `rate` then skips its O(window) reset scan.
        if counter {
            resets.clear();
            let mut n = 0u32;
            resets.push(0);
            for w in p.windows(2) {
                n += u32::from(w[1].v < w[0].v);
                resets.push(n);
            }
        }
        let mut vals: Vec<Option<f64>> = Vec::new();
        let (mut lo, mut hi) = (0, 0);
        let mut several = false;
        for k in 0..grid.n {
            let t = grid.t(k).saturating_sub(self.off);
            let start = t.saturating_sub(self.range);
            while lo < p.len() && p[lo].t <= start {
                lo += 1;
            }
            hi = hi.max(lo);
            while hi < p.len() && p[hi].t <= t {
                hi += 1;
            }
            if lo == hi {
                continue;
            }
            step_in[k] += hi - lo;
            let w = &p[lo..hi];
            several |= w.len() > 1;
            let v = match name {
                "rate" | "increase" | "delta" => {
                    let m = MatrixVal { series: Vec::new(), range_start: start, range_end: t };
                    let scan = counter && resets[hi - 1] > resets[lo];
                    extrapolated_rate_scan(&m, w, counter, name == "rate", scan)
                }
                "irate" | "idelta" => instant_float(w, name == "irate"),
                "deriv" => (w.len() >= 2).then(|| linear_regression(w, w[0].t).0),
                _ => over_time(name, w),
            };
            if let Some(v) = v {
                if vals.is_empty() {
                    vals = vec![None; grid.n];
                }
                vals[k] = Some(v);
            }
        }
        ((!vals.is_empty()).then_some(vals), several)
    }
}

/// One output series of a node: its labels and its value at each step (`None`: absent).
pub(crate) struct Row {
    labels: Labels,
    vals: Vec<Option<f64>>,
    /// Per step, the position the step evaluator would give this element in its vector
    /// (aggregations: the position of the group's first present member). `None` when the
    /// rows are already in that order at every step.
    order: Option<Vec<u32>>,
}

/// A node's value at every step of the grid.
pub(crate) struct StepMatrix {
    rows: Vec<Row>,
    /// Samples the step evaluator counts for this node's subtree at each step.
    pub step_in: Vec<usize>,
}

impl StepMatrix {
    fn ordered(&self) -> bool {
        self.rows.iter().all(|r| r.order.is_none())
    }

    /// The vector the step evaluator computes at step `k` (time `ts`).
    pub fn at(&self, k: usize, ts: i64) -> Vec<Elem> {
        let present = self.rows.iter().filter_map(|r| r.vals[k].map(|v| (r, v)));
        if self.ordered() {
            return present.map(|(r, v)| Elem::float(r.labels.clone(), v, ts)).collect();
        }
        let mut v: Vec<(u32, &Row, f64)> =
            present.map(|(r, v)| (r.order.as_ref().map_or(0, |o| o[k]), r, v)).collect();
        v.sort_by_key(|x| x.0);
        v.into_iter().map(|(_, r, v)| Elem::float(r.labels.clone(), v, ts)).collect()
    }
}

/// A covered range function, its series, and whether it keeps the metric name.
type RangeInput<'c> = (RangeFn<'c>, Arc<Vec<Loaded>>, bool);

/// One thread's share of a fused aggregation: its steps, for every group (`group * steps +
/// step`), and which series had a window of several samples (for `rate`'s annotation).
struct FusedPart {
    /// `sum`: Kahan sum and compensation.
    acc: Vec<(f64, f64)>,
    /// `count` and `group`: members present.
    count: Vec<usize>,
    /// First present member's series index (`u32::MAX`: none).
    order: Vec<u32>,
    step_in: Vec<usize>,
    several: Vec<bool>,
}

/// Joins scoped worker threads in order; a worker that panicked is an internal error (named
/// after `what` the workers computed), not a panic of the query.
fn join_workers<T>(
    handles: Vec<std::thread::ScopedJoinHandle<'_, Result<T>>>,
    what: &str,
) -> Vec<Result<T>> {
    handles
        .into_iter()
        .map(|h| {
            h.join().unwrap_or_else(|_| {
                Err(Error::Execution(format!("internal: {what} worker panicked")))
            })
        })
        .collect()
}

fn key(e: &Expr) -> usize {
    e as *const Expr as usize
}

fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// Prepares a range query over `grid`. Returns the whole answer (series sorted by labels)
/// when the root is covered; otherwise registers the covered subtrees with `ev` for the
/// step evaluator and returns `None`.
pub(crate) fn prepare(
    ev: &mut Evaluator<'_>,
    expr: &Expr,
    grid: Grid,
) -> Result<Option<Vec<Series>>> {
    if !ev.opts.series_at_a_time || ev.meta().delayed || grid.n > ev.opts.max_samples {
        return Ok(None);
    }
    let mut p = Planner { ev, grid, memo: HashMap::new(), cells: 0, outer: HashSet::new() };
    if let Some(m) = p.node(expr)? {
        return p.finish_root(&m).map(Some);
    }
    p.descend(expr)?;
    let outer = std::mem::take(&mut p.outer);
    let pre: HashMap<usize, Arc<StepMatrix>> = p
        .memo
        .into_iter()
        .filter(|(k, _)| outer.contains(k))
        .filter_map(|(k, m)| m.map(|m| (k, m)))
        .collect();
    ev.set_precomputed(grid, pre);
    Ok(None)
}

struct Planner<'e, 'a> {
    ev: &'e mut Evaluator<'a>,
    grid: Grid,
    /// Every node tried, covered or not: a node is computed once.
    memo: HashMap<usize, Option<Arc<StepMatrix>>>,
    /// Cells held by all precomputed matrices, bounded by `max_samples`.
    cells: usize,
    /// The covered nodes under uncovered parents: the ones the step evaluator reads.
    outer: HashSet<usize>,
}

impl Planner<'_, '_> {
    /// The series of a covered root, with the samples limit checked as `eval_steps` does:
    /// at each step, the step's samples plus every point produced so far.
    fn finish_root(&mut self, m: &StepMatrix) -> Result<Vec<Series>> {
        let mut held = 0usize;
        for k in 0..self.grid.n {
            held += m.rows.iter().filter(|r| r.vals[k].is_some()).count();
            if m.step_in[k].saturating_add(held) > self.ev.opts.max_samples {
                return Err(Error::TooManySamples("query execution"));
            }
        }
        let mut out: Vec<Series> = m
            .rows
            .iter()
            .map(|r| Series {
                labels: r.labels.clone(),
                points: r
                    .vals
                    .iter()
                    .enumerate()
                    .filter_map(|(k, v)| v.map(|v| Point { t: self.grid.t(k), v }))
                    .collect(),
                histograms: Vec::new(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Registers the covered children of an uncovered node, recursively. Subqueries are
    /// not entered: their inner steps are not the query's.
    fn descend(&mut self, expr: &Expr) -> Result<()> {
        let children: Vec<&Expr> = match expr {
            Expr::Paren(p) => vec![&p.expr],
            Expr::Unary(u) => vec![&u.expr],
            Expr::Binary(b) => vec![&b.lhs, &b.rhs],
            Expr::Aggregate(a) => {
                let mut c: Vec<&Expr> = a.param.iter().map(|p| &**p).collect();
                c.push(&a.expr);
                c
            }
            Expr::Call(c) if c.func.name == "timestamp" => Vec::new(),
            Expr::Call(c) => c.args.args.iter().map(|a| &**a).collect(),
            _ => Vec::new(),
        };
        for c in children {
            if self.node(c)?.is_some() {
                self.outer.insert(key(unparen(c)));
            } else {
                self.descend(c)?;
            }
        }
        Ok(())
    }

    /// The node's step matrix when it is covered.
    fn node(&mut self, expr: &Expr) -> Result<Option<Arc<StepMatrix>>> {
        let expr = unparen(expr);
        if let Some(m) = self.memo.get(&key(expr)) {
            return Ok(m.clone());
        }
        let m = match expr {
            Expr::VectorSelector(vs) if vs.at.is_none() => self.vector_selector(vs)?,
            Expr::Call(c) => self.range_function(c)?,
            Expr::Aggregate(a) => self.aggregate(a)?,
            _ => None,
        }
        .map(Arc::new);
        self.memo.insert(key(expr), m.clone());
        Ok(m)
    }

    /// Reserves the cells of `rows` more rows; false when that would pass the limit.
    fn reserve(&mut self, rows: usize) -> bool {
        let add = rows.saturating_mul(self.grid.n);
        match self.cells.checked_add(add) {
            Some(c) if c <= self.ev.opts.max_samples => {
                self.cells = c;
                true
            }
            _ => false,
        }
    }

    fn step_in_ok(&self, step_in: &[usize]) -> bool {
        step_in.iter().all(|&n| n <= self.ev.opts.max_samples)
    }

    /// The newest non-stale sample within the lookback window, per series and step.
    fn vector_selector(
        &mut self,
        vs: &promql_parser::parser::VectorSelector,
    ) -> Result<Option<StepMatrix>> {
        let data = self.ev.loaded(vs)?;
        if data.iter().any(|s| !s.histograms.is_empty()) {
            return Ok(None);
        }
        let (grid, off, lb) = (self.grid, offset_ms(&vs.offset), self.ev.opts.lookback_delta_ms);
        let mut step_in = vec![0usize; grid.n];
        let mut rows = Vec::new();
        for s in data.iter() {
            self.ev.check_deadline()?;
            let mut vals: Vec<Option<f64>> = Vec::new();
            let mut i = 0;
            for k in 0..grid.n {
                let t = grid.t(k).saturating_sub(off);
                while i < s.samples.len() && s.samples[i].t <= t {
                    i += 1;
                }
                if i == 0 {
                    continue;
                }
                let x = s.samples[i - 1];
                if x.t > t.saturating_sub(lb) && !is_stale_nan(x.v) {
                    if vals.is_empty() {
                        if !self.reserve(1) {
                            return Ok(None);
                        }
                        vals = vec![None; grid.n];
                    }
                    vals[k] = Some(x.v);
                    step_in[k] += 1;
                }
            }
            if !vals.is_empty() {
                rows.push(Row { labels: s.labels.clone(), vals, order: None });
            }
        }
        if !self.step_in_ok(&step_in) {
            return Ok(None);
        }
        Ok(Some(StepMatrix { rows, step_in }))
    }

    /// What a covered range function reads: the function, its series and whether it keeps
    /// the metric name (`last_over_time`, `first_over_time`). `None`: not covered.
    fn range_input<'c>(&mut self, c: &'c Call) -> Result<Option<RangeInput<'c>>> {
        let name = c.func.name;
        let keep = matches!(name, "last_over_time" | "first_over_time");
        let supported = keep
            || matches!(
                name,
                "rate"
                    | "increase"
                    | "delta"
                    | "irate"
                    | "idelta"
                    | "deriv"
                    | "sum_over_time"
                    | "avg_over_time"
                    | "min_over_time"
                    | "max_over_time"
                    | "count_over_time"
                    | "stddev_over_time"
                    | "stdvar_over_time"
                    | "present_over_time"
            );
        if !supported || c.args.args.len() != 1 {
            return Ok(None);
        }
        let Expr::MatrixSelector(ms) = unparen(&c.args.args[0]) else { return Ok(None) };
        if ms.vs.at.is_some() {
            return Ok(None);
        }
        let data = self.ev.loaded(&ms.vs)?;
        if data.iter().any(|s| !s.histograms.is_empty()) {
            return Ok(None);
        }
        if !keep {
            // The step evaluator fails when two results share a label set; leave that to it.
            let mut seen: HashSet<&Labels, foldhash::fast::RandomState> =
                HashSet::with_capacity_and_hasher(data.len(), Default::default());
            if !data.iter().all(|s| seen.insert(&s.dropped)) {
                return Ok(None);
            }
        }
        let (grid, off, range) = (self.grid, offset_ms(&ms.vs.offset), duration_ms(&ms.range));
        let counter = matches!(name, "rate" | "increase");
        Ok(Some((RangeFn { name, grid, off, range, counter }, data, keep)))
    }

    /// The info annotation the step evaluator raises for `rate`/`increase` over a series
    /// whose name does not look like a counter's, when some window held several samples.
    fn counter_info(&mut self, f: &RangeFn<'_>, labels: &Labels, several: bool) {
        if f.counter && several {
            let n = labels.metric_name().unwrap_or("");
            if !n.is_empty()
                && !["_total", "_sum", "_count", "_bucket"].iter().any(|x| n.ends_with(x))
            {
                self.ev.annotations.info(format!(
                    "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"
                ));
            }
        }
    }

    /// `f(x[range])` for the range functions below, over float series.
    fn range_function(&mut self, c: &Call) -> Result<Option<StepMatrix>> {
        let Some((f, data, keep)) = self.range_input(c)? else { return Ok(None) };
        let grid = f.grid;
        let mut step_in = vec![0usize; grid.n];
        let mut rows = Vec::new();
        let workers = self.ev.opts.parallel_workers.clamp(1, data.len().max(1));
        // Above `parallel_min_work` (series × steps), when whole rows for every series fit
        // the cell budget: compute them on `workers` threads (contiguous slices of the
        // series, concatenated in order), then account for them as the sequential loop
        // does. Otherwise one row at a time, reserved as it appears, so that memory stays
        // bounded.
        let all_fit = data
            .len()
            .checked_mul(grid.n)
            .and_then(|c| c.checked_add(self.cells))
            .is_some_and(|c| c <= self.ev.opts.max_samples);
        let computed: Vec<(Option<Vec<Option<f64>>>, bool)> = if workers > 1
            && all_fit
            && data.len().saturating_mul(grid.n) >= self.ev.opts.parallel_min_work
        {
            let check = self.ev.deadline_check();
            let per = data.len().div_ceil(workers);
            let parts: Vec<Result<(Vec<_>, Vec<usize>)>> = std::thread::scope(|scope| {
                let handles: Vec<_> = data
                    .chunks(per)
                    .map(|chunk| {
                        let (f, check) = (&f, &check);
                        scope.spawn(move || {
                            let mut step_in = vec![0usize; grid.n];
                            let mut resets = Vec::new();
                            let mut out = Vec::with_capacity(chunk.len());
                            for s in chunk {
                                check()?;
                                out.push(f.row(&s.floats, &mut step_in, &mut resets));
                            }
                            Ok((out, step_in))
                        })
                    })
                    .collect();
                join_workers(handles, "range function")
            });
            let mut all = Vec::with_capacity(data.len());
            for part in parts {
                let (out, si) = part?;
                all.extend(out);
                step_in.iter_mut().zip(si).for_each(|(a, b)| *a += b);
            }
            all
        } else {
            Vec::new()
        };
        let parallel = !computed.is_empty();
        let mut computed = computed.into_iter();
        let mut resets: Vec<u32> = Vec::new();
        for s in data.iter() {
            let (vals, several) = if parallel {
                computed.next().unwrap_or((None, false))
            } else {
                self.ev.check_deadline()?;
                f.row(&s.floats, &mut step_in, &mut resets)
            };
            self.counter_info(&f, &s.labels, several);
            if let Some(vals) = vals {
                if !self.reserve(1) {
                    return Ok(None);
                }
                let labels = if keep { s.labels.clone() } else { s.dropped.clone() };
                rows.push(Row { labels, vals, order: None });
            }
        }
        if !self.step_in_ok(&step_in) {
            return Ok(None);
        }
        Ok(Some(StepMatrix { rows, step_in }))
    }

    /// `sum`, `count` or `group` straight over a covered range function: each series' row
    /// is computed into scratch space and folded into its group's step row at once, so the
    /// function's rows (series × steps) are never held. Per step, a group's members are
    /// added in series order (Kahan for `sum`), as `aggregate` adds them over materialised
    /// rows, so the answer is the same bit for bit. On `parallel_workers` threads the steps,
    /// not the series, are split: every thread walks all series over its own steps, so each
    /// step still sees its members in order. `Row::order` holds the first present member's
    /// series index, which orders groups as its row index would. `None`: not covered here.
    fn fused_aggregate(
        &mut self,
        a: &AggregateExpr,
        op: &str,
        c: &Call,
    ) -> Result<Option<StepMatrix>> {
        let Some((f, data, keep)) = self.range_input(c)? else { return Ok(None) };
        if u32::try_from(data.len()).is_err() {
            return Ok(None);
        }
        let grid = self.grid;
        let mut index: HashMap<Labels, usize, foldhash::fast::RandomState> = HashMap::default();
        let mut keys: Vec<Labels> = Vec::new();
        let mut group_of: Vec<usize> = Vec::with_capacity(data.len());
        for s in data.iter() {
            let k = group_key(if keep { &s.labels } else { &s.dropped }, &a.modifier);
            let g = match index.get(&k) {
                Some(&g) => g,
                None => {
                    index.insert(k.clone(), keys.len());
                    keys.push(k);
                    keys.len() - 1
                }
            };
            group_of.push(g);
        }
        if !self.reserve(keys.len().saturating_mul(2)) {
            return Ok(None);
        }
        let workers = self.ev.opts.parallel_workers.clamp(1, grid.n.max(1));
        let workers =
            if workers > 1 && data.len().saturating_mul(grid.n) >= self.ev.opts.parallel_min_work {
                workers
            } else {
                1
            };
        let per = grid.n.div_ceil(workers).max(1);
        let spans: Vec<(usize, usize)> =
            (0..grid.n).step_by(per).map(|k0| (k0, (k0 + per).min(grid.n))).collect();
        let sum = op == "sum";
        let ngroups = keys.len();
        let check = self.ev.deadline_check();
        let span = |(k0, k1): (usize, usize)| -> Result<FusedPart> {
            let n = k1 - k0;
            let sub = RangeFn {
                name: f.name,
                grid: Grid { start: grid.t(k0), step: grid.step, n },
                off: f.off,
                range: f.range,
                counter: f.counter,
            };
            let mut part = FusedPart {
                acc: vec![(0.0, 0.0); if sum { ngroups * n } else { 0 }],
                count: vec![0; if sum { 0 } else { ngroups * n }],
                order: vec![u32::MAX; ngroups * n],
                step_in: vec![0; n],
                several: vec![false; data.len()],
            };
            let mut resets = Vec::new();
            for (i, s) in data.iter().enumerate() {
                check()?;
                let (vals, several) = sub.row(&s.floats, &mut part.step_in, &mut resets);
                part.several[i] = several;
                let Some(vals) = vals else { continue };
                let base = group_of[i] * n;
                for (k, v) in vals.iter().enumerate() {
                    let Some(v) = *v else { continue };
                    let cell = base + k;
                    if part.order[cell] == u32::MAX {
                        part.order[cell] = i as u32;
                    }
                    if sum {
                        part.acc[cell] = kahan_sum_inc(v, part.acc[cell].0, part.acc[cell].1);
                    } else {
                        part.count[cell] += 1;
                    }
                }
            }
            Ok(part)
        };
        let parts: Vec<FusedPart> = if spans.len() > 1 {
            let done: Vec<Result<FusedPart>> = std::thread::scope(|scope| {
                let handles: Vec<_> =
                    spans.iter().map(|&sp| scope.spawn(move || span(sp))).collect();
                join_workers(handles, "aggregation")
            });
            done.into_iter().collect::<Result<_>>()?
        } else {
            spans.iter().map(|&sp| span(sp)).collect::<Result<_>>()?
        };
        let mut step_in = Vec::with_capacity(grid.n);
        for p in &parts {
            step_in.extend_from_slice(&p.step_in);
        }
        for (i, s) in data.iter().enumerate() {
            self.counter_info(&f, &s.labels, parts.iter().any(|p| p.several[i]));
        }
        if !self.step_in_ok(&step_in) {
            return Ok(None);
        }
        let mut rows = Vec::with_capacity(ngroups);
        for (g, labels) in keys.into_iter().enumerate() {
            let mut vals = Vec::with_capacity(grid.n);
            let mut order = Vec::with_capacity(grid.n);
            for (p, &(k0, k1)) in parts.iter().zip(&spans) {
                let n = k1 - k0;
                for k in 0..n {
                    let cell = g * n + k;
                    let o = p.order[cell];
                    order.push(o);
                    vals.push((o != u32::MAX).then(|| match op {
                        "sum" => p.acc[cell].0 + p.acc[cell].1,
                        "count" => p.count[cell] as f64,
                        _ => 1.0,
                    }));
                }
            }
            rows.push(Row { labels, vals, order: Some(order) });
        }
        Ok(Some(StepMatrix { rows, step_in }))
    }

    /// Aggregations without a parameter (and `quantile` with a literal one) over a covered
    /// child whose rows are in step order.
    fn aggregate(&mut self, a: &AggregateExpr) -> Result<Option<StepMatrix>> {
        let op = a.op.to_string();
        let q = match (op.as_str(), a.param.as_deref().map(unparen)) {
            ("sum" | "avg" | "min" | "max" | "count" | "group" | "stddev" | "stdvar", None) => 0.0,
            ("quantile", Some(Expr::NumberLiteral(n))) => n.val,
            _ => return Ok(None),
        };
        if matches!(op.as_str(), "sum" | "count" | "group")
            && let Expr::Call(c) = unparen(&a.expr)
            && let Some(m) = self.fused_aggregate(a, &op, c)?
        {
            return Ok(Some(m));
        }
        let Some(child) = self.node(&a.expr)? else { return Ok(None) };
        if !child.ordered() {
            return Ok(None);
        }
        let grid = self.grid;
        // Groups in order of their first member; members in child order.
        let mut index: HashMap<Labels, usize, foldhash::fast::RandomState> = HashMap::default();
        let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
        for (i, r) in child.rows.iter().enumerate() {
            let k = group_key(&r.labels, &a.modifier);
            match index.get(&k) {
                Some(&g) => groups[g].1.push(i),
                None => {
                    index.insert(k.clone(), groups.len());
                    groups.push((k, vec![i]));
                }
            }
        }
        if !self.reserve(groups.len().saturating_mul(2)) {
            return Ok(None);
        }
        if op == "quantile" && !(0.0..=1.0).contains(&q) {
            // The step evaluator warns at every step, whatever the input.
            self.ev.annotations.warn(format!(
                "quantile value should be between 0 and 1, got {}",
                crate::float::format_float(q)
            ));
        }
        let rows_of = |i: usize| &child.rows[i].vals;
        let mut rows = Vec::with_capacity(groups.len());
        let mut buf: Vec<f64> = Vec::new();
        for (labels, members) in groups {
            self.ev.check_deadline()?;
            let mut order = vec![u32::MAX; grid.n];
            for &m in &members {
                for (k, v) in rows_of(m).iter().enumerate() {
                    if v.is_some() && order[k] == u32::MAX {
                        order[k] = m as u32;
                    }
                }
            }
            let vals: Vec<Option<f64>> = match op.as_str() {
                "sum" => {
                    // Kahan over the members in order, as `aggregate::sum` over the step's
                    // values: the same additions in the same order.
                    let mut acc = vec![(0.0, 0.0); grid.n];
                    for &m in &members {
                        for (k, v) in rows_of(m).iter().enumerate() {
                            if let Some(v) = v {
                                acc[k] = kahan_sum_inc(*v, acc[k].0, acc[k].1);
                            }
                        }
                    }
                    (0..grid.n)
                        .map(|k| (order[k] != u32::MAX).then(|| acc[k].0 + acc[k].1))
                        .collect()
                }
                "count" | "group" => {
                    let mut n = vec![0usize; grid.n];
                    for &m in &members {
                        for (k, v) in rows_of(m).iter().enumerate() {
                            n[k] += usize::from(v.is_some());
                        }
                    }
                    n.into_iter()
                        .map(|c| (c > 0).then_some(if op == "count" { c as f64 } else { 1.0 }))
                        .collect()
                }
                _ => (0..grid.n)
                    .map(|k| {
                        buf.clear();
                        buf.extend(members.iter().filter_map(|&m| rows_of(m)[k]));
                        if buf.is_empty() {
                            return None;
                        }
                        Some(match op.as_str() {
                            "avg" => avg(&buf),
                            "min" => buf
                                .iter()
                                .skip(1)
                                .fold(buf[0], |m, &v| if m > v || m.is_nan() { v } else { m }),
                            "max" => buf
                                .iter()
                                .skip(1)
                                .fold(buf[0], |m, &v| if m < v || m.is_nan() { v } else { m }),
                            "stddev" => stdvar(&buf).sqrt(),
                            "stdvar" => stdvar(&buf),
                            _ => quantile(q, buf.clone()),
                        })
                    })
                    .collect(),
            };
            rows.push(Row { labels, vals, order: Some(order) });
        }
        Ok(Some(StepMatrix { rows, step_in: child.step_in.clone() }))
    }
}
