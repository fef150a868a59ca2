//! Range queries split into step-aligned intervals, evaluated in parallel and joined, with a
//! memory-bounded results cache of completed extents (as Mimir's and Thanos' query-frontends).
//!
//! Splitting: the query range is cut at multiples of the split interval (rounded up to a
//! multiple of the step), counted from the epoch. Every piece starts on one of the original
//! steps (`start + k * step`), so the joined pieces hold exactly the original steps. PromQL
//! evaluates each step independently (subquery steps are aligned to the epoch, not to the
//! query), so the join is the unsplit result — except for `@ start()` / `@ end()`, whose value
//! is the query's own range: queries with any `@` are neither split nor cached.
//!
//! Caching: per (tenant, query, step, start modulo step, interval) the cache holds extents:
//! runs of steps `[start, end]` already computed, with the tenant's change generation taken
//! before they were computed. Invariants:
//! - an extent never ends later than `now - cache_freshness` when stored: the recent,
//!   still-changing window is always computed;
//! - an extent is used only if no write since its generation touched a time `<= end`
//!   (`storage::changes`); otherwise it is dropped (an invalidation). A sample at `t` changes
//!   steps at `t` or later only, unless the query has a negative offset: such queries (which
//!   look ahead of the step) are split but not cached;
//! - an extent keeps the warnings and infos raised computing it; an answer using any part of
//!   it carries them all (they are nearly always per series, not per step, so this matches
//!   the unsplit query; a message from a step outside the part used can appear extra);
//! - engine options (lookback delta, ...) are fixed for the process, so they need no key.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use model::{Labels, TenantId};
use moka::sync::Cache;
use promql::{Annotations, Cancel, Engine, QueryResult, Series, Value};
use promql_parser::parser::{self, Expr, Offset};

use crate::metrics::{Metrics, TenantLabels};

/// What may be done with a range query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Evaluated as one query (`@` modifiers: the result depends on the query's range).
    Whole,
    /// Split, but not cached (a negative offset reads data after the step).
    Split,
    SplitAndCache,
}

/// The mode of a parsed query.
pub fn mode(expr: &Expr) -> Mode {
    fn walk(e: &Expr, m: &mut Mode) {
        let mut offset = |o: &Option<Offset>, at: bool| {
            if at {
                *m = Mode::Whole;
            } else if matches!(o, Some(Offset::Neg(_))) && *m == Mode::SplitAndCache {
                *m = Mode::Split;
            }
        };
        match e {
            Expr::VectorSelector(vs) => offset(&vs.offset, vs.at.is_some()),
            Expr::MatrixSelector(ms) => offset(&ms.vs.offset, ms.vs.at.is_some()),
            Expr::Subquery(sq) => {
                offset(&sq.offset, sq.at.is_some());
                walk(&sq.expr, m);
            }
            Expr::Aggregate(a) => {
                walk(&a.expr, m);
                if let Some(p) = &a.param {
                    walk(p, m);
                }
            }
            Expr::Unary(u) => walk(&u.expr, m),
            Expr::Binary(b) => {
                walk(&b.lhs, m);
                walk(&b.rhs, m);
            }
            Expr::Paren(p) => walk(&p.expr, m),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, m)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
            // Unknown to us: do not guess.
            Expr::Extension(_) => *m = Mode::Whole,
        }
    }
    let mut m = Mode::SplitAndCache;
    walk(expr, &mut m);
    m
}

/// The steps of `[start, end]` (on the grid `start + k * step`) cut at multiples of
/// `interval` (a multiple of `step`): `(bucket, first step, last step)` in time order.
pub fn split(start: i64, end: i64, step: i64, interval: i64) -> Vec<(i64, i64, i64)> {
    let (step, interval) = (step.max(1) as i128, interval.max(1) as i128);
    let mut out = Vec::new();
    let mut s = start as i128;
    // The last original step.
    let end = s + (end as i128 - s).div_euclid(step) * step;
    while s <= end {
        let bucket = s.div_euclid(interval);
        // The last step before the next boundary (at least `s` itself).
        let last = s + ((bucket + 1) * interval - 1 - s).div_euclid(step) * step;
        let e = last.min(end);
        out.push((bucket as i64, s as i64, e as i64));
        s = e + step;
    }
    out
}

/// Computed steps `[start, end]` of one interval, and the change generation taken before.
#[derive(Clone, Debug)]
pub struct Extent {
    pub start: i64,
    pub end: i64,
    pub generation: u64,
    pub series: Arc<Vec<Series>>,
    pub annotations: Annotations,
}

impl Extent {
    /// Approximate bytes held (labels, points, histograms), for the cache's weigher.
    fn bytes(&self) -> usize {
        let a = &self.annotations;
        let mut n = 64 + a.warnings.iter().chain(&a.infos).map(|m| m.len() + 24).sum::<usize>();
        for s in self.series.iter() {
            n += 48 + s.labels.iter().map(|l| l.name.len() + l.value.len() + 32).sum::<usize>();
            n += s.points.len() * 16;
            for h in &s.histograms {
                n += 96
                    + (h.h.positive_buckets.len() + h.h.negative_buckets.len()) * 8
                    + (h.h.positive_spans.len() + h.h.negative_spans.len()) * 8;
            }
        }
        n
    }
}

/// The steps `[from, to]` of `series` (series without any are left out).
pub fn slice(series: &[Series], from: i64, to: i64) -> Vec<Series> {
    series
        .iter()
        .filter_map(|s| {
            let p = &s.points;
            let (a, b) = (p.partition_point(|x| x.t < from), p.partition_point(|x| x.t <= to));
            let h = &s.histograms;
            let (c, d) = (h.partition_point(|x| x.t < from), h.partition_point(|x| x.t <= to));
            (a < b || c < d).then(|| Series {
                labels: s.labels.clone(),
                points: p[a..b].to_vec(),
                histograms: h[c..d].to_vec(),
            })
        })
        .collect()
}

/// Part of a requested interval: answered from a cached extent, or to be computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Cached { extent: usize, from: i64, to: i64 },
    Compute { from: i64, to: i64 },
}

/// How to answer steps `[from, to]` given cached extents (sorted, disjoint, on the same grid).
pub fn plan(extents: &[Extent], from: i64, to: i64, step: i64) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut t = from;
    for (i, e) in extents.iter().enumerate() {
        if t > to {
            break;
        }
        if e.end < t || e.start > to {
            continue;
        }
        if e.start > t {
            out.push(Piece::Compute { from: t, to: e.start - step });
            t = e.start;
        }
        let upto = e.end.min(to);
        out.push(Piece::Cached { extent: i, from: t, to: upto });
        t = upto.saturating_add(step);
    }
    if t <= to {
        out.push(Piece::Compute { from: t, to });
    }
    out
}

/// `extents` with `new` added: sorted, and overlapping or adjacent extents joined into one
/// (with the generation `new` carries, which the caller took before validating the others).
pub fn merge(mut extents: Vec<Extent>, new: Extent, step: i64) -> Vec<Extent> {
    extents.push(new);
    extents.sort_by_key(|e| e.start);
    let mut out: Vec<Extent> = Vec::with_capacity(extents.len());
    for e in extents {
        match out.last_mut() {
            Some(last) if e.start <= last.end.saturating_add(step) => {
                if e.end > last.end {
                    let mut joined = slice(&last.series, last.start, e.start - step);
                    join(&mut joined, &e.series);
                    last.series = Arc::new(joined);
                    last.end = e.end;
                }
                last.generation = last.generation.max(e.generation);
                merge_annotations(&mut last.annotations, e.annotations);
            }
            _ => out.push(e),
        }
    }
    out
}

/// Appends `later`'s points (all after `into`'s) to the series of the same labels.
fn join(into: &mut Vec<Series>, later: &[Series]) {
    let mut index: HashMap<Labels, usize> =
        into.iter().enumerate().map(|(i, s)| (s.labels.clone(), i)).collect();
    for s in later {
        match index.get(&s.labels) {
            Some(&i) => {
                into[i].points.extend_from_slice(&s.points);
                into[i].histograms.extend_from_slice(&s.histograms);
            }
            None => {
                index.insert(s.labels.clone(), into.len());
                into.push(s.clone());
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    tenant: TenantId,
    query: Arc<str>,
    step: i64,
    /// `start mod step`: queries on another grid have other steps.
    phase: i64,
    bucket: i64,
}

/// Settings of splitting and caching (from `[query]`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// 0: no splitting and no caching.
    pub split_interval_ms: i64,
    /// 0: no caching.
    pub max_bytes: u64,
    pub freshness_ms: i64,
}

/// Splits range queries and caches their extents; one per server.
pub struct QueryCache {
    settings: Settings,
    cache: Option<Cache<Key, Arc<Vec<Extent>>>>,
    /// Evaluates one piece when several run side by side (single-threaded each, so the
    /// pieces together use the engine's worker count, not workers × pieces).
    single: Engine,
}

/// Where a query gets its data and change log.
pub trait Source: model::Queryable {
    fn generation(&self, tenant: &TenantId) -> u64;
    fn min_time_written_since(&self, tenant: &TenantId, since: u64) -> Option<i64>;
}

impl Source for storage::Db {
    fn generation(&self, tenant: &TenantId) -> u64 {
        self.change_generation(tenant)
    }
    fn min_time_written_since(&self, tenant: &TenantId, since: u64) -> Option<i64> {
        storage::Db::min_time_written_since(self, tenant, since)
    }
}

/// A range query's parameters.
pub struct RangeQuery<'a> {
    pub tenant: &'a TenantId,
    pub query: &'a str,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    /// Wall clock, milliseconds (extents ending after `now - freshness` are not stored).
    pub now: i64,
}

impl QueryCache {
    pub fn new(settings: Settings, engine: &Engine) -> QueryCache {
        let cache = (settings.max_bytes > 0 && settings.split_interval_ms > 0).then(|| {
            Cache::builder()
                .max_capacity(settings.max_bytes)
                .weigher(|_k: &Key, v: &Arc<Vec<Extent>>| {
                    let n: usize = v.iter().map(Extent::bytes).sum();
                    u32::try_from(n).unwrap_or(u32::MAX)
                })
                .build()
        });
        let mut opts = engine.options().clone();
        opts.parallel_workers = 1;
        QueryCache { settings, cache, single: Engine::new(opts) }
    }

    /// Entries and approximate bytes held.
    pub fn usage(&self) -> (u64, u64) {
        match &self.cache {
            Some(c) => {
                c.run_pending_tasks();
                (c.entry_count(), c.weighted_size())
            }
            None => (0, 0),
        }
    }

    /// Answers a range query: split, from the cache where valid, the rest computed.
    pub fn range_query(
        &self,
        engine: &Engine,
        db: &dyn Source,
        q: &RangeQuery<'_>,
        cancel: &Cancel,
        metrics: &Metrics,
    ) -> Result<QueryResult, promql::Error> {
        let whole =
            || engine.range_query_with(db, q.tenant, q.query, q.start, q.end, q.step, cancel);
        if self.settings.split_interval_ms <= 0 || q.step <= 0 || q.end < q.start {
            return whole();
        }
        let Ok(expr) = parser::parse(q.query) else { return whole() };
        if !matches!(
            expr.value_type(),
            parser::value::ValueType::Vector | parser::value::ValueType::Scalar
        ) {
            return whole();
        }
        let mode = mode(&expr);
        if mode == Mode::Whole {
            return whole();
        }
        let per = self.settings.split_interval_ms.saturating_add(q.step - 1) / q.step;
        let interval = per.max(1).saturating_mul(q.step);
        let parts = split(q.start, q.end, q.step, interval);
        let cache = self.cache.as_ref().filter(|_| mode == Mode::SplitAndCache);
        // Taken before validating extents and before computing: see the module docs.
        let generation = db.generation(q.tenant);
        let text = normalise(&expr, q.query);
        let key = |bucket| Key {
            tenant: q.tenant.clone(),
            query: text.clone(),
            step: q.step,
            phase: q.start.rem_euclid(q.step),
            bucket,
        };
        let tl = TenantLabels { tenant: q.tenant.to_string() };
        // Per interval: the valid extents and the pieces.
        let mut plans: Vec<(Vec<Extent>, Vec<Piece>)> = Vec::with_capacity(parts.len());
        for &(bucket, from, to) in &parts {
            let mut extents: Vec<Extent> = Vec::new();
            if let Some(c) = cache
                && let Some(held) = c.get(&key(bucket))
            {
                let before = held.len();
                extents = held
                    .iter()
                    .filter(|e| {
                        db.min_time_written_since(q.tenant, e.generation).is_none_or(|t| t > e.end)
                    })
                    .cloned()
                    .collect();
                let dropped = before - extents.len();
                if dropped > 0 {
                    metrics.query_cache_invalidations.get_or_create(&tl).inc_by(dropped as u64);
                    if extents.is_empty() {
                        c.invalidate(&key(bucket));
                    } else {
                        c.insert(key(bucket), Arc::new(extents.clone()));
                    }
                }
            }
            let pieces = plan(&extents, from, to, q.step);
            plans.push((extents, pieces));
        }
        let todo: Vec<(i64, i64)> = plans
            .iter()
            .flat_map(|(_, ps)| ps.iter())
            .filter_map(|p| match p {
                Piece::Compute { from, to } => Some((*from, *to)),
                Piece::Cached { .. } => None,
            })
            .collect();
        let mut computed = self.compute(engine, db, q, &todo, cancel)?.into_iter();
        // Join in time order; store what is complete.
        let cutoff = q.now.saturating_sub(self.settings.freshness_ms);
        let mut out: Vec<Series> = Vec::new();
        let mut annotations = Annotations::default();
        for ((extents, pieces), &(bucket, ..)) in plans.into_iter().zip(&parts) {
            let mut fresh: Vec<Extent> = Vec::new();
            for p in &pieces {
                match p {
                    Piece::Cached { extent, from, to } => {
                        if cache.is_some() {
                            let steps = (to - from) / q.step + 1;
                            metrics.query_cache_hits.get_or_create(&tl).inc();
                            metrics.query_cache_hit_steps.get_or_create(&tl).inc_by(steps as u64);
                        }
                        let e = &extents[*extent];
                        join(&mut out, &slice(&e.series, *from, *to));
                        merge_annotations(&mut annotations, e.annotations.clone());
                    }
                    Piece::Compute { from, to } => {
                        let Some(r) = computed.next() else {
                            return Err(promql::Error::Execution(
                                "internal: a split query piece is missing".into(),
                            ));
                        };
                        if cache.is_some() {
                            let steps = (to - from) / q.step + 1;
                            metrics.query_cache_misses.get_or_create(&tl).inc();
                            metrics.query_cache_miss_steps.get_or_create(&tl).inc_by(steps as u64);
                        }
                        let Value::Matrix(series) = r.value else {
                            return Err(promql::Error::Execution(
                                "internal: a range query piece is not a matrix".into(),
                            ));
                        };
                        let raised = r.annotations.clone();
                        merge_annotations(&mut annotations, r.annotations);
                        // The complete part: the steps up to the cutoff.
                        let last = if *to <= cutoff {
                            *to
                        } else {
                            from + (cutoff - from).div_euclid(q.step) * q.step
                        };
                        if cache.is_some() && last >= *from {
                            let kept = if last == *to {
                                series.clone()
                            } else {
                                slice(&series, *from, last)
                            };
                            fresh.push(Extent {
                                start: *from,
                                end: last,
                                generation,
                                series: Arc::new(kept),
                                annotations: raised,
                            });
                        }
                        join(&mut out, &series);
                    }
                }
            }
            if let Some(c) = cache
                && !fresh.is_empty()
            {
                let mut all = extents;
                for e in fresh {
                    all = merge(all, e, q.step);
                }
                for e in &mut all {
                    // Validated above after `generation` was taken: as good as computed then.
                    e.generation = e.generation.max(generation);
                }
                c.insert(key(bucket), Arc::new(all));
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryResult { value: Value::Matrix(out), annotations })
    }

    /// Evaluates the pieces, side by side when there are several, in order.
    fn compute(
        &self,
        engine: &Engine,
        db: &dyn Source,
        q: &RangeQuery<'_>,
        todo: &[(i64, i64)],
        cancel: &Cancel,
    ) -> Result<Vec<QueryResult>, promql::Error> {
        if todo.len() <= 1 {
            return todo
                .iter()
                .map(|&(from, to)| {
                    engine.range_query_with(db, q.tenant, q.query, from, to, q.step, cancel)
                })
                .collect();
        }
        let workers = engine.options().parallel_workers.clamp(1, todo.len());
        let next = AtomicUsize::new(0);
        let mut results: Vec<Option<Result<QueryResult, promql::Error>>> =
            (0..todo.len()).map(|_| None).collect();
        let done: Vec<Vec<(usize, Result<QueryResult, promql::Error>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&(from, to)) = todo.get(i) else { break };
                            let r = self
                                .single
                                .range_query_with(db, q.tenant, q.query, from, to, q.step, cancel);
                            let failed = r.is_err();
                            mine.push((i, r));
                            if failed {
                                // Later pieces cannot change the outcome.
                                next.store(todo.len(), Ordering::Relaxed);
                                break;
                            }
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        for (i, r) in done.into_iter().flatten() {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(promql::Error::Execution(
                        "internal: split query piece not evaluated".into(),
                    ))
                })
            })
            .collect()
    }
}

/// The query text that keys the cache: the parsed query printed back when that parses to the
/// same query (so spacing and quoting do not matter), else the text as sent.
fn normalise(expr: &Expr, raw: &str) -> Arc<str> {
    let printed = expr.to_string();
    match parser::parse(&printed) {
        Ok(back) if &back == expr => printed.into(),
        _ => raw.into(),
    }
}

fn merge_annotations(into: &mut Annotations, other: Annotations) {
    for w in other.warnings {
        if !into.warnings.contains(&w) {
            into.warnings.push(w);
        }
    }
    for i in other.infos {
        if !into.infos.contains(&i) {
            into.infos.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use model::Labels;
    use promql::Point;

    use super::*;

    const S: i64 = 1000;

    #[test]
    fn splits_at_interval_boundaries_on_the_original_steps() {
        let check = |start, end, step, interval, want: &[(i64, i64, i64)]| {
            let got = split(start, end, step, interval);
            assert_eq!(got, want, "split({start}, {end}, {step}, {interval})");
            // Every original step in exactly one piece.
            let steps: Vec<i64> =
                got.iter().flat_map(|&(_, s, e)| (s..=e).step_by(step as usize)).collect();
            let all: Vec<i64> = (start..=end).step_by(step as usize).collect();
            assert_eq!(steps, all);
        };
        check(0, 100, 10, 1000, &[(0, 0, 100)]);
        check(0, 250, 10, 100, &[(0, 0, 90), (1, 100, 190), (2, 200, 250)]);
        // Start off the interval grid and off the step grid of the boundaries.
        check(7, 250, 10, 100, &[(0, 7, 97), (1, 107, 197), (2, 207, 247)]);
        check(-15, 20, 10, 100, &[(-1, -15, -5), (0, 5, 15)]);
        check(5, 5, 10, 100, &[(0, 5, 5)]);
        assert_eq!(split(i64::MAX - 5, i64::MAX, 1, 1).len(), 6, "no overflow at the edge");
    }

    fn series(name: &str, ts: &[i64]) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name)]).unwrap(),
            points: ts.iter().map(|&t| Point { t, v: t as f64 }).collect(),
            histograms: vec![],
        }
    }

    fn extent(start: i64, end: i64, generation: u64) -> Extent {
        let ts: Vec<i64> = (start..=end).step_by(S as usize).collect();
        let series = Arc::new(vec![series("a", &ts)]);
        Extent { start, end, generation, series, annotations: Annotations::default() }
    }

    #[test]
    fn plans_cached_and_computed_pieces() {
        use Piece::*;
        let check = |extents: &[Extent], from, to, want: &[Piece]| {
            assert_eq!(plan(extents, from, to, S), want, "[{from}, {to}]");
        };
        check(&[], 0, 10 * S, &[Compute { from: 0, to: 10 * S }]);
        let e = [extent(2 * S, 4 * S, 1), extent(7 * S, 8 * S, 1)];
        check(
            &e,
            0,
            10 * S,
            &[
                Compute { from: 0, to: S },
                Cached { extent: 0, from: 2 * S, to: 4 * S },
                Compute { from: 5 * S, to: 6 * S },
                Cached { extent: 1, from: 7 * S, to: 8 * S },
                Compute { from: 9 * S, to: 10 * S },
            ],
        );
        // A dashboard refresh: the cached extent covers the start, the new end is computed.
        check(
            &e,
            3 * S,
            5 * S,
            &[Cached { extent: 0, from: 3 * S, to: 4 * S }, Compute { from: 5 * S, to: 5 * S }],
        );
        check(&e, 7 * S, 8 * S, &[Cached { extent: 1, from: 7 * S, to: 8 * S }]);
    }

    #[test]
    fn merges_overlapping_and_adjacent_extents() {
        let check = |old: Vec<Extent>, new: Extent, want: &[(i64, i64, u64)]| {
            let got = merge(old, new, S);
            let spans: Vec<(i64, i64, u64)> =
                got.iter().map(|e| (e.start, e.end, e.generation)).collect();
            assert_eq!(spans, want);
            // Each extent holds exactly its steps, once, in order.
            for e in &got {
                let ts: Vec<i64> = e.series[0].points.iter().map(|p| p.t).collect();
                assert_eq!(ts, (e.start..=e.end).step_by(S as usize).collect::<Vec<_>>());
            }
        };
        check(vec![], extent(0, 3 * S, 1), &[(0, 3 * S, 1)]);
        // Adjacent: joined.
        check(vec![extent(0, 3 * S, 1)], extent(4 * S, 6 * S, 2), &[(0, 6 * S, 2)]);
        // Overlapping: joined, the overlap not doubled.
        check(vec![extent(0, 3 * S, 1)], extent(2 * S, 6 * S, 2), &[(0, 6 * S, 2)]);
        // Contained: nothing new.
        check(vec![extent(0, 6 * S, 1)], extent(2 * S, 3 * S, 2), &[(0, 6 * S, 2)]);
        // A gap stays a gap; a later extent bridging it joins all three.
        check(vec![extent(0, S, 1)], extent(5 * S, 6 * S, 2), &[(0, S, 1), (5 * S, 6 * S, 2)]);
        check(
            vec![extent(0, S, 1), extent(5 * S, 6 * S, 1)],
            extent(2 * S, 4 * S, 3),
            &[(0, 6 * S, 3)],
        );
    }

    #[test]
    fn slices_keep_only_series_with_steps_inside() {
        let s = vec![series("a", &[0, S, 2 * S]), series("b", &[5 * S])];
        let got = slice(&s, S, 3 * S);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].points.iter().map(|p| p.t).collect::<Vec<_>>(), vec![S, 2 * S]);
    }

    #[test]
    fn range_dependent_queries_are_not_split() {
        let check = |q: &str, want: Mode| {
            assert_eq!(mode(&parser::parse(q).unwrap()), want, "{q}");
        };
        check("rate(x[5m])", Mode::SplitAndCache);
        check("sum by (a) (rate(x[5m] offset 1h)) / on() group_left y", Mode::SplitAndCache);
        check("max_over_time(rate(x[1m])[10m:1m])", Mode::SplitAndCache);
        check("x @ start()", Mode::Whole);
        check("rate(x[5m] @ end())", Mode::Whole);
        check("1 + sum(x @ 100)", Mode::Whole);
        check("max_over_time(x[10m:1m] @ end())", Mode::Whole);
        check("x offset -5m", Mode::Split);
        check("x offset -5m + y @ start()", Mode::Whole);
    }
}
