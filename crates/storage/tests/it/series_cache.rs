//! The series cache from storage's side: a `Miss` caches the series it resolves to, a `Hit`
//! appends to the cached series, and a series garbage collected after a cut is never written
//! through its stale handle (the write goes to a fresh series with the same labels).

use model::{Appendable, Labels, Sample, SeriesKey, SeriesWrite, WriteBatch};
use storage::Db;

use crate::{dump, labels, opts, tenant};

fn write(db: &Db, l: &Labels, t: i64, key: SeriesKey) -> model::AppendOutcome {
    // A hit leaves its labels to the handle, as the remote write 1.0 decoder sends it.
    let labels = if matches!(key, SeriesKey::Hit(_)) { Labels::default() } else { l.clone() };
    let sw = SeriesWrite {
        labels,
        samples: [Sample { t, v: t as f64 }].into(),
        key,
        ..Default::default()
    };
    db.append(&tenant(), WriteBatch { series: vec![sw], metadata: vec![] }).unwrap()
}

#[test]
fn cached_series_are_used_only_while_the_head_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    let (a, b) = (labels("m", 1), labels("m", 2));
    let t = db.tenant(&tenant()).unwrap();
    assert_eq!(write(&db, &a, 1000, SeriesKey::Miss(42)).series_created, 1);
    assert_eq!(write(&db, &b, 1000, SeriesKey::None).series_created, 1);
    assert_eq!(t.series_cache.len(), 1, "only a Miss is cached");
    let hit = t.series_cache.get(42).expect("cached");
    assert_eq!(hit.labels(), &a);
    assert!(t.series_cache.get(43).is_none());

    // A hit appends to its series, even with the labels left to the handle.
    let o = write(&db, &a, 2000, SeriesKey::Hit(hit.clone()));
    assert_eq!((o.samples_written, o.series_created), (1, 0));
    // A rejection through a hit names the series by the handle's labels.
    let dup = SeriesWrite {
        samples: [Sample { t: 2000, v: -1.0 }].into(),
        key: SeriesKey::Hit(hit.clone()),
        ..Default::default()
    };
    let o = db.append(&tenant(), WriteBatch { series: vec![dup], metadata: vec![] }).unwrap();
    assert_eq!(o.samples_written, 0);
    assert_eq!(o.rejected.iter().map(|r| &r.labels).collect::<Vec<_>>(), vec![&a]);
    // A second Miss in the same bucket (equal low 64 bits of the identity) does not displace
    // a live series: `b` stays on the slow path.
    write(&db, &b, 2000, SeriesKey::Miss(42 | (1 << 64)));
    assert!(t.series_cache.get(42 | (1 << 64)).is_none());
    assert_eq!(t.series_cache.get(42).unwrap().labels(), &a);

    // The flush cuts everything into a block; garbage collection then drops the series.
    db.flush(Some(&tenant())).unwrap();
    assert!(!hit.is_live(), "dropped from the head");
    assert_eq!(t.series_cache.len(), 0, "purged after garbage collection");
    assert!(t.series_cache.get(42).is_none());

    // Re-sent through the stale handle: a new series with the same labels takes the sample.
    let o = write(&db, &a, 3000, SeriesKey::Hit(hit));
    assert_eq!((o.samples_written, o.series_created), (1, 1));
    let want = vec![
        (a.to_string(), vec![(1000, 1000.0), (2000, 2000.0), (3000, 3000.0)]),
        (b.to_string(), vec![(1000, 1000.0), (2000, 2000.0)]),
    ];
    assert_eq!(dump(&db, &[]), want);
    drop((t, db));
    let db = Db::open(opts(dir.path())).unwrap();
    assert_eq!(dump(&db, &[]), want, "after WAL replay");
}

#[test]
fn a_batch_creating_one_series_twice_creates_it_once_and_keeps_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    let (a, b, c) = (labels("m", 1), labels("m", 2), labels("m", 3));
    write(&db, &b, 500, SeriesKey::None);
    let sw = |l: &Labels, t: i64, key: SeriesKey| SeriesWrite {
        labels: l.clone(),
        samples: [Sample { t, v: t as f64 }].into(),
        key,
        ..Default::default()
    };
    // New `a` twice (the second write of it resolves to the series the first creates), the
    // existing `b`, and new `c` cached under its Miss identity.
    let batch = WriteBatch {
        series: vec![
            sw(&a, 1000, SeriesKey::None),
            sw(&b, 1000, SeriesKey::None),
            sw(&c, 1000, SeriesKey::Miss(7)),
            sw(&a, 2000, SeriesKey::Miss(9)),
        ],
        metadata: vec![],
    };
    let o = db.append(&tenant(), batch).unwrap();
    assert_eq!((o.series_created, o.samples_written), (2, 4));
    let t = db.tenant(&tenant()).unwrap();
    assert_eq!(t.series_cache.get(7).unwrap().labels(), &c);
    assert_eq!(t.series_cache.get(9).unwrap().labels(), &a);
    let want = vec![
        (a.to_string(), vec![(1000, 1000.0), (2000, 2000.0)]),
        (b.to_string(), vec![(500, 500.0), (1000, 1000.0)]),
        (c.to_string(), vec![(1000, 1000.0)]),
    ];
    assert_eq!(dump(&db, &[]), want);
    drop((t, db));
    let db = Db::open(opts(dir.path())).unwrap();
    assert_eq!(dump(&db, &[]), want, "after WAL replay");
}

/// A handle that is not storage's own (storage's caches never hand one out).
struct Foreign(Labels);

impl model::SeriesHandle for Foreign {
    fn labels(&self) -> &Labels {
        &self.0
    }
    fn is_live(&self) -> bool {
        true
    }
    fn as_any(self: std::sync::Arc<Self>) -> std::sync::Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

#[test]
fn a_foreign_handle_is_resolved_by_its_labels_and_without_them_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    let a = labels("m", 1);
    let h = || SeriesKey::Hit(std::sync::Arc::new(Foreign(a.clone())));
    let with = SeriesWrite {
        labels: a.clone(),
        samples: [Sample { t: 1000, v: 1.0 }].into(),
        key: h(),
        ..Default::default()
    };
    let o = db.append(&tenant(), WriteBatch { series: vec![with], metadata: vec![] }).unwrap();
    assert_eq!((o.samples_written, o.series_created), (1, 1));
    let without = SeriesWrite {
        samples: [Sample { t: 2000, v: 2.0 }].into(),
        key: h(),
        ..Default::default()
    };
    let e = db.append(&tenant(), WriteBatch { series: vec![without], metadata: vec![] });
    assert!(e.unwrap_err().to_string().contains("not this storage's"));
    assert_eq!(dump(&db, &[]), vec![(a.to_string(), vec![(1000, 1.0)])]);
}
