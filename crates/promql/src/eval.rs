//! The evaluator: loads every selector's data once, then evaluates the AST one step at a
//! time. Selectors, subqueries, offsets, `@` and staleness live here; functions, aggregations
//! and binary operators have their own files.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use model::{
    FloatHistogram, Labels, METRIC_NAME, MatchOp, Matcher, Queryable, SelectHints, TenantId,
    is_stale_nan,
};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use crate::cancel::Cancel;
use crate::engine::EngineOptions;
use crate::error::{Error, Result, exec_err};
use crate::series::{Grid, StepMatrix};
use crate::value::{Annotations, HistogramPoint, Point};

/// One element of an instant vector during evaluation. `t` is the sample's own timestamp,
/// which only `timestamp()` looks at.
#[derive(Clone, Debug)]
pub(crate) struct Elem {
    pub labels: Labels,
    pub v: f64,
    pub t: i64,
    /// Set for a native histogram sample (then `v` is meaningless).
    pub h: Option<Arc<FloatHistogram>>,
    /// The metric name is to be dropped at the end of evaluation (delayed name removal).
    pub drop: bool,
}

impl Elem {
    pub fn float(labels: Labels, v: f64, t: i64) -> Elem {
        Elem { labels, v, t, h: None, drop: false }
    }

    /// A float result of an operation that drops the metric name.
    pub fn derived(labels: &Labels, v: f64, t: i64, meta: MetaLabels) -> Elem {
        Elem { labels: drop_name(labels, meta), v, t, h: None, drop: meta.delayed }
    }
}

/// One series of a range vector at one evaluation step.
#[derive(Clone, Debug)]
pub(crate) struct RangeElem {
    pub labels: Labels,
    /// `labels` without the metric name, computed once per loaded series: sharing it from
    /// step to step saves an allocation and many reference counts on interned label strings
    /// (contended between threads) per series and step. `None` when not precomputed.
    pub dropped: Option<Labels>,
    /// Delayed name removal: the series' name is to be dropped.
    pub drop: bool,
    pub points: Window<Point>,
    pub histograms: Window<HistogramPoint>,
}

/// A window into points shared with the loaded data, so that range selectors do not copy.
/// The outer `Arc` is per evaluator (see `Loaded::fork`): evaluators on different threads
/// share the points but never update the same reference count at every step.
#[derive(Clone, Debug)]
pub(crate) struct Window<T> {
    data: Arc<Arc<[T]>>,
    start: usize,
    end: usize,
}

impl<T> Window<T> {
    fn new(data: &Arc<Arc<[T]>>, start: usize, end: usize) -> Window<T> {
        Window { data: data.clone(), start, end }
    }
}

impl<T> From<Vec<T>> for Window<T> {
    fn from(v: Vec<T>) -> Window<T> {
        let end = v.len();
        Window { data: Arc::new(v.into()), start: 0, end }
    }
}

impl<T> std::ops::Deref for Window<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.data[self.start..self.end]
    }
}

/// A range vector at one step, with the window `(range_start, range_end]` it covers.
#[derive(Clone, Debug)]
pub(crate) struct MatrixVal {
    pub series: Vec<RangeElem>,
    pub range_start: i64,
    pub range_end: i64,
}

impl MatrixVal {
    pub fn range_secs(&self) -> f64 {
        self.range_end.saturating_sub(self.range_start) as f64 / 1000.0
    }
}

/// The value of a node at one step.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<Elem>),
    Matrix(MatrixVal),
}

impl Val {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
        }
    }
}

pub(crate) struct Loaded {
    pub labels: Labels,
    /// `labels` without the metric-identity labels (see `RangeElem::dropped`).
    pub dropped: Labels,
    /// Raw samples, staleness markers included (instant selectors need them); empty for
    /// a range selector's series, which read `floats` only.
    pub samples: Arc<[model::Sample]>,
    pub histograms: Arc<[HistogramPoint]>,
    /// The same without staleness markers, shared by range-selector windows; empty for an
    /// instant selector's series, which read `samples` only.
    pub floats: Arc<Arc<[Point]>>,
    live_histograms: Arc<Arc<[HistogramPoint]>>,
}

impl Loaded {
    /// The same series for an evaluator on another thread: the samples are shared, but the
    /// label sets and the reference counts cloned at every step are its own, so that threads
    /// do not contend on one cache line per series and step.
    fn fork(&self) -> Loaded {
        let own = |l: &Labels| Labels::from_sorted_unchecked(l.iter().cloned().collect());
        Loaded {
            labels: own(&self.labels),
            dropped: own(&self.dropped),
            samples: self.samples.clone(),
            histograms: self.histograms.clone(),
            floats: Arc::new(Arc::clone(&self.floats)),
            live_histograms: Arc::new(Arc::clone(&self.live_histograms)),
        }
    }
}

pub(crate) struct Evaluator<'a> {
    pub opts: &'a EngineOptions,
    pub query_start: i64,
    pub query_end: i64,
    pub annotations: Annotations,
    deadline: Option<Instant>,
    /// The caller's cancellation handle.
    cancel: Cancel,
    /// Set when an earlier part of a split range query failed: this part's result is moot.
    abort: Cancel,
    data: HashMap<usize, Arc<Vec<Loaded>>>,
    step_samples: usize,
    /// Nodes computed series-at-a-time for the steps of `grid` (see `series.rs`), by the
    /// address of their expression.
    pre: HashMap<usize, Arc<StepMatrix>>,
    grid: Option<Grid>,
    /// Labels binary operators derived from their operands' labels, kept across steps.
    pub label_memo: crate::binary::LabelMemo,
}

/// Milliseconds of an `@` timestamp.
fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4),
        Some(Offset::Neg(d)) => -i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4),
    }
}

pub(crate) fn duration_ms(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The labels that identify a metric rather than a series: dropped together whenever an
/// operation changes the meaning of the value.
/// With delayed name removal, they stay until the end of evaluation and the element is
/// flagged instead (`Elem::drop`), as Prometheus' `promql-delayed-name-removal` does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MetaLabels {
    pub names: &'static [&'static str],
    pub delayed: bool,
}

pub(crate) const NAME_ONLY: MetaLabels = MetaLabels { names: &[METRIC_NAME], delayed: false };
const NAME_TYPE_UNIT: &[&str] = &[METRIC_NAME, "__type__", "__unit__"];

/// `l` without the metric name (and, with type-and-unit labels on, `__type__`/`__unit__`);
/// unchanged when removal is delayed (the caller flags the element instead).
pub(crate) fn drop_name(l: &Labels, meta: MetaLabels) -> Labels {
    if meta.delayed {
        return l.clone();
    }
    strip_names(l, meta)
}

/// `l` without the metric-identity labels, now.
pub(crate) fn strip_names(l: &Labels, meta: MetaLabels) -> Labels {
    if meta.names.iter().any(|n| l.get(n).is_some()) { l.without(meta.names) } else { l.clone() }
}

fn selector_key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

/// Converts the parser's matchers into ours (with Prometheus' `(?s)` anchoring).
fn to_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>> {
    fn conv(ms: &[promql_parser::label::Matcher]) -> Result<Vec<Matcher>> {
        ms.iter()
            .map(|m| {
                let op = match m.op {
                    PMatchOp::Equal => MatchOp::Equal,
                    PMatchOp::NotEqual => MatchOp::NotEqual,
                    PMatchOp::Re(_) => MatchOp::RegexMatch,
                    PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
                };
                Matcher::new(op, &m.name, &m.value).map_err(|e| Error::Parse(e.to_string()))
            })
            .collect()
    }
    let mut base = conv(&vs.matchers.matchers)?;
    if let Some(n) = &vs.name
        && !base.iter().any(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal && &m.value == n)
    {
        base.push(Matcher::eq(METRIC_NAME, n));
    }
    if vs.matchers.or_matchers.is_empty() {
        return Ok(vec![base]);
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|alt| {
            let mut ms = conv(alt)?;
            ms.extend(base.iter().cloned());
            Ok(ms)
        })
        .collect()
}

impl<'a> Evaluator<'a> {
    pub fn new(
        opts: &'a EngineOptions,
        query_start: i64,
        query_end: i64,
        deadline: Option<Instant>,
        cancel: Cancel,
    ) -> Evaluator<'a> {
        Evaluator {
            opts,
            query_start,
            query_end,
            annotations: Annotations::default(),
            deadline,
            cancel,
            abort: Cancel::new(),
            data: HashMap::new(),
            step_samples: 0,
            pre: HashMap::new(),
            grid: None,
            label_memo: Default::default(),
        }
    }

    /// A second evaluator over the same loaded data (shared, not copied), with its own
    /// annotations and an `abort` handle of its own, for evaluating other steps on another
    /// thread.
    pub fn fork(&self) -> Evaluator<'a> {
        Evaluator {
            opts: self.opts,
            query_start: self.query_start,
            query_end: self.query_end,
            annotations: Annotations::default(),
            deadline: self.deadline,
            cancel: self.cancel.clone(),
            abort: Cancel::new(),
            data: self
                .data
                .iter()
                .map(|(k, v)| (*k, Arc::new(v.iter().map(Loaded::fork).collect())))
                .collect(),
            step_samples: 0,
            pre: self.pre.clone(),
            grid: self.grid,
            label_memo: Default::default(),
        }
    }

    /// The handle that stops this evaluator (and only it) at its next check.
    pub fn abort_handle(&self) -> Cancel {
        self.abort.clone()
    }

    /// How many series the selectors loaded: the size of the work at each step.
    pub fn loaded_series(&self) -> usize {
        self.data.values().map(|d| d.len()).sum()
    }

    /// The labels dropped with the metric name.
    pub fn meta(&self) -> MetaLabels {
        MetaLabels {
            names: if self.opts.enable_type_and_unit_labels {
                NAME_TYPE_UNIT
            } else {
                NAME_ONLY.names
            },
            delayed: self.opts.enable_delayed_name_removal,
        }
    }

    /// Delayed name removal: drops the flagged names from a final value, then fails on the
    /// duplicate label sets that creates.
    pub fn finish(&self, val: Val) -> Result<Val> {
        let meta = self.meta();
        if !meta.delayed {
            return Ok(val);
        }
        match val {
            Val::Vector(mut v) => {
                for e in v.iter_mut().filter(|e| e.drop) {
                    e.labels = strip_names(&e.labels, meta);
                    e.drop = false;
                }
                check_unique(&v)?;
                Ok(Val::Vector(v))
            }
            Val::Matrix(mut m) => {
                for s in m.series.iter_mut().filter(|s| s.drop) {
                    s.labels = strip_names(&s.labels, meta);
                    s.drop = false;
                }
                let mut seen = HashSet::new();
                if !m.series.iter().all(|s| seen.insert(&s.labels)) {
                    return exec_err("vector cannot contain metrics with the same labelset");
                }
                Ok(Val::Matrix(m))
            }
            other => Ok(other),
        }
    }

    /// Fails when the query was canceled or ran out of time. Called at every step (of the
    /// query and of subqueries) and while loading series.
    pub fn check_deadline(&self) -> Result<()> {
        if self.cancel.is_canceled() || self.abort.is_canceled() {
            return Err(Error::Canceled);
        }
        match self.deadline {
            Some(d) if Instant::now() > d => Err(Error::Timeout("query execution")),
            _ => Ok(()),
        }
    }

    /// `check_deadline` for worker threads: the same cancellation handles and deadline.
    pub(crate) fn deadline_check(&self) -> impl Fn() -> Result<()> + Send + Sync + 'static {
        let (cancel, abort, deadline) = (self.cancel.clone(), self.abort.clone(), self.deadline);
        move || {
            if cancel.is_canceled() || abort.is_canceled() {
                return Err(Error::Canceled);
            }
            match deadline {
                Some(d) if Instant::now() > d => Err(Error::Timeout("query execution")),
                _ => Ok(()),
            }
        }
    }

    /// Fails when the samples of this step plus `held` exceed the limit; resets the step count.
    pub fn check_samples(&mut self, held: usize) -> Result<()> {
        let n = self.step_samples.saturating_add(held);
        self.step_samples = 0;
        if n > self.opts.max_samples {
            return Err(Error::TooManySamples("query execution"));
        }
        Ok(())
    }

    fn count_samples(&mut self, n: usize) -> Result<()> {
        self.step_samples = self.step_samples.saturating_add(n);
        if self.step_samples > self.opts.max_samples {
            return Err(Error::TooManySamples("query execution"));
        }
        Ok(())
    }

    pub fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    /// Walks the AST with the window `[lo, hi]` of evaluation times of each node, and selects
    /// each selector's series once for the whole query.
    pub fn load(
        &mut self,
        q: &dyn Queryable,
        tenant: &TenantId,
        expr: &Expr,
        lo: i64,
        hi: i64,
    ) -> Result<()> {
        match expr {
            Expr::VectorSelector(vs) => self.load_selector(q, tenant, vs, lo, hi, None),
            Expr::MatrixSelector(ms) => {
                self.load_selector(q, tenant, &ms.vs, lo, hi, Some(duration_ms(&ms.range)))
            }
            Expr::Subquery(sq) => {
                let (lo, hi) = match self.at_ms(&sq.at) {
                    Some(a) => (a, a),
                    None => (lo, hi),
                };
                let off = offset_ms(&sq.offset);
                let range = duration_ms(&sq.range);
                self.load(
                    q,
                    tenant,
                    &sq.expr,
                    lo.saturating_sub(off).saturating_sub(range),
                    hi.saturating_sub(off),
                )
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.load(q, tenant, p, lo, hi)?;
                }
                self.load(q, tenant, &a.expr, lo, hi)
            }
            Expr::Unary(u) => self.load(q, tenant, &u.expr, lo, hi),
            Expr::Binary(b) => {
                self.load(q, tenant, &b.lhs, lo, hi)?;
                self.load(q, tenant, &b.rhs, lo, hi)
            }
            Expr::Paren(p) => self.load(q, tenant, &p.expr, lo, hi),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.load(q, tenant, a, lo, hi)?;
                }
                Ok(())
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
            Expr::Extension(_) => {
                Err(Error::InvalidQuery("extension nodes are not supported".into()))
            }
        }
    }

    fn load_selector(
        &mut self,
        q: &dyn Queryable,
        tenant: &TenantId,
        vs: &VectorSelector,
        lo: i64,
        hi: i64,
        range: Option<i64>,
    ) -> Result<()> {
        let (lo, hi) = match self.at_ms(&vs.at) {
            Some(a) => (a, a),
            None => (lo, hi),
        };
        let off = offset_ms(&vs.offset);
        let back = range.unwrap_or(self.opts.lookback_delta_ms);
        let hints = SelectHints {
            start: lo.saturating_sub(off).saturating_sub(back),
            end: hi.saturating_sub(off),
        };
        let alternatives = to_matchers(vs)?;
        // One select returns each label set once; only `or` alternatives can repeat one.
        let dedup = alternatives.len() > 1;
        let mut seen: HashSet<Labels, foldhash::fast::RandomState> = HashSet::default();
        // Float-only series (the usual case) share one empty histogram run.
        let no_histograms: Arc<[HistogramPoint]> = Arc::from(Vec::new());
        let no_live_histograms = Arc::new(no_histograms.clone());
        let matrix = range.is_some();
        let no_samples: Arc<[model::Sample]> = Arc::from(Vec::new());
        let no_floats: Arc<Arc<[Point]>> = Arc::new(Arc::from(Vec::new()));
        let mut out = Vec::new();
        for ms in alternatives {
            self.check_deadline()?;
            for (n, s) in q.select(tenant, hints, &ms)?.enumerate() {
                if n % 256 == 255 {
                    self.check_deadline()?;
                }
                let s = s?;
                if !dedup || seen.insert(s.labels.clone()) {
                    let (histograms, live_histograms) = if s.histograms.is_empty() {
                        (no_histograms.clone(), no_live_histograms.clone())
                    } else {
                        let h: Vec<HistogramPoint> = s
                            .histograms
                            .into_iter()
                            .map(|h| HistogramPoint { t: h.t, h: Arc::new(*h.h) })
                            .collect();
                        let live: Arc<[HistogramPoint]> =
                            h.iter().filter(|x| !is_stale_nan(x.h.sum)).cloned().collect();
                        (h.into(), Arc::new(live))
                    };
                    // Range selectors read only `floats`, instant selectors only `samples`
                    // (a selector node is one or the other): build just the one read, in
                    // one exactly sized copy when no staleness marker needs filtering out.
                    let (samples, floats) = if matrix {
                        let floats: Arc<[Point]> = if s.samples.iter().any(|x| is_stale_nan(x.v)) {
                            s.samples
                                .iter()
                                .filter(|x| !is_stale_nan(x.v))
                                .map(|x| Point { t: x.t, v: x.v })
                                .collect()
                        } else {
                            s.samples.iter().map(|x| Point { t: x.t, v: x.v }).collect()
                        };
                        (no_samples.clone(), Arc::new(floats))
                    } else {
                        (s.samples.into(), no_floats.clone())
                    };
                    out.push(Loaded {
                        dropped: strip_names(&s.labels, self.meta()),
                        labels: s.labels,
                        samples,
                        histograms,
                        floats,
                        live_histograms,
                    });
                }
            }
        }
        if vs.matchers.or_matchers.len() > 1 {
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        self.data.insert(selector_key(vs), Arc::new(out));
        Ok(())
    }

    /// Hands the step evaluator nodes already computed for every step of `grid`.
    pub fn set_precomputed(&mut self, grid: Grid, pre: HashMap<usize, Arc<StepMatrix>>) {
        self.grid = Some(grid);
        self.pre = pre;
    }

    /// A precomputed node's vector at `ts`, counting the samples its evaluation would.
    fn precomputed(&mut self, expr: &Expr, ts: i64) -> Result<Option<Val>> {
        let Some(k) = self.grid.and_then(|g| g.index(ts)) else { return Ok(None) };
        let Some(m) = self.pre.get(&(expr as *const Expr as usize)).cloned() else {
            return Ok(None);
        };
        self.count_samples(m.step_in[k])?;
        Ok(Some(Val::Vector(m.at(k, ts))))
    }

    pub(crate) fn loaded(&self, vs: &VectorSelector) -> Result<Arc<Vec<Loaded>>> {
        self.data
            .get(&selector_key(vs))
            .cloned()
            .ok_or_else(|| Error::Execution("internal: selector evaluated without data".into()))
    }

    pub fn eval(&mut self, expr: &Expr, ts: i64) -> Result<Val> {
        if !self.pre.is_empty()
            && let Some(v) = self.precomputed(expr, ts)?
        {
            return Ok(v);
        }
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(vs) => {
                    let out: Vec<Elem> = vs
                        .into_iter()
                        .map(|e| Elem {
                            labels: drop_name(&e.labels, self.meta()),
                            drop: self.meta().delayed,
                            v: -e.v,
                            t: e.t,
                            h: e.h.map(|h| Arc::new(crate::histogram::scale(&h, -1.0))),
                        })
                        .collect();
                    check_unique(&out)?;
                    Ok(Val::Vector(out))
                }
                other => exec_err(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                )),
            },
            Expr::VectorSelector(vs) => self.eval_vector_selector(vs, ts).map(Val::Vector),
            Expr::MatrixSelector(ms) => {
                let range = duration_ms(&ms.range);
                self.eval_matrix_selector(&ms.vs, range, ts).map(Val::Matrix)
            }
            Expr::Subquery(sq) => {
                let base = self.at_ms(&sq.at).unwrap_or(ts).saturating_sub(offset_ms(&sq.offset));
                let range = duration_ms(&sq.range);
                let step = match &sq.step {
                    Some(s) if duration_ms(s) > 0 => duration_ms(s),
                    _ => self.opts.default_subquery_step_ms.max(1),
                };
                let from = base.saturating_sub(range);
                let mut t = from.div_euclid(step).saturating_mul(step).saturating_add(step);
                let mut index: HashMap<Labels, usize> = HashMap::new();
                let mut series: Vec<(Labels, Vec<Point>, Vec<HistogramPoint>, bool)> = Vec::new();
                let mut last_src: Vec<Option<Arc<FloatHistogram>>> = Vec::new();
                let mut n = 0usize;
                while t <= base {
                    self.check_deadline()?;
                    match self.eval(&sq.expr, t)? {
                        Val::Vector(vs) => {
                            for e in vs {
                                let i = *index.entry(e.labels.clone()).or_insert_with(|| {
                                    series.push((e.labels, Vec::new(), Vec::new(), false));
                                    last_src.push(None);
                                    series.len() - 1
                                });
                                series[i].3 = e.drop;
                                match e.h {
                                    Some(h) => {
                                        // The same stored sample seen again at a later step
                                        // must not count as another counter reset.
                                        let repeated = last_src[i]
                                            .as_ref()
                                            .is_some_and(|p| Arc::ptr_eq(p, &h));
                                        last_src[i] = Some(h.clone());
                                        let h = if repeated
                                            && h.counter_reset_hint == crate::histogram::HINT_RESET
                                        {
                                            Arc::new(FloatHistogram {
                                                counter_reset_hint:
                                                    crate::histogram::HINT_NOT_RESET,
                                                ..(*h).clone()
                                            })
                                        } else {
                                            h
                                        };
                                        series[i].2.push(HistogramPoint { t, h });
                                    }
                                    None => series[i].1.push(Point { t, v: e.v }),
                                }
                                n += 1;
                            }
                        }
                        Val::Scalar(v) => {
                            let i = *index.entry(Labels::empty()).or_insert_with(|| {
                                series.push((Labels::empty(), Vec::new(), Vec::new(), false));
                                last_src.push(None);
                                series.len() - 1
                            });
                            series[i].1.push(Point { t, v });
                            n += 1;
                        }
                        other => {
                            return exec_err(format!(
                                "subquery is only allowed on instant vector, got {}",
                                other.type_name()
                            ));
                        }
                    }
                    self.count_samples(std::mem::take(&mut n))?;
                    t = match t.checked_add(step) {
                        Some(t) => t,
                        None => break,
                    };
                }
                let series = series
                    .into_iter()
                    .map(|(labels, p, h, drop)| RangeElem {
                        labels,
                        dropped: None,
                        drop,
                        points: p.into(),
                        histograms: h.into(),
                    })
                    .collect();
                Ok(Val::Matrix(MatrixVal { series, range_start: from, range_end: base }))
            }
            Expr::Call(c) => crate::functions::eval_call(self, c, ts),
            Expr::Aggregate(a) => crate::aggregate::eval_aggregate(self, a, ts),
            Expr::Binary(b) => crate::binary::eval_binary(self, b, ts),
            Expr::Extension(_) => {
                Err(Error::InvalidQuery("extension nodes are not supported".into()))
            }
        }
    }

    /// The newest non-stale sample of each series in `(t - lookback, t]`.
    pub fn eval_vector_selector(&mut self, vs: &VectorSelector, ts: i64) -> Result<Vec<Elem>> {
        let t = self.at_ms(&vs.at).unwrap_or(ts).saturating_sub(offset_ms(&vs.offset));
        let data = self.loaded(vs)?;
        let lb = self.opts.lookback_delta_ms;
        let mut out = Vec::new();
        for s in data.iter() {
            let i = s.samples.partition_point(|x| x.t <= t);
            let f = if i == 0 { None } else { Some(s.samples[i - 1]) };
            let j = s.histograms.partition_point(|x| x.t <= t);
            let h = if j == 0 { None } else { Some(&s.histograms[j - 1]) };
            let min_t = t.saturating_sub(lb);
            // The newer of the float and the histogram sample wins.
            let newest = match (f, h) {
                (Some(f), h) if h.is_none_or(|h| h.t < f.t) => Some((f.t, f.v, None)),
                (_, Some(h)) => Some((h.t, h.h.sum, Some(h.h.clone()))),
                _ => None,
            };
            if let Some((st, v, h)) = newest
                && st > min_t
                && !is_stale_nan(v)
            {
                out.push(Elem {
                    drop: false,
                    labels: s.labels.clone(),
                    v: if h.is_some() { 0.0 } else { v },
                    t: st,
                    h,
                });
            }
        }
        self.count_samples(out.len())?;
        Ok(out)
    }

    /// Non-stale samples of each series in `(t - range, t]`; series without any are dropped.
    pub fn eval_matrix_selector(
        &mut self,
        vs: &VectorSelector,
        range: i64,
        ts: i64,
    ) -> Result<MatrixVal> {
        let t = self.at_ms(&vs.at).unwrap_or(ts).saturating_sub(offset_ms(&vs.offset));
        let data = self.loaded(vs)?;
        let mut series = Vec::new();
        let mut n = 0;
        for s in data.iter() {
            let start = t.saturating_sub(range);
            let lo = s.floats.partition_point(|x| x.t <= start);
            let hi = s.floats.partition_point(|x| x.t <= t);
            let hlo = s.live_histograms.partition_point(|x| x.t <= start);
            let hhi = s.live_histograms.partition_point(|x| x.t <= t);
            if lo < hi || hlo < hhi {
                n += (hi - lo) + (hhi - hlo);
                series.push(RangeElem {
                    labels: s.labels.clone(),
                    dropped: Some(s.dropped.clone()),
                    drop: false,
                    points: Window::new(&s.floats, lo, hi),
                    histograms: Window::new(&s.live_histograms, hlo, hhi),
                });
            }
        }
        self.count_samples(n)?;
        Ok(MatrixVal { series, range_start: t.saturating_sub(range), range_end: t })
    }

    /// Evaluates to an instant vector or fails naming what it got.
    pub fn eval_vector(&mut self, expr: &Expr, ts: i64) -> Result<Vec<Elem>> {
        match self.eval(expr, ts)? {
            Val::Vector(v) => Ok(v),
            other => exec_err(format!("expected instant vector, got {}", other.type_name())),
        }
    }
}

/// Fails when two elements share a label set, as Prometheus does after every node.
pub(crate) fn check_unique(v: &[Elem]) -> Result<()> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen: HashSet<&Labels, foldhash::fast::RandomState> =
        HashSet::with_capacity_and_hasher(v.len(), Default::default());
    for e in v {
        if !seen.insert(&e.labels) {
            return exec_err("vector cannot contain metrics with the same labelset");
        }
    }
    Ok(())
}
