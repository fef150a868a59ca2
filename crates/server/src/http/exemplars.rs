//! `GET|POST /api/v1/query_exemplars?query=<expr>&start&end`: the exemplars of every series
//! selected by any vector selector of the (PromQL) query, in Prometheus' shape:
//! `data: [{"seriesLabels": {...}, "exemplars": [{"labels": {...}, "value": "1", "timestamp": 1.5}]}]`.
//! No match is an empty list, not an error (Grafana asks at start-up).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use model::Matcher;
use promql_parser::parser::Expr;
use serde_json::{Value as Json, json};

use super::query::{format_time, format_value};
use super::{Params, SharedState, blocking, selector_matchers, tenant, time_range};
use crate::error::ApiError;

/// Every vector selector of `e` (those inside range selectors included), depth first.
fn selectors<'a>(e: &'a Expr, out: &mut Vec<&'a promql_parser::parser::VectorSelector>) {
    match e {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Subquery(s) => selectors(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// The matcher sets of a query's selectors.
pub fn matcher_sets(query: &str) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let bad = |m: String| ApiError::BadData(format!("invalid parameter \"query\": {m}"));
    let expr = promql_parser::parser::parse(query).map_err(bad)?;
    let mut vss = Vec::new();
    selectors(&expr, &mut vss);
    vss.into_iter().map(|vs| selector_matchers(vs).map_err(bad)).collect()
}

fn labels_json(l: &model::Labels) -> Json {
    Json::Object(
        l.iter().map(|x| (x.name.to_string(), Json::String(x.value.to_string()))).collect(),
    )
}

pub async fn query(
    State(s): State<SharedState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let query = match p.get("query") {
        Some(q) if !q.trim().is_empty() => q.to_string(),
        _ => return Err(ApiError::BadData("invalid parameter \"query\": query is empty".into())),
    };
    let (start, end) = time_range(&p)?;
    let sets = matcher_sets(&query)?;
    let (t, db) = (tenant(&headers)?, s.db()?);
    let data = blocking(move || {
        let Some(tdb) = db.existing(&t) else { return Ok(Vec::new()) };
        let found = tdb.exemplars.select(&sets, start, end);
        Ok(found
            .iter()
            .map(|(series, exs)| {
                let exs: Vec<Json> = exs
                    .iter()
                    .map(|e| {
                        json!({
                            "labels": labels_json(&e.labels),
                            "value": format_value(e.v),
                            "timestamp": format_time(e.t),
                        })
                    })
                    .collect();
                json!({"seriesLabels": labels_json(series), "exemplars": exs})
            })
            .collect::<Vec<Json>>())
    })
    .await?;
    Ok(axum::Json(json!({"status": "success", "data": data})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: &str, expected: &str) {
        let got = match matcher_sets(query) {
            Ok(sets) => sets
                .iter()
                .map(|s| s.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(","))
                .collect::<Vec<_>>()
                .join(" | "),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected, "{query}");
    }

    #[test]
    fn selectors_of_a_query() {
        check(r#"{__name__=~".+"}"#, r#"__name__=~".+""#);
        check(
            r#"histogram_quantile(0.9, sum by (le) (rate(h_bucket{job="a"}[5m]))) / on() b"#,
            r#"__name__="h_bucket",job="a" | __name__="b""#,
        );
        check("1 + 2", "");
        check(
            "rate(x[",
            "error: invalid parameter \"query\": unexpected end of input inside brackets",
        );
    }
}
