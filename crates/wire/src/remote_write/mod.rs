//! Remote write 1.0 and 2.0 decoding straight from protobuf bytes into a `model::WriteBatch`,
//! without building prost's owned message trees.
//!
//! A request whose bytes are structurally malformed (or that breaks a request-wide limit) is a
//! hard [`WireError`]. A well-formed request may still carry invalid series (a missing metric
//! name, a duplicate label, a label over a length limit, ...): those are left out of the batch
//! and listed in [`DecodedWrite::invalid`], so the caller can store the rest and report each
//! rejection (partial failure, as Prometheus answers 400 after writing the valid part).

mod common;
mod v1;
mod v2;

use std::fmt;

use model::{Interner, SeriesCache, WriteBatch};

pub use v1::{decode_write_v1, decode_write_v1_cached};
pub use v2::{decode_write_v2, decode_write_v2_cached};

use crate::WireError;

/// Which remote write message a request carries, as its Content-Type says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteProtocol {
    /// `prometheus.WriteRequest` (remote write 1.0).
    V1,
    /// `io.prometheus.write.v2.Request` (remote write 2.0).
    V2,
}

impl WriteProtocol {
    /// Reads a Content-Type header value. A missing or empty header, and
    /// `application/x-protobuf` without a `proto` parameter, mean 1.0 (as Prometheus reads them).
    /// Anything else is `UnsupportedContentType` (HTTP 415 to the sender).
    pub fn from_content_type(ct: &str) -> Result<WriteProtocol, WireError> {
        let unsupported = || WireError::UnsupportedContentType(ct.chars().take(200).collect());
        if ct.trim().is_empty() {
            return Ok(WriteProtocol::V1);
        }
        let mut parts = ct.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        if !media.eq_ignore_ascii_case("application/x-protobuf") {
            return Err(unsupported());
        }
        let mut proto = None;
        for p in parts {
            if let Some((k, v)) = p.split_once('=')
                && k.trim().eq_ignore_ascii_case("proto")
            {
                proto = Some(v.trim().trim_matches('"'));
            }
        }
        match proto {
            None | Some("prometheus.WriteRequest") => Ok(WriteProtocol::V1),
            Some("io.prometheus.write.v2.Request") => Ok(WriteProtocol::V2),
            Some(_) => Err(unsupported()),
        }
    }

    /// The canonical Content-Type of the message.
    pub fn content_type(self) -> &'static str {
        match self {
            WriteProtocol::V1 => "application/x-protobuf;proto=prometheus.WriteRequest",
            WriteProtocol::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }
}

/// Decodes a snappy-compressed remote write body: the capped decompression, then the walker
/// for `protocol`. `max_decompressed_bytes` is checked before anything is allocated.
pub fn decode_write(
    protocol: WriteProtocol,
    snappy_body: &[u8],
    max_decompressed_bytes: usize,
    interner: &Interner,
    limits: &DecodeLimits,
) -> Result<DecodedWrite, WireError> {
    decode_write_cached(protocol, snappy_body, max_decompressed_bytes, interner, limits, None)
}

/// [`decode_write`] with the tenant's series cache: a series whose raw label bytes the cache
/// knows is resolved to its stored series (`SeriesKey::Hit`) without building, interning or
/// validating its labels — these exact bytes were validated when it was cached. Misses are
/// decoded as usual and tagged `SeriesKey::Miss` for storage to cache.
///
/// The cache is only valid for one set of `limits`: a cache filled under other limits must be
/// dropped when they change (the server uses one fixed set today).
pub fn decode_write_cached(
    protocol: WriteProtocol,
    snappy_body: &[u8],
    max_decompressed_bytes: usize,
    interner: &Interner,
    limits: &DecodeLimits,
    cache: Option<&SeriesCache>,
) -> Result<DecodedWrite, WireError> {
    // The decompressed body lives only during the decode (the batch owns its strings), so
    // each thread reuses one buffer: no allocation and no zero-fill of ~100s of KB per request
    // (`memset` was 3% of the server's CPU under remote write). Only buffers up to
    // `KEPT_BODY_BYTES` are kept, so an idle thread holds at most that much.
    const KEPT_BODY_BYTES: usize = 1 << 20;
    thread_local! {
        static BODY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut buf = BODY.with(|b| b.take());
    let decoded = (|| {
        let body =
            crate::snappy::decompress_capped_into(snappy_body, max_decompressed_bytes, &mut buf)?;
        match protocol {
            WriteProtocol::V1 => decode_write_v1_cached(body, interner, limits, cache),
            WriteProtocol::V2 => decode_write_v2_cached(body, interner, limits, cache),
        }
    })();
    if buf.capacity() <= KEPT_BODY_BYTES {
        BODY.with(|b| b.replace(buf));
    }
    decoded
}

/// Limits applied while decoding. Each limit's field name is what error messages quote
/// (`limits.<field>`), so configuration can use the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Labels per series, counting `__name__` (per series).
    pub max_labels_per_series: usize,
    /// Bytes in one label name (per series).
    pub max_label_name_length: usize,
    /// Bytes in one label value (per series).
    pub max_label_value_length: usize,
    /// Float samples plus histogram samples in one request (request-wide: a hard error).
    pub max_samples_per_request: usize,
    /// Series in one request (request-wide: a hard error).
    pub max_series_per_request: usize,
}

impl Default for DecodeLimits {
    /// Mimir's per-series defaults; request-wide limits generous enough for any sane sender
    /// (Prometheus sends 2,000 samples per request by default).
    fn default() -> Self {
        DecodeLimits {
            max_labels_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_samples_per_request: 1_000_000,
            max_series_per_request: 1_000_000,
        }
    }
}

/// How many rejections [`DecodedWrite::invalid`] lists in detail; the counts cover them all.
pub const MAX_INVALID_DETAILS: usize = 1000;

/// A decoded request: the valid series, and why the others were left out.
#[derive(Clone, Debug, Default)]
pub struct DecodedWrite {
    pub batch: WriteBatch,
    /// The first [`MAX_INVALID_DETAILS`] rejections, in request order.
    pub invalid: Vec<InvalidSeries>,
    /// What the request carried, valid or not.
    pub received: DecodeCounts,
    /// What was left out of `batch`: rejected series (with their samples, histograms and
    /// exemplars), single rejected exemplars, rejected metadata entries.
    pub rejected: DecodeCounts,
    /// Series resolved through the series cache (`SeriesKey::Hit`).
    pub cache_hits: usize,
}

/// Totals of what a request carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeCounts {
    pub series: usize,
    pub samples: usize,
    pub histograms: usize,
    pub exemplars: usize,
    pub metadata: usize,
}

/// One rejection: a series (or one exemplar or metadata entry of it) left out of the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidSeries {
    /// The series' labels as sent, in Prometheus notation (`name{a="b"}`, truncated to about
    /// 1 KiB; invalid UTF-8 shown replaced).
    pub labels_text: String,
    pub reason: InvalidReason,
    /// Float samples, histograms and exemplars dropped with it.
    pub samples: usize,
    pub histograms: usize,
    pub exemplars: usize,
}

impl fmt::Display for InvalidSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for series {}", self.reason, self.labels_text)
    }
}

/// Which rule a series broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidReason {
    MissingMetricName,
    EmptyLabelName,
    DuplicateLabelName {
        name: String,
    },
    /// `what` says which string: "label name", "label value", "metadata help", ...
    InvalidUtf8 {
        what: &'static str,
    },
    TooManyLabels {
        count: usize,
        limit: usize,
    },
    LabelNameTooLong {
        name: String,
        length: usize,
        limit: usize,
    },
    LabelValueTooLong {
        name: String,
        length: usize,
        limit: usize,
    },
    /// Remote write 2.0: `labels_refs` must hold (name, value) pairs.
    OddLabelRefs {
        length: usize,
    },
    /// Remote write 2.0: a reference past the end of the symbols table.
    SymbolRefOutOfRange {
        reference: u32,
        symbols: usize,
    },
    /// The spans of a native histogram describe a different number of buckets than it carries.
    HistogramSpansMismatch {
        side: &'static str,
        span_buckets: u64,
        buckets: usize,
    },
    /// One exemplar of the series was invalid; only it was dropped.
    InvalidExemplar(Box<InvalidReason>),
}

impl InvalidReason {
    /// A short, stable name for metrics (`reason` label).
    pub fn name(&self) -> &'static str {
        match self {
            InvalidReason::MissingMetricName => "missing_metric_name",
            InvalidReason::EmptyLabelName => "empty_label_name",
            InvalidReason::DuplicateLabelName { .. } => "duplicate_label_name",
            InvalidReason::InvalidUtf8 { .. } => "invalid_utf8",
            InvalidReason::TooManyLabels { .. } => "too_many_labels",
            InvalidReason::LabelNameTooLong { .. } => "label_name_too_long",
            InvalidReason::LabelValueTooLong { .. } => "label_value_too_long",
            InvalidReason::OddLabelRefs { .. } => "odd_label_refs",
            InvalidReason::SymbolRefOutOfRange { .. } => "symbol_ref_out_of_range",
            InvalidReason::HistogramSpansMismatch { .. } => "histogram_spans_mismatch",
            InvalidReason::InvalidExemplar(_) => "invalid_exemplar",
        }
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use InvalidReason::*;
        match self {
            MissingMetricName => f.write_str("series has no metric name (__name__ label)"),
            EmptyLabelName => f.write_str("label name is empty"),
            DuplicateLabelName { name } => write!(f, "duplicate label name {name:?}"),
            InvalidUtf8 { what } => write!(f, "{what} is not valid UTF-8"),
            TooManyLabels { count, limit } => write!(
                f,
                "series has {count} labels, more than limits.max_labels_per_series={limit}"
            ),
            LabelNameTooLong { name, length, limit } => write!(
                f,
                "label name {name:?} is {length} bytes long, more than limits.max_label_name_length={limit}"
            ),
            LabelValueTooLong { name, length, limit } => write!(
                f,
                "value of label {name:?} is {length} bytes long, more than limits.max_label_value_length={limit}"
            ),
            OddLabelRefs { length } => {
                write!(f, "labels_refs has {length} entries, not (name, value) pairs")
            }
            SymbolRefOutOfRange { reference, symbols } => write!(
                f,
                "symbol reference {reference} is out of range of the {symbols}-entry symbols table"
            ),
            HistogramSpansMismatch { side, span_buckets, buckets } => write!(
                f,
                "native histogram {side} spans describe {span_buckets} buckets but {buckets} are given"
            ),
            InvalidExemplar(r) => write!(f, "exemplar dropped: {r}"),
        }
    }
}

#[cfg(test)]
mod tests;
