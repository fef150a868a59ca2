//! Test support that other crates reach: real storage in a temporary directory, flushed into
//! blocks after every write, so reads always go through head and blocks together.

use model::{
    AppendOutcome, Appendable, Matcher, Queryable, SeamError, SelectHints, SeriesIter, TenantId,
    WriteBatch,
};

use crate::{Db, Options, Result, StorageError};

/// Real storage as a promqltest backend: every append is followed by a flush into blocks. The
/// out-of-order window is unbounded because test scripts load series in any time order.
pub struct FlushingStorage {
    db: Db,
    _dir: tempfile::TempDir,
}

impl FlushingStorage {
    pub fn new() -> Result<FlushingStorage> {
        let dir = tempfile::tempdir().map_err(StorageError::io(std::env::temp_dir()))?;
        let mut opts = Options::new(dir.path());
        opts.ooo_window = i64::MAX / 4;
        opts.wal.fsync = false;
        Ok(FlushingStorage { db: Db::open(opts)?, _dir: dir })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

impl Appendable for FlushingStorage {
    fn append(&self, tenant: &TenantId, batch: WriteBatch) -> Result<AppendOutcome, SeamError> {
        let out = self.db.append(tenant, batch)?;
        self.db.flush(Some(tenant)).map_err(SeamError::from)?;
        Ok(out)
    }
}

impl Queryable for FlushingStorage {
    fn select<'a>(
        &'a self,
        t: &TenantId,
        h: SelectHints,
        m: &[Matcher],
    ) -> Result<SeriesIter<'a>, SeamError> {
        self.db.select(t, h, m)
    }

    fn label_names(
        &self,
        t: &TenantId,
        h: SelectHints,
        m: &[Matcher],
    ) -> Result<Vec<String>, SeamError> {
        self.db.label_names(t, h, m)
    }

    fn label_values(
        &self,
        t: &TenantId,
        n: &str,
        h: SelectHints,
        m: &[Matcher],
    ) -> Result<Vec<String>, SeamError> {
        self.db.label_values(t, n, h, m)
    }
}
