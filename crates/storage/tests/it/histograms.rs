//! Native histograms end to end: append rules, WAL replay and checkpoints, flush into blocks,
//! compaction. Each case is a small script run by [`check`]:
//!
//! - `h <t> <n>`: append to the one series the histogram `hist(n)` at time `t` (ms);
//! - `f <t> <v>`: append a float sample;
//! - `flush`, `compact`, `reopen` (drop the db and open it again from disk);
//! - `blocks`: print the number of blocks;
//! - `cut`: cut whole block ranges out of the head as the background task does (`maybe_cut`),
//!   which checkpoints what the head keeps;
//!
//! Appends print `ok`, `noop` or the rejection; the script ends with `=` and the series as
//! select returns it (`f t=v` and `h t=#n`), plus the number of blocks.

use model::{
    Appendable, FloatHistogram, Matcher, Queryable, RejectReason, Sample, SelectHints, SeriesWrite,
    Span, WriteBatch,
};
use storage::{Db, Options};

use crate::{labels, tenant};

/// A distinct, fully populated histogram per `n` (custom buckets for odd `n`).
fn hist(n: u32) -> FloatHistogram {
    let f = n as f64;
    FloatHistogram {
        counter_reset_hint: (n % 4) as u8,
        schema: if n % 2 == 1 { -53 } else { 3 },
        zero_threshold: if n % 2 == 1 { 0.0 } else { 0.001 },
        zero_count: if n % 2 == 1 { 0.0 } else { 1.0 },
        count: f + 3.0,
        sum: f * 1.5,
        positive_spans: vec![Span { offset: -1, length: 2 }],
        negative_spans: if n % 2 == 1 { vec![] } else { vec![Span { offset: 2, length: 1 }] },
        positive_buckets: vec![f, 1.0],
        negative_buckets: if n % 2 == 1 { vec![] } else { vec![1.0] },
        custom_values: if n % 2 == 1 { vec![0.5, f] } else { vec![] },
    }
}

fn hist_id(h: &FloatHistogram) -> String {
    (0..64).find(|n| hist(*n) == *h).map_or_else(|| format!("{h:?}"), |n| format!("#{n}"))
}

fn options(dir: &std::path::Path) -> Options {
    let mut o = Options::new(dir);
    o.wal.fsync = false;
    o
}

fn check(script: &str, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Some(Db::open(options(dir.path())).unwrap());
    let l = labels("req_duration_seconds", 1);
    let mut out = Vec::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let d = db.as_ref().unwrap();
        match words.as_slice() {
            [kind @ ("h" | "f"), t, x] => {
                let t: i64 = t.parse().unwrap();
                let mut sw = SeriesWrite { labels: l.clone(), ..Default::default() };
                if *kind == "h" {
                    sw.histograms.push((t, hist(x.parse().unwrap())));
                } else {
                    sw.samples.push(Sample { t, v: x.parse().unwrap() });
                }
                let o = d.append(&tenant(), WriteBatch { series: vec![sw], metadata: vec![] });
                let o = o.unwrap();
                let written = if *kind == "h" { o.histograms_written } else { o.samples_written };
                let res = match (written, o.rejected.first().map(|r| &r.reason)) {
                    (1, None) => "ok".to_string(),
                    (_, None) => "noop".to_string(),
                    (_, Some(RejectReason::DuplicateTimestamp { .. })) => "duplicate".into(),
                    (_, Some(RejectReason::OutOfBounds { .. })) => "out of bounds".into(),
                    (_, Some(r)) => format!("{r}"),
                };
                out.push(format!("{line}: {res}"));
            }
            ["flush"] => {
                d.flush(None).unwrap();
            }
            ["blocks"] => {
                out.push(format!("blocks: {}", d.tenant(&tenant()).unwrap().blocks().len()));
            }
            ["cut"] => {
                d.tenant(&tenant()).unwrap().maybe_cut().unwrap();
            }
            ["compact"] => {
                d.tenant(&tenant()).unwrap().compact().unwrap();
            }
            ["reopen"] => {
                drop(db.take());
                db = Some(Db::open(options(dir.path())).unwrap());
            }
            _ => panic!("bad script line {line:?}"),
        }
    }
    let d = db.as_ref().unwrap();
    out.push("=".into());
    let all: Vec<_> = d
        .select(&tenant(), SelectHints::all(), &[Matcher::eq("job", "node")])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for s in all {
        assert_eq!(s.labels, l);
        let f = s.samples.iter().map(|x| format!("f {}={}", x.t, x.v));
        let h = s.histograms.iter().map(|x| format!("h {}={}", x.t, hist_id(&x.h)));
        out.push(f.chain(h).collect::<Vec<_>>().join(" "));
    }
    out.push(format!("blocks: {}", d.tenant(&tenant()).unwrap().blocks().len()));
    let got = out.join("\n");
    let want: Vec<&str> = expected.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(got, want.join("\n"), "\n--- got ---\n{got}\n");
}

#[test]
fn duplicates_out_of_order_and_mixing_with_floats() {
    check(
        "h 2000000 1
         h 2000000 1
         h 2000000 2
         h 1000000 3
         h 100000 4
         f 3000000 7
         f 2000000 7
         h 3000000 1
         h 4000000 5",
        "h 2000000 1: ok
         h 2000000 1: noop
         h 2000000 2: duplicate
         h 1000000 3: ok
         h 100000 4: out of bounds
         f 3000000 7: ok
         f 2000000 7: duplicate
         h 3000000 1: duplicate
         h 4000000 5: ok
         =
         f 3000000=7 h 1000000=#3 h 2000000=#1 h 4000000=#5
         blocks: 0",
    );
}

#[test]
fn histogram_only_series_survives_wal_replay_and_checkpoint() {
    check(
        "h 1000 1
         h 2000 2
         reopen
         h 2000 2
         h 2000 3
         h 3000 4",
        "h 1000 1: ok
         h 2000 2: ok
         h 2000 2: noop
         h 2000 3: duplicate
         h 3000 4: ok
         =
         h 1000=#1 h 2000=#2 h 3000=#4
         blocks: 0",
    );
    // A cut checkpoints what stays in the head; both must be back after a restart.
    check(
        "h 1000 1
         f 2000 1.5
         flush
         h 10000000 6
         f 10000001 2.5
         reopen
         h 10000000 7",
        "h 1000 1: ok
         f 2000 1.5: ok
         h 10000000 6: ok
         f 10000001 2.5: ok
         h 10000000 7: duplicate
         =
         f 2000=1.5 f 10000001=2.5 h 1000=#1 h 10000000=#6
         blocks: 1",
    );
}

#[test]
fn histograms_left_in_the_head_by_a_cut_are_checkpointed() {
    // The cut writes [0, 2h) as a block and checkpoints the head (the histogram at 11000000
    // and the float at 11000001) before deleting the WAL segments; after a restart both come
    // from the checkpoint, and the same histogram again is a no-op.
    check(
        "h 1000 1
         f 1001 0.25
         h 11000000 2
         f 11000001 4
         cut
         blocks
         reopen
         h 11000000 2
         h 11000000 3",
        "h 1000 1: ok
         f 1001 0.25: ok
         h 11000000 2: ok
         f 11000001 4: ok
         blocks: 1
         h 11000000 2: noop
         h 11000000 3: duplicate
         =
         f 1001=0.25 f 11000001=4 h 1000=#1 h 11000000=#2
         blocks: 1",
    );
}

#[test]
fn flush_and_compaction_carry_histograms() {
    // As for floats, the head does not consult blocks: `h 1000 1` again after the flush is
    // stored, and the overlapping blocks' merge deduplicates it.
    check(
        "h 1000 1
         f 1500 0.5
         flush
         h 2000 2
         h 1000 1
         flush
         h 500 3
         flush
         reopen
         compact",
        "h 1000 1: ok
         f 1500 0.5: ok
         h 2000 2: ok
         h 1000 1: ok
         h 500 3: ok
         =
         f 1500=0.5 h 500=#3 h 1000=#1 h 2000=#2
         blocks: 1",
    );
}

#[test]
fn histogram_blocks_split_at_block_boundaries() {
    // 2h blocks: the two histograms land in two blocks; once the head is past their 6h
    // window, compaction merges them into one.
    check(
        "h 7199999 1
         h 7200000 2
         flush
         reopen
         blocks
         compact",
        "h 7199999 1: ok
         h 7200000 2: ok
         blocks: 2
         =
         h 7199999=#1 h 7200000=#2
         blocks: 1",
    );
}

#[test]
fn a_damaged_histogram_in_a_block_is_an_error_not_a_panic() {
    // Rewrite a block's histograms.parquet with truncated histogram bytes.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(options(dir.path())).unwrap();
    let sw = SeriesWrite {
        labels: labels("h", 1),
        histograms: vec![(1000, hist(1))],
        ..Default::default()
    };
    db.append(&tenant(), WriteBatch { series: vec![sw], metadata: vec![] }).unwrap();
    let meta = db.flush(None).unwrap().pop().unwrap();
    assert_eq!((meta.num_histograms, meta.num_samples, meta.min_time), (1, 0, 1000));
    drop(db);
    let file = dir
        .path()
        .join("blocks")
        .join(tenant().as_str())
        .join(&meta.ulid)
        .join("histograms.parquet");
    let good = std::fs::read(&file).expect("histograms.parquet written");
    let mut enc = Vec::new();
    storage::codec::encode_histogram(&hist(1), &mut enc);
    enc.truncate(enc.len() - 3);
    let bad = {
        let batch = arrow_batch(&enc);
        let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.into_inner().unwrap()
    };
    assert_ne!(good, bad);
    std::fs::write(&file, bad).unwrap();
    let db = Db::open(options(dir.path())).unwrap();
    let r: Vec<_> =
        db.select(&tenant(), SelectHints::all(), &[Matcher::eq("job", "node")]).unwrap().collect();
    let err = r[0].as_ref().unwrap_err().to_string();
    assert!(err.contains("corrupt") && err.contains("runs past the end"), "{err}");
}

fn arrow_batch(h: &[u8]) -> arrow_array::RecordBatch {
    use std::sync::Arc;

    use arrow_array::{BinaryArray, Int64Array, RecordBatch, UInt32Array};
    use arrow_schema::{DataType, Field, Schema};
    let schema = Schema::new(vec![
        Field::new("series_id", DataType::UInt32, false),
        Field::new("t", DataType::Int64, false),
        Field::new("h", DataType::Binary, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(UInt32Array::from(vec![0])),
            Arc::new(Int64Array::from(vec![1000])),
            Arc::new(BinaryArray::from_iter_values([h])),
        ],
    )
    .unwrap()
}
