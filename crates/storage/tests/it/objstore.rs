//! Blocks in an object store rather than the local directory (object_store's `InMemory` twin,
//! kept across "restarts" like a bucket): cuts, flush, compaction, delete_series, retention,
//! snapshots and the WAL checkpoint all work through it, nothing is written to
//! `data_dir/blocks`, and the requests a query makes are counted.

use std::sync::Arc;

use futures::TryStreamExt;
use model::{Appendable, Matcher};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use storage::block::BlockStore;
use storage::clock::ManualClock;
use storage::{Db, HOUR_MS};

use crate::{batch, dump, opts, tenant};

fn keys(mem: &InMemory, prefix: &str) -> Vec<String> {
    let p = ObjPath::from(prefix);
    let list = futures::executor::block_on(mem.list(Some(&p)).try_collect::<Vec<_>>()).unwrap();
    let mut out: Vec<String> = list.into_iter().map(|m| m.location.to_string()).collect();
    out.sort();
    out
}

fn open(dir: &std::path::Path, mem: &Arc<InMemory>, clock: &Arc<ManualClock>) -> Db {
    Db::open_with(opts(dir), BlockStore::new(mem.clone()), clock.clone()).unwrap()
}

#[test]
fn lifecycle_over_an_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(0));
    let host = |i: u32| [Matcher::eq("instance", &format!("host-{i}"))];
    {
        let db = open(dir.path(), &mem, &clock);
        // 7 hours at 1-minute resolution: head cuts every 2h; the first three compact into one.
        for i in 0..(7 * 60) {
            db.append(&tenant(), batch(3, i * 60_000)).unwrap();
            if i % 30 == 0 {
                db.maintain().unwrap();
            }
        }
        db.flush(Some(&tenant())).unwrap();
        let t = db.tenant(&tenant()).unwrap();
        t.compact().unwrap();
        assert!(t.blocks().iter().any(|b| b.level > 1), "compacted: {:?}", t.blocks());
        db.delete_series(&tenant(), &host(1), 60 * 60_000, 120 * 60_000).unwrap();
        assert_eq!(dump(&db, &host(1))[0].1.len(), 7 * 60 - 61);
    }
    // Every block is in the store, none in the data directory.
    assert!(!dir.path().join("blocks").exists());
    let objects = keys(&mem, "acme");
    assert!(objects.iter().any(|k| k.ends_with("/samples.parquet")), "{objects:?}");
    for k in &objects {
        let parts: Vec<&str> = k.split('/').collect();
        assert_eq!(parts.len(), 3, "<tenant>/<ulid>/<file>: {k}");
        assert!(
            ["meta.json", "series.parquet", "index.parquet", "samples.parquet"].contains(&parts[2]),
            "{k}"
        );
    }

    // A restart: the WAL was checkpointed at the flush, so the data comes from the store.
    let db = open(dir.path(), &mem, &clock);
    let t = db.tenant(&tenant()).unwrap();
    let n_blocks = t.blocks().len() as u64;
    let opened = db.store().stats();
    assert_eq!(opened.gets, 3 * n_blocks, "meta.json, series.parquet, index.parquet per block");
    assert_eq!(dump(&db, &host(0))[0].1.len(), 7 * 60);
    assert_eq!(dump(&db, &host(1))[0].1.len(), 7 * 60 - 61, "the tombstone survived");
    let first = db.store().stats();
    assert_eq!(first.gets, 4 * n_blocks, "samples.parquet fetched once per block");
    dump(&db, &host(0));
    dump(&db, &[]);
    assert_eq!(db.store().stats(), first, "queries over loaded blocks make no request");

    // Compaction rewrites the blocks holding deleted data, then drops the tombstone.
    t.compact().unwrap();
    assert_eq!(t.tombstones.len(), 0);
    let samples: u64 = t.blocks().iter().map(|b| b.num_samples).sum();
    assert_eq!(samples, 3 * 7 * 60 - 61, "deleted samples are gone from the store");

    // A snapshot is a local data directory another promlake can serve.
    let snap = dir.path().join("snap");
    assert_eq!(db.snapshot(&tenant(), &snap, true).unwrap(), t.blocks().len());
    let copy = Db::open(opts(&snap)).unwrap();
    assert_eq!(dump(&copy, &[]), dump(&db, &[]));

    // Retention deletes the blocks' objects too.
    clock.set(16 * 24 * HOUR_MS);
    db.maintain().unwrap();
    assert!(t.blocks().is_empty());
    assert_eq!(keys(&mem, "acme"), Vec::<String>::new());
}
