//! Storage integration tests, one binary. Table of contents:
//! - `durability`: reopen after clean close, WAL replay, SIGKILL crash loop, torn WAL tails.
//! - `lifecycle`: head cut into blocks, flush, compaction, retention with an injected clock.
//! - `compat`: WALs and blocks written by format versions 1 and 2 (histograms), and WALs with
//!   metadata and exemplars (kinds 4, 5), still open.
//! - `deletes`: tombstones through restarts, cuts and compaction; snapshots.
//! - `duckdb`: DuckDB reads a block's series and index tables directly.
//! - `histograms`: native histograms through append rules, WAL replay, flush and compaction.
//! - `metadata_exemplars`: metadata and exemplars (WAL kinds 4, 5) through replay and checkpoints.
//! - `objstore`: blocks in an object store (InMemory): lifecycle, restart, request counts.
//! - `series_cache`: cache hits and misses on the append path; stale handles after a cut.
//! - `select`: large selections (read on two threads) give the single-thread answer.

mod compat;
mod deletes;
mod duckdb;
mod durability;
mod histograms;
mod lifecycle;
mod metadata_exemplars;
mod objstore;
mod select;
mod series_cache;

use model::{Labels, Matcher, Queryable, Sample, SelectHints, SeriesWrite, TenantId, WriteBatch};
use storage::{Db, Options};

pub fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

pub fn labels(name: &str, instance: u32) -> Labels {
    Labels::from_pairs([
        ("__name__", name.to_string()),
        ("instance", format!("host-{instance}")),
        ("job", "node".into()),
    ])
    .unwrap()
}

/// A batch of `series` series with one sample each at `t`, values derived from (series, t).
pub fn batch(series: u32, t: i64) -> WriteBatch {
    WriteBatch {
        series: (0..series)
            .map(|i| SeriesWrite {
                labels: labels("node_cpu_seconds_total", i),
                samples: [Sample { t, v: value(i, t) }].into(),
                ..Default::default()
            })
            .collect(),
        metadata: vec![],
    }
}

pub fn value(series: u32, t: i64) -> f64 {
    (t / 1000) as f64 * 0.25 + series as f64
}

pub fn opts(dir: &std::path::Path) -> Options {
    Options::new(dir)
}

/// Every (labels, samples) the db holds for the tenant.
pub fn dump(db: &Db, matchers: &[Matcher]) -> Vec<(String, Vec<(i64, f64)>)> {
    db.select(&tenant(), SelectHints::all(), matchers)
        .unwrap()
        .map(|s| {
            let s = s.unwrap();
            (s.labels.to_string(), s.samples.iter().map(|x| (x.t, x.v)).collect())
        })
        .collect()
}
