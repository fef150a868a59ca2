//! The query entry points: `Engine::instant_query` and `Engine::range_query`, their options,
//! and the conversion of per-step results into API values.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use model::{Labels, Queryable, TenantId, Timestamp};
use promql_parser::parser::{self, Expr};

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::eval::{Evaluator, Val};
use crate::series::Grid;
use crate::value::{Annotations, HistogramPoint, Point, QueryResult, Sample, Series, Value};

/// Default of `EngineOptions::parallel_min_work`. Not tuned by measurement: below it a range
/// query takes a few milliseconds on one thread, where a split gains little. The benchmark
/// (docs/benchmarks/promql.md) only measured queries far above it.
pub const PARALLEL_MIN_WORK: usize = 20_000;

/// Knobs of the engine. `Default` gives Prometheus' defaults.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus `--query.lookback-delta`).
    pub lookback_delta_ms: i64,
    /// Upper bound on samples held in memory by one query (`--query.max-samples`).
    pub max_samples: usize,
    /// Wall-clock limit of one query (`--query.timeout`); `None` for no limit.
    pub timeout: Option<Duration>,
    /// Step of a subquery written without one (`[5m:]`); Prometheus uses the global
    /// evaluation interval, 1m by default.
    pub default_subquery_step_ms: i64,
    /// Accept experimental duration arithmetic (`foo[5m+30s]`, `offset (2 * 1m)`), as
    /// Prometheus' `promql-duration-expr` feature flag does.
    pub enable_duration_expressions: bool,
    /// Treat `__type__` and `__unit__` as part of the metric name, dropping them with it, as
    /// Prometheus' `type-and-unit-labels` feature flag does.
    pub enable_type_and_unit_labels: bool,
    /// Keep `__name__` through the evaluation and drop it only from the final result, as
    /// Prometheus' `promql-delayed-name-removal` feature flag does.
    pub enable_delayed_name_removal: bool,
    /// Threads a large range query's steps are split across; 1 evaluates on the calling
    /// thread only. Default: the available cores, at most 2.
    pub parallel_workers: usize,
    /// Smallest range query (loaded series × steps) worth splitting across threads.
    pub parallel_min_work: usize,
    /// Evaluate the nodes of range queries that allow it series-at-a-time over all steps
    /// (`series.rs`) rather than step by step; the answers are the same. Off only to compare.
    pub series_at_a_time: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Some(Duration::from_secs(120)),
            default_subquery_step_ms: 60 * 1000,
            enable_duration_expressions: false,
            enable_type_and_unit_labels: false,
            enable_delayed_name_removal: false,
            parallel_workers: std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
            parallel_min_work: PARALLEL_MIN_WORK,
            series_at_a_time: true,
        }
    }
}

/// Evaluates PromQL over any `Queryable`. Stateless between queries; cheap to share.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Engine {
        Engine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at time `t` (milliseconds since the epoch).
    pub fn instant_query(
        &self,
        storage: &dyn Queryable,
        tenant: &TenantId,
        query: &str,
        t: Timestamp,
    ) -> Result<QueryResult> {
        self.instant_query_with(storage, tenant, query, t, &Cancel::new())
    }

    /// `instant_query` that stops with `Error::Canceled` once `cancel` is set.
    pub fn instant_query_with(
        &self,
        storage: &dyn Queryable,
        tenant: &TenantId,
        query: &str,
        t: Timestamp,
        cancel: &Cancel,
    ) -> Result<QueryResult> {
        let expr = self.parse(query)?;
        self.instant_query_expr_with(storage, tenant, &expr, t, cancel)
    }

    /// `instant_query` of an already parsed expression.
    pub(crate) fn instant_query_expr(
        &self,
        storage: &dyn Queryable,
        tenant: &TenantId,
        expr: &Expr,
        t: Timestamp,
    ) -> Result<QueryResult> {
        self.instant_query_expr_with(storage, tenant, expr, t, &Cancel::new())
    }

    fn instant_query_expr_with(
        &self,
        storage: &dyn Queryable,
        tenant: &TenantId,
        expr: &Expr,
        t: Timestamp,
        cancel: &Cancel,
    ) -> Result<QueryResult> {
        let mut ev = self.evaluator(t, t, cancel);
        ev.load(storage, tenant, expr, t, t)?;
        ev.check_deadline()?;
        let val = ev.eval(expr, t)?;
        let val = ev.finish(val)?;
        ev.check_samples(0)?;
        let value = match val {
            Val::Scalar(v) => Value::Scalar { t, v },
            Val::Str(s) => Value::String { t, v: s },
            Val::Vector(vs) => Value::Vector(
                vs.into_iter().map(|e| Sample { labels: e.labels, t, v: e.v, h: e.h }).collect(),
            ),
            Val::Matrix(m) => {
                let mut series: Vec<Series> = m
                    .series
                    .into_iter()
                    .map(|s| Series {
                        labels: s.labels,
                        points: s.points.to_vec(),
                        histograms: s.histograms.to_vec(),
                    })
                    .collect();
                series.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(series)
            }
        };
        Ok(QueryResult { value, annotations: ev.annotations })
    }

    /// Evaluates `query` at every step from `start` to `end` inclusive; the result is a
    /// matrix (or a scalar series), sorted by labels.
    pub fn range_query(
        &self,
        storage: &dyn Queryable,
        tenant: &TenantId,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step: i64,
    ) -> Result<QueryResult> {
        self.range_query_with(storage, tenant, query, start, end, step, &Cancel::new())
    }

    /// `range_query` that stops with `Error::Canceled` once `cancel` is set.
    ///
    /// Above `EngineOptions::parallel_min_work` (loaded series × steps), the steps are split
    /// into `EngineOptions::parallel_workers` contiguous ranges evaluated on their own threads
    /// over the same loaded data, and the per-range series are concatenated in time order:
    /// steps are independent, so the result is the one a single thread computes.
    #[allow(clippy::too_many_arguments)] // the query's own parameters plus the handle
    pub fn range_query_with(
        &self,
        storage: &dyn Queryable,
        tenant: &TenantId,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step: i64,
        cancel: &Cancel,
    ) -> Result<QueryResult> {
        if step <= 0 {
            return Err(Error::InvalidQuery(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(Error::InvalidQuery("end timestamp must not be before start time".into()));
        }
        let expr = self.parse(query)?;
        match expr.value_type() {
            parser::value::ValueType::Matrix => {
                return Err(Error::InvalidQuery(
                    "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
                ));
            }
            parser::value::ValueType::String => {
                return Err(Error::InvalidQuery(
                    "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
                ));
            }
            _ => {}
        }
        let mut ev = self.evaluator(start, end, cancel);
        ev.load(storage, tenant, &expr, start, end)?;
        ev.check_deadline()?;
        // Steps in [start, end]; at least 1 (end >= start), at most u64::MAX.
        let steps = ((end as i128 - start as i128) / step as i128 + 1) as u128;
        if let Ok(n) = usize::try_from(steps) {
            let grid = Grid { start, step, n };
            if let Some(series) = crate::series::prepare(&mut ev, &expr, grid)? {
                return Ok(QueryResult {
                    value: Value::Matrix(series),
                    annotations: ev.annotations,
                });
            }
        }
        let workers = self.opts.parallel_workers.max(1) as u128;
        let work = steps.saturating_mul(ev.loaded_series().max(1) as u128);
        let held = AtomicUsize::new(0);
        if workers < 2 || steps < 2 * workers || work < self.opts.parallel_min_work as u128 {
            let mut part = eval_steps(&mut ev, &expr, start, end, step, &held)?;
            part.out.sort_by(|a, b| a.labels.cmp(&b.labels));
            return Ok(QueryResult { value: Value::Matrix(part.out), annotations: ev.annotations });
        }
        // Contiguous step ranges, the first ones one step longer when steps do not divide.
        let mut ranges = Vec::new();
        let mut from = start;
        for w in 0..workers {
            let n = steps / workers + u128::from(w < steps % workers);
            let to = (from as i128 + (n as i128 - 1) * step as i128) as i64;
            ranges.push((from, to));
            from = to.saturating_add(step);
        }
        let mut evs: Vec<Evaluator<'_>> = Vec::with_capacity(ranges.len());
        for _ in 1..ranges.len() {
            evs.push(ev.fork());
        }
        evs.insert(0, ev);
        let aborts: Vec<Cancel> = evs.iter().map(Evaluator::abort_handle).collect();
        let results: Vec<(Result<Part>, Annotations)> = std::thread::scope(|scope| {
            let expr = &expr;
            let held = &held;
            let handles: Vec<_> = evs
                .into_iter()
                .zip(ranges)
                .enumerate()
                .map(|(i, (mut ev, (from, to)))| {
                    let later = aborts[i + 1..].to_vec();
                    scope.spawn(move || {
                        let r = eval_steps(&mut ev, expr, from, to, step, held);
                        if r.is_err() {
                            // Later ranges cannot change the outcome: a single thread would
                            // have stopped at this error.
                            later.iter().for_each(Cancel::cancel);
                        }
                        (r, ev.annotations)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        (
                            Err(Error::Execution("internal: range query worker panicked".into())),
                            Annotations::default(),
                        )
                    })
                })
                .collect()
        });
        let mut merged = Part::default();
        let mut annotations = Annotations::default();
        for (r, a) in results {
            let part = r?;
            annotations.merge(a);
            for s in part.out {
                match merged.index.get(&s.labels) {
                    Some(&i) => {
                        merged.out[i].points.extend(s.points);
                        merged.out[i].histograms.extend(s.histograms);
                    }
                    None => {
                        merged.index.insert(s.labels.clone(), merged.out.len());
                        merged.out.push(s);
                    }
                }
            }
        }
        merged.out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryResult { value: Value::Matrix(merged.out), annotations })
    }

    /// Parses `query` as this engine accepts it (with duration expressions if enabled).
    pub(crate) fn parse(&self, query: &str) -> Result<Expr> {
        let expr = if self.opts.enable_duration_expressions {
            parse(&crate::duration_expr::fold(query))?
        } else {
            parse(query)?
        };
        crate::go_string::check(query, &expr)?;
        Ok(expr)
    }

    fn evaluator(&self, start: Timestamp, end: Timestamp, cancel: &Cancel) -> Evaluator<'_> {
        let own = self.opts.timeout.map(|d| Instant::now() + d);
        let deadline = match (own, cancel.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Evaluator::new(&self.opts, start, end, deadline, cancel.clone())
    }
}

/// The series of a run of steps, in order of first appearance, with their index.
#[derive(Default)]
struct Part {
    out: Vec<Series>,
    index: HashMap<Labels, usize, foldhash::fast::RandomState>,
}

/// Evaluates `expr` at `from, from + step, ..., <= to` and collects the vectors into series.
/// `held` counts the points held by every part of the query, for the samples limit.
fn eval_steps(
    ev: &mut Evaluator<'_>,
    expr: &Expr,
    from: Timestamp,
    to: Timestamp,
    step: i64,
    held: &AtomicUsize,
) -> Result<Part> {
    let mut part = Part::default();
    let (index, out) = (&mut part.index, &mut part.out);
    // Series keep their label allocation from step to step; looking the address up first
    // skips hashing the labels. Addresses stay unique: `out` holds every keyed allocation.
    let mut by_addr: HashMap<usize, usize> = HashMap::new();
    let mut t = from;
    while t <= to {
        ev.check_deadline()?;
        let val = ev.eval(expr, t)?;
        let mut n = 0usize;
        match ev.finish(val)? {
            Val::Scalar(v) => {
                let i = *index.entry(Labels::empty()).or_insert_with(|| {
                    out.push(Series {
                        labels: Labels::empty(),
                        points: Vec::new(),
                        histograms: Vec::new(),
                    });
                    out.len() - 1
                });
                out[i].points.push(Point { t, v });
                n += 1;
            }
            Val::Vector(vs) => {
                for e in vs {
                    let addr = e.labels.as_slice().as_ptr() as usize;
                    let i = match by_addr.get(&addr) {
                        Some(&i) => i,
                        None => {
                            let i = *index.entry(e.labels.clone()).or_insert_with(|| {
                                out.push(Series {
                                    labels: e.labels.clone(),
                                    points: Vec::new(),
                                    histograms: Vec::new(),
                                });
                                out.len() - 1
                            });
                            if out[i].labels.as_slice().as_ptr() as usize == addr {
                                by_addr.insert(addr, i);
                            }
                            i
                        }
                    };
                    match e.h {
                        Some(h) => out[i].histograms.push(HistogramPoint { t, h }),
                        None => out[i].points.push(Point { t, v: e.v }),
                    }
                    n += 1;
                }
            }
            Val::Str(_) | Val::Matrix(_) => {
                return Err(Error::InvalidQuery(
                    "range query must evaluate to a scalar or an instant vector".into(),
                ));
            }
        }
        let total = held.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        ev.check_samples(total)?;
        t = match t.checked_add(step) {
            Some(n) => n,
            None => break,
        };
    }
    Ok(part)
}

/// Parses with promql-parser, mapping its error to ours.
pub(crate) fn parse(query: &str) -> Result<Expr> {
    parser::parse(query).map_err(Error::Parse)
}

#[cfg(test)]
mod tests {
    use model::{Appendable, Sample as ModelSample, SeriesWrite, WriteBatch};

    use super::*;
    use crate::testing::MemStorage;

    /// `foo{i="0".."2"}` with value `i * 10 + minute` every minute for 10 minutes.
    fn storage() -> MemStorage {
        let s = MemStorage::new();
        let mut batch = WriteBatch::default();
        for i in 0..3 {
            batch.series.push(SeriesWrite {
                labels: Labels::from_pairs([("__name__", "foo"), ("i", &i.to_string())]).unwrap(),
                samples: (0..10)
                    .map(|m| ModelSample { t: m * 60_000, v: (i * 10 + m) as f64 })
                    .collect(),
                ..Default::default()
            });
        }
        batch.series.push(SeriesWrite {
            labels: Labels::from_pairs([("__name__", "bar"), ("i", "0")]).unwrap(),
            samples: [ModelSample { t: 0, v: 7.0 }].into(),
            ..Default::default()
        });
        s.append(&TenantId::default_tenant(), batch).unwrap();
        s
    }

    fn check_instant(engine: &Engine, query: &str, t: i64, expected: &str) {
        let got = match engine.instant_query(&storage(), &TenantId::default_tenant(), query, t) {
            Ok(r) => match r.value {
                Value::Vector(v) => {
                    v.iter().map(|s| format!("{} {}", s.labels, s.v)).collect::<Vec<_>>().join("; ")
                }
                Value::Scalar { v, .. } => format!("scalar {v}"),
                other => format!("{other:?}"),
            },
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected, "{query}");
    }

    #[test]
    fn instant_queries() {
        let e = Engine::default();
        check_instant(&e, "sum(foo)", 120_000, "{} 36");
        check_instant(&e, "foo{i=\"1\"} offset 1m", 120_000, "foo{i=\"1\"} 11");
        check_instant(&e, "sort_desc(foo)", 0, "foo{i=\"2\"} 20; foo{i=\"1\"} 10; foo{i=\"0\"} 0");
        check_instant(&e, "scalar(foo{i=\"0\"} @ 300)", 0, "scalar 5");
        check_instant(&e, "foo", 20 * 60_000, "");
        check_instant(&e, "sum(", 0, "error: unclosed left parenthesis");
        let dup = "error: vector cannot contain metrics with the same labelset";
        check_instant(&e, "{__name__=~\"foo|bar\", i=\"0\"} * 2", 0, dup);
        check_instant(&e, "-{__name__=~\"foo|bar\", i=\"0\"}", 0, dup);
        check_instant(&e, "{__name__=~\"foo|bar\", i=\"0\"} > 5", 0, "bar{i=\"0\"} 7");
    }

    #[test]
    fn limits_are_errors() {
        let tight = Engine::new(EngineOptions { max_samples: 2, ..EngineOptions::default() });
        check_instant(
            &tight,
            "foo",
            0,
            "error: query processing would load too many samples into memory in query execution",
        );
        let no_time = Engine::new(EngineOptions {
            timeout: Some(Duration::ZERO),
            ..EngineOptions::default()
        });
        let r =
            no_time.range_query(&storage(), &TenantId::default_tenant(), "foo", 0, 60_000, 1000);
        assert_eq!(
            r.map(|_| ()).map_err(|e| e.to_string()),
            Err("query timed out in query execution".into())
        );
        // A deadline passed in by the caller (a query evaluated in pieces) counts too.
        let e = Engine::new(EngineOptions::default());
        let (s, t) = (storage(), TenantId::default_tenant());
        let ok = e.range_query_with(&s, &t, "foo", 0, 60_000, 1000, &Cancel::new());
        assert!(ok.is_ok(), "{ok:?}");
        let past = Cancel::new().until(Instant::now());
        let r = e.range_query_with(&s, &t, "foo", 0, 60_000, 1000, &past);
        assert_eq!(
            r.map(|_| ()).map_err(|e| e.to_string()),
            Err("query timed out in query execution".into())
        );
    }

    #[test]
    fn odd_queries_error_or_answer_without_panicking() {
        let e = Engine::default();
        let s = storage();
        let t = TenantId::default_tenant();
        let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        for q in [
            "foo @ 9223372036854775",
            "foo offset 292y",
            "foo offset -292y",
            "rate(foo[1ms])",
            "foo[10m:1ms] @ 0",
            "topk(9e300, foo)",
            "topk(-1, foo)",
            "topk(NaN, foo)",
            "quantile(NaN, foo)",
            "histogram_quantile(0.5, foo)",
            "label_replace(foo, \"a\", \"$99\", \"i\", \"(.*)\")",
            "count_values(\"i\", foo)",
            "round(foo, 0)",
            "predict_linear(foo[10m], 1e308)",
            "year(vector(1e300))",
            "day_of_week(vector(-1e300))",
            "sort_by_label(foo, \"i\", \"x\")",
            "foo / on(i) group_left foo",
            "limit_ratio(2, foo)",
            &deep,
        ] {
            let _ = e.instant_query(&s, &t, q, 60_000);
            let _ = e.range_query(&s, &t, q, 0, 120_000, 60_000);
        }
        let huge = e.range_query(&s, &t, "foo", i64::MIN, i64::MAX, i64::MAX);
        assert!(huge.is_ok());
        let quick = Engine::new(EngineOptions {
            timeout: Some(Duration::from_millis(200)),
            ..EngineOptions::default()
        });
        let slow = quick.instant_query(&s, &t, "count_over_time(foo[1y:1ms])", 0);
        assert_eq!(
            slow.map(|_| ()).map_err(|e| e.to_string()),
            Err("query timed out in query execution".into())
        );
    }

    #[test]
    fn a_canceled_query_returns_canceled() {
        let c = Cancel::new();
        c.cancel();
        let (e, s, t) = (Engine::default(), storage(), TenantId::default_tenant());
        let msg = |r: Result<QueryResult>| r.map(|_| ()).map_err(|e| e.to_string());
        let canceled = Err("query canceled".to_string());
        assert_eq!(msg(e.instant_query_with(&s, &t, "sum(foo)", 60_000, &c)), canceled);
        assert_eq!(msg(e.range_query_with(&s, &t, "foo", 0, 60_000, 1000, &c)), canceled);
        // The same query without the handle answers.
        let Value::Vector(v) = e.instant_query(&s, &t, "sum(foo)", 60_000).unwrap().value else {
            panic!("not a vector")
        };
        assert_eq!(v[0].v, 33.0);
    }

    #[test]
    fn a_long_query_stops_promptly_when_canceled_from_another_thread() {
        let (s, t) = (storage(), TenantId::default_tenant());
        let no_timeout = Engine::new(EngineOptions { timeout: None, ..EngineOptions::default() });
        // Millions of subquery steps: minutes of work without cancellation.
        let q = "count_over_time(foo[1y:1ms])";
        for range in [false, true] {
            let c = Cancel::new();
            let started = Instant::now();
            let r = std::thread::scope(|scope| {
                let worker = scope.spawn(|| {
                    if range {
                        no_timeout.range_query_with(&s, &t, q, 0, 600_000, 60_000, &c)
                    } else {
                        no_timeout.instant_query_with(&s, &t, q, 0, &c)
                    }
                });
                std::thread::sleep(Duration::from_millis(100));
                assert!(!worker.is_finished(), "the query should still be running");
                let canceled_at = Instant::now();
                c.cancel();
                let r = worker.join().unwrap();
                (r, canceled_at.elapsed())
            });
            assert_eq!(r.0.map(|_| ()).map_err(|e| e.to_string()), Err("query canceled".into()));
            assert!(r.1 < Duration::from_secs(2), "stopped {:?} after cancel", r.1);
            assert!(started.elapsed() < Duration::from_secs(10));
        }
    }

    /// A series per `i` with values that make `rate` and `sum by` non-trivial, plus gaps.
    fn wide_storage() -> MemStorage {
        let s = MemStorage::new();
        let mut batch = WriteBatch::default();
        for i in 0..40 {
            let labels = Labels::from_pairs([
                ("__name__", "c"),
                ("i", &i.to_string()),
                ("g", &(i % 3).to_string()),
            ])
            .unwrap();
            let samples = (0..200)
                .filter(|m| (m + i) % 17 != 0)
                .map(|m| ModelSample { t: m * 15_000, v: ((m * (i + 1)) % 1000) as f64 })
                .collect();
            batch.series.push(SeriesWrite { labels, samples, ..Default::default() });
        }
        s.append(&TenantId::default_tenant(), batch).unwrap();
        s
    }

    #[test]
    fn parallel_range_queries_equal_sequential_ones() {
        let (s, t) = (wide_storage(), TenantId::default_tenant());
        let one = Engine::new(EngineOptions { parallel_workers: 1, ..EngineOptions::default() });
        for workers in [2, 3, 7] {
            let many = Engine::new(EngineOptions {
                parallel_workers: workers,
                parallel_min_work: 0,
                ..EngineOptions::default()
            });
            for q in [
                "rate(c[1m])",
                "sum by (g) (rate(c[1m]))",
                "topk(3, c)",
                "c > 500",
                "time()",
                "max_over_time(c[2m:30s])",
                "c / on(i) c",
            ] {
                for (start, end, step) in [(0, 3_000_000, 15_000), (7, 2_999_000, 61_000)] {
                    let a = one.range_query(&s, &t, q, start, end, step).unwrap();
                    let b = many.range_query(&s, &t, q, start, end, step).unwrap();
                    assert_eq!(format!("{:?}", a.value), format!("{:?}", b.value), "{q}");
                    assert_eq!(a.annotations.warnings, b.annotations.warnings, "{q}");
                    assert_eq!(a.annotations.infos, b.annotations.infos, "{q}");
                }
            }
        }
        // An error in an early range wins, as on one thread.
        let many = Engine::new(EngineOptions {
            parallel_workers: 2,
            parallel_min_work: 0,
            max_samples: 30,
            ..EngineOptions::default()
        });
        let r = many.range_query(&s, &t, "c", 0, 3_000_000, 15_000);
        assert_eq!(
            r.map(|_| ()).map_err(|e| e.to_string()),
            Err("query processing would load too many samples into memory in query execution"
                .into())
        );
    }

    /// `wide_storage` plus series that exercise the edges: staleness markers, NaN, equal
    /// values (ties), a counter without `_total`, and two metrics that collide once the
    /// name is dropped.
    fn edgy_storage() -> MemStorage {
        let s = wide_storage();
        let stale = f64::from_bits(model::STALE_NAN_BITS);
        let mut batch = WriteBatch::default();
        for (name, i) in [("c", "100"), ("c", "101"), ("d", "0"), ("e", "0")] {
            let labels = Labels::from_pairs([("__name__", name), ("i", i), ("g", "x")]).unwrap();
            let samples = (0..200)
                .map(|m| {
                    let v = match m % 23 {
                        5 => stale,
                        9 => f64::NAN,
                        _ if i == "101" => 7.0,
                        _ => (m % 50) as f64,
                    };
                    ModelSample { t: m * 15_000 + 1, v }
                })
                .collect();
            batch.series.push(SeriesWrite { labels, samples, ..Default::default() });
        }
        // Loaded in `a` order, grouped by `b`: when the first series misses a sample, the
        // group `b="1"` comes first at that step.
        for (a, b) in [("0", "0"), ("1", "1"), ("2", "0")] {
            let labels = Labels::from_pairs([("__name__", "k"), ("a", a), ("b", b)]).unwrap();
            let samples = (0..200)
                .filter(|m| a != "0" || m % 5 != 0)
                .map(|m| ModelSample { t: m * 15_000, v: m as f64 })
                .collect();
            batch.series.push(SeriesWrite { labels, samples, ..Default::default() });
        }
        s.append(&TenantId::default_tenant(), batch).unwrap();
        s
    }

    /// Series-at-a-time evaluation must answer exactly as step-by-step evaluation: values,
    /// labels, order, annotations and errors, whether the root or only a subtree is covered.
    #[test]
    fn series_at_a_time_equals_step_by_step() {
        let (s, t) = (edgy_storage(), TenantId::default_tenant());
        let opts = |on: bool, workers: usize, max_samples: usize| EngineOptions {
            series_at_a_time: on,
            parallel_workers: workers,
            parallel_min_work: 0,
            max_samples,
            ..EngineOptions::default()
        };
        let queries = [
            "c",
            "c offset 1m",
            "{__name__=~\"c|d\"}",
            "rate(c[1m])",
            "rate(c[1m] offset 30s)",
            "increase(c[2m])",
            "delta(c[1m])",
            "irate(c[1m])",
            "idelta(c[1m])",
            "deriv(c[2m])",
            "rate(d[1m])",
            "rate({__name__=~\"d|e\"}[1m])",
            "sum_over_time(c[1m])",
            "avg_over_time(c[1m])",
            "min_over_time(c[1m])",
            "max_over_time(c[1m])",
            "count_over_time(c[1m])",
            "stddev_over_time(c[1m])",
            "stdvar_over_time(c[1m])",
            "present_over_time(c[1m])",
            "last_over_time(c[1m])",
            "first_over_time(c[1m])",
            "sum(c)",
            "sum by (g) (rate(c[1m]))",
            "count by (g) (rate(c[1m]))",
            "group without (i) (irate(c[1m]))",
            "sum(rate({__name__=~\"d|e\"}[1m]))",
            "sum by (g) (last_over_time(c[1m]))",
            "count(increase(c[2m] offset 30s))",
            "topk(1, count by (g) (rate(c[30s])))",
            "avg by (g) (rate(c[1m]))",
            "min by (g) (c)",
            "max without (i) (c)",
            "count by (g) (c)",
            "group by (g) (c)",
            "stddev by (g) (c)",
            "stdvar(c)",
            "quantile(0.9, rate(c[1m]))",
            "quantile(2, c)",
            "topk(2, c)",
            "topk(1, sum by (g) (c))",
            "topk(1, group by (g) (c))",
            "limitk(2, count by (g) (c))",
            "limitk(3, c)",
            "limitk(1, sum by (g) (rate(c[30s])))",
            "limitk(2, avg by (g) (rate(c[30s])))",
            "topk(1, group by (b) (rate(k[30s])))",
            "limitk(1, sum by (b) (rate(k[30s])))",
            "bottomk(2, max by (i) (c))",
            "sum(sum by (g) (c))",
            "sum by (g) (rate(c[1m])) > 10",
            "1 - c / on(i) c",
            "sum(rate(c[1m])) / sum(c)",
            "histogram_quantile(0.9, sum by (g) (c))",
            "abs(c)",
            "timestamp(c)",
            "max_over_time(sum(c)[2m:30s])",
            "rate(c[1m]) * on(i) group_left max by (i) (c)",
        ];
        for q in queries {
            for (start, end, step) in [(0, 3_000_000, 15_000), (7, 2_999_000, 61_000)] {
                for max_samples in [50_000_000, 3_000, 200] {
                    let step_by_step = Engine::new(opts(false, 1, max_samples));
                    let want = step_by_step.range_query(&s, &t, q, start, end, step);
                    for workers in [1, 2] {
                        let got = Engine::new(opts(true, workers, max_samples))
                            .range_query(&s, &t, q, start, end, step);
                        let show = |r: &Result<QueryResult>| match r {
                            Ok(r) => format!("{:?} {:?}", r.value, r.annotations),
                            Err(e) => format!("error: {e}"),
                        };
                        assert_eq!(show(&got), show(&want), "{q} {max_samples} {workers}");
                    }
                }
            }
        }
    }

    /// The samples limit is hit at exactly the same point in both modes.
    #[test]
    fn series_at_a_time_counts_samples_as_step_by_step() {
        let (s, t) = (edgy_storage(), TenantId::default_tenant());
        let run = |on: bool, max_samples: usize, q: &str| {
            let e = Engine::new(EngineOptions {
                series_at_a_time: on,
                parallel_workers: 1,
                max_samples,
                ..EngineOptions::default()
            });
            e.range_query(&s, &t, q, 0, 3_000_000, 15_000).is_ok()
        };
        for q in [
            "c",
            "rate(c[1m])",
            "sum by (g) (rate(c[2m]))",
            "count(rate(c[2m]))",
            "topk(1, sum by (g) (c))",
        ] {
            // The smallest limit the step-by-step evaluator accepts.
            let (mut lo, mut hi) = (0usize, 1_000_000usize);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if run(false, mid, q) { hi = mid } else { lo = mid + 1 }
            }
            assert!(lo > 0 && lo < 1_000_000, "{q}: {lo}");
            assert!(run(true, lo, q), "{q} at {lo}");
            assert!(!run(true, lo - 1, q), "{q} at {}", lo - 1);
        }
    }

    /// The queries the series-at-a-time path covers completely do not need the step loop.
    #[test]
    fn series_at_a_time_covers_the_common_shapes() {
        let (s, t) = (wide_storage(), TenantId::default_tenant());
        let opts = EngineOptions::default();
        for (q, covered) in [
            ("c", true),
            ("rate(c[1m])", true),
            ("sum by (g) (rate(c[1m]))", true),
            ("quantile(0.5, max_over_time(c[1m]))", true),
            ("topk(2, c)", false),
            ("c > 5", false),
            ("c @ 100", false),
        ] {
            let expr = parse(q).unwrap();
            let mut ev = Evaluator::new(&opts, 0, 60_000, None, Cancel::new());
            ev.load(&s, &t, &expr, 0, 60_000).unwrap();
            let grid = Grid { start: 0, step: 15_000, n: 5 };
            let got = crate::series::prepare(&mut ev, &expr, grid).unwrap().is_some();
            assert_eq!(got, covered, "{q}");
        }
    }

    #[test]
    fn range_query_is_sorted_matrix() {
        let r = Engine::default()
            .range_query(&storage(), &TenantId::default_tenant(), "foo * 2", 0, 120_000, 60_000)
            .unwrap();
        let Value::Matrix(m) = r.value else { panic!("not a matrix") };
        let got: Vec<String> = m
            .iter()
            .map(|s| format!("{} {:?}", s.labels, s.points.iter().map(|p| p.v).collect::<Vec<_>>()))
            .collect();
        assert_eq!(
            got,
            [
                "{i=\"0\"} [0.0, 2.0, 4.0]",
                "{i=\"1\"} [20.0, 22.0, 24.0]",
                "{i=\"2\"} [40.0, 42.0, 44.0]"
            ]
        );
    }
}
