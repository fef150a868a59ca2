//! `promlake promqltest FILE|DIR...`: runs PromQL test scripts (the upstream promqltest
//! format) against the engine, over the in-memory backend or real storage.

use std::path::{Path, PathBuf};

use anyhow::Result;
use promql::promqltest::{Backend, Outcome, SkipList, run_file_with, upstream_options};
use storage::testing::FlushingStorage;

fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "test"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Runs the files; prints failures, a line per file and the total. Returns the failed count.
pub fn run(
    paths: &[PathBuf],
    storage: bool,
    skip_file: Option<&Path>,
    verbose: bool,
) -> Result<usize> {
    let skips = match skip_file {
        Some(f) => SkipList::parse(&std::fs::read_to_string(f)?).map_err(anyhow::Error::msg)?,
        None => SkipList::default(),
    };
    let mem = || Box::new(promql::testing::MemStorage::new()) as Box<dyn Backend>;
    let real =
        || Box::new(FlushingStorage::new().expect("temporary storage opens")) as Box<dyn Backend>;
    let factory: &dyn Fn() -> Box<dyn Backend> = if storage { &real } else { &mem };
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for f in expand(paths)? {
        let report = run_file_with(&f, factory, &skips, &upstream_options());
        if let Some(e) = &report.error {
            println!("{}: error: {e}", f.display());
            failed += 1;
            continue;
        }
        for c in &report.cases {
            if let Outcome::Failed(msg) = &c.outcome {
                println!("FAIL {}:{}: {}\n    {msg}", f.display(), c.line, c.text);
            } else if verbose && let Outcome::Skipped(why) = &c.outcome {
                println!("SKIP {}:{}: {} ({why})", f.display(), c.line, c.text);
            }
        }
        println!("{}: {}", f.display(), report.summary());
        passed += report.passed();
        failed += report.failed();
        skipped += report.skipped();
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    Ok(failed)
}
