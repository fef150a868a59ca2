//! `GET|POST /api/v1/export/parquet`: samples matching `match[]` in `[start, end]` as plain
//! Parquet (metric_name, labels map, timestamp, value), for lake engines.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use model::{Queryable, SelectHints};

use super::{Params, SharedState, blocking, tenant, time_range};
use crate::error::ApiError;

pub async fn parquet(
    State(s): State<SharedState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let sets = p.required_match_sets()?;
    let (start, end) = time_range(&p)?;
    let (t, db) = (tenant(&headers)?, s.db()?);
    let bytes = blocking(move || {
        let mut all = std::collections::BTreeMap::new();
        for m in &sets {
            for series in db.select(&t, SelectHints { start, end }, m)? {
                let series = series?;
                all.insert(series.labels.clone(), series);
            }
        }
        let mut out = Vec::new();
        storage::export::write_parquet(all.into_values().map(Ok), &mut out)?;
        Ok(out)
    })
    .await?;
    Ok(([("content-type", "application/vnd.apache.parquet")], bytes).into_response())
}
