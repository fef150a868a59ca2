//! `POST /api/v1/write` (remote write 1.0 and 2.0) and `/api/v1/stream/prometheus/{dataset}`.
//!
//! Status codes decide whether a sender retries: 204 stored; 400 invalid data (the valid series
//! of the request are stored anyway, and the message names the rejected ones); 413 body over
//! the size limit; 415 unsupported content type or encoding; 5xx only for server faults.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use model::{Appendable, Interner, TenantId};
use wire::{DecodeLimits, WireError, WriteProtocol};

use super::{SharedState, blocking, tenant};
use crate::error::ApiError;

/// Largest compressed body accepted (limits.max_request_body_bytes).
pub const MAX_BODY: usize = 64 << 20;
/// Largest decompressed body accepted (limits.max_decompressed_bytes).
pub const MAX_DECOMPRESSED: usize = 256 << 20;

pub(super) fn wire_error(e: WireError) -> ApiError {
    match e {
        WireError::SnappyTooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
        WireError::UnsupportedContentType(_) => ApiError::UnsupportedMediaType(e.to_string()),
        _ => ApiError::BadData(e.to_string()),
    }
}

pub(super) async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.to_string().contains("length limit"))
            || e.to_string().contains("length limit");
        if too_large {
            ApiError::PayloadTooLarge(format!(
                "request body is larger than the limit of {MAX_BODY} bytes (limits.max_request_body_bytes)"
            ))
        } else {
            ApiError::BadData(format!("reading request body: {e}"))
        }
    })
}

pub async fn write(State(s): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    let t = match tenant(&headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    ingest(s, t, headers, body).await
}

/// The dataset in the path is the tenant; invalid names are a 400.
pub async fn stream(
    State(s): State<SharedState>,
    Path(dataset): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match TenantId::new(&dataset) {
        Ok(t) => ingest(s, t, headers, body).await,
        Err(e) => ApiError::BadData(format!("invalid dataset name: {e}")).into_response(),
    }
}

#[derive(Default)]
struct Written {
    samples: usize,
    histograms: usize,
    exemplars: usize,
}

async fn ingest(s: SharedState, t: TenantId, headers: HeaderMap, body: Body) -> Response {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let protocol = WriteProtocol::from_content_type(&ct);
    let mut written = Written::default();
    let result = ingest_inner(&s, &t, &headers, protocol.clone(), body, &mut written).await;
    let mut resp = match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    };
    if matches!(protocol, Ok(WriteProtocol::V2)) {
        let h = resp.headers_mut();
        for (name, n) in [
            ("x-prometheus-remote-write-samples-written", written.samples),
            ("x-prometheus-remote-write-histograms-written", written.histograms),
            ("x-prometheus-remote-write-exemplars-written", written.exemplars),
        ] {
            h.insert(name, HeaderValue::from(n));
        }
    }
    resp
}

async fn ingest_inner(
    s: &SharedState,
    t: &TenantId,
    headers: &HeaderMap,
    protocol: Result<WriteProtocol, WireError>,
    body: Body,
    written: &mut Written,
) -> Result<(), ApiError> {
    let protocol = protocol.map_err(wire_error)?;
    if let Some(enc) = headers.get("content-encoding") {
        let enc = enc.to_str().unwrap_or("");
        if !enc.eq_ignore_ascii_case("snappy") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "unsupported Content-Encoding {enc:?}: remote write bodies must be snappy block format"
            )));
        }
    }
    let db = s.db()?;
    let body = read_body(body).await?;
    let tenant = t.clone();
    let (outcome, invalid) = blocking(move || {
        let interner = Interner::new();
        // The tenant's series cache resolves series seen before from their raw label bytes.
        // It is only valid for one set of limits: these are fixed (DecodeLimits::default()).
        let cache = db.tenant(&tenant).ok();
        let decoded = wire::decode_write_cached(
            protocol,
            &body,
            MAX_DECOMPRESSED,
            &interner,
            &DecodeLimits::default(),
            cache.as_ref().map(|t| &t.series_cache),
        )
        .map_err(wire_error)?;
        let outcome = db.append(&tenant, decoded.batch)?;
        Ok((outcome, decoded.invalid))
    })
    .await?;
    written.samples = outcome.samples_written;
    written.histograms = outcome.histograms_written;
    written.exemplars = outcome.exemplars_written;
    s.metrics.record_append(t, &outcome);
    let mut problems: Vec<String> = invalid.iter().take(10).map(|i| i.to_string()).collect();
    for i in &invalid {
        s.metrics.record_rejected(t, i.reason.name(), i.samples);
    }
    for r in outcome.rejected.iter().take(10usize.saturating_sub(problems.len())) {
        problems.push(format!("{} for series {}", r.reason, r.labels));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let total = invalid.len() + outcome.rejected.len();
    Err(ApiError::BadData(format!(
        "{} of the request's series were rejected ({} samples stored): {}{}",
        total,
        outcome.samples_written,
        problems.join("; "),
        if total > problems.len() { "; ..." } else { "" }
    )))
}
