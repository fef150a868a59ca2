//! Head cutting, flush, compaction and retention, driven by an injected clock.

use std::sync::Arc;

use model::{Appendable, MatchOp, Matcher, Queryable, SelectHints};
use storage::block::BlockStore;
use storage::clock::ManualClock;
use storage::{Db, HOUR_MS};

use crate::{batch, dump, opts, tenant, value};

#[test]
fn flush_then_query_across_blocks_and_head_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        for i in 0..100 {
            db.append(&tenant(), batch(10, i * 60_000)).unwrap();
        }
        let blocks = db.flush(Some(&tenant())).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].num_samples, 1000);
        for i in 100..150 {
            db.append(&tenant(), batch(10, i * 60_000)).unwrap();
        }
    }
    let db = Db::open(opts(dir.path())).unwrap();
    let all = dump(&db, &[Matcher::new(MatchOp::RegexMatch, "instance", "host-(1|2)").unwrap()]);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].1.len(), 150, "50 from the head after replay, 100 from the block");
    assert_eq!(all[0].1[99], (99 * 60_000, value(1, 99 * 60_000)));
    let names = db.label_names(&tenant(), SelectHints::all(), &[]).unwrap();
    assert_eq!(names, vec!["__name__", "instance", "job"]);
    let vals = db
        .label_values(
            &tenant(),
            "instance",
            SelectHints::all(),
            &[Matcher::eq("instance", "host-3")],
        )
        .unwrap();
    assert_eq!(vals, vec!["host-3"]);
    // The WAL was checkpointed at the flush: only what came after is left to replay.
    let t = db.tenant(&tenant()).unwrap();
    assert!(t.stats.replayed_records.load(std::sync::atomic::Ordering::Relaxed) <= 52);
}

#[test]
fn head_cuts_compacts_and_retention_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let store = BlockStore::local(&dir.path().join("blocks")).unwrap();
    let db = Db::open_with(opts(dir.path()), store, clock.clone()).unwrap();
    // 13 hours of data at 1-minute resolution.
    for i in 0..(13 * 60) {
        db.append(&tenant(), batch(3, i * 60_000)).unwrap();
        if i % 30 == 0 {
            db.maintain().unwrap();
        }
    }
    db.maintain().unwrap();
    let t = db.tenant(&tenant()).unwrap();
    let blocks = t.blocks();
    assert!(blocks.iter().any(|b| b.level > 1), "compacted: {blocks:?}");
    assert!(blocks.windows(2).all(|w| w[0].max_time < w[1].min_time), "no overlaps left");
    let all = dump(&db, &[Matcher::eq("instance", "host-0")]);
    assert_eq!(all[0].1.len(), 13 * 60, "every sample still readable once");
    // Head chunk files whose chunks were all cut into blocks are deleted.
    let files = t.head.chunk_disk().unwrap().files();
    assert!(files <= 3, "{files} head chunk files kept");
    // Retention: 15 days later, everything in blocks is gone, the head remains.
    let generation = db.change_generation(&tenant());
    db.maintain().unwrap();
    assert_eq!(db.min_time_written_since(&tenant(), generation), None, "nothing deleted yet");
    clock.set(16 * 24 * HOUR_MS);
    db.maintain().unwrap();
    assert!(t.blocks().is_empty());
    // The deletion is in the change log from the oldest block's start, so results caches
    // drop extents computed from the deleted blocks.
    assert_eq!(db.min_time_written_since(&tenant(), generation), Some(0));
    let left = dump(&db, &[Matcher::eq("instance", "host-0")]);
    assert!(!left.is_empty() && left[0].1.len() < 13 * 60);
}

#[test]
fn late_samples_after_flush_make_an_overlapping_block_that_compaction_merges() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    for i in 0..30 {
        db.append(&tenant(), batch(2, i * 60_000)).unwrap();
    }
    db.flush(None).unwrap();
    // 5 minutes late, within the out-of-order window.
    let out = db.append(&tenant(), batch(2, 25 * 60_000 + 30_000)).unwrap();
    assert_eq!(out.samples_written, 2);
    db.flush(None).unwrap();
    let t = db.tenant(&tenant()).unwrap();
    assert_eq!(t.blocks().len(), 2);
    assert_eq!(t.compact().unwrap(), 1);
    assert_eq!(t.blocks().len(), 1);
    let all = dump(&db, &[Matcher::eq("instance", "host-1")]);
    assert_eq!(all[0].1.len(), 31);
}

#[test]
fn flush_releases_head_chunk_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    for i in 0..500 {
        db.append(&tenant(), batch(5, i * 15_000)).unwrap();
    }
    db.flush(None).unwrap();
    let hc = dir.path().join("head_chunks").join("acme");
    let left: Vec<_> = std::fs::read_dir(&hc)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name(), e.metadata().unwrap().len()))
        .collect();
    assert!(
        left.iter().map(|f| f.1).sum::<u64>() < 2000,
        "head chunk files left after flush: {left:?}"
    );
}
