//! promlake storage: per-tenant WAL, in-memory head, Parquet blocks, compaction and retention.
//!
//! Architecture Invariant: every entry point takes a tenant; tenants share nothing but the
//! process. Acknowledged data (an `append` that returned `Ok`) is in the fsynced WAL.

pub mod block;
pub mod changes;
pub mod chunk;
pub mod chunk_disk;
pub mod clock;
pub mod codec;
mod db;
mod error;
pub mod exemplars;
pub mod export;
pub mod head;
pub mod import;
pub mod index;
pub mod metadata;
pub mod objstore;
mod tenant;
pub mod testing;
pub mod tombstones;
pub mod wal;

pub use db::{Db, HOUR_MS, Options};
pub use error::{Result, StorageError};
pub use objstore::ObjectStoreOptions;
pub use tenant::{TenantDb, TenantOptions, TenantStats};
