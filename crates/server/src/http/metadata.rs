//! `GET /api/v1/metadata`: the metric metadata a tenant received (remote write metadata, text
//! pushes' HELP/TYPE/UNIT, imports), in Prometheus' shape: `data` maps each metric family to its
//! distinct `{type, help, unit}` entries, newest first.
//!
//! Parameters as in Prometheus: `limit` caps the families (negative: no cap, 0: none), and
//! `limit_per_metric` the entries per family (0 or negative: no cap); `metric` keeps one family.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};

use super::{Params, SharedState, tenant};
use crate::error::ApiError;

fn int_param(p: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    p.get(name)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                ApiError::BadData(format!("invalid parameter {name:?}: {s:?} is not a number"))
            })
        })
        .transpose()
}

pub async fn metadata(
    State(s): State<SharedState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &[]);
    let limit = int_param(&p, "limit")?.and_then(|l| usize::try_from(l).ok());
    let per_metric =
        int_param(&p, "limit_per_metric")?.filter(|l| *l > 0).and_then(|l| usize::try_from(l).ok());
    let metric = p.get("metric").filter(|m| !m.is_empty());
    let (t, db) = (tenant(&headers)?, s.db()?);
    let mut data = Map::new();
    if let Some(tdb) = db.existing(&t) {
        for (family, entries) in tdb.metadata.list(metric, limit, per_metric) {
            let list = entries
                .iter()
                .map(|e| json!({"type": e.kind.as_str(), "help": e.help, "unit": e.unit}))
                .collect();
            data.insert(family, Json::Array(list));
        }
    }
    Ok(axum::Json(json!({"status": "success", "data": data})).into_response())
}
