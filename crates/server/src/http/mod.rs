//! The HTTP surface: router, shared state, and the request helpers every handler uses
//! (parameters from query string and form body alike, tenant, times, selectors).

mod admin;
mod exemplars;
mod export;
mod federate;
mod import;
mod limits;
mod metadata;
mod parse_query;
mod push;
pub(crate) mod query;
mod read;
mod remote_read;
mod status;
mod write;
mod xor;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use model::{MatchOp, Matcher, TenantId};
use parking_lot::Mutex;
use storage::Db;

use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::{HandlerLabels, Metrics};

pub struct AppState {
    pub config: Config,
    db: OnceLock<Arc<Db>>,
    ready: AtomicBool,
    open_error: Mutex<Option<String>>,
    pub metrics: Metrics,
    pub engine: Arc<promql::Engine>,
    /// Query concurrency limit and queue (`limits.rs`).
    pub admission: limits::Admission,
    /// Range query splitting and the results cache.
    pub query_cache: Arc<crate::query_cache::QueryCache>,
}

impl AppState {
    pub fn new(config: Config) -> Self {
        let engine = Arc::new(promql::Engine::new(config.engine_options()));
        let metrics = Metrics::new();
        let query_cache = Arc::new(crate::query_cache::QueryCache::new(
            config.query_cache_settings(),
            &engine,
            metrics.query_cache_evictions.clone(),
        ));
        AppState {
            config: config.clone(),
            db: OnceLock::new(),
            ready: AtomicBool::new(false),
            open_error: Mutex::new(None),
            metrics,
            engine,
            admission: limits::Admission::new(&config.query),
            query_cache,
        }
    }

    /// Opens storage (WAL replay included) as the config says, block store included (tests; `start` builds and
    /// checks the block store first and calls [`AppState::open_storage_with`]).
    #[cfg(test)]
    pub fn open_storage(&self) {
        let opened = self
            .config
            .storage_options()
            .and_then(|o| storage::Db::block_store(&o).map(|s| (o, s)).map_err(|e| e.to_string()));
        match opened {
            Ok((opts, store)) => self.open_storage_with(opts, store),
            Err(e) => {
                tracing::error!(error = %e, "storage failed to open");
                *self.open_error.lock() = Some(e);
            }
        }
    }

    /// Opens storage (WAL replay included) over a block store already built; run on a
    /// blocking thread.
    pub fn open_storage_with(&self, opts: storage::Options, store: storage::block::BlockStore) {
        let started = Instant::now();
        match Db::open_with(opts, store, Arc::new(storage::clock::SystemClock)) {
            Ok(db) => {
                let _ = self.db.set(Arc::new(db));
                self.ready.store(true, Ordering::Release);
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "storage ready");
            }
            Err(e) => {
                tracing::error!(error = %e, "storage failed to open");
                *self.open_error.lock() = Some(e.to_string());
            }
        }
    }

    pub fn maintain(&self) {
        if let Some(db) = self.db.get()
            && let Err(e) = db.maintain()
        {
            tracing::error!(error = %e, "maintenance pass failed");
        }
    }

    pub fn db(&self) -> Result<Arc<Db>, ApiError> {
        if let Some(db) = self.db.get() {
            return Ok(db.clone());
        }
        match &*self.open_error.lock() {
            Some(e) => Err(ApiError::Internal(format!("storage failed to open: {e}"))),
            None => Err(ApiError::Unavailable("not ready: WAL replay in progress".into())),
        }
    }
}

pub type SharedState = Arc<AppState>;

pub fn router(state: SharedState) -> Router {
    status::mark_started();
    Router::new()
        .route("/-/healthy", get(admin::healthy))
        .route("/-/ready", get(admin::ready))
        .route("/metrics", get(admin::metrics))
        .route("/api/v1/admin/tsdb/flush", post(admin::flush))
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(admin::delete_series).put(admin::delete_series),
        )
        .route("/api/v1/admin/tsdb/snapshot", post(admin::snapshot).put(admin::snapshot))
        .route("/api/v1/parse_query", get(parse_query::parse_query).post(parse_query::parse_query))
        .route("/federate", get(federate::federate).post(federate::federate))
        .route("/api/v1/write", post(write::write))
        .route("/api/v1/stream/prometheus/{dataset}", post(write::stream))
        .route("/metrics/{*path}", put(push::push).post(push::push))
        .route("/api/v1/read", post(remote_read::read))
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route("/api/v1/status/buildinfo", get(query::buildinfo))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/tsdb", get(status::tsdb))
        .route("/api/v1/rules", get(status::rules))
        .route("/api/v1/alerts", get(status::alerts))
        .route("/api/v1/format_query", get(status::format_query).post(status::format_query))
        .route("/api/v1/export/parquet", get(export::parquet).post(export::parquet))
        .route("/api/v1/series", get(read::series).post(read::series))
        .route("/api/v1/labels", get(read::labels).post(read::labels))
        .route("/api/v1/label/{name}/values", get(read::label_values))
        .route("/api/v1/metadata", get(metadata::metadata))
        .route("/api/v1/query_exemplars", get(exemplars::query).post(exemplars::query))
        .route("/api/v1/import", post(import::import))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Records latency per route pattern.
async fn observe(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .http_duration
        .get_or_create(&HandlerLabels { handler })
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// Request parameters from the query string and (for POST) the form body, in order.
pub struct Params(pub Vec<(String, String)>);

/// Handlers take `p: Params` (last, as it reads the body): the URL query followed by a form
/// body, as Prometheus reads GET and POST alike. A body that cannot be read is refused as
/// axum's `Bytes` extractor refuses it (e.g. 413 over the body limit).
impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = axum::extract::rejection::BytesRejection;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_string);
        let body = axum::body::Bytes::from_request(req, state).await?;
        Ok(Params::parse(query.as_deref(), &body))
    }
}

impl Params {
    pub fn parse(query: Option<&str>, body: &[u8]) -> Params {
        let mut v: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
        v.extend(form_urlencoded::parse(body).into_owned());
        Params(v)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The selectors of every `match[]` parameter (none is fine).
    pub fn match_sets(&self) -> Result<Vec<Vec<Matcher>>, ApiError> {
        self.all("match[]").map(parse_selector).collect()
    }

    /// The selectors of every `match[]` parameter, at least one (else 400, as Prometheus).
    pub fn required_match_sets(&self) -> Result<Vec<Vec<Matcher>>, ApiError> {
        let sets = self.match_sets()?;
        if sets.is_empty() {
            return Err(ApiError::BadData("no match[] parameter provided".into()));
        }
        Ok(sets)
    }
}

/// The tenant of a request: `X-Scope-OrgID`, or `default`.
pub fn tenant(headers: &HeaderMap) -> Result<TenantId, ApiError> {
    match headers.get("x-scope-orgid") {
        None => Ok(TenantId::default_tenant()),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::BadData("X-Scope-OrgID is not valid ASCII".into()))?;
            TenantId::new(s).map_err(|e| ApiError::BadData(format!("X-Scope-OrgID: {e}")))
        }
    }
}

/// A Prometheus API time: RFC 3339 or (fractional) Unix seconds; returns milliseconds.
pub fn parse_time(name: &str, s: &str) -> Result<i64, ApiError> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        return Ok((f * 1000.0).round() as i64);
    }
    match humantime::parse_rfc3339_weak(s) {
        Ok(t) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Ok(d.as_millis() as i64),
            Err(e) => Ok(-(e.duration().as_millis() as i64)),
        },
        Err(_) => Err(ApiError::BadData(format!(
            "invalid parameter {name:?}: cannot parse {s:?} to a valid timestamp"
        ))),
    }
}

/// Prometheus' bounds when `start`/`end` are absent.
pub const MIN_TIME: i64 = -9_223_372_036_854_775;
pub const MAX_TIME: i64 = 9_223_372_036_854_775;

pub fn time_range(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = p.get("start").map(|s| parse_time("start", s)).transpose()?.unwrap_or(MIN_TIME);
    let end = p.get("end").map(|s| parse_time("end", s)).transpose()?.unwrap_or(MAX_TIME);
    if end < start {
        return Err(ApiError::BadData(
            "invalid parameter \"end\": end timestamp must not be before start time".into(),
        ));
    }
    Ok((start, end))
}

/// Parses a series selector such as `up{job=~"a|b"}` into matchers.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, ApiError> {
    let bad = |m: String| ApiError::BadData(format!("invalid parameter \"match[]\": {m}"));
    let expr = promql_parser::parser::parse(s).map_err(bad)?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(bad(format!("{s:?} is not a series selector")));
    };
    let out = selector_matchers(&vs).map_err(bad)?;
    if out.iter().all(|m| m.matches_empty()) {
        return Err(bad(format!(
            "{s:?}: vector selector must contain at least one non-empty matcher"
        )));
    }
    Ok(out)
}

/// The matchers of a parsed vector selector (its metric name as a `__name__` matcher).
pub fn selector_matchers(
    vs: &promql_parser::parser::VectorSelector,
) -> Result<Vec<Matcher>, String> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err("'or' inside a selector is not supported".into());
    }
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(Matcher::eq(model::METRIC_NAME, name));
    }
    for m in &vs.matchers.matchers {
        let op = match &m.op {
            promql_parser::label::MatchOp::Equal => MatchOp::Equal,
            promql_parser::label::MatchOp::NotEqual => MatchOp::NotEqual,
            promql_parser::label::MatchOp::Re(_) => MatchOp::RegexMatch,
            promql_parser::label::MatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        out.push(Matcher::new(op, &m.name, &m.value).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Runs blocking storage work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("task failed: {e}")))?
}
