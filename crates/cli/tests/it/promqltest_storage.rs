//! Every upstream PromQL test script (`../shared/promql-tests`, or `PROMQL_TESTS_DIR`) against
//! real storage: each load is appended through the WAL and flushed into blocks
//! (`storage::testing::FlushingStorage`), so every query reads head and blocks. Known failures
//! are the in-memory skip list (`crates/promql/tests/skip.txt`) plus `storage-skip.txt` for
//! cases where real storage legitimately differs, each with a reason. A skipped case that
//! passes fails the test, so both lists only shrink.

use std::path::PathBuf;

use promql::promqltest::{Backend, Outcome, SkipList, run_file_with, upstream_options};
use storage::testing::FlushingStorage;

fn tests_dir() -> Option<PathBuf> {
    match std::env::var_os("PROMQL_TESTS_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/promql-tests");
            d.is_dir().then_some(d)
        }
    }
}

fn skips() -> SkipList {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut text = String::new();
    for f in [root.join("../promql/tests/skip.txt"), root.join("tests/storage-skip.txt")] {
        text += &std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        text.push('\n');
    }
    SkipList::parse(&text).unwrap_or_else(|e| panic!("skip lists: {e}"))
}

#[test]
fn every_upstream_script_passes_on_real_storage() {
    let Some(dir) = tests_dir() else {
        eprintln!("../shared/promql-tests not found and PROMQL_TESTS_DIR unset; skipping");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let skips = skips();
    let factory =
        || Box::new(FlushingStorage::new().expect("temporary storage opens")) as Box<dyn Backend>;
    // Two files at a time: the machine has two cores and each case flushes blocks to disk.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let reports = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(f) = files.get(i) else { break };
                    let r = run_file_with(f, &factory, &skips, &upstream_options());
                    reports.lock().unwrap().push(r);
                }
            });
        }
    });
    let mut reports = reports.into_inner().unwrap();
    reports.sort_by(|a, b| a.file.cmp(&b.file));
    let mut failures = Vec::new();
    for r in &reports {
        eprintln!("{}: {}", r.file, r.summary());
        if let Some(e) = &r.error {
            failures.push(format!("{}: {e}", r.file));
        }
        for c in &r.cases {
            if let Outcome::Failed(msg) = &c.outcome {
                failures.push(format!("{}:{}: {}\n    {msg}", r.file, c.line, c.text));
            }
        }
    }
    // Every storage skip entry must name a case that exists (a renamed case is a stale entry).
    for e in skips.entries() {
        let found =
            reports.iter().any(|r| r.file == e.file && r.cases.iter().any(|c| c.text == e.text));
        if !found && reports.iter().any(|r| r.file == e.file) {
            failures.push(format!("skip entry matches no case: {}: {}", e.file, e.text));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
