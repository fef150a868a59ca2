//! `promlake export`: plain Parquet that DuckDB (PyPI, installed by scripts/test.sh) reads.

use model::{Labels, Sample, SeriesWrite, WriteBatch};

use crate::Promlake;

fn python() -> String {
    std::env::var("PROMLAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn duckdb_reads_an_export_with_matching_count_and_sum() {
    let p = Promlake::start(&[]);
    let mut series = Vec::new();
    let (mut count, mut sum) = (0u64, 0f64);
    for i in 0..30 {
        let samples: Vec<Sample> = (0..40)
            .map(|k| Sample { t: 1_700_000_000_000 + k * 15_000, v: (i * 40 + k) as f64 * 0.5 })
            .collect();
        if i % 3 != 0 {
            count += samples.len() as u64;
            sum += samples.iter().map(|s| s.v).sum::<f64>();
        }
        let job = if i % 3 == 0 { "other" } else { "node" };
        series.push(SeriesWrite {
            labels: Labels::from_pairs([
                ("__name__", "m_total".to_string()),
                ("job", job.into()),
                ("i", i.to_string()),
            ])
            .unwrap(),
            samples: samples.into(),
            ..Default::default()
        });
    }
    crate::remote_write(&p.url, None, &WriteBatch { series, metadata: vec![] });
    // Half in a block, half in the head: export reads across both.
    assert_eq!(p.post("/api/v1/admin/tsdb/flush", "").0, 200);
    let out = p.dir.path().join("export.parquet");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_promlake"))
        .args(["export", "--match", r#"m_total{job="node"}"#, "--url", &p.url, "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let script = format!(
        "import duckdb\nr = duckdb.sql(\"select count(*), sum(value), count(distinct labels['i']), min(metric_name) from '{}'\").fetchall()[0]\nprint(r[0], repr(r[1]), r[2], r[3])",
        out.display()
    );
    let o =
        std::process::Command::new(python()).args(["-c", &script]).output().expect("python runs");
    assert!(
        o.status.success(),
        "duckdb failed (run ./scripts/test.sh to install it): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8(o.stdout).unwrap().trim(), format!("{count} {sum:?} 20 m_total"));
}
