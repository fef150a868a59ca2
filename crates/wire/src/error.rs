//! The one error type of the `wire` crate. Each variant names what failed; messages name the
//! offending value and, for limits, the limit's config name.

/// A request (or payload) as a whole could not be decoded. Per-series problems in an otherwise
/// well-formed remote write request are not errors: see [`crate::InvalidSeries`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// The snappy length header announces more bytes than the caller allows.
    #[error(
        "decompressed body would be {len} bytes, more than the limit of {max} bytes (limits.max_decompressed_bytes)"
    )]
    SnappyTooLarge { len: usize, max: usize },
    /// The snappy block is corrupt (bad header, bad copy offset, length mismatch, ...).
    #[error("corrupt snappy block: {0}")]
    SnappyCorrupt(String),
    /// The protobuf bytes are structurally malformed: a truncated varint, a length past the end,
    /// a wire type that does not fit the field, ...
    #[error("malformed protobuf in {message} at byte {offset}: {problem}")]
    MalformedProtobuf { message: &'static str, offset: usize, problem: String },
    /// A message decoded with prost (remote read, not on the ingest hot path) is malformed.
    #[error("malformed {message}: {reason}")]
    ProstDecode { message: &'static str, reason: String },
    /// A remote read matcher has an unknown type or an invalid regular expression.
    #[error("invalid remote read matcher: {0}")]
    InvalidMatcher(String),
    /// A frame of a streamed remote read response announces more bytes than allowed.
    #[error("chunked read frame of {len} bytes exceeds the limit of {max} bytes")]
    ChunkedFrameTooLarge { len: u64, max: usize },
    /// A frame of a streamed remote read response fails its CRC-32C check.
    #[error(
        "chunked read frame checksum mismatch: header says {expected:#010x}, data has {actual:#010x}"
    )]
    ChunkedFrameChecksum { expected: u32, actual: u32 },
    /// A remote write 1.0 `WriteRequest` arrived where a 2.0 `Request` was expected.
    #[error(
        "remote write 2.0 request carries field {field}, reserved for remote write 1.0 (was the request sent with the wrong Content-Type?)"
    )]
    WrongProtocolVersion { field: u32 },
    /// The Content-Type names no message or format this crate decodes.
    #[error("unsupported content type {0:?}")]
    UnsupportedContentType(String),
    /// A request-wide limit was exceeded.
    #[error("request exceeds {limit}={max}")]
    LimitExceeded { limit: &'static str, max: usize },
    /// A line of text exposition format could not be parsed.
    #[error("text format line {line}: {reason}: {content:?}")]
    TextSyntax { line: usize, content: String, reason: String },
    /// The extra (grouping) labels of a text push are themselves invalid.
    #[error("invalid grouping label: {0}")]
    InvalidGroupingLabels(model::ModelError),
    /// A pushed series carries a grouping label with a different value.
    #[error(
        "text format line {line}: label {name}={pushed:?} conflicts with grouping label {name}={grouping:?}"
    )]
    GroupingLabelConflict { line: usize, name: String, pushed: String, grouping: String },
}
