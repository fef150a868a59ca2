//! Health, readiness, self-metrics and the admin calls (flush, delete_series, snapshot).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{Params, SharedState, blocking, tenant, time_range};
use crate::error::ApiError;

pub async fn healthy() -> &'static str {
    "Healthy.\n"
}

/// 200 once WAL replay is done, 503 before.
pub async fn ready(State(s): State<SharedState>) -> Response {
    match s.db() {
        Ok(_) => (StatusCode::OK, "Ready.\n").into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn metrics(State(s): State<SharedState>) -> Response {
    if let Ok(db) = s.db() {
        s.metrics.refresh(&db);
    }
    let (entries, bytes) = s.query_cache.usage();
    s.metrics.query_cache_entries.set(entries as i64);
    s.metrics.query_cache_bytes.set(bytes as i64);
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], s.metrics.encode())
        .into_response()
}

/// Persists the head of the request's tenant into blocks and answers when they are durable.
pub async fn flush(State(s): State<SharedState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let db = s.db()?;
    let t = tenant(&headers)?;
    let blocks = blocking(move || Ok(db.flush(Some(&t))?)).await?;
    let list: Vec<_> = blocks
        .iter()
        .map(|b| {
            serde_json::json!({"ulid": b.ulid, "minTime": b.min_time, "maxTime": b.max_time,
                "numSeries": b.num_series, "numSamples": b.num_samples})
        })
        .collect();
    Ok(axum::Json(serde_json::json!({"status": "success", "data": {"blocks": list}}))
        .into_response())
}

/// `POST|PUT /api/v1/admin/tsdb/delete_series`: `match[]` (required), `start`, `end`; 204.
/// Durable on return (a tombstone, see `storage::tombstones`).
pub async fn delete_series(
    State(s): State<SharedState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let sets = p.required_match_sets()?;
    let (start, end) = time_range(&p)?;
    let (t, db) = (tenant(&headers)?, s.db()?);
    blocking(move || {
        for m in &sets {
            db.delete_series(&t, m, start, end).map_err(|e| match e {
                storage::StorageError::TooManyTombstones { .. } => {
                    ApiError::Execution(e.to_string())
                }
                e => e.into(),
            })?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Go's `strconv.ParseBool`, as Prometheus parses `skip_head`.
fn parse_bool(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(ApiError::BadData(format!("unable to parse boolean {name:?} argument: {v:?}"))),
    }
}

/// `<UTC datetime>-<16 hex digits>`, as Prometheus names snapshots.
fn snapshot_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now();
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    format!("{stamp}-{:016x}", h.finish())
}

/// `POST|PUT /api/v1/admin/tsdb/snapshot`: copies the tenant's blocks (the head flushed into
/// blocks first unless `skip_head`) into `<data_dir>/snapshots/<name>/`, itself laid out as
/// a data directory (`promlake serve --data-dir` on it serves the copy).
pub async fn snapshot(
    State(s): State<SharedState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let skip_head = match p.get("skip_head") {
        None | Some("") => false,
        Some(v) => parse_bool("skip_head", v)?,
    };
    let (t, db) = (tenant(&headers)?, s.db()?);
    let name = snapshot_name();
    let dir = s.config.data_dir.join("snapshots").join(&name);
    blocking(move || Ok(db.snapshot(&t, &dir, skip_head)?)).await?;
    Ok(axum::Json(serde_json::json!({"status": "success", "data": {"name": name}})).into_response())
}
