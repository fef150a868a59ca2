//! Bytes on the wire for ingestion: remote write 1.0/2.0 decoding, remote read encoding,
//! capped snappy, and the text exposition format.
//!
//! Architecture Invariant: nothing here panics on any input bytes, and nothing allocates more
//! than a constant factor of its input (snappy checks its length header against a cap first).
//! The decoders are fuzzed by `tests/fuzz.rs` and replay `tests/corpus/` in every test run.

mod crc32c;
mod error;
mod pb;
pub mod proto;
pub mod remote_read;
mod remote_write;
pub mod snappy;
pub mod text;

pub use error::WireError;
pub use remote_write::{
    DecodeCounts, DecodeLimits, DecodedWrite, InvalidReason, InvalidSeries, WriteProtocol,
    decode_write, decode_write_v1, decode_write_v2,
};
pub use text::{TextFormat, TextOptions, parse_text};
