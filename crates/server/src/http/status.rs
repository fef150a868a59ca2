//! Status and housekeeping endpoints Grafana and promtool call: runtime info, flags, config,
//! TSDB cardinality (from the index), rules and alerts (valid empty answers: promlake has no
//! rule engine yet), and `format_query`.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Params, SharedState, tenant};
use crate::error::ApiError;

fn success(data: Value) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

static STARTED: std::sync::OnceLock<std::time::SystemTime> = std::sync::OnceLock::new();

/// Records the start time reported by runtimeinfo.
pub fn mark_started() {
    let _ = STARTED.set(std::time::SystemTime::now());
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub async fn runtimeinfo(State(s): State<SharedState>) -> Response {
    let started = *STARTED.get_or_init(std::time::SystemTime::now);
    let series: usize =
        s.db().map(|db| db.tenants().iter().map(|t| t.head.num_series()).sum()).unwrap_or(0);
    success(json!({
        "startTime": rfc3339(started),
        "CWD": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": true,
        "lastConfigTime": rfc3339(started),
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "GOMEMLIMIT": 0,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": humantime::format_duration(s.config.storage.retention).to_string(),
        "headSeries": series,
    }))
}

pub async fn flags(State(s): State<SharedState>) -> Response {
    let c = &s.config;
    success(json!({
        "storage.tsdb.path": c.data_dir.display().to_string(),
        "storage.tsdb.retention.time": humantime::format_duration(c.storage.retention).to_string(),
        "storage.tsdb.min-block-duration": humantime::format_duration(c.storage.block_duration).to_string(),
        "storage.tsdb.out-of-order-time-window": humantime::format_duration(c.storage.out_of_order_window).to_string(),
        "web.listen-address": c.http_listen,
        "query.lookback-delta": humantime::format_duration(c.query.lookback_delta).to_string(),
        "query.max-samples": c.query.max_samples.to_string(),
        "query.timeout": humantime::format_duration(c.query.timeout).to_string(),
    }))
}

/// The effective configuration, as TOML in the `yaml` field Prometheus' API uses.
pub async fn config(State(s): State<SharedState>) -> Response {
    success(json!({"yaml": s.config.to_toml()}))
}

/// Cardinality of the request's tenant head, from the index (`limit`, default 10).
pub async fn tsdb(
    State(s): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &[]);
    let limit = match p.get("limit") {
        None => 10,
        Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::BadData(format!(
                "invalid parameter \"limit\": {v:?} is not a positive integer"
            ))
        })?,
    };
    let (t, db) = (tenant(&headers)?, s.db()?);
    let Some(tdb) = db.existing(&t) else {
        return Ok(success(json!({
            "headStats": {"numSeries": 0, "chunkCount": 0, "minTime": 0, "maxTime": 0, "numLabelPairs": 0},
            "seriesCountByMetricName": [], "labelValueCountByLabelName": [],
            "memoryInBytesByLabelName": [], "seriesCountByLabelValuePair": [],
        })));
    };
    let c = tdb.head.cardinality(limit);
    let list = |v: &[(String, u64)]| {
        Value::Array(v.iter().map(|(n, c)| json!({"name": n, "value": c})).collect())
    };
    let (min, max) = (tdb.head.min_time(), tdb.head.max_time());
    Ok(success(json!({
        "headStats": {
            "numSeries": tdb.head.num_series(),
            "chunkCount": 0,
            "minTime": if min == i64::MAX { 0 } else { min },
            "maxTime": if max == i64::MIN { 0 } else { max },
            "numLabelPairs": c.label_pairs,
        },
        "seriesCountByMetricName": list(&c.series_by_metric),
        "labelValueCountByLabelName": list(&c.values_by_label),
        "memoryInBytesByLabelName": [],
        "seriesCountByLabelValuePair": list(&c.series_by_pair),
    })))
}

pub async fn rules() -> Response {
    success(json!({"groups": []}))
}

pub async fn alerts() -> Response {
    success(json!({"alerts": []}))
}

/// `query` pretty-printed as Prometheus' `format_query` does.
pub async fn format_query(p: Params) -> Result<Response, ApiError> {
    let query = p
        .get("query")
        .ok_or_else(|| ApiError::BadData("invalid parameter \"query\": missing".into()))?;
    let expr = promql_parser::parser::parse(query)
        .map_err(|e| ApiError::BadData(format!("invalid parameter \"query\": {e}")))?;
    Ok(success(Value::String(expr.prettify())))
}
