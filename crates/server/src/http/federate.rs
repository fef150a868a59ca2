//! `GET|POST /federate`: the newest sample of every series any `match[]` selects, within the
//! lookback delta before now, in the Prometheus text exposition format as Prometheus writes
//! it: series grouped by metric name in order, one `# TYPE <name> untyped` line per name,
//! each sample with its timestamp in milliseconds. Stale series (newest sample a staleness
//! marker) and native histogram samples (text cannot carry them) are left out.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use model::{Labels, Queryable, SelectHints};

use super::{Params, SharedState, blocking, tenant};
use crate::error::ApiError;

/// A label value escaped for the text format (`\`, `"`, newline).
fn escape(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float as Go's text encoder writes it (`NaN`, `+Inf`, `-Inf`, else shortest decimal).
fn value(v: f64) -> String {
    super::query::format_value(v)
}

/// Appends one sample line, `name{l="v",...} value timestamp`.
fn line(out: &mut String, name: &str, labels: &Labels, v: f64, t: i64) {
    out.push_str(name);
    let mut first = true;
    for l in labels.iter().filter(|l| &*l.name != model::METRIC_NAME) {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(&l.name);
        out.push_str("=\"");
        escape(&l.value, out);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    let _ = writeln!(out, " {} {t}", value(v));
}

pub async fn federate(
    State(s): State<SharedState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let sets = p.match_sets()?;
    let (t, db) = (tenant(&headers)?, s.db()?);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let lookback = s.config.query.lookback_delta.as_millis() as i64;
    let max_bytes = s.config.query.max_response_bytes;
    let text = blocking(move || {
        let hints = SelectHints { start: now - lookback, end: now };
        // Newest sample per series, series grouped by name then label order.
        let mut newest: BTreeMap<String, BTreeMap<Labels, (i64, f64)>> = BTreeMap::new();
        for m in &sets {
            for series in db.select(&t, hints, m)? {
                let series = series?;
                let Some(last) = series.samples.last() else { continue };
                if model::is_stale_nan(last.v)
                    || series.histograms.last().is_some_and(|h| h.t > last.t)
                {
                    continue;
                }
                let name = series.labels.metric_name().unwrap_or("").to_string();
                newest.entry(name).or_default().insert(series.labels.clone(), (last.t, last.v));
            }
        }
        let mut out = String::new();
        for (name, series) in &newest {
            let _ = writeln!(out, "# TYPE {name} untyped");
            for (labels, (t, v)) in series {
                line(&mut out, name, labels, *v, *t);
                if max_bytes > 0 && out.len() > max_bytes {
                    return Err(ApiError::Execution(format!(
                        "federation answer larger than {max_bytes} bytes (query.max_response_bytes = {max_bytes}); narrow match[]"
                    )));
                }
            }
        }
        Ok(out)
    })
    .await;
    let text = match text {
        Err(e) if e.to_string().contains("query.max_response_bytes") => {
            s.metrics.record_limit("query.max_response_bytes");
            return Err(e);
        }
        r => r?,
    };
    Ok(([("content-type", "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_escape_like_the_text_format() {
        let l =
            Labels::from_pairs([("__name__", "up".to_string()), ("job", "a\"b\\c\nd".to_string())])
                .unwrap();
        let mut out = String::new();
        line(&mut out, "up", &l, f64::INFINITY, 1500);
        assert_eq!(out, "up{job=\"a\\\"b\\\\c\\nd\"} +Inf 1500\n");
        let mut out = String::new();
        line(&mut out, "x", &Labels::from_pairs([("__name__", "x".to_string())]).unwrap(), 0.5, 1);
        assert_eq!(out, "x 0.5 1\n");
    }
}
