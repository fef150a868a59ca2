//! The storage crate's one error type. Corruption is its own variant.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("WAL segment {segment} is corrupt at offset {offset}: {reason}")]
    WalSegmentCorrupt { segment: String, offset: u64, reason: String },
    #[error("WAL record could not be encoded: {0}")]
    WalEncode(String),
    #[error("block {block} is corrupt: {reason}")]
    BlockCorrupt { block: String, reason: String },
    #[error("block store {url}: {reason}")]
    BlockStore { url: String, reason: String },
    #[error("object store: {0}")]
    ObjectStore(String),
    #[error("parquet: {0}")]
    Parquet(String),
    #[error("tombstones file {path} is corrupt: {reason}")]
    TombstonesCorrupt { path: PathBuf, reason: String },
    #[error(
        "tombstone limit of {limit} per tenant reached: wait for compaction or retention to drop old ones"
    )]
    TooManyTombstones { limit: usize },
    #[error("storage is shutting down")]
    Closed,
    #[error("the thread reading a selection's series {0}")]
    SelectReader(String),
    #[error(
        "a write resolved by the series cache carries a handle that is not this storage's and no labels (a bug in the caller)"
    )]
    ForeignSeriesHandle,
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { path, source }
    }
}

impl From<StorageError> for model::SeamError {
    fn from(e: StorageError) -> Self {
        model::SeamError::Storage(e.to_string())
    }
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        StorageError::ObjectStore(e.to_string())
    }
}

impl From<parquet::errors::ParquetError> for StorageError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        StorageError::Parquet(e.to_string())
    }
}

impl From<arrow_schema::ArrowError> for StorageError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        StorageError::Parquet(e.to_string())
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
