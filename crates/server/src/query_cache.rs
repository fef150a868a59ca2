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
//! - engine options (lookback delta, ...) are fixed for the process, so they need no key;
//! - extents are held encoded ([`Encoded`]: the JSON items the response prints), so a cached
//!   piece of an answer is a byte range, copied as is: the joined answer prints byte for byte
//!   as the unsplit one (tested here and in `crates/cli/tests/it/cache.rs`).
//!
//! Limits: the pieces of one query share one deadline (`timeout` from the query's start);
//! `max_samples` bounds each piece and the joined answer.

use std::collections::{HashMap, HashSet};

/// Maps keyed by label sets (hashed for every series of every refresh): foldhash, not SipHash.
type Hasher = foldhash::fast::RandomState;
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

/// Items of one JSON list (a series' `values` or `histograms`), encoded once and kept with the
/// time of each, so any run of them is one slice of bytes.
///
/// Invariant: `bytes` is the items joined by commas, exactly as the response writers
/// (`http::query::write_point`, `write_histogram_point`) print them; `at[i]` is where item
/// `i` starts; `ts` is increasing. Offsets are `u32`: an extent over `u32::MAX` bytes is not
/// stored (see [`Extent::encode`]).
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    bytes: Vec<u8>,
    ts: Vec<i64>,
    at: Vec<u32>,
}

impl Encoded {
    fn push(&mut self, t: i64, write: impl FnOnce(&mut Vec<u8>)) {
        if !self.ts.is_empty() {
            self.bytes.push(b',');
        }
        self.at.push(self.bytes.len() as u32);
        self.ts.push(t);
        write(&mut self.bytes);
    }

    /// The items at times `[from, to]`.
    fn range(&self, from: i64, to: i64) -> std::ops::Range<usize> {
        self.ts.partition_point(|&t| t < from)..self.ts.partition_point(|&t| t <= to)
    }

    /// Items `r` as they go into a list (commas between, none around).
    pub fn slice(&self, r: std::ops::Range<usize>) -> &[u8] {
        if r.is_empty() {
            return &[];
        }
        let end = match self.at.get(r.end) {
            Some(&next) => next as usize - 1,
            None => self.bytes.len(),
        };
        &self.bytes[self.at[r.start] as usize..end]
    }

    /// Appends items `r` of `other` (all later than ours).
    fn extend(&mut self, other: &Encoded, r: std::ops::Range<usize>) {
        if r.is_empty() {
            return;
        }
        if !self.ts.is_empty() {
            self.bytes.push(b',');
        }
        let base = self.bytes.len() as i64 - other.at[r.start] as i64;
        self.bytes.extend_from_slice(other.slice(r.clone()));
        self.ts.extend_from_slice(&other.ts[r.clone()]);
        self.at.extend(other.at[r].iter().map(|&a| (a as i64 + base) as u32));
    }

    fn len(&self) -> usize {
        self.ts.len()
    }

    fn heap_bytes(&self) -> usize {
        self.bytes.len() + self.ts.len() * 8 + self.at.len() * 4
    }
}

/// One series of a cached extent, its points encoded as the response prints them.
#[derive(Clone, Debug)]
pub struct EncodedSeries {
    pub labels: Labels,
    pub values: Encoded,
    pub histograms: Encoded,
}

impl EncodedSeries {
    fn encode(s: &Series, upto: i64) -> EncodedSeries {
        let mut e = EncodedSeries {
            labels: s.labels.clone(),
            values: Encoded::default(),
            histograms: Encoded::default(),
        };
        for p in s.points.iter().take_while(|p| p.t <= upto) {
            e.values.push(p.t, |out| crate::http::query::write_point(out, p.t, p.v));
        }
        for h in s.histograms.iter().take_while(|h| h.t <= upto) {
            e.histograms.push(h.t, |out| crate::http::query::write_histogram_point(out, h));
        }
        e
    }

    /// Our items before `t`, then all of `later`'s.
    fn joined(&self, t: i64, later: Option<&EncodedSeries>) -> EncodedSeries {
        let room = |a: &Encoded, b: Option<&Encoded>| Encoded {
            bytes: Vec::with_capacity(a.bytes.len() + b.map_or(0, |b| b.bytes.len() + 1)),
            ts: Vec::with_capacity(a.len() + b.map_or(0, Encoded::len)),
            at: Vec::with_capacity(a.len() + b.map_or(0, Encoded::len)),
        };
        let mut e = EncodedSeries {
            labels: self.labels.clone(),
            values: room(&self.values, later.map(|l| &l.values)),
            histograms: room(&self.histograms, later.map(|l| &l.histograms)),
        };
        e.values.extend(&self.values, self.values.range(i64::MIN, t - 1));
        e.histograms.extend(&self.histograms, self.histograms.range(i64::MIN, t - 1));
        if let Some(l) = later {
            e.values.extend(&l.values, 0..l.values.len());
            e.histograms.extend(&l.histograms, 0..l.histograms.len());
        }
        e
    }

    fn is_empty(&self) -> bool {
        self.values.len() == 0 && self.histograms.len() == 0
    }

    fn bytes(&self) -> usize {
        48 + self.labels.iter().map(|l| l.name.len() + l.value.len() + 32).sum::<usize>()
            + self.values.heap_bytes()
            + self.histograms.heap_bytes()
    }
}

/// Computed steps `[start, end]` of one interval, and the change generation taken before.
/// The series are kept encoded: a refresh copies their bytes into the response instead of
/// slicing, cloning and formatting hundreds of points per series again.
#[derive(Clone, Debug)]
pub struct Extent {
    pub start: i64,
    pub end: i64,
    pub generation: u64,
    pub series: Arc<Vec<Arc<EncodedSeries>>>,
    pub annotations: Annotations,
    /// Approximate bytes held, for the cache's weigher.
    bytes: usize,
}

impl Extent {
    /// The steps `[start, end]` of computed `series`; `None` when too large to hold.
    fn encode(
        start: i64,
        end: i64,
        generation: u64,
        series: &[Series],
        annotations: Annotations,
    ) -> Option<Extent> {
        let series: Vec<Arc<EncodedSeries>> = series
            .iter()
            .map(|s| EncodedSeries::encode(s, end))
            .filter(|e| !e.is_empty())
            .map(Arc::new)
            .collect();
        Extent::new(start, end, generation, series, annotations)
    }

    fn new(
        start: i64,
        end: i64,
        generation: u64,
        series: Vec<Arc<EncodedSeries>>,
        annotations: Annotations,
    ) -> Option<Extent> {
        let a = &annotations;
        let mut bytes = 64 + a.warnings.iter().chain(&a.infos).map(|m| m.len() + 24).sum::<usize>();
        for s in &series {
            // u32 offsets inside each list.
            if s.values.bytes.len() > u32::MAX as usize / 2
                || s.histograms.bytes.len() > u32::MAX as usize / 2
            {
                return None;
            }
            bytes += s.bytes();
        }
        Some(Extent { start, end, generation, series: Arc::new(series), annotations, bytes })
    }
}

/// One series of a joined answer: its parts in time order.
pub struct JoinedSeries {
    pub labels: Labels,
    pub parts: Vec<Part>,
}

/// Part of a series' steps: a run of a cached extent's encoded items, or computed points.
pub enum Part {
    Encoded {
        series: Arc<EncodedSeries>,
        values: std::ops::Range<usize>,
        histograms: std::ops::Range<usize>,
    },
    Computed(Series),
}

impl JoinedSeries {
    /// About the bytes `write` prints (exact for the cached parts), to size the buffer once.
    pub fn size_hint(&self) -> usize {
        let parts: usize = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Encoded { series, values, histograms } => {
                    series.values.slice(values.clone()).len()
                        + series.histograms.slice(histograms.clone()).len()
                        + 2
                }
                Part::Computed(s) => s.points.len() * 24 + s.histograms.len() * 64,
            })
            .sum();
        let labels: usize = self.labels.iter().map(|l| l.name.len() + l.value.len() + 6).sum();
        parts + labels + 48
    }

    /// The series as one element of the response's `result` list (see `write_series`).
    pub fn write(&self, out: &mut Vec<u8>) {
        use crate::http::query::{write_histogram_point, write_point, write_series};
        let has_h = self.parts.iter().any(|p| match p {
            Part::Encoded { histograms, .. } => !histograms.is_empty(),
            Part::Computed(s) => !s.histograms.is_empty(),
        });
        let has_v = self.parts.iter().any(|p| match p {
            Part::Encoded { values, .. } => !values.is_empty(),
            Part::Computed(s) => !s.points.is_empty(),
        });
        write_series(
            out,
            &self.labels,
            has_h,
            |out| {
                let mut first = true;
                for p in &self.parts {
                    match p {
                        Part::Encoded { series, histograms, .. } if !histograms.is_empty() => {
                            if !first {
                                out.push(b',');
                            }
                            out.extend_from_slice(series.histograms.slice(histograms.clone()));
                            first = false;
                        }
                        Part::Encoded { .. } => {}
                        Part::Computed(s) => {
                            for h in &s.histograms {
                                if !first {
                                    out.push(b',');
                                }
                                write_histogram_point(out, h);
                                first = false;
                            }
                        }
                    }
                }
            },
            has_v,
            |out| {
                let mut first = true;
                for p in &self.parts {
                    match p {
                        Part::Encoded { series, values, .. } if !values.is_empty() => {
                            if !first {
                                out.push(b',');
                            }
                            out.extend_from_slice(series.values.slice(values.clone()));
                            first = false;
                        }
                        Part::Encoded { .. } => {}
                        Part::Computed(s) => {
                            for p in &s.points {
                                if !first {
                                    out.push(b',');
                                }
                                write_point(out, p.t, p.v);
                                first = false;
                            }
                        }
                    }
                }
            },
        );
    }
}

/// A range query answer joined from pieces, series sorted by labels.
pub struct Joined {
    pub series: Vec<JoinedSeries>,
    pub annotations: Annotations,
}

/// The answer of [`QueryCache::range_query`].
pub enum Answer {
    /// Evaluated whole (not split).
    Result(QueryResult),
    Joined(Joined),
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
/// `None` when a joined extent would be too large to hold.
pub fn merge(mut extents: Vec<Extent>, new: Extent, step: i64) -> Option<Vec<Extent>> {
    extents.push(new);
    extents.sort_by_key(|e| e.start);
    let mut out: Vec<Extent> = Vec::with_capacity(extents.len());
    for e in extents {
        match out.last_mut() {
            Some(last) if e.start <= last.end.saturating_add(step) => {
                let generation = last.generation.max(e.generation);
                let mut annotations = last.annotations.clone();
                merge_annotations(&mut annotations, e.annotations);
                let series = if e.end > last.end {
                    join(&last.series, e.start, &e.series)
                } else {
                    last.series.to_vec()
                };
                let end = last.end.max(e.end);
                *last = Extent::new(last.start, end, generation, series, annotations)?;
            }
            _ => out.push(e),
        }
    }
    Some(out)
}

/// `earlier`'s items before `t` followed by `later`'s, per series (labels order of `earlier`,
/// then series only `later` has).
fn join(
    earlier: &[Arc<EncodedSeries>],
    t: i64,
    later: &[Arc<EncodedSeries>],
) -> Vec<Arc<EncodedSeries>> {
    let index: HashMap<&Labels, &EncodedSeries, Hasher> =
        later.iter().map(|s| (&s.labels, &**s)).collect();
    let mut out: Vec<Arc<EncodedSeries>> = earlier
        .iter()
        .map(|s| s.joined(t, index.get(&s.labels).copied()))
        .filter(|s| !s.is_empty())
        .map(Arc::new)
        .collect();
    let known: HashSet<&Labels, Hasher> = earlier.iter().map(|s| &s.labels).collect();
    out.extend(later.iter().filter(|s| !known.contains(&s.labels)).cloned());
    out
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

/// The series of an answer being joined, in time order per series.
#[derive(Default)]
struct Join {
    series: Vec<JoinedSeries>,
    index: HashMap<Labels, usize, Hasher>,
    /// Points and histogram points held.
    points: usize,
}

impl Join {
    fn part(&mut self, labels: &Labels, part: Part) {
        self.points += match &part {
            Part::Encoded { values, histograms, .. } => values.len() + histograms.len(),
            Part::Computed(s) => s.points.len() + s.histograms.len(),
        };
        match self.index.get(labels) {
            Some(&i) => self.series[i].parts.push(part),
            None => {
                self.index.insert(labels.clone(), self.series.len());
                self.series.push(JoinedSeries { labels: labels.clone(), parts: vec![part] });
            }
        }
    }

    /// The steps `[from, to]` of cached series (series without any are left out).
    fn cached(&mut self, series: &[Arc<EncodedSeries>], from: i64, to: i64) {
        for s in series {
            let (values, histograms) = (s.values.range(from, to), s.histograms.range(from, to));
            if !values.is_empty() || !histograms.is_empty() {
                self.part(&s.labels, Part::Encoded { series: s.clone(), values, histograms });
            }
        }
    }

    fn computed(&mut self, s: Series) {
        let labels = s.labels.clone();
        self.part(&labels, Part::Computed(s));
    }
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
    /// `evictions` counts intervals evicted for size.
    pub fn new(
        settings: Settings,
        engine: &Engine,
        evictions: prometheus_client::metrics::counter::Counter,
    ) -> QueryCache {
        let cache = (settings.max_bytes > 0 && settings.split_interval_ms > 0).then(|| {
            Cache::builder()
                .max_capacity(settings.max_bytes)
                .eviction_listener(move |_k, _v, cause| {
                    if cause == moka::notification::RemovalCause::Size {
                        evictions.inc();
                    }
                })
                .weigher(|_k: &Key, v: &Arc<Vec<Extent>>| {
                    let n: usize = v.iter().map(|e| e.bytes).sum();
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
    ) -> Result<Answer, promql::Error> {
        let whole = || {
            engine
                .range_query_with(db, q.tenant, q.query, q.start, q.end, q.step, cancel)
                .map(Answer::Result)
        };
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
        // The timeout bounds the whole query, not each piece.
        let cancel = &match engine.options().timeout {
            Some(d) => cancel.until(std::time::Instant::now() + d),
            None => cancel.clone(),
        };
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
        let mut out = Join::default();
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
                        out.cached(&e.series, *from, *to);
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
                        let stored = if cache.is_some() && last >= *from {
                            Extent::encode(*from, last, generation, &series, raised)
                        } else {
                            None
                        };
                        match stored {
                            Some(e) => {
                                // The stored steps from their encoding, the rest as computed.
                                out.cached(&e.series, *from, last);
                                for mut s in series {
                                    let p = s.points.partition_point(|x| x.t <= last);
                                    let h = s.histograms.partition_point(|x| x.t <= last);
                                    if p < s.points.len() || h < s.histograms.len() {
                                        s.points.drain(..p);
                                        s.histograms.drain(..h);
                                        out.computed(s);
                                    }
                                }
                                fresh.push(e);
                            }
                            None => series.into_iter().for_each(|s| out.computed(s)),
                        }
                    }
                }
            }
            if let Some(c) = cache
                && !fresh.is_empty()
            {
                let mut all = Some(extents);
                for e in fresh {
                    all = all.and_then(|all| merge(all, e, q.step));
                }
                match all {
                    Some(mut all) => {
                        for e in &mut all {
                            // Validated above after `generation` was taken: as good as
                            // computed then.
                            e.generation = e.generation.max(generation);
                        }
                        c.insert(key(bucket), Arc::new(all));
                    }
                    None => c.invalidate(&key(bucket)),
                }
            }
        }
        // Each piece was bounded by `max_samples`; the joined answer is too (the unsplit
        // query holds at least its answer, so it would have failed as well).
        if out.points > engine.options().max_samples {
            return Err(promql::Error::TooManySamples("query execution"));
        }
        let mut series = out.series;
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Answer::Joined(Joined { series, annotations }))
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
        Extent::encode(start, end, generation, &[series("a", &ts)], Annotations::default()).unwrap()
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
            let got = merge(old, new, S).unwrap();
            let spans: Vec<(i64, i64, u64)> =
                got.iter().map(|e| (e.start, e.end, e.generation)).collect();
            assert_eq!(spans, want);
            // Each extent holds exactly its steps, once, in order, encoded as computed whole.
            for e in &got {
                let ts: Vec<i64> = (e.start..=e.end).step_by(S as usize).collect();
                assert_eq!(e.series[0].values.ts, ts);
                let whole = extent(e.start, e.end, 0);
                assert_eq!(e.series[0].values.bytes, whole.series[0].values.bytes);
                assert_eq!(e.series[0].values.at, whole.series[0].values.at);
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

    /// A matrix answered from encoded extents (sliced anywhere, joined with computed points)
    /// prints byte for byte as the same matrix computed whole.
    #[test]
    fn joined_encoded_pieces_print_as_the_whole_matrix() {
        use model::FloatHistogram;
        use promql::HistogramPoint;
        let mut a = series("a", &(0..20).map(|i| i * S).collect::<Vec<_>>());
        a.points[3].v = f64::NAN;
        a.points[4].v = f64::NEG_INFINITY;
        a.points[5] = Point { t: 5 * S + 250, v: 1e21 };
        a.points[6].v = -0.0;
        let h = Arc::new(FloatHistogram { count: 3.0, sum: 1.5, ..Default::default() });
        a.histograms =
            (0..20).step_by(3).map(|i| HistogramPoint { t: i * S + 1, h: h.clone() }).collect();
        // Only some steps, only histograms, and labels needing escapes.
        let b = series("b\"\\\n", &[2 * S, 9 * S, 17 * S]);
        let c = Series {
            labels: Labels::from_pairs([("__name__", "c"), ("x", "é")]).unwrap(),
            points: vec![],
            histograms: vec![HistogramPoint { t: 11 * S, h }],
        };
        let all = vec![a, b, c];
        let print = |series: &[JoinedSeries]| {
            let mut out = Vec::new();
            for s in series {
                s.write(&mut out);
                out.push(b'\n');
            }
            String::from_utf8(out).unwrap()
        };
        let whole = {
            let mut j = Join::default();
            all.iter().for_each(|s| j.computed(s.clone()));
            print(&j.series)
        };
        let check = |cuts: &[i64], encoded: &[bool]| {
            // Pieces [cuts[i], cuts[i+1] - 1], each from an extent or computed.
            let mut j = Join::default();
            for (i, w) in cuts.windows(2).enumerate() {
                let (from, to) = (w[0], w[1] - 1);
                if encoded[i] {
                    let e = Extent::encode(0, to, 1, &all, Annotations::default()).unwrap();
                    j.cached(&e.series, from, to);
                } else {
                    for s in &all {
                        let mut s = s.clone();
                        s.points.retain(|p| p.t >= from && p.t <= to);
                        s.histograms.retain(|p| p.t >= from && p.t <= to);
                        if !s.points.is_empty() || !s.histograms.is_empty() {
                            j.computed(s);
                        }
                    }
                }
            }
            j.series.sort_by(|a, b| a.labels.cmp(&b.labels));
            assert_eq!(print(&j.series), whole, "cuts {cuts:?}, encoded {encoded:?}");
        };
        let end = 20 * S;
        check(&[0, end], &[true]);
        check(&[0, 5 * S + 250, end], &[true, false]);
        check(&[0, 5 * S + 251, end], &[false, true]);
        check(&[0, 3 * S, 11 * S, 12 * S, end], &[true, false, true, true]);
        check(&[0, S, 2 * S, 17 * S, end], &[false, true, true, false]);
    }

    #[test]
    fn encoded_items_slice_and_extend_on_item_boundaries() {
        let mut e = Encoded::default();
        for t in [10, 20, 30, 40] {
            e.push(t, |out| out.extend_from_slice(format!("[{t}]").as_bytes()));
        }
        let check = |e: &Encoded, from, to, want: &str| {
            assert_eq!(String::from_utf8_lossy(e.slice(e.range(from, to))), want, "[{from}, {to}]");
        };
        check(&e, 0, 100, "[10],[20],[30],[40]");
        check(&e, 11, 30, "[20],[30]");
        check(&e, 40, 40, "[40]");
        check(&e, 41, 50, "");
        check(&e, 12, 18, "");
        let mut f = Encoded::default();
        f.extend(&e, e.range(20, 30));
        f.extend(&e, e.range(40, 40));
        check(&f, 0, 100, "[20],[30],[40]");
        check(&f, 25, 40, "[30],[40]");
        assert_eq!(f.ts, vec![20, 30, 40]);
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
