//! A tenant's change log for results caches: a generation counter bumped by every write that
//! changed stored data, and a bounded record of the oldest timestamp each write touched, so a
//! reader can ask "did anything written after generation g touch time t or earlier?".
//!
//! Invariant: `record` is called *after* the written data is visible to `select`. A reader
//! that takes `generation()` before evaluating a query therefore either saw a write's data or
//! will see the write in `min_time_since(g)`.
//!
//! Bounded: at most `CAPACITY` entries; when full, the two oldest entries are coalesced into
//! one (the later generation, the smaller timestamp). Answers stay conservative — a coalesced
//! entry may report a write as later than it was, which only invalidates more, never less.

use std::collections::VecDeque;

use parking_lot::Mutex;

/// Entries kept before the oldest are coalesced.
pub const CAPACITY: usize = 4096;

#[derive(Default)]
pub struct ChangeLog {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    /// `(generation, min_t)`, generations strictly increasing. An entry stands for every
    /// write with a generation in `(previous entry's generation, generation]`.
    entries: VecDeque<(u64, i64)>,
}

impl ChangeLog {
    /// Notes a write (append, import, deletion) that touched data at `min_t` or later;
    /// returns its generation.
    pub fn record(&self, min_t: i64) -> u64 {
        let mut g = self.inner.lock();
        g.generation += 1;
        let generation = g.generation;
        if g.entries.len() >= CAPACITY
            && let (Some((_, t0)), Some((g1, t1))) = (g.entries.pop_front(), g.entries.pop_front())
        {
            g.entries.push_front((g1, t0.min(t1)));
        }
        g.entries.push_back((generation, min_t));
        generation
    }

    /// The generation of the latest write (0 before any).
    pub fn generation(&self) -> u64 {
        self.inner.lock().generation
    }

    /// The oldest timestamp touched by any write after generation `since`, or `None` if
    /// nothing was written since.
    pub fn min_time_since(&self, since: u64) -> Option<i64> {
        let g = self.inner.lock();
        g.entries.iter().rev().take_while(|(generation, _)| *generation > since).map(|e| e.1).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `(min_t)` in order, then `since` → expected answer.
    fn check(writes: &[i64], queries: &[(u64, Option<i64>)]) {
        let log = ChangeLog::default();
        for (i, t) in writes.iter().enumerate() {
            assert_eq!(log.record(*t), i as u64 + 1);
        }
        assert_eq!(log.generation(), writes.len() as u64);
        for (since, want) in queries {
            assert_eq!(log.min_time_since(*since), *want, "since {since}");
        }
    }

    #[test]
    fn answers_the_oldest_time_written_after_a_generation() {
        check(&[], &[(0, None)]);
        check(&[100, 50, 300], &[(0, Some(50)), (1, Some(50)), (2, Some(300)), (3, None)]);
    }

    #[test]
    fn coalescing_stays_conservative() {
        // The oldest write is early; after overflow it is folded into later entries, so a
        // reader from just after it still sees it (conservative), and the newest are exact.
        let mut writes = vec![10];
        writes.extend(std::iter::repeat_n(1_000, CAPACITY + 5));
        writes.push(500);
        let n = writes.len() as u64;
        check(&writes, &[(0, Some(10)), (n - 1, Some(500)), (n - 2, Some(500)), (n, None)]);
        let log = ChangeLog::default();
        for t in &writes {
            log.record(*t);
        }
        assert!(log.inner.lock().entries.len() <= CAPACITY);
        // Never less conservative than the truth: every generation's true answer is >= ours.
        for since in 0..n {
            let truth = writes[since as usize..].iter().copied().min();
            let ours = log.min_time_since(since);
            let ok = match (ours, truth) {
                (_, None) => true,
                (Some(o), Some(t)) => o <= t,
                (None, Some(_)) => false,
            };
            assert!(ok, "since {since}: {ours:?} vs {truth:?}");
        }
    }

    /// The append and import paths record what they changed, and only that.
    #[test]
    fn appends_and_imports_record_their_oldest_sample() {
        use model::{Labels, Sample, SeriesWrite, TenantId, WriteBatch};
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(crate::Options::new(dir.path())).unwrap();
        let tenant = TenantId::default_tenant();
        assert_eq!(
            (db.change_generation(&tenant), db.min_time_written_since(&tenant, 0)),
            (0, None)
        );
        let l = Labels::from_pairs([("__name__", "m")]).unwrap();
        let batch = |ts: &[i64]| WriteBatch {
            series: vec![SeriesWrite {
                labels: l.clone(),
                samples: ts.iter().map(|&t| Sample { t, v: 1.0 }).collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = db.tenant(&tenant).unwrap();
        t.append(batch(&[600_000, 500_000])).unwrap();
        assert_eq!(db.change_generation(&tenant), 1);
        assert_eq!(db.min_time_written_since(&tenant, 0), Some(500_000));
        // Equal samples again are no-ops: nothing changed, nothing recorded.
        t.append(batch(&[600_000])).unwrap();
        assert_eq!(db.change_generation(&tenant), 1);
        t.append(batch(&[400_000])).unwrap();
        assert_eq!(db.min_time_written_since(&tenant, 1), Some(400_000));
        t.import(batch(&[7_000])).unwrap();
        assert_eq!(db.change_generation(&tenant), 3);
        assert_eq!(db.min_time_written_since(&tenant, 2), Some(7_000), "the block's oldest sample");
    }
}
