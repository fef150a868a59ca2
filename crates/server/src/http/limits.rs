//! Per-query protection (`[query]` config): a concurrency limit with a bounded queue, a
//! series limit and a sample count enforced by wrapping storage, and a response size limit
//! enforced while the JSON is written. Each error names the limit and its configured value.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use model::{Matcher, Queryable, SeamError, SelectHints, SeriesIter, TenantId};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::QueryConfig;
use crate::error::ApiError;

/// Admission of queries: at most `max_concurrent_queries` run, at most `max_queued_queries`
/// wait; beyond that a query is refused at once (503).
pub struct Admission {
    running: Arc<Semaphore>,
    /// Queries admitted (running or waiting).
    admitted: Arc<AtomicUsize>,
    max_concurrent: usize,
    max_queued: usize,
}

/// Held while a query runs; frees its slot when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    admitted: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Un-counts a waiting query whose request was dropped before it got a slot.
struct Waiting(Option<Arc<AtomicUsize>>);

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            a.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Admission {
    pub fn new(c: &QueryConfig) -> Admission {
        let max_concurrent = c.max_concurrent_queries.max(1);
        Admission {
            running: Arc::new(Semaphore::new(max_concurrent)),
            admitted: Arc::new(AtomicUsize::new(0)),
            max_concurrent,
            max_queued: c.max_queued_queries,
        }
    }

    /// Waits for a slot, or refuses at once when the queue is full.
    pub async fn enter(&self) -> Result<Slot, ApiError> {
        let cap = self.max_concurrent + self.max_queued;
        let prev = self.admitted.fetch_add(1, Ordering::AcqRel);
        let waiting = Waiting(Some(self.admitted.clone()));
        if prev >= cap {
            return Err(ApiError::Unavailable(format!(
                "too many queries: {} running and {} queued (query.max_concurrent_queries = {}, query.max_queued_queries = {}); retry later",
                self.max_concurrent, self.max_queued, self.max_concurrent, self.max_queued
            )));
        }
        let permit = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Unavailable("shutting down".into()))?;
        let mut waiting = waiting;
        let admitted = waiting.0.take().unwrap_or_else(|| self.admitted.clone());
        Ok(Slot { _permit: permit, admitted })
    }
}

/// Storage as one query sees it: counts the distinct series and the samples it loads and
/// fails the query once the series limit is passed (422, naming `query.max_series`).
pub struct Counted<'a> {
    inner: &'a dyn crate::query_cache::Source,
    max_series: usize,
    /// Series seen so far.
    seen: Mutex<Seen>,
    pub samples: AtomicUsize,
}

impl<'a> Counted<'a> {
    pub fn new(inner: &'a dyn crate::query_cache::Source, max_series: usize) -> Counted<'a> {
        Counted {
            inner,
            max_series,
            seen: Mutex::new(Seen::default()),
            samples: AtomicUsize::new(0),
        }
    }

    pub fn samples(&self) -> usize {
        self.samples.load(Ordering::Relaxed)
    }
}

/// The series a query has selected, for `query.max_series`. Distinct series are at most the
/// series returned, so while those stay within the limit the label sets are only kept (an
/// `Arc` clone each); they are hashed into a set only once more than `max` came back, when
/// the same series returned by two selectors must count once. (Hashing every label set
/// even with foldhash was several percent of an instant query over 7,000 series.)
#[derive(Default)]
struct Seen {
    kept: Vec<model::Labels>,
    set: Option<HashSet<model::Labels, foldhash::fast::RandomState>>,
}

impl Seen {
    /// Records one returned series; the count of distinct series when it may pass `max`,
    /// otherwise a count not above `max`.
    fn insert(&mut self, labels: &model::Labels, max: usize) -> usize {
        if let Some(set) = &mut self.set {
            set.insert(labels.clone());
            return set.len();
        }
        self.kept.push(labels.clone());
        if self.kept.len() <= max {
            return self.kept.len();
        }
        let set: HashSet<_, _> = std::mem::take(&mut self.kept).into_iter().collect();
        let n = set.len();
        self.set = Some(set);
        n
    }
}

/// The change log is the wrapped storage's: counting changes nothing there.
impl crate::query_cache::Source for Counted<'_> {
    fn generation(&self, tenant: &TenantId) -> u64 {
        self.inner.generation(tenant)
    }
    fn min_time_written_since(&self, tenant: &TenantId, since: u64) -> Option<i64> {
        self.inner.min_time_written_since(tenant, since)
    }
}

impl Queryable for Counted<'_> {
    fn select<'b>(
        &'b self,
        tenant: &TenantId,
        hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<SeriesIter<'b>, SeamError> {
        let it = self.inner.select(tenant, hints, matchers)?;
        Ok(Box::new(it.map(move |r| {
            let s = r?;
            self.samples.fetch_add(s.samples.len() + s.histograms.len(), Ordering::Relaxed);
            if self.max_series > 0 {
                let mut seen = self.seen.lock();
                if seen.insert(&s.labels, self.max_series) > self.max_series {
                    return Err(SeamError::Limit(format!(
                        "query selects more than {} series (query.max_series = {})",
                        self.max_series, self.max_series
                    )));
                }
            }
            Ok(s)
        })))
    }

    fn label_names(
        &self,
        tenant: &TenantId,
        hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, SeamError> {
        self.inner.label_names(tenant, hints, matchers)
    }

    fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, SeamError> {
        self.inner.label_values(tenant, name, hints, matchers)
    }
}

/// A buffer that refuses to grow past `max` bytes (0: no limit).
struct Capped {
    buf: Vec<u8>,
    max: usize,
}

impl Write for Capped {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.max > 0 && self.buf.len() + b.len() > self.max {
            return Err(std::io::Error::other("over the response size limit"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The error of an answer past `query.max_response_bytes`.
pub fn response_too_large(max: usize) -> ApiError {
    ApiError::Execution(format!(
        "response larger than {max} bytes (query.max_response_bytes = {max}); narrow the query or raise the limit"
    ))
}

/// Serialises a JSON answer, stopping (422) as soon as it would pass `max` bytes.
pub fn json_body(v: &serde_json::Value, max: usize) -> Result<Vec<u8>, ApiError> {
    let mut w = Capped { buf: Vec::new(), max };
    match serde_json::to_writer(&mut w, v) {
        Ok(()) => Ok(w.buf),
        // Writing to `Capped` fails only at the limit; a `Value` always serialises.
        Err(_) if max > 0 => Err(response_too_large(max)),
        Err(e) => Err(ApiError::Internal(format!("encoding the response: {e}"))),
    }
}

/// A JSON response from bytes already serialised.
pub fn json_response(body: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// What one query measured, for `stats=` and the query metrics.
pub struct QueryStats {
    pub queue_secs: f64,
    pub eval_secs: f64,
    pub samples: usize,
}

impl QueryStats {
    /// Prometheus' `stats` object, with what promlake measures: timings (queue wait,
    /// evaluation, their total) and the samples read from storage.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "timings": {
                "evalTotalTime": self.eval_secs,
                "execQueueTime": self.queue_secs,
                "execTotalTime": self.queue_secs + self.eval_secs,
            },
            "samples": {"totalQueryableSamples": self.samples},
        })
    }
}

/// The config name of the limit an error came from, if any (for `queries_rejected_total`).
pub fn limit_of(e: &ApiError) -> Option<&'static str> {
    // Only errors a limit produces: a parse error may quote query text naming anything.
    if !matches!(e, ApiError::Execution(_) | ApiError::Timeout(_) | ApiError::Unavailable(_)) {
        return None;
    }
    let m = e.to_string();
    [
        "query.max_series",
        "query.max_samples",
        "query.max_queued_queries",
        "query.max_response_bytes",
    ]
    .into_iter()
    .find(|l| m.contains(l))
    .or_else(|| matches!(e, ApiError::Timeout(_)).then_some("query.timeout"))
}

/// Runs one PromQL evaluation under the query limits: waits for a slot (or is refused),
/// evaluates on a blocking thread over storage wrapped by [`Counted`], records the query
/// metrics and any limit that stopped it.
pub async fn run<T: Send + 'static>(
    s: &super::SharedState,
    endpoint: &'static str,
    eval: impl FnOnce(&Counted<'_>) -> Result<T, promql::Error> + Send + 'static,
) -> Result<(T, QueryStats), ApiError> {
    let queued = std::time::Instant::now();
    let slot = match s.admission.enter().await {
        Ok(slot) => slot,
        Err(e) => {
            s.metrics.record_limit("query.max_queued_queries");
            return Err(e);
        }
    };
    let queue_secs = queued.elapsed().as_secs_f64();
    let db = s.db()?;
    let max_series = s.config.query.max_series;
    let r = super::blocking(move || {
        let _slot = slot;
        let started = std::time::Instant::now();
        let counted = Counted::new(&*db, max_series);
        let r = eval(&counted);
        let stats = QueryStats {
            queue_secs,
            eval_secs: started.elapsed().as_secs_f64(),
            samples: counted.samples(),
        };
        Ok((r, stats))
    })
    .await;
    let (r, stats) = r?;
    let l = crate::metrics::QueryLabels { endpoint: endpoint.to_string() };
    s.metrics.query_duration.get_or_create(&l).observe(stats.eval_secs);
    s.metrics.query_samples.get_or_create(&l).observe(stats.samples as f64);
    match r {
        Ok(res) => Ok((res, stats)),
        Err(e) => {
            let q = &s.config.query;
            let e = match e {
                promql::Error::TooManySamples(_) => {
                    ApiError::Execution(format!("{e} (query.max_samples = {})", q.max_samples))
                }
                promql::Error::Timeout(_) => ApiError::Timeout(format!(
                    "{e} (query.timeout = {})",
                    humantime::format_duration(q.timeout)
                )),
                e => ApiError::from(e),
            };
            if let Some(limit) = limit_of(&e) {
                s.metrics.record_limit(limit);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The series limit counts distinct label sets, whether or not selectors return the
    /// same series twice, and before and after the switch to hashing.
    #[test]
    fn series_limit_counts_distinct_series() {
        let l = |i: usize| model::Labels::from_pairs([("i", i.to_string())]).unwrap();
        // (max, series returned in order, first position the limit is passed)
        let check = |max: usize, ids: &[usize], want: Option<usize>| {
            let mut seen = Seen::default();
            let got = ids.iter().position(|&i| seen.insert(&l(i), max) > max);
            assert_eq!(got, want, "max {max} ids {ids:?}");
        };
        check(2, &[1, 2], None);
        check(2, &[1, 2, 3], Some(2));
        check(2, &[1, 1, 1, 1, 2, 2], None);
        check(2, &[1, 1, 2, 1, 3], Some(4));
        check(3, &[1, 2, 1, 2, 3, 3, 1, 4], Some(7));
        check(1, &[5, 5, 5], None);
        check(1, &[5, 6], Some(1));
    }

    #[test]
    fn response_size_limit_names_the_limit() {
        let v = serde_json::json!({"data": vec!["x".repeat(10); 100]});
        assert!(json_body(&v, 0).is_ok());
        let full = json_body(&v, 0).unwrap().len();
        assert_eq!(json_body(&v, full).unwrap().len(), full);
        let e = json_body(&v, full - 1).unwrap_err();
        assert!(e.to_string().contains(&format!("query.max_response_bytes = {}", full - 1)), "{e}");
        assert_eq!(e.status(), 422);
    }

    #[tokio::test]
    async fn queue_beyond_its_bound_is_refused() {
        let c = QueryConfig {
            max_concurrent_queries: 1,
            max_queued_queries: 1,
            ..QueryConfig::default()
        };
        let a = Arc::new(Admission::new(&c));
        let first = a.enter().await.unwrap();
        let a2 = a.clone();
        let queued = tokio::spawn(async move { a2.enter().await.map(|_| ()) });
        tokio::task::yield_now().await;
        while a.admitted.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        let e = a.enter().await.err().unwrap();
        assert!(e.to_string().contains("query.max_queued_queries = 1"), "{e}");
        assert_eq!(e.status(), 503);
        drop(first);
        queued.await.unwrap().unwrap();
        assert_eq!(a.admitted.load(Ordering::Acquire), 0);
    }
}
