//! `/api/v1/query` and `/api/v1/query_range` (GET and POST form alike), with Prometheus' JSON
//! envelope, value formatting, warnings and infos; and `/api/v1/status/buildinfo`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use promql::{Cancel, CancelOnDrop, Value};
use serde_json::{Value as Json, json};

use super::{Params, SharedState, parse_time, tenant};
use crate::error::ApiError;
use crate::query_cache::{Answer, Joined, RangeQuery};

/// Prometheus' limit on points per series of a range query.
const MAX_POINTS: i64 = 11_000;

/// A float as Prometheus formats it in JSON: shortest round-trip decimal, NaN, +Inf, -Inf.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Milliseconds as the float seconds Prometheus puts in JSON (exact to the millisecond).
pub fn format_time(t: i64) -> Json {
    let secs = t.div_euclid(1000);
    let ms = t.rem_euclid(1000);
    if ms == 0 {
        json!(secs)
    } else {
        // Parse back from text so 1.5 is exactly "1.5" in the output.
        serde_json::from_str(format!("{secs}.{ms:03}").trim_end_matches('0'))
            .unwrap_or(json!(t as f64 / 1000.0))
    }
}

fn labels_json(l: &model::Labels) -> Json {
    Json::Object(
        l.iter().map(|x| (x.name.to_string(), Json::String(x.value.to_string()))).collect(),
    )
}

fn histogram_json(h: &model::FloatHistogram) -> Json {
    json!({"count": format_value(h.count), "sum": format_value(h.sum)})
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Scalar { t, v } => json!([format_time(*t), format_value(*v)]),
        Value::String { t, v } => json!([format_time(*t), v]),
        Value::Vector(samples) => Json::Array(
            samples
                .iter()
                .map(|s| match &s.h {
                    Some(h) => json!({"metric": labels_json(&s.labels), "histogram": [format_time(s.t), histogram_json(h)]}),
                    None => json!({"metric": labels_json(&s.labels), "value": [format_time(s.t), format_value(s.v)]}),
                })
                .collect(),
        ),
        Value::Matrix(series) => Json::Array(
            series
                .iter()
                .map(|s| {
                    let mut o = json!({"metric": labels_json(&s.labels)});
                    if !s.points.is_empty() {
                        o["values"] =
                            Json::Array(s.points.iter().map(|p| json!([format_time(p.t), format_value(p.v)])).collect());
                    }
                    if !s.histograms.is_empty() {
                        o["histograms"] =
                            Json::Array(s.histograms.iter().map(|p| json!([format_time(p.t), histogram_json(&p.h)])).collect());
                    }
                    o
                })
                .collect(),
        ),
    }
}

/// A time as Prometheus' JSON float seconds, written into `out` (see [`format_time`]).
pub(crate) fn write_time(out: &mut Vec<u8>, t: i64) {
    use std::io::Write;
    if t.rem_euclid(1000) == 0 {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{}", t.div_euclid(1000));
    } else {
        let _ = serde_json::to_writer(&mut *out, &format_time(t));
    }
}

/// One point of a matrix as JSON: `[t,"v"]`, byte for byte as `serde_json` prints the tree.
pub(crate) fn write_point(out: &mut Vec<u8>, t: i64, v: f64) {
    use std::io::Write;
    out.push(b'[');
    write_time(out, t);
    out.extend_from_slice(b",\"");
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v == f64::INFINITY {
        out.extend_from_slice(b"+Inf");
    } else if v == f64::NEG_INFINITY {
        out.extend_from_slice(b"-Inf");
    } else {
        // As `format_value`, without the String.
        let _ = write!(out, "{v}");
    }
    out.extend_from_slice(b"\"]");
}

/// One native histogram point of a matrix as JSON, as `serde_json` prints the tree.
pub(crate) fn write_histogram_point(out: &mut Vec<u8>, p: &promql::HistogramPoint) {
    let _ = serde_json::to_writer(&mut *out, &json!([format_time(p.t), histogram_json(&p.h)]));
}

/// A JSON string (escaped as `serde_json` does).
fn write_string(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// One series of a matrix: `{"histograms":[..],"metric":{..},"values":[..]}` (keys sorted, as
/// `serde_json` prints them; a list is left out when it is empty). The lists' items, comma
/// separated, are written by `histograms` and `values`.
pub(crate) fn write_series(
    out: &mut Vec<u8>,
    labels: &model::Labels,
    has_histograms: bool,
    histograms: impl FnOnce(&mut Vec<u8>),
    has_values: bool,
    values: impl FnOnce(&mut Vec<u8>),
) {
    out.push(b'{');
    if has_histograms {
        out.extend_from_slice(b"\"histograms\":[");
        histograms(out);
        out.extend_from_slice(b"],");
    }
    out.extend_from_slice(b"\"metric\":{");
    for (j, l) in labels.iter().enumerate() {
        if j > 0 {
            out.push(b',');
        }
        write_string(out, &l.name);
        out.push(b':');
        write_string(out, &l.value);
    }
    out.push(b'}');
    if has_values {
        out.extend_from_slice(b",\"values\":[");
        values(out);
        out.push(b']');
    }
    out.push(b'}');
}

/// What a range query answer holds: an engine result, or a matrix joined from cached
/// (pre-encoded) and computed pieces.
enum Body<'a> {
    Result(&'a promql::QueryResult),
    Joined(&'a Joined),
}

/// The response body as `serde_json` would print `respond_tree`, written straight into one
/// buffer: a range query's matrix (hundreds of thousands of points) is not built as a tree
/// of small allocations first. Keys in `serde_json`'s (sorted) order; label names are
/// sorted already (a `Labels` invariant). A joined answer's cached pieces are copied as the
/// bytes encoded when they were stored (`query_cache::Encoded`, same writers).
///
/// `stats` goes into `data` (keys stay sorted); past `max` bytes (0: no limit) the encoding
/// stops, checked after every series, so at most one series is written beyond the limit.
fn respond_body(body: Body<'_>, stats: Option<&Json>, max: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || super::limits::response_too_large(max);
    fn json(out: &mut Vec<u8>, j: &Json) {
        let _ = serde_json::to_writer(&mut *out, j);
    }
    let (type_name, annotations) = match body {
        Body::Result(r) => (r.value.type_name(), &r.annotations),
        Body::Joined(j) => ("matrix", &j.annotations),
    };
    let hint = match body {
        // A joined answer is mostly cached bytes: one allocation instead of doubling copies.
        Body::Joined(j) => j.series.iter().map(|s| s.size_hint()).sum::<usize>(),
        Body::Result(_) => 0,
    };
    let mut out = Vec::with_capacity(256 + if max > 0 { hint.min(max) } else { hint });
    out.extend_from_slice(b"{\"data\":{\"result\":");
    match body {
        Body::Result(promql::QueryResult { value: Value::Matrix(series), .. }) => {
            out.push(b'[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_series(
                    &mut out,
                    &s.labels,
                    !s.histograms.is_empty(),
                    |out| {
                        for (j, p) in s.histograms.iter().enumerate() {
                            if j > 0 {
                                out.push(b',');
                            }
                            write_histogram_point(out, p);
                        }
                    },
                    !s.points.is_empty(),
                    |out| {
                        for (j, p) in s.points.iter().enumerate() {
                            if j > 0 {
                                out.push(b',');
                            }
                            write_point(out, p.t, p.v);
                        }
                    },
                );
                if max > 0 && out.len() > max {
                    return Err(too_large());
                }
            }
            out.push(b']');
        }
        Body::Result(other) => json(&mut out, &value_json(&other.value)),
        Body::Joined(j) => {
            out.push(b'[');
            for (i, s) in j.series.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                s.write(&mut out);
                if max > 0 && out.len() > max {
                    return Err(too_large());
                }
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(b",\"resultType\":");
    write_string(&mut out, type_name);
    if let Some(st) = stats {
        out.extend_from_slice(b",\"stats\":");
        json(&mut out, st);
    }
    out.push(b'}');
    if !annotations.infos.is_empty() {
        out.extend_from_slice(b",\"infos\":");
        json(&mut out, &json!(annotations.infos));
    }
    out.extend_from_slice(b",\"status\":\"success\"");
    if !annotations.warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":");
        json(&mut out, &json!(annotations.warnings));
    }
    out.push(b'}');
    if max > 0 && out.len() > max {
        return Err(too_large());
    }
    Ok(out)
}

/// The answer of a query: `stats` included when asked for (`stats=<anything>`), a 422 once
/// the JSON passes `query.max_response_bytes`.
fn respond(
    s: &SharedState,
    body: Body<'_>,
    stats: Option<&super::limits::QueryStats>,
) -> Result<Response, ApiError> {
    let stats = stats.map(|st| st.json());
    match respond_body(body, stats.as_ref(), s.config.query.max_response_bytes) {
        Ok(bytes) => Ok(super::limits::json_response(bytes)),
        Err(e) => {
            s.metrics.record_limit("query.max_response_bytes");
            Err(e)
        }
    }
}

/// Whether the request asks for `stats` (any non-empty value, as Prometheus).
fn wants_stats(p: &Params) -> bool {
    p.get("stats").is_some_and(|v| !v.is_empty())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A step or timeout: float seconds or a Prometheus duration (`15s`, `1m30s`).
fn parse_duration(name: &str, s: &str) -> Result<i64, ApiError> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        return Ok((f * 1000.0).round() as i64);
    }
    promql_parser::util::parse_duration(s).map(|d| d.as_millis() as i64).map_err(|_| {
        ApiError::BadData(format!(
            "invalid parameter {name:?}: cannot parse {s:?} to a valid duration"
        ))
    })
}

fn query_text(p: &Params) -> Result<String, ApiError> {
    match p.get("query") {
        Some(q) if !q.trim().is_empty() => Ok(q.to_string()),
        _ => Err(ApiError::BadData("invalid parameter \"query\": query is empty".into())),
    }
}

/// A cancellation handle for the blocking evaluation and the guard that sets it. The handler
/// future owns the guard: when axum drops the future because the client disconnected, the
/// guard cancels the query, which stops at its next step instead of running to the end.
fn cancel_on_drop() -> (Cancel, CancelOnDrop) {
    let c = Cancel::new();
    (c.clone(), CancelOnDrop(c))
}

/// Logs a query stopped by its client going away (nobody is left to receive the error).
fn log_canceled<T>(r: Result<T, promql::Error>, query: &str) -> Result<T, promql::Error> {
    if let Err(promql::Error::Canceled) = &r {
        tracing::info!(query, "query canceled: the client went away");
    }
    r
}

pub async fn instant(
    State(s): State<SharedState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let query = query_text(&p)?;
    let t = p.get("time").map(|v| parse_time("time", v)).transpose()?.unwrap_or_else(now_ms);
    let tenant = tenant(&headers)?;
    let engine = s.engine.clone();
    let (cancel, _guard) = cancel_on_drop();
    let (res, stats) = super::limits::run(&s, "instant", move |db| {
        log_canceled(engine.instant_query_with(db, &tenant, &query, t, &cancel), &query)
    })
    .await?;
    respond(&s, Body::Result(&res), wants_stats(&p).then_some(&stats))
}

pub async fn range(
    State(s): State<SharedState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let query = query_text(&p)?;
    let need = |k: &str| {
        p.get(k).ok_or_else(|| ApiError::BadData(format!("invalid parameter {k:?}: missing")))
    };
    let start = parse_time("start", need("start")?)?;
    let end = parse_time("end", need("end")?)?;
    let step = parse_duration("step", need("step")?)?;
    if end < start {
        return Err(ApiError::BadData(
            "invalid parameter \"end\": end timestamp must not be before start time".into(),
        ));
    }
    if step <= 0 {
        return Err(ApiError::BadData(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    let tenant = tenant(&headers)?;
    let state = s.clone();
    let (cancel, _guard) = cancel_on_drop();
    let (res, stats) = super::limits::run(&s, "range", move |db| {
        // Split into intervals, answered from the results cache where still valid.
        let q = RangeQuery { tenant: &tenant, query: &query, start, end, step, now: now_ms() };
        let r = state.query_cache.range_query(&state.engine, db, &q, &cancel, &state.metrics);
        log_canceled(r, &query)
    })
    .await?;
    let body = match &res {
        Answer::Result(r) => Body::Result(r),
        Answer::Joined(j) => Body::Joined(j),
    };
    respond(&s, body, wants_stats(&p).then_some(&stats))
}

/// A Prometheus-like version and no `features` map (which would make Grafana treat us as Mimir).
pub async fn buildinfo() -> Response {
    axum::Json(json!({
        "status": "success",
        "data": {
            "version": "3.5.0",
            "revision": env!("CARGO_PKG_VERSION"),
            "branch": "promlake",
            "buildUser": "promlake",
            "buildDate": "",
            "goVersion": "promlake (Rust)",
        }
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::Config;
    use crate::http::AppState;

    /// The handler future dropped mid-query (as axum drops it when the client disconnects)
    /// stops the blocking evaluation: shutting the runtime down waits for blocking tasks, so
    /// it returns promptly only if the query stopped.
    #[test]
    fn a_dropped_request_stops_its_query() {
        let dir = std::env::temp_dir().join(format!(
            "promlake-cancel-test-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let mut config = Config { data_dir: dir.clone(), ..Config::default() };
        config.query.timeout = Duration::from_secs(60);
        config.query.max_samples = usize::MAX;
        let state = Arc::new(AppState::new(config));
        state.open_storage();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        // Billions of subquery steps: a minute (the timeout) of work if nobody stops it.
        let q = "query=count_over_time(vector(1)[1y:1ms])&time=0";
        let request = instant(State(state), HeaderMap::new(), Params::parse(Some(q), &[]));
        let r =
            rt.block_on(async { tokio::time::timeout(Duration::from_millis(300), request).await });
        assert!(r.is_err(), "the query should still be running after 300 ms");
        let dropped = Instant::now();
        drop(rt);
        assert!(dropped.elapsed() < Duration::from_secs(5), "took {:?}", dropped.elapsed());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The envelope as a `serde_json` tree: what `respond_body` must print, byte for byte.
    fn respond_tree(res: &promql::QueryResult, stats: Option<&Json>) -> Json {
        let mut body = json!({
            "status": "success",
            "data": {"resultType": res.value.type_name(), "result": value_json(&res.value)},
        });
        if let Some(st) = stats {
            body["data"]["stats"] = st.clone();
        }
        if !res.annotations.warnings.is_empty() {
            body["warnings"] = json!(res.annotations.warnings);
        }
        if !res.annotations.infos.is_empty() {
            body["infos"] = json!(res.annotations.infos);
        }
        body
    }

    #[test]
    fn the_direct_encoding_equals_the_tree_encoding() {
        use model::{FloatHistogram, Labels};
        use promql::{Annotations, HistogramPoint, Point, QueryResult, Sample, Series};
        let labels = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied()).unwrap();
        let h = std::sync::Arc::new(FloatHistogram { count: 3.0, sum: 1.5, ..Default::default() });
        let series = vec![
            Series {
                labels: labels(&[("__name__", "a\"b\\c\n"), ("job", "x\u{1}y"), ("z", "é")]),
                points: vec![
                    Point { t: 1_000, v: 1.5 },
                    Point { t: -1_500, v: f64::NAN },
                    Point { t: 1_435_781_451_781, v: f64::NEG_INFINITY },
                ],
                histograms: vec![HistogramPoint { t: 2_001, h: h.clone() }],
            },
            Series {
                labels: Labels::empty(),
                points: vec![Point { t: 0, v: -0.0 }],
                histograms: vec![],
            },
            Series {
                labels: labels(&[("a", "1")]),
                points: vec![],
                histograms: vec![HistogramPoint { t: 5, h }],
            },
        ];
        let annos =
            Annotations { warnings: vec!["w \"1\"".into()], infos: vec!["i".into(), "j".into()] };
        for value in [
            Value::Matrix(series),
            Value::Matrix(vec![]),
            Value::Scalar { t: 1_500, v: 2.0 },
            Value::String { t: 0, v: "s\"".into() },
            Value::Vector(vec![Sample { labels: labels(&[("a", "b")]), t: 7, v: 1e21, h: None }]),
        ] {
            for annotations in [Annotations::default(), annos.clone()] {
                let res = QueryResult { value: value.clone(), annotations };
                let want = serde_json::to_string(&respond_tree(&res, None)).unwrap();
                let got =
                    String::from_utf8(respond_body(Body::Result(&res), None, 0).unwrap()).unwrap();
                assert_eq!(got, want);
                let stats = json!({"timings": {"evalTotalTime": 0.5}, "samples": {"x": 1}});
                let want = serde_json::to_string(&respond_tree(&res, Some(&stats))).unwrap();
                let got = respond_body(Body::Result(&res), Some(&stats), want.len()).unwrap();
                assert_eq!(String::from_utf8(got).unwrap(), want);
                // One byte less than the answer is over the limit.
                let err =
                    respond_body(Body::Result(&res), Some(&stats), want.len() - 1).unwrap_err();
                assert!(err.to_string().contains("query.max_response_bytes"), "{err}");
            }
        }
    }

    #[test]
    fn values_and_times_format_like_prometheus() {
        for (v, s) in [
            (1.0, "1"),
            (0.1, "0.1"),
            (-0.0, "-0"),
            (1e21, "1000000000000000000000"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(format_value(v), s);
        }
        assert_eq!(format_time(1_500), json!(1.5));
        assert_eq!(format_time(4_000), json!(4));
        assert_eq!(format_time(1_435_781_451_781), json!(1435781451.781));
    }
}
