//! The seam type of the ingest fast path: a per-tenant cache from the hash of a series' labels
//! *as sent* (their canonical wire bytes) to storage's handle on that series, so a decoder can
//! resolve a known series without building, interning, validating or hashing a label set.
//!
//! Storage owns one cache per tenant and fills it; decoders (wire) read it. The cache holds no
//! bytes: a decoder hashes a series' raw label bytes, gets a candidate, and accepts it only if
//! the raw bytes are exactly the canonical encoding of the candidate's labels (wire checks that,
//! one byte comparison). Invariants, each tested in `wire` and `storage`:
//! - a candidate is only ever returned for a series storage still holds ([`SeriesHandle::is_live`]
//!   is checked here and again by storage under its append gate), so a stale entry can never
//!   send samples to a dropped or different series;
//! - at most one entry per series (its canonical bytes have one hash), so the cache is bounded
//!   by the head's series count; entries of dropped series are purged by [`SeriesCache::purge_dead`];
//! - only series a decoder validated are inserted (storage inserts after appending a series that
//!   came with [`SeriesKey::Miss`]), so a hit means these exact bytes passed validation before.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::Labels;

/// Storage's view of one series, as a decoder may hold it.
pub trait SeriesHandle: Send + Sync {
    /// The series' label set.
    fn labels(&self) -> &Labels;
    /// False once storage has dropped the series (e.g. garbage collection after a cut).
    fn is_live(&self) -> bool;
    /// For storage to get its own type back.
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// A shared handle on a stored series.
pub type SeriesRef = Arc<dyn SeriesHandle>;

/// How a decoder resolved one series against the cache.
#[derive(Clone, Default)]
pub enum SeriesKey {
    /// No cache was used, or the raw bytes were not canonical (unsorted, an empty value, ...):
    /// storage resolves the series by its labels and caches nothing.
    #[default]
    None,
    /// The cache knew the series: storage uses the handle if it is still live.
    Hit(SeriesRef),
    /// The cache did not know the series; its raw bytes were canonical and hash to this value.
    /// Storage caches the series it resolves for these labels under it.
    Miss(u64),
}

impl fmt::Debug for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeriesKey::None => f.write_str("None"),
            SeriesKey::Hit(s) => write!(f, "Hit({})", s.labels()),
            SeriesKey::Miss(h) => write!(f, "Miss({h:#x})"),
        }
    }
}

const SHARDS: usize = 64;

/// Keys are already foldhash outputs: the maps use them as they are.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = RwLock<HashMap<u64, SeriesRef, BuildHasherDefault<IdentityHasher>>>;

/// Hash of canonical label bytes → series, sharded for low contention between writers.
pub struct SeriesCache {
    hasher: foldhash::quality::RandomState,
    shards: Box<[Shard]>,
    len: AtomicUsize,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache {
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::default())).collect(),
            len: AtomicUsize::new(0),
        }
    }
}

impl SeriesCache {
    pub fn new() -> SeriesCache {
        SeriesCache::default()
    }

    /// The hash of raw label bytes under this cache's (per-process random) seed.
    pub fn hash(&self, raw: &[u8]) -> u64 {
        self.hasher.hash_one(raw)
    }

    fn shard(&self, hash: u64) -> &Shard {
        // Middle bits: the map itself uses the low bits for buckets and the top ones as tags.
        &self.shards[((hash >> 32) as usize) % SHARDS]
    }

    /// The live series cached under `hash`, if any. The caller must still check that its raw
    /// bytes are the canonical encoding of the candidate's labels.
    pub fn candidate(&self, hash: u64) -> Option<SeriesRef> {
        let s = self.shard(hash).read().get(&hash).cloned()?;
        s.is_live().then_some(s)
    }

    /// Caches `series` under `hash` unless a live series already holds it (a hash collision:
    /// the second series simply stays on the slow path). Returns whether it was inserted.
    pub fn insert(&self, hash: u64, series: SeriesRef) -> bool {
        let mut m = self.shard(hash).write();
        match m.get_mut(&hash) {
            Some(old) if old.is_live() => false,
            Some(old) => {
                *old = series;
                true
            }
            None => {
                m.insert(hash, series);
                self.len.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    /// Drops the entries of series storage no longer holds; returns how many.
    pub fn purge_dead(&self) -> usize {
        let mut removed = 0;
        for s in self.shards.iter() {
            let mut m = s.write();
            let before = m.len();
            m.retain(|_, v| v.is_live());
            removed += before - m.len();
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes: one map slot (key, fat pointer, control byte) per entry at the
    /// maps' 7/8 load factor. The series themselves belong to storage.
    pub fn heap_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.read().capacity() * 25).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    struct Fake {
        labels: Labels,
        live: AtomicBool,
    }

    impl SeriesHandle for Fake {
        fn labels(&self) -> &Labels {
            &self.labels
        }
        fn is_live(&self) -> bool {
            self.live.load(Ordering::Acquire)
        }
        fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
            self
        }
    }

    fn fake(name: &str) -> Arc<Fake> {
        Arc::new(Fake {
            labels: Labels::from_pairs([("__name__", name)]).unwrap(),
            live: AtomicBool::new(true),
        })
    }

    fn name(s: Option<SeriesRef>) -> Option<String> {
        s.map(|s| s.labels().metric_name().unwrap().to_string())
    }

    #[test]
    fn collisions_keep_the_live_entry_and_dead_entries_are_never_returned() {
        let c = SeriesCache::new();
        let (a, b) = (fake("a"), fake("b"));
        assert!(c.insert(7, a.clone()));
        assert!(!c.insert(7, b.clone()), "a live entry is not replaced");
        assert_eq!(name(c.candidate(7)), Some("a".into()));
        a.live.store(false, Ordering::Release);
        assert_eq!(name(c.candidate(7)), None, "dropped series are never returned");
        assert!(c.insert(7, b.clone()), "a dead entry is replaced");
        assert_eq!(name(c.candidate(7)), Some("b".into()));
        assert_eq!(c.len(), 1);
        assert!(c.insert(8, fake("c")));
        b.live.store(false, Ordering::Release);
        assert_eq!(c.purge_dead(), 1);
        assert_eq!(c.len(), 1);
        assert_eq!(name(c.candidate(8)), Some("c".into()));
    }

    #[test]
    fn hashes_are_seeded_per_cache_and_stable_within_one() {
        let (c1, c2) = (SeriesCache::new(), SeriesCache::new());
        assert_eq!(c1.hash(b"abc"), c1.hash(b"abc"));
        assert_ne!(c1.hash(b"abc"), c1.hash(b"abd"));
        assert_ne!(c1.hash(b"abc"), c2.hash(b"abc"), "seeds differ between caches");
    }
}
