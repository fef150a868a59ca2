//! Metadata (WAL kind 4) and exemplars (WAL kind 5): counted on append, logged only when new,
//! replayed on reopen, carried through a checkpoint, and absent from WALs that predate them.

use std::sync::atomic::Ordering;

use model::{Appendable, Exemplar, Labels, Matcher, MetricMetadata, MetricType};
use storage::Db;

use crate::{batch, opts, tenant};

fn meta(family: &str, kind: MetricType, help: &str) -> MetricMetadata {
    MetricMetadata { metric_family: family.into(), kind, help: help.into(), unit: String::new() }
}

fn ex(trace: &str, t: i64, v: f64) -> Exemplar {
    Exemplar { labels: Labels::from_pairs([("trace_id", trace)]).unwrap(), t, v }
}

/// `family type help` per entry and `series trace@t=v` per exemplar, as the tenant holds them.
fn state(db: &Db) -> (Vec<String>, Vec<String>) {
    let t = db.tenant(&tenant()).unwrap();
    let meta = t
        .metadata
        .list(None, None, None)
        .into_iter()
        .flat_map(|(f, es)| {
            es.into_iter().map(move |e| format!("{f} {} {:?}", e.kind.as_str(), e.help))
        })
        .collect();
    let all = vec![vec![Matcher::eq("job", "node")]];
    let exemplars = t
        .exemplars
        .select(&all, i64::MIN, i64::MAX)
        .into_iter()
        .flat_map(|(l, es)| {
            es.into_iter().map(move |e| format!("{l} {}@{}={}", e.labels, e.t, e.v))
        })
        .collect();
    (meta, exemplars)
}

#[test]
fn metadata_and_exemplars_survive_replay_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let expected = (
        vec![
            "node_cpu_seconds_total counter \"Seconds the CPUs spent.\"".to_string(),
            "node_load1 gauge \"1m load average.\"".to_string(),
        ],
        vec![
            "node_cpu_seconds_total{instance=\"host-0\", job=\"node\"} {trace_id=\"a\"}@1000=1"
                .to_string(),
            "node_cpu_seconds_total{instance=\"host-0\", job=\"node\"} {trace_id=\"b\"}@2000=2"
                .to_string(),
        ],
    );
    {
        let db = Db::open(opts(dir.path())).unwrap();
        let mut b = batch(2, 1000);
        b.metadata = vec![
            meta("node_cpu_seconds_total", MetricType::Counter, "Seconds the CPUs spent."),
            meta("node_load1", MetricType::Gauge, "1m load average."),
        ];
        b.series[0].exemplars = vec![ex("a", 1000, 1.0), ex("b", 2000, 2.0)];
        let out = db.append(&tenant(), b.clone()).unwrap();
        assert_eq!(out.exemplars_written, 2);
        // The same write again (a sender's retry): nothing new to log, no exemplar counted.
        let t = db.tenant(&tenant()).unwrap();
        let before = t.wal().bytes_written.load(Ordering::Relaxed);
        b.series.iter_mut().for_each(|s| s.samples.clear());
        let out = db.append(&tenant(), b).unwrap();
        assert_eq!(out.exemplars_written, 0);
        assert_eq!(t.wal().bytes_written.load(Ordering::Relaxed), before, "no record written");
        assert_eq!(state(&db), expected);
    }
    // WAL replay.
    let db = Db::open(opts(dir.path())).unwrap();
    assert_eq!(state(&db), expected);
    // A flush checkpoints the head and deletes the segments holding kinds 4 and 5.
    db.flush(None).unwrap();
    drop(db);
    let wal_dir = dir.path().join("wal").join(tenant().as_str());
    let segments = storage::wal::list_segments(&wal_dir).unwrap();
    assert_eq!(storage::wal::list_checkpoints(&wal_dir).unwrap().len(), 1);
    let db = Db::open(opts(dir.path())).unwrap();
    assert_eq!(state(&db), expected, "carried by the checkpoint (segments now {segments:?})");
    // And a later write of a new help text adds an entry (newest first).
    let mut b = batch(1, 5000);
    b.metadata = vec![meta("node_load1", MetricType::Gauge, "Load, 1m.")];
    db.append(&tenant(), b).unwrap();
    drop(db);
    let db = Db::open(opts(dir.path())).unwrap();
    let t = db.tenant(&tenant()).unwrap();
    let helps: Vec<String> = t.metadata.list(Some("node_load1"), None, None)[0]
        .1
        .iter()
        .map(|e| e.help.clone())
        .collect();
    assert_eq!(helps, ["Load, 1m.", "1m load average."]);
}
