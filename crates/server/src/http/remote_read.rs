//! `POST /api/v1/read`: Prometheus remote read, as `SAMPLES` (one snappy-compressed
//! `ReadResponse`) or, when the client accepts it, `STREAMED_XOR_CHUNKS` (CRC-framed
//! `ChunkedReadResponse`s, one series per frame, Prometheus-exact XOR chunks of at most 120
//! samples), streamed while storage is read.
//!
//! Statuses: 200 answered; 400 the body is not a snappy `ReadRequest`, a matcher is invalid,
//! or a `SAMPLES` answer would exceed `query.remote_read_sample_limit`;
//! 413/415 as for remote write; 5xx storage faults. An unknown accepted response type falls
//! back to `SAMPLES`, as Prometheus does.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use model::{Matcher, Queryable, SelectHints, TenantId};
use storage::Db;
use wire::proto::prompb;

use super::write::{MAX_DECOMPRESSED, read_body, wire_error};
use super::xor::{MAX_SAMPLES_PER_CHUNK, XorEncoder};
use super::{SharedState, blocking, tenant};
use crate::error::ApiError;
use crate::metrics::ResponseTypeLabels;

/// Chunk bytes per streamed frame (Prometheus' `--storage.remote.read-max-bytes-in-frame`).
const MAX_BYTES_IN_FRAME: usize = 1 << 20;

const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

struct ParsedQuery {
    hints: SelectHints,
    matchers: Vec<Matcher>,
}

pub async fn read(State(s): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    match read_inner(s, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn read_inner(s: SharedState, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let t = tenant(&headers)?;
    let body = read_body(body).await?;
    let raw = wire::snappy::decompress_capped(&body, MAX_DECOMPRESSED).map_err(wire_error)?;
    let req = wire::remote_read::decode_read_request(&raw).map_err(wire_error)?;
    let queries = req
        .queries
        .iter()
        .map(|q| {
            Ok(ParsedQuery {
                hints: SelectHints { start: q.start_timestamp_ms, end: q.end_timestamp_ms },
                matchers: wire::remote_read::matchers_from_proto(&q.matchers)
                    .map_err(wire_error)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let db = s.db()?;
    let streamed = negotiate(&req.accepted_response_types);
    s.metrics
        .remote_read_queries
        .get_or_create(&ResponseTypeLabels {
            response_type: if streamed { "streamed_xor_chunks" } else { "samples" }.into(),
        })
        .inc_by(queries.len() as u64);
    if !streamed {
        let limit = match s.config.query.remote_read_sample_limit {
            0 => usize::MAX,
            n => n,
        };
        let body = blocking(move || samples_response(&db, &t, &queries, limit)).await?;
        let mut resp = (StatusCode::OK, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        return Ok(resp);
    }
    Ok(streamed_response(db, t, queries).await)
}

/// The first accepted type we serve; none (or only unknown ones) means `SAMPLES`.
fn negotiate(accepted: &[i32]) -> bool {
    use prompb::read_request::ResponseType;
    accepted
        .iter()
        .find_map(|&r| match ResponseType::try_from(r) {
            Ok(ResponseType::Samples) => Some(false),
            Ok(ResponseType::StreamedXorChunks) => Some(true),
            Err(_) => None,
        })
        .unwrap_or(false)
}

/// The whole `SAMPLES` answer, built in memory, so bounded by `limit` samples (histogram
/// samples included) across all queries; over it is a 400, as in Prometheus.
fn samples_response(
    db: &Db,
    t: &TenantId,
    queries: &[ParsedQuery],
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut results = Vec::with_capacity(queries.len());
    let mut total = 0usize;
    for q in queries {
        let mut timeseries = Vec::new();
        for series in db.select(t, q.hints, &q.matchers)? {
            let series = series?;
            total += series.samples.len() + series.histograms.len();
            if total > limit {
                return Err(ApiError::BadData(format!(
                    "remote read answer exceeds the sample limit of {limit} \
                     (query.remote_read_sample_limit); ask for a shorter range or STREAMED_XOR_CHUNKS"
                )));
            }
            timeseries.push(wire::remote_read::series_to_proto(&series));
        }
        results.push(prompb::QueryResult { timeseries });
    }
    Ok(wire::remote_read::encode_read_response(&prompb::ReadResponse { results }))
}

/// Streams frames from a blocking reader through a small channel, so memory stays bounded
/// by the channel, not by the answer. Float samples only: native histogram samples are left
/// out of streamed answers until a Prometheus histogram chunk encoder exists (SAMPLES
/// answers carry them). A storage error after the first frame can only cut the
/// stream short (the status is already sent); the client sees a truncated frame or missing
/// series, as with Prometheus.
async fn streamed_response(
    db: std::sync::Arc<Db>,
    t: TenantId,
    queries: Vec<ParsedQuery>,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, ApiError>>(4);
    tokio::task::spawn_blocking(move || match stream_frames(&db, &t, &queries, &tx) {
        Ok(()) => {}
        Err(e) if tx.is_closed() => tracing::debug!(error = %e, "remote read client left"),
        Err(e) => {
            tracing::error!(error = %e, "remote read stream failed");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map_err(std::io::Error::other), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(STREAMED_CONTENT_TYPE));
    resp
}

type FrameSender = tokio::sync::mpsc::Sender<Result<Vec<u8>, ApiError>>;

fn stream_frames(
    db: &Db,
    t: &TenantId,
    queries: &[ParsedQuery],
    tx: &FrameSender,
) -> Result<(), ApiError> {
    for (index, q) in queries.iter().enumerate() {
        for series in db.select(t, q.hints, &q.matchers)? {
            let series = series?;
            if series.samples.is_empty() {
                continue;
            }
            let labels = wire::remote_read::labels_to_proto(&series.labels);
            let mut chunks = Vec::new();
            let mut frame_bytes = 0;
            for run in series.samples.chunks(MAX_SAMPLES_PER_CHUNK) {
                let chunk = xor_chunk(run);
                frame_bytes += chunk.data.len();
                chunks.push(chunk);
                if frame_bytes >= MAX_BYTES_IN_FRAME {
                    send_frame(tx, &labels, std::mem::take(&mut chunks), index)?;
                    frame_bytes = 0;
                }
            }
            if !chunks.is_empty() {
                send_frame(tx, &labels, chunks, index)?;
            }
        }
    }
    Ok(())
}

fn send_frame(
    tx: &FrameSender,
    labels: &[prompb::Label],
    chunks: Vec<prompb::Chunk>,
    index: usize,
) -> Result<(), ApiError> {
    let msg = prompb::ChunkedReadResponse {
        chunked_series: vec![prompb::ChunkedSeries { labels: labels.to_vec(), chunks }],
        query_index: index as i64,
    };
    let mut out = Vec::new();
    wire::remote_read::write_chunked_frame(&mut out, &msg);
    tx.blocking_send(Ok(out))
        .map_err(|_| ApiError::Unavailable("remote read client went away".into()))
}

/// One Prometheus XOR chunk of up to 120 samples.
fn xor_chunk(samples: &[model::Sample]) -> prompb::Chunk {
    let mut e = XorEncoder::new();
    for s in samples {
        e.append(s.t, s.v);
    }
    prompb::Chunk {
        min_time_ms: samples.first().map_or(0, |s| s.t),
        max_time_ms: samples.last().map_or(0, |s| s.t),
        r#type: prompb::chunk::Encoding::Xor as i32,
        data: e.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_the_first_known_type() {
        let check = |accepted: &[i32], streamed: bool| {
            assert_eq!(negotiate(accepted), streamed, "{accepted:?}");
        };
        check(&[], false);
        check(&[0], false);
        check(&[1], true);
        check(&[1, 0], true);
        check(&[0, 1], false);
        check(&[7, 1], true);
        check(&[7], false);
    }
}
