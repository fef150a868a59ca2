//! promlake storage: per-tenant WAL, in-memory head, Parquet blocks, compaction and retention.

pub mod chunk;
mod error;
pub mod head;
pub mod index;
pub mod wal;

pub use error::{Result, StorageError};
