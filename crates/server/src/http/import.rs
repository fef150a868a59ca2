//! `POST /api/v1/import`: backfill. The body is the Prometheus text exposition format (or
//! OpenMetrics, by Content-Type) where **every sample line carries its timestamp** (integer
//! milliseconds in the Prometheus format, float seconds in OpenMetrics), as VictoriaMetrics'
//! `/api/v1/import/prometheus` takes it:
//!
//! ```text
//! # HELP node_load1 1m load average.
//! # TYPE node_load1 gauge
//! node_load1{instance="a"} 0.25 1700000000000
//! node_load1{instance="a"} 0.5 1700000015000
//! ```
//!
//! Unlike remote write, samples of any age are accepted: they bypass the head and are written
//! into new blocks (one per block range), which compaction then merges with overlapping ones.
//! HELP/TYPE/UNIT lines are stored as metadata. Statuses: 200 with counts
//! (`{"status":"success","data":{"series":..,"samples":..,"blocks":[ulid, ..]}}`); 400 for a
//! malformed line (the message names its number and content), a sample without timestamp or
//! one older than `storage.retention` (the message names the series); nothing is stored then; 413 body over 64 MiB; 5xx storage faults.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use model::Interner;
use serde_json::json;
use wire::{DecodeLimits, TextFormat, TextOptions};

use super::write::{read_body, wire_error};
use super::{SharedState, blocking, tenant};
use crate::error::ApiError;
use crate::metrics::TenantLabels;

/// Samples one import may carry (a 64 MiB body holds a few million lines).
const MAX_IMPORT_SAMPLES: usize = 20_000_000;
/// Stands in for "no timestamp on the line"; no real sample has it.
const NO_TIMESTAMP: i64 = i64::MIN;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub async fn import(
    State(s): State<SharedState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let t = tenant(&headers)?;
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = TextFormat::from_content_type(ct).unwrap_or(TextFormat::Prometheus);
    let db = s.db()?;
    let body = read_body(body).await?;
    let tenant_id = t.clone();
    let outcome = blocking(move || {
        let mut opts = TextOptions::new(format, NO_TIMESTAMP);
        opts.limits = DecodeLimits {
            max_samples_per_request: MAX_IMPORT_SAMPLES,
            max_series_per_request: MAX_IMPORT_SAMPLES,
            ..DecodeLimits::default()
        };
        let batch = wire::parse_text(&body, &opts, &Interner::new()).map_err(wire_error)?;
        if let Some(sw) =
            batch.series.iter().find(|sw| sw.samples.iter().any(|x| x.t == NO_TIMESTAMP))
        {
            return Err(ApiError::BadData(format!(
                "a sample of series {} has no timestamp: every line of an import needs one (milliseconds)",
                sw.labels
            )));
        }
        let cutoff = now_ms().saturating_sub(db.options().retention);
        for sw in &batch.series {
            if let Some(x) = sw.samples.iter().find(|x| x.t < cutoff) {
                return Err(ApiError::BadData(format!(
                    "sample of series {} at {} is older than the retention allows (oldest accepted {cutoff}, storage.retention): it would be deleted at once",
                    sw.labels, x.t
                )));
            }
        }
        Ok(db.tenant(&tenant_id)?.import(batch)?)
    })
    .await?;
    let tl = TenantLabels { tenant: t.to_string() };
    s.metrics.ingested_samples.get_or_create(&tl).inc_by(outcome.samples as u64);
    let blocks: Vec<&str> = outcome.blocks.iter().map(|b| b.ulid.as_str()).collect();
    Ok(axum::Json(json!({
        "status": "success",
        "data": {
            "series": outcome.series,
            "samples": outcome.samples,
            "blocks": blocks,
            "compactions": outcome.compactions,
        }
    }))
    .into_response())
}
