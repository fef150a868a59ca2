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
}

impl Options {
    pub fn new(data_dir: impl Into<PathBuf>) -> Options {
        Options {
            data_dir: data_dir.into(),
            block_duration: 2 * HOUR_MS,
            retention: 15 * 24 * HOUR_MS,
            ooo_window: 30 * 60_000,
            wal: WalOptions::default(),
        }
    }
}

/// Called with a tenant and an inclusive time range whose data changed other than by an
/// in-order append (today: a deletion), so a results cache can drop what it holds there.
pub type ChangeHook = Arc<dyn Fn(&TenantId, i64, i64) + Send + Sync>;

pub struct Db {
    opts: Options,
    change_hook: RwLock<Option<ChangeHook>>,
    store: BlockStore,
    clock: Arc<dyn Clock>,
    tenants: RwLock<BTreeMap<TenantId, Arc<TenantDb>>>,
}

impl Db {
    /// Opens the data directory and every tenant found in it (WAL replay included).
    pub fn open(opts: Options) -> Result<Db> {
        let store = BlockStore::local(&opts.data_dir.join("blocks"))?;
        Self::open_with(opts, store, Arc::new(SystemClock))
    }

    pub fn open_with(opts: Options, store: BlockStore, clock: Arc<dyn Clock>) -> Result<Db> {
        let db = Db {
            opts,
            change_hook: RwLock::new(None),
            store,
            clock,
            tenants: RwLock::new(BTreeMap::new()),
        };
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

    /// Installs the hook told about data changed in a time range (see [`ChangeHook`]).
    pub fn set_change_hook(&self, hook: ChangeHook) {
        *self.change_hook.write() = Some(hook);
    }

    /// Deletes the series matching `matchers` in `[min_t, max_t]` (a tombstone, durable on
    /// return; see `tombstones.rs`) and tells the change hook. Unknown tenants: nothing to do.
    pub fn delete_series(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Result<()> {
        let Some(t) = self.existing(tenant) else { return Ok(()) };
        if let Some((lo, hi)) = t.delete(matchers, min_t, max_t)?
            && let Some(hook) = self.change_hook.read().clone()
        {
            hook(tenant, lo, hi);
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
