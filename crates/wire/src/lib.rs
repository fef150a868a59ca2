//! Bytes on the wire for ingestion: remote write 1.0/2.0 decoding, remote read encoding,
//! capped snappy, and the text exposition format.
//!
//! The write path's decode step, as the server drives it:
//! 1. [`WriteProtocol::from_content_type`] (or [`TextFormat::from_content_type`]) picks the
//!    decoder; an unknown type is [`WireError::UnsupportedContentType`].
//! 2. [`decode_write`] = [`snappy::decompress_capped`] (length header checked against the cap
//!    before allocating) + the zero-copy walker ([`decode_write_v1`] / [`decode_write_v2`]).
//! 3. The result is a [`DecodedWrite`]: the valid series as a `model::WriteBatch` with interned
//!    labels, plus one [`InvalidSeries`] per rejected series/exemplar/metadata. Any `WireError`
//!    and any `invalid` entry are the sender's fault (4xx, do not retry); the server stores the
//!    batch first, then answers 400 listing the rejections, as Prometheus does for 2.0.
//!
//! Code map: `pb` (protobuf primitives over `&[u8]`), `remote_write` (`common`: context,
//! label validation, Sample/Histogram; `v1`, `v2`: the message walkers), `text`, `snappy`,
//! `remote_read` (prost-based, not on the ingest path), `encode` (remote write and text for
//! senders: the forwarder, load generators), `proto` (generated from `/proto`).
//!
//! Architecture Invariant: nothing here panics on any input bytes, and nothing allocates more
//! than a constant factor of its input (snappy checks its length header against a cap first;
//! request-wide limits stop a decode early). The decoders are fuzzed by `tests/it/fuzz.rs`
//! and replay `tests/corpus/` in every test run; `fuzz/` holds cargo-fuzz targets.
//!
//! Architecture Invariant: the ingest path never builds prost's owned message trees; prost
//! types are for encoding, remote read, tests and load generators.

mod crc32c;
mod encode;
mod error;
mod pb;
pub mod proto;
pub mod remote_read;
mod remote_write;
pub mod snappy;
pub mod text;

pub use encode::{encode_write_v1, encode_write_v2, write_text};
pub use error::WireError;
pub use remote_write::{
    DecodeCounts, DecodeLimits, DecodedWrite, InvalidReason, InvalidSeries, MAX_INVALID_DETAILS,
    WriteProtocol, decode_write, decode_write_cached, decode_write_v1, decode_write_v1_cached,
    decode_write_v2, decode_write_v2_cached,
};
pub use text::{TextFormat, TextOptions, parse_text};
