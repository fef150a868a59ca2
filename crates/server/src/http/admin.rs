//! Health, readiness, self-metrics and the flush admin call.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{SharedState, blocking, tenant};
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
