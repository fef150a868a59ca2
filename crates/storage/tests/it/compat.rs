//! Files written by format version 1 (checked in under tests/data/v1) and version 2 (block
//! `histograms.parquet`, WAL Histograms records; tests/data/v2) and WALs with Metadata and
//! Exemplars records (kinds 4, 5; tests/data/wal-kinds-4-5) must keep opening.
//! Regenerate only when adding a new version, one at a time (never with --include-ignored, which
//! rewrites v1 too): `cargo test -p storage --test it -- --ignored write_v2_fixture`.

use model::{Appendable, Matcher, Queryable};
use storage::Db;

use crate::{batch, dump, opts, tenant, value};

fn fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1")
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
#[ignore = "writes the checked-in fixture"]
fn write_v1_fixture() {
    let dir = fixture();
    let _ = std::fs::remove_dir_all(&dir);
    let db = Db::open(opts(&dir)).unwrap();
    for i in 0..20 {
        db.append(&tenant(), batch(4, i * 15_000)).unwrap();
    }
    db.flush(None).unwrap();
    for i in 20..30 {
        db.append(&tenant(), batch(4, i * 15_000)).unwrap();
    }
}

#[test]
fn v1_wal_and_block_still_open() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), dir.path());
    let db = Db::open(opts(dir.path())).unwrap();
    let t = db.tenant(&tenant()).unwrap();
    assert_eq!(t.blocks().len(), 1, "one block in the fixture");
    let all = dump(&db, &[Matcher::eq("job", "node")]);
    assert_eq!(all.len(), 4);
    for (i, (_, samples)) in all.iter().enumerate() {
        let want: Vec<(i64, f64)> =
            (0..30).map(|k| (k * 15_000, value(i as u32, k * 15_000))).collect();
        assert_eq!(samples, &want);
    }
}

fn fixture_v2() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v2")
}

/// The histogram the v2 fixture holds for (series, t): custom buckets for odd series.
fn hist_v2(series: u32, t: i64) -> model::FloatHistogram {
    let k = (t / 15_000) as f64;
    let custom = series % 2 == 1;
    model::FloatHistogram {
        counter_reset_hint: if k == 0.0 { 1 } else { 2 },
        schema: if custom { -53 } else { 0 },
        zero_threshold: if custom { 0.0 } else { 0.001 },
        zero_count: if custom { 0.0 } else { k },
        count: 4.0 * k,
        sum: 1.25 * k + series as f64,
        positive_spans: vec![model::Span { offset: 1, length: 2 }],
        negative_spans: if custom { vec![] } else { vec![model::Span { offset: 0, length: 1 }] },
        positive_buckets: vec![k, 2.0 * k],
        negative_buckets: if custom { vec![] } else { vec![k] },
        custom_values: if custom { vec![0.5, 1.0, 2.5] } else { vec![] },
    }
}

/// Floats for series 0..4 and histograms for series 4..6 (`h_*`), at `t`.
fn batch_v2(t: i64) -> model::WriteBatch {
    let mut b = batch(4, t);
    for i in 4..6 {
        b.series.push(model::SeriesWrite {
            labels: crate::labels("h_request_duration_seconds", i),
            histograms: vec![(t, hist_v2(i, t))],
            ..Default::default()
        });
    }
    b
}

#[test]
#[ignore = "writes the checked-in fixture"]
fn write_v2_fixture() {
    let dir = fixture_v2();
    let _ = std::fs::remove_dir_all(&dir);
    let db = Db::open(opts(&dir)).unwrap();
    for i in 0..20 {
        db.append(&tenant(), batch_v2(i * 15_000)).unwrap();
    }
    db.flush(None).unwrap();
    for i in 20..30 {
        db.append(&tenant(), batch_v2(i * 15_000)).unwrap();
    }
}

#[test]
fn v2_wal_and_block_with_histograms_still_open() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture_v2(), dir.path());
    let db = Db::open(opts(dir.path())).unwrap();
    let t = db.tenant(&tenant()).unwrap();
    let blocks = t.blocks();
    assert_eq!((blocks.len(), blocks[0].version, blocks[0].num_histograms), (1, 2, 40));
    let all: Vec<model::Series> = db
        .select(&tenant(), model::SelectHints::all(), &[Matcher::eq("job", "node")])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(all.len(), 6);
    // Histogram series (first in label order): 20 samples from the block, 10 from the WAL.
    for (n, s) in all[..2].iter().enumerate() {
        let series = 4 + n as u32;
        assert!(s.samples.is_empty());
        let want: Vec<(i64, model::FloatHistogram)> =
            (0..30).map(|k| (k * 15_000, hist_v2(series, k * 15_000))).collect();
        let got: Vec<(i64, model::FloatHistogram)> =
            s.histograms.iter().map(|h| (h.t, (*h.h).clone())).collect();
        assert_eq!(got, want, "{}", s.labels);
    }
    for (n, s) in all[2..].iter().enumerate() {
        assert!(s.histograms.is_empty());
        let want: Vec<(i64, f64)> =
            (0..30).map(|k| (k * 15_000, value(n as u32, k * 15_000))).collect();
        let got: Vec<(i64, f64)> = s.samples.iter().map(|x| (x.t, x.v)).collect();
        assert_eq!(got, want, "{}", s.labels);
    }
}

fn fixture_meta() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wal-kinds-4-5")
}

/// Floats for series 0..2, metadata of `node_cpu_seconds_total` (help text varying with `i`)
/// and one exemplar on series 0, at `i * 15s`.
fn batch_meta(i: i64) -> model::WriteBatch {
    let t = i * 15_000;
    let mut b = batch(2, t);
    b.metadata = vec![model::MetricMetadata {
        metric_family: "node_cpu_seconds_total".into(),
        kind: model::MetricType::Counter,
        help: format!("Seconds the CPUs spent (v{}).", i / 10),
        unit: "seconds".into(),
    }];
    b.series[0].exemplars = vec![model::Exemplar {
        labels: model::Labels::from_pairs([("trace_id", format!("{i:04x}"))]).unwrap(),
        t,
        v: i as f64 / 4.0,
    }];
    b
}

#[test]
#[ignore = "writes the checked-in fixture"]
fn write_meta_fixture() {
    let dir = fixture_meta();
    let _ = std::fs::remove_dir_all(&dir);
    let db = Db::open(opts(&dir)).unwrap();
    for i in 0..20 {
        db.append(&tenant(), batch_meta(i)).unwrap();
    }
    // The checkpoint carries kinds 4 and 5; the segment after it holds more of them.
    db.flush(None).unwrap();
    for i in 20..30 {
        db.append(&tenant(), batch_meta(i)).unwrap();
    }
    drop(db);
    let _ = std::fs::remove_dir_all(dir.join("blocks"));
    let _ = std::fs::remove_dir_all(dir.join("head_chunks"));
}

#[test]
fn wal_with_metadata_and_exemplars_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture_meta(), dir.path());
    let db = Db::open(opts(dir.path())).unwrap();
    let t = db.tenant(&tenant()).unwrap();
    assert_eq!(t.stats.wal_corruptions.load(std::sync::atomic::Ordering::Relaxed), 0);
    let helps: Vec<String> = t.metadata.list(None, None, None)[0]
        .1
        .iter()
        .map(|e| format!("{} {:?} {}", e.kind.as_str(), e.help, e.unit))
        .collect();
    assert_eq!(
        helps,
        [
            "counter \"Seconds the CPUs spent (v2).\" seconds",
            "counter \"Seconds the CPUs spent (v1).\" seconds",
            "counter \"Seconds the CPUs spent (v0).\" seconds",
        ]
    );
    let found = t.exemplars.select(&[vec![Matcher::eq("job", "node")]], i64::MIN, i64::MAX);
    assert_eq!(found.len(), 1);
    let got: Vec<(String, i64, f64)> =
        found[0].1.iter().map(|e| (e.labels.to_string(), e.t, e.v)).collect();
    let want: Vec<(String, i64, f64)> = (0..30)
        .map(|i| (format!("{{trace_id=\"{i:04x}\"}}"), i * 15_000, i as f64 / 4.0))
        .collect();
    assert_eq!(got, want);
}
