//! Deletion by tombstone: hidden at once, through restarts (WAL replay must not bring data
//! back), through head cuts and compaction, and dropped once nothing it covers is left.

use model::{Appendable, Matcher};
use storage::Db;

use crate::{batch, dump, opts, tenant};

fn instances(db: &Db) -> Vec<(String, usize)> {
    dump(db, &[Matcher::eq("job", "node")])
        .into_iter()
        .map(|(l, s)| {
            (
                l.split("instance=\"")
                    .nth(1)
                    .unwrap_or("")
                    .split('"')
                    .next()
                    .unwrap_or("")
                    .to_string(),
                s.len(),
            )
        })
        .collect()
}

/// (when, expected samples per instance) after deleting host-1 in minutes [10, 19] and all
/// of host-2.
fn check(db: &Db, when: &str) {
    assert_eq!(instances(db), vec![("host-0".into(), 60), ("host-1".into(), 50)], "{when}");
}

#[test]
fn deleted_series_stay_deleted_across_restart_flush_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        // Half the data in a block, half in the head (and the WAL).
        for i in 0..30 {
            db.append(&tenant(), batch(3, i * 60_000)).unwrap();
        }
        db.flush(Some(&tenant())).unwrap();
        for i in 30..60 {
            db.append(&tenant(), batch(3, i * 60_000)).unwrap();
        }
        let before = db.change_generation(&tenant());
        db.delete_series(
            &tenant(),
            &[Matcher::eq("instance", "host-1")],
            10 * 60_000,
            19 * 60_000 + 1,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        db.delete_series(&tenant(), &[Matcher::eq("instance", "host-2")], 0, i64::MAX).unwrap();
        check(&db, "right after the deletes");
        let t = db.tenant(&tenant()).unwrap();
        assert_eq!(t.tombstones.len(), 2);
        // Both deletions are in the change log results caches consult.
        assert_eq!(db.min_time_written_since(&tenant(), before), Some(0));
        assert_eq!(db.min_time_written_since(&tenant(), before + 1), Some(0));
        assert_eq!(db.change_generation(&tenant()), before + 2);
    }
    {
        let db = Db::open(opts(dir.path())).unwrap();
        check(&db, "after a restart (WAL replay)");
        db.flush(Some(&tenant())).unwrap();
        check(&db, "after flushing the head");
        db.tenant(&tenant()).unwrap().compact().unwrap();
        check(&db, "after compaction");
        let t = db.tenant(&tenant()).unwrap();
        assert_eq!(t.tombstones.len(), 0, "the blocks were rewritten and the head is empty");
        let samples: u64 = t.blocks().iter().map(|b| b.num_samples).sum();
        assert_eq!(samples, 110, "deleted samples are gone from the blocks, not just hidden");
    }
    let db = Db::open(opts(dir.path())).unwrap();
    check(&db, "after a restart without tombstones");
    // Data written after the deletion, past the deleted range, is visible.
    db.append(&tenant(), batch(3, 60 * 60_000)).unwrap();
    assert_eq!(instances(&db).len(), 3);
}

#[test]
fn snapshot_is_a_data_dir_that_later_writes_do_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    let db = Db::open(opts(&dir.path().join("data"))).unwrap();
    for i in 0..30 {
        db.append(&tenant(), batch(2, i * 60_000)).unwrap();
    }
    db.delete_series(&tenant(), &[Matcher::eq("instance", "host-1")], 0, 5 * 60_000).unwrap();
    assert_eq!(db.snapshot(&tenant(), &snap, false).unwrap(), 1);
    for i in 30..40 {
        db.append(&tenant(), batch(2, i * 60_000)).unwrap();
    }
    db.flush(Some(&tenant())).unwrap();
    let copy = Db::open(opts(&snap)).unwrap();
    let got = dump(&copy, &[Matcher::eq("job", "node")]);
    assert_eq!(got.iter().map(|s| s.1.len()).collect::<Vec<_>>(), vec![30, 24]);
    // skip_head: only what is already in blocks.
    let snap2 = dir.path().join("snap2");
    for i in 40..45 {
        db.append(&tenant(), batch(2, i * 60_000)).unwrap();
    }
    db.snapshot(&tenant(), &snap2, true).unwrap();
    let copy2 = Db::open(opts(&snap2)).unwrap();
    let got = dump(&copy2, &[Matcher::eq("job", "node")]);
    assert_eq!(got.iter().map(|s| s.1.len()).collect::<Vec<_>>(), vec![40, 34]);
}
