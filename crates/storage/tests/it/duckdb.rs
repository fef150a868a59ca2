//! DuckDB (from PyPI, installed by scripts/test.sh) reads a block's Parquet tables directly.

use model::Appendable;
use storage::Db;

use crate::{batch, opts, tenant};

/// The Python with duckdb: `PROMLAKE_TEST_PYTHON` (set by scripts/test.sh) or `python3`.
pub fn python() -> String {
    std::env::var("PROMLAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn duckdb_reads_series_and_index_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(opts(dir.path())).unwrap();
    for i in 0..10 {
        db.append(&tenant(), batch(25, i * 15_000)).unwrap();
    }
    let meta = db.flush(None).unwrap().remove(0);
    let block = dir.path().join("blocks").join("acme").join(&meta.ulid);
    let script = format!(
        r#"
import duckdb
b = {block:?}
print(duckdb.sql(f"select count(*), count(distinct labels['instance']), min(metric_name) from '{{b}}/series.parquet'").fetchall()[0])
print(duckdb.sql(f"select sum(len(series_ids)) from '{{b}}/index.parquet' where name = 'job'").fetchall()[0])
print(duckdb.sql(f"select sum(num_samples) from '{{b}}/samples.parquet'").fetchall()[0])
"#
    );
    let out =
        std::process::Command::new(python()).args(["-c", &script]).output().expect("python runs");
    assert!(
        out.status.success(),
        "duckdb failed (run ./scripts/test.sh to install it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, "(25, 25, 'node_cpu_seconds_total')\n(25,)\n(250,)\n", "{text}");
}
