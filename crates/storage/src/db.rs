//! The multi-tenant database: tenants opened lazily, each with its own WAL directory and block
//! prefix; implements the `Appendable` and `Queryable` seam.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use model::{
    AppendOutcome, Appendable, Matcher, Queryable, SeamError, SelectHints, SeriesIter, TenantId,
    WriteBatch,
};
use parking_lot::RwLock;

use crate::block::{BlockMeta, BlockStore};
use crate::clock::{Clock, SystemClock};
use crate::error::Result;
use crate::objstore::ObjectStoreOptions;
use crate::tenant::{TenantDb, TenantOptions};
use crate::wal::WalOptions;

pub const HOUR_MS: i64 = 3_600_000;

#[derive(Clone, Debug)]
pub struct Options {
    pub data_dir: PathBuf,
    /// Head data is cut into blocks of this span (default 2h).
    pub block_duration: i64,
    /// Blocks entirely older than this are deleted (default 15d).
    pub retention: i64,
    /// How late a sample may arrive relative to the tenant's newest sample (default 10m... 1h).
    pub ooo_window: i64,
    pub wal: WalOptions,
    /// Where blocks live: `None` is `data_dir/blocks` (default), else the object store a URL
    /// names (`objstore.rs`). The WAL and head chunks stay in `data_dir` either way.
    pub blocks: Option<ObjectStoreOptions>,
}

impl Options {
    pub fn new(data_dir: impl Into<PathBuf>) -> Options {
        Options {
            data_dir: data_dir.into(),
            block_duration: 2 * HOUR_MS,
            retention: 15 * 24 * HOUR_MS,
            ooo_window: 30 * 60_000,
            wal: WalOptions::default(),
            blocks: None,
        }
    }
}

pub struct Db {
    opts: Options,
    store: BlockStore,
    clock: Arc<dyn Clock>,
    tenants: RwLock<BTreeMap<TenantId, Arc<TenantDb>>>,
}

impl Db {
    /// Opens the data directory and every tenant found in it (WAL replay included).
    pub fn open(opts: Options) -> Result<Db> {
        let store = Self::block_store(&opts)?;
        Self::open_with(opts, store, Arc::new(SystemClock))
    }

    /// The block store `opts` name: `data_dir/blocks`, or the object store of `opts.blocks`,
    /// checked with one listing (an unreachable store or a missing bucket fails here, named).
    pub fn block_store(opts: &Options) -> Result<BlockStore> {
        match &opts.blocks {
            None => BlockStore::local(&opts.data_dir.join("blocks")),
            Some(o) => {
                let store = BlockStore::open_url(o)?;
                store.check()?;
                Ok(store)
            }
        }
    }

    /// The store blocks are read from and written to (for its request counters).
    pub fn store(&self) -> &BlockStore {
        &self.store
    }

    pub fn open_with(opts: Options, store: BlockStore, clock: Arc<dyn Clock>) -> Result<Db> {
        let db = Db { opts, store, clock, tenants: RwLock::new(BTreeMap::new()) };
        let mut found: Vec<TenantId> = db.store.tenants()?;
        if let Ok(rd) = std::fs::read_dir(db.opts.data_dir.join("wal")) {
            for e in rd.flatten() {
                if let Some(t) = e.file_name().to_str().and_then(|n| TenantId::new(n).ok()) {
                    found.push(t);
                }
            }
        }
        found.sort();
        found.dedup();
        for t in found {
            db.tenant(&t)?;
        }
        Ok(db)
    }

    pub fn tenant(&self, tenant: &TenantId) -> Result<Arc<TenantDb>> {
        if let Some(t) = self.tenants.read().get(tenant) {
            return Ok(t.clone());
        }
        let mut w = self.tenants.write();
        if let Some(t) = w.get(tenant) {
            return Ok(t.clone());
        }
        let topts = TenantOptions {
            block_duration: self.opts.block_duration,
            retention: self.opts.retention,
            ooo_window: self.opts.ooo_window,
            wal: self.opts.wal.clone(),
        };
        let wal_dir = self.opts.data_dir.join("wal").join(tenant.as_str());
        let chunk_dir = self.opts.data_dir.join("head_chunks").join(tenant.as_str());
        let t = Arc::new(TenantDb::open(
            tenant.clone(),
            &wal_dir,
            Some(&chunk_dir),
            self.store.clone(),
            topts,
        )?);
        w.insert(tenant.clone(), t.clone());
        Ok(t)
    }

    /// The tenant if it exists; reads of unknown tenants see no data and create nothing.
    pub fn existing(&self, tenant: &TenantId) -> Option<Arc<TenantDb>> {
        self.tenants.read().get(tenant).cloned()
    }

    /// The tenant's change generation (`changes.rs`); 0 for a tenant without data yet.
    pub fn change_generation(&self, tenant: &TenantId) -> u64 {
        self.existing(tenant).map_or(0, |t| t.changes.generation())
    }

    /// The oldest timestamp written into the tenant after generation `since` (`None`: no
    /// write since). A tenant created after `since` was taken reports its writes too: its log
    /// starts at generation 0.
    pub fn min_time_written_since(&self, tenant: &TenantId, since: u64) -> Option<i64> {
        self.existing(tenant).and_then(|t| t.changes.min_time_since(since))
    }

    pub fn tenants(&self) -> Vec<Arc<TenantDb>> {
        self.tenants.read().values().cloned().collect()
    }

    /// Persists the head of one tenant (or all) into blocks now.
    pub fn flush(&self, tenant: Option<&TenantId>) -> Result<Vec<BlockMeta>> {
        let mut out = Vec::new();
        for t in self.tenants() {
            if tenant.is_none_or(|x| *x == t.tenant) {
                out.extend(t.flush()?);
            }
        }
        Ok(out)
    }

    /// One background pass: cut full head ranges, compact, apply retention.
    pub fn maintain(&self) -> Result<()> {
        let now = self.clock.now_ms();
        for t in self.tenants() {
            t.maybe_cut()?;
            t.compact()?;
            t.apply_retention(now)?;
        }
        Ok(())
    }

    /// Deletes the series matching `matchers` in `[min_t, max_t]` (a tombstone, durable on
    /// return; see `tombstones.rs`) and records it in the tenant's change log (`changes.rs`),
    /// so results caches drop what they hold from its start on. Unknown tenants: nothing to do.
    pub fn delete_series(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Result<()> {
        let Some(t) = self.existing(tenant) else { return Ok(()) };
        if let Some((lo, _hi)) = t.delete(matchers, min_t, max_t)? {
            t.changes.record(lo);
        }
        Ok(())
    }

    /// A consistent copy of one tenant's blocks under `dst` (a data directory layout).
    pub fn snapshot(
        &self,
        tenant: &TenantId,
        dst: &std::path::Path,
        skip_head: bool,
    ) -> Result<usize> {
        std::fs::create_dir_all(dst).map_err(crate::error::StorageError::io(dst))?;
        match self.existing(tenant) {
            Some(t) => t.snapshot(dst, skip_head),
            None => Ok(0),
        }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }
}

impl Appendable for Db {
    fn append(&self, tenant: &TenantId, batch: WriteBatch) -> Result<AppendOutcome, SeamError> {
        Ok(self.tenant(tenant)?.append(batch)?)
    }
}

impl Queryable for Db {
    fn select<'a>(
        &'a self,
        tenant: &TenantId,
        hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<SeriesIter<'a>, SeamError> {
        let Some(t) = self.existing(tenant) else { return Ok(Box::new(std::iter::empty())) };
        Ok(Box::new(t.select(hints, matchers).map(|r| r.map_err(SeamError::from))))
    }

    fn label_names(
        &self,
        tenant: &TenantId,
        hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, SeamError> {
        let Some(t) = self.existing(tenant) else { return Ok(Vec::new()) };
        Ok(t.label_names(hints, matchers)?)
    }

    fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, SeamError> {
        let Some(t) = self.existing(tenant) else { return Ok(Vec::new()) };
        Ok(t.label_values(name, hints, matchers)?)
    }
}
