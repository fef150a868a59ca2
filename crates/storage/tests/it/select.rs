//! `select` over large selections, which are read on two threads: the answer must be the one
//! a single thread gives, in label order, across head and block sources and tombstones.

use model::{Appendable, MatchOp, Matcher};
use storage::Db;

use crate::{batch, dump, labels, opts, tenant, value};

/// Series of the test: above the two-thread threshold (512), and not a multiple of the
/// 128-series runs, so that the last run is a partial one.
const SERIES: u32 = 2_601;

/// The samples series `i` must come back with: ten minutes in a block, five in the head,
/// minus the deleted minute 3 of every series whose instance number ends in 7, and nothing
/// at all for the instances `host-1000..=host-1099`, deleted whole.
fn expected(i: u32) -> Vec<(i64, f64)> {
    if (1000..1100).contains(&i) {
        return Vec::new();
    }
    (0..15)
        .filter(|m| !(i % 10 == 7 && *m == 3))
        .map(|m| (m * 60_000, value(i, m * 60_000)))
        .collect()
}

fn check(db: &Db, matchers: &[Matcher]) {
    let mut want: Vec<(model::Labels, Vec<(i64, f64)>)> = (0..SERIES)
        .filter(|&i| {
            let l = labels("node_cpu_seconds_total", i);
            matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or("")))
        })
        .map(|i| (labels("node_cpu_seconds_total", i), expected(i)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<(String, Vec<(i64, f64)>)> =
        want.into_iter().map(|(l, s)| (l.to_string(), s)).collect();
    let got = dump(db, matchers);
    assert_eq!(got.len(), want.len(), "series for {matchers:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

#[test]
fn large_selections_read_on_two_threads_match_the_single_thread_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    for m in 0..10 {
        db.append(&tenant(), batch(SERIES, m * 60_000)).unwrap();
    }
    db.flush(Some(&tenant())).unwrap();
    for m in 10..15 {
        db.append(&tenant(), batch(SERIES, m * 60_000)).unwrap();
    }
    let re = |v: &str| Matcher::new(MatchOp::RegexMatch, "instance", v).unwrap();
    db.delete_series(&tenant(), &[re("host-\\d*7")], 3 * 60_000, 3 * 60_000).unwrap();
    db.delete_series(&tenant(), &[re("host-10\\d\\d")], i64::MIN, i64::MAX).unwrap();
    // Two threads: every series, block and head sources merged, some series empty.
    check(&db, &[Matcher::eq("job", "node")]);
    // One thread (below 512 series): the same rules.
    check(&db, &[re("host-1\\d\\d")]);
    // Above the threshold, the deleted ones inside it.
    check(&db, &[re("host-(1\\d\\d\\d|2\\d)")]);
}
