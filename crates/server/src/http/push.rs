//! `PUT|POST /metrics/job/{job}{/label/value}*`: Pushgateway-style pushes of text exposition
//! format, stored as samples of the request's tenant with the grouping labels added.
//!
//! The path follows the Pushgateway: `job` and label names may carry an `@base64` suffix, in
//! which case the value is URL-safe base64 (padding optional; a lone `=` is the empty value).
//! The body is Prometheus text format unless the Content-Type is
//! `application/openmetrics-text`; any other type is read as text too (curl's default form
//! type included), except the Pushgateway's delimited protobuf, which is a 415.
//! Samples without a timestamp get the time the push arrived.
//!
//! As in the Pushgateway, the grouping labels win: a pushed series carrying `job` or another
//! grouping label gets the path's value instead (an empty path value removes the label), and
//! a label repeated in the path takes its last value. Unlike the Pushgateway, samples may carry
//! their own timestamps (it refuses them), and nothing is kept per group. HELP/TYPE/UNIT lines
//! are stored as the tenant's metric metadata (served by `/api/v1/metadata`).
//!
//! Statuses: 200 stored (empty body, as the Pushgateway answers); 400 a bad path, a malformed
//! line (the message names the line number and content), or a rejected sample; 413 body too
//! large; 415 protobuf body; 5xx storage faults. PUT and POST both only add samples: there is
//! no group to replace, so a series not pushed again simply receives no new samples.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use model::{Appendable, Interner, WriteBatch};
use wire::{TextFormat, TextOptions};

use super::write::{read_body, wire_error};
use super::{SharedState, blocking, tenant};
use crate::error::ApiError;

const BASE64_SUFFIX: &str = "@base64";

pub async fn push(
    State(s): State<SharedState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match push_inner(s, &path, headers, body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn push_inner(
    s: SharedState,
    path: &str,
    headers: HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    let t = tenant(&headers)?;
    let grouping = grouping_labels(path)?;
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = text_format(ct)?;
    let db = s.db()?;
    let body = read_body(body).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let tenant_id = t.clone();
    let outcome = blocking(move || {
        let opts = TextOptions::new(format, now);
        let mut batch = wire::parse_text(&body, &opts, &Interner::new()).map_err(wire_error)?;
        apply_grouping(&mut batch, &grouping);
        Ok(db.append(&tenant_id, batch)?)
    })
    .await?;
    s.metrics.record_append(&t, &outcome);
    if outcome.rejected.is_empty() {
        return Ok(());
    }
    let problems: Vec<String> = outcome
        .rejected
        .iter()
        .take(10)
        .map(|r| format!("{} for series {}", r.reason, r.labels))
        .collect();
    Err(ApiError::BadData(format!(
        "{} of the pushed series were rejected ({} samples stored): {}{}",
        outcome.rejected.len(),
        outcome.samples_written,
        problems.join("; "),
        if outcome.rejected.len() > problems.len() { "; ..." } else { "" }
    )))
}

/// The text format a Content-Type asks for, read as leniently as the Pushgateway does.
fn text_format(ct: &str) -> Result<TextFormat, ApiError> {
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/vnd.google.protobuf") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Type {ct:?}: push text exposition format (text/plain) or OpenMetrics"
        )));
    }
    Ok(TextFormat::from_content_type(ct).unwrap_or(TextFormat::Prometheus))
}

/// Sets the grouping labels on every series, overriding pushed values as the Pushgateway does
/// (wire's `extra_labels` refuses a conflict instead, so they are applied here).
fn apply_grouping(batch: &mut WriteBatch, grouping: &[(String, String)]) {
    for s in &mut batch.series {
        for (name, value) in grouping {
            if s.labels.get(name) != Some(value.as_str()) {
                s.labels = s.labels.with(name, value);
            }
        }
    }
}

/// The grouping labels of a push path (after `/metrics/`): `job/<v>` or `job@base64/<v>`,
/// then name/value pairs; a repeated name keeps its last value, empty values are kept (they
/// remove a pushed label of that name).
fn grouping_labels(path: &str) -> Result<Vec<(String, String)>, ApiError> {
    let bad = |m: String| ApiError::BadData(format!("invalid push path /metrics/{path}: {m}"));
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if !parts.len().is_multiple_of(2) {
        return Err(bad("odd number of components in the label path".into()));
    }
    let mut pairs = Vec::with_capacity(parts.len() / 2);
    for pair in parts.chunks(2) {
        let (name, value) = (pair[0], pair[1]);
        let (name, value) = match name.strip_suffix(BASE64_SUFFIX) {
            Some(name) => (name, decode_base64(value).map_err(&bad)?),
            None => (name, value.to_string()),
        };
        if !valid_label_name(name) || name.starts_with("__") {
            return Err(bad(format!("improper label name {name:?}")));
        }
        pairs.retain(|(n, _)| n != name);
        pairs.push((name.to_string(), value));
    }
    if parts.first() != Some(&"job") && parts.first() != Some(&"job@base64") {
        return Err(bad("the path must start with job/<name>".into()));
    }
    if pairs.iter().any(|(n, v)| n == "job" && v.is_empty()) {
        return Err(bad("job name is required".into()));
    }
    Ok(pairs)
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// URL-safe base64 (the standard alphabet's `+` and `/` accepted too), padding optional.
fn decode_base64(s: &str) -> Result<String, String> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return Err(format!("invalid base64 value {s:?}")),
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err(format!("invalid base64 value {s:?}: truncated"));
    }
    String::from_utf8(out).map_err(|_| format!("base64 value {s:?} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, expected: &str) {
        let got = match grouping_labels(path) {
            Ok(pairs) => {
                pairs.iter().map(|(n, v)| format!("{n}={v:?}")).collect::<Vec<_>>().join(" ")
            }
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected, "path {path}");
    }

    #[test]
    fn grouping_paths() {
        check("job/j", r#"job="j""#);
        check("job/j/instance/h1/zone/a", r#"job="j" instance="h1" zone="a""#);
        check("job/j/", r#"job="j""#);
        check("job/j/a/1/b/2/a/3", r#"job="j" b="2" a="3""#);
        // "a/b" and "é" in base64url, unpadded and padded; "=" alone is the empty value.
        check("job@base64/YS9i", r#"job="a/b""#);
        check("job/j/path@base64/w6k=", r#"job="j" path="é""#);
        check("job/j/path@base64/w6k", r#"job="j" path="é""#);
        check("job/j/path@base64/=", r#"job="j" path="""#);
        check(
            "job/j/x",
            "error: invalid push path /metrics/job/j/x: odd number of components in the label path",
        );
        check(
            "job@base64/=",
            "error: invalid push path /metrics/job@base64/=: job name is required",
        );
        check(
            "instance/h/job/j",
            "error: invalid push path /metrics/instance/h/job/j: the path must start with job/<name>",
        );
        check(
            "job/j/__name__/x",
            "error: invalid push path /metrics/job/j/__name__/x: improper label name \"__name__\"",
        );
        check(
            "job/j/a-b/x",
            "error: invalid push path /metrics/job/j/a-b/x: improper label name \"a-b\"",
        );
        check(
            "job/j/v@base64/!!",
            "error: invalid push path /metrics/job/j/v@base64/!!: invalid base64 value \"!!\"",
        );
    }

    #[test]
    fn grouping_labels_win_over_pushed_ones() {
        let body = "m{job=\"other\",instance=\"z\",k=\"v\"} 1\nn 2\n";
        let opts = TextOptions::new(TextFormat::Prometheus, 0);
        let mut batch = wire::parse_text(body.as_bytes(), &opts, &Interner::new()).unwrap();
        let grouping = grouping_labels("job/j/k@base64/=/zone/a").unwrap();
        apply_grouping(&mut batch, &grouping);
        let got: Vec<String> = batch.series.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(got, [r#"m{instance="z", job="j", zone="a"}"#, r#"n{job="j", zone="a"}"#]);
    }

    #[test]
    fn content_types() {
        assert_eq!(text_format("").unwrap(), TextFormat::Prometheus);
        assert_eq!(
            text_format("application/x-www-form-urlencoded").unwrap(),
            TextFormat::Prometheus
        );
        assert_eq!(text_format("text/plain; version=0.0.4").unwrap(), TextFormat::Prometheus);
        assert_eq!(
            text_format("application/openmetrics-text; version=1.0.0").unwrap(),
            TextFormat::OpenMetrics
        );
        assert!(text_format("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited").is_err());
    }
}
