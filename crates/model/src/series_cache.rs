//! The seam type of the ingest fast path: a per-tenant cache from the *identity* of a series'
//! labels as sent (a 128-bit seeded hash of their canonical wire bytes) to storage's handle on
//! that series, so a decoder can resolve a known series without building, interning,
//! validating or even reading a label set.
//!
//! Storage owns one cache per tenant and fills it; decoders (wire) read it. The cache holds no
//! bytes: a decoder hashes a series' raw label bytes once (xxh3-128 under a per-cache random
//! seed) and a hit is an entry with the same 128 bits. Equal identities are trusted to mean
//! equal bytes (see ARCHITECTURE.md, "Series cache invariants", for why that is safe: an
//! accidental collision needs on the order of 2^64 series, and even a constructed one can only
//! send a tenant's samples to another series of the same tenant). Invariants, each tested in
//! `model`, `wire` and `storage`:
//! - a hit needs all 128 bits equal: entries are bucketed by the low 64, and an entry whose
//!   high 64 differ is a miss (the second series stays on the slow path);
//! - a candidate is only ever returned for a series storage still holds ([`SeriesHandle::is_live`]
//!   is checked here and again by storage under its append gate), so a stale entry can never
//!   send samples to a dropped or different series;
//! - at most one entry per series (only canonical bytes are cached, and a series has one
//!   canonical encoding), so the cache is bounded by the head's series count; entries of
//!   dropped series are purged by [`SeriesCache::purge_dead`];
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
    /// The cache did not know the series; its raw bytes were canonical and have this identity
    /// ([`SeriesCache::identity`]). Storage caches the series it resolves for these labels
    /// under it.
    Miss(u128),
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

/// Keys are already the low 64 bits of an xxh3 identity: the maps use them as they are.
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

/// One cached series: the high 64 bits of its identity (the map key holds the low 64).
struct Entry {
    high: u64,
    series: SeriesRef,
}

type Shard = RwLock<HashMap<u64, Entry, BuildHasherDefault<IdentityHasher>>>;

/// Identity of canonical label bytes → series, sharded for low contention between writers.
pub struct SeriesCache {
    seed: u64,
    shards: Box<[Shard]>,
    len: AtomicUsize,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache {
            // A fresh random seed per cache (foldhash seeds its states from the process' random
            // source), so identities cannot be precomputed from outside the process.
            seed: foldhash::quality::RandomState::default().hash_one(0x5e71e5_u64),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::default())).collect(),
            len: AtomicUsize::new(0),
        }
    }
}

impl SeriesCache {
    pub fn new() -> SeriesCache {
        SeriesCache::default()
    }

    /// The identity of raw label bytes: their xxh3-128 hash under this cache's random seed.
    pub fn identity(&self, raw: &[u8]) -> u128 {
        xxhash_rust::xxh3::xxh3_128_with_seed(raw, self.seed)
    }

    /// (map key, high half) of an identity.
    fn split(id: u128) -> (u64, u64) {
        (id as u64, (id >> 64) as u64)
    }

    fn shard(&self, key: u64) -> &Shard {
        &self.shards[Self::shard_index(key)]
    }

    fn shard_index(key: u64) -> usize {
        // Middle bits: the map itself uses the low bits for buckets and the top ones as tags.
        ((key >> 32) as usize) % SHARDS
    }

    /// The live series cached under exactly this identity (all 128 bits), if any.
    pub fn get(&self, id: u128) -> Option<SeriesRef> {
        let (key, high) = Self::split(id);
        let s = {
            let m = self.shard(key).read();
            let e = m.get(&key).filter(|e| e.high == high)?;
            e.series.clone()
        };
        s.is_live().then_some(s)
    }

    /// Looks up a whole request's identities at once: `out` gets, in order, what [`get`]
    /// would return for each. Faster than one `get` per series because nothing serialises the
    /// lookups' cache misses: every shard's read lock is taken once for the batch (not once
    /// per series: a lock is an atomic read-modify-write, and the CPU completes every load
    /// before one), all map slots are probed first (independent loads, which the CPU
    /// overlaps), the series found are prefetched, and only then are their handles cloned
    /// (each clone another atomic). Writers to the cache wait for the batch (a few hundred
    /// microseconds for thousands of series); they take one shard at a time, and the batch
    /// takes its read locks in shard order holding nothing else, so none can deadlock.
    ///
    /// [`get`]: SeriesCache::get
    pub fn get_many(&self, ids: &[u128], out: &mut Vec<Option<SeriesRef>>) {
        let guards: Vec<_> = self.shards.iter().map(|s| s.read()).collect();
        let found: Vec<Option<&SeriesRef>> = ids
            .iter()
            .map(|&id| {
                let (key, high) = Self::split(id);
                let m = &guards[Self::shard_index(key)];
                m.get(&key).filter(|e| e.high == high).map(|e| &e.series)
            })
            .collect();
        for s in found.iter().flatten() {
            crate::prefetch(Arc::as_ptr(s));
        }
        out.reserve(ids.len());
        out.extend(found.into_iter().map(|s| s.filter(|s| s.is_live()).cloned()));
    }

    /// Caches `series` under `id` unless a live series already holds its bucket (the low 64
    /// bits; the second series simply stays on the slow path). Returns whether it was inserted.
    pub fn insert(&self, id: u128, series: SeriesRef) -> bool {
        let (key, high) = Self::split(id);
        let mut m = self.shard(key).write();
        match m.get_mut(&key) {
            Some(old) if old.series.is_live() => false,
            Some(old) => {
                *old = Entry { high, series };
                true
            }
            None => {
                m.insert(key, Entry { high, series });
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
            m.retain(|_, e| e.series.is_live());
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

    /// Approximate heap bytes: one map slot (key, high half, fat pointer, control byte) per
    /// entry at the maps' 7/8 load factor. The series themselves belong to storage.
    pub fn heap_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.read().capacity() * 33).sum()
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
    fn a_hit_needs_all_128_bits_and_a_live_series() {
        let c = SeriesCache::new();
        let (a, b) = (fake("a"), fake("b"));
        let id = 7u128 | (1 << 64);
        let same_bucket = 7u128 | (2 << 64);
        assert!(c.insert(id, a.clone()));
        assert_eq!(name(c.get(id)), Some("a".into()));
        assert_eq!(name(c.get(same_bucket)), None, "equal low 64 bits, other high 64: a miss");
        assert_eq!(name(c.get(7)), None);
        assert!(!c.insert(same_bucket, b.clone()), "a live entry is not replaced");
        assert_eq!(name(c.get(same_bucket)), None, "the second series stays on the slow path");
        assert_eq!(name(c.get(id)), Some("a".into()));
        a.live.store(false, Ordering::Release);
        assert_eq!(name(c.get(id)), None, "dropped series are never returned");
        assert!(c.insert(same_bucket, b.clone()), "a dead entry is replaced");
        assert_eq!(name(c.get(same_bucket)), Some("b".into()));
        assert_eq!(name(c.get(id)), None, "the replaced entry's identity no longer hits");
        assert_eq!(c.len(), 1);
        assert!(c.insert(8, fake("c")));
        b.live.store(false, Ordering::Release);
        assert_eq!(c.purge_dead(), 1);
        assert_eq!(c.len(), 1);
        assert_eq!(name(c.get(8)), Some("c".into()));
    }

    /// `get_many` answers, in order, exactly what `get` answers for each identity: hits, a
    /// bucket with other high bits, absent identities, dead series, repeats, and many shards.
    #[test]
    fn get_many_is_get_for_each() {
        let c = SeriesCache::new();
        let series: Vec<Arc<Fake>> = (0..300).map(|i| fake(&format!("m{i}"))).collect();
        let ids: Vec<u128> = (0..300u128).map(|i| c.identity(&i.to_le_bytes())).collect();
        for (id, s) in ids.iter().zip(&series) {
            assert!(c.insert(*id, s.clone()));
        }
        series[7].live.store(false, Ordering::Release);
        let mut asked = ids.clone();
        asked.extend([ids[3] ^ (1 << 64), 12345, ids[0], ids[7], ids[299]]);
        let mut got = Vec::new();
        c.get_many(&asked, &mut got);
        assert_eq!(got.len(), asked.len());
        for (id, g) in asked.iter().zip(got) {
            assert_eq!(name(g), name(c.get(*id)), "identity {id:#x}");
        }
        let mut got = Vec::new();
        c.get_many(&asked, &mut got);
        assert_eq!(
            got.iter().filter(|g| g.is_some()).count(),
            299 + 2,
            "all but the dead, plus 2 repeats"
        );
        assert!(got[7].is_none() && got[300].is_none() && got[301].is_none());
    }

    #[test]
    fn identities_are_seeded_per_cache_and_stable_within_one() {
        let (c1, c2) = (SeriesCache::new(), SeriesCache::new());
        assert_eq!(c1.identity(b"abc"), c1.identity(b"abc"));
        assert_ne!(c1.identity(b"abc"), c1.identity(b"abd"));
        assert_ne!(c1.identity(b"abc"), c2.identity(b"abc"), "seeds differ between caches");
        let (lo, hi) = SeriesCache::split(c1.identity(b"abc"));
        assert!(lo != 0 && hi != 0, "both halves carry hash bits");
    }
}
