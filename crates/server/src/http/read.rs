//! Series and label listings, answered from the index: /api/v1/series, /labels, /label/*/values.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use model::{Queryable, SelectHints};

use super::{Params, SharedState, blocking, tenant, time_range};
use crate::error::ApiError;

fn limit(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        None | Some("") | Some("0") => Ok(usize::MAX),
        Some(s) => s.parse::<usize>().map_err(|_| {
            ApiError::BadData(format!(
                "invalid parameter \"limit\": {s:?} is not a non-negative integer"
            ))
        }),
    }
}

/// The answer, cut off with a 422 at `query.max_response_bytes`.
fn success(
    s: &SharedState,
    data: serde_json::Value,
    truncated: bool,
) -> Result<Response, ApiError> {
    let mut body = serde_json::json!({"status": "success", "data": data});
    if truncated {
        body["warnings"] = serde_json::json!(["results truncated due to limit"]);
    }
    match super::limits::json_body(&body, s.config.query.max_response_bytes) {
        Ok(bytes) => Ok(super::limits::json_response(bytes)),
        Err(e) => {
            s.metrics.record_limit("query.max_response_bytes");
            Err(e)
        }
    }
}

pub async fn series(
    State(s): State<SharedState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let sets = p.required_match_sets()?;
    let (start, end) = time_range(&p)?;
    let limit = limit(&p)?;
    let (t, db) = (tenant(&headers)?, s.db()?);
    let (list, truncated) = blocking(move || {
        let mut all = std::collections::BTreeMap::new();
        for m in &sets {
            for series in db.select(&t, SelectHints { start, end }, m)? {
                let series = series?;
                all.insert(series.labels.clone(), ());
            }
        }
        let truncated = all.len() > limit;
        let list: Vec<serde_json::Value> = all
            .keys()
            .take(limit)
            .map(|l| {
                serde_json::Value::Object(
                    l.iter().map(|x| (x.name.to_string(), x.value.to_string().into())).collect(),
                )
            })
            .collect();
        Ok((list, truncated))
    })
    .await?;
    success(&s, list.into(), truncated)
}

pub async fn labels(
    State(s): State<SharedState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let sets = p.match_sets()?;
    let (start, end) = time_range(&p)?;
    let limit = limit(&p)?;
    let (t, db) = (tenant(&headers)?, s.db()?);
    let mut names = blocking(move || {
        let hints = SelectHints { start, end };
        let mut all = std::collections::BTreeSet::new();
        if sets.is_empty() {
            all.extend(db.label_names(&t, hints, &[])?);
        }
        for m in &sets {
            all.extend(db.label_names(&t, hints, m)?);
        }
        Ok(all.into_iter().collect::<Vec<_>>())
    })
    .await?;
    let truncated = names.len() > limit;
    names.truncate(limit);
    success(&s, names.into(), truncated)
}

pub async fn label_values(
    State(s): State<SharedState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &[]);
    let sets = p.match_sets()?;
    let (start, end) = time_range(&p)?;
    let limit = limit(&p)?;
    let (t, db) = (tenant(&headers)?, s.db()?);
    let mut values = blocking(move || {
        let hints = SelectHints { start, end };
        let mut all = std::collections::BTreeSet::new();
        if sets.is_empty() {
            all.extend(db.label_values(&t, &name, hints, &[])?);
        }
        for m in &sets {
            all.extend(db.label_values(&t, &name, hints, m)?);
        }
        Ok(all.into_iter().collect::<Vec<_>>())
    })
    .await?;
    let truncated = values.len() > limit;
    values.truncate(limit);
    success(&s, values.into(), truncated)
}
