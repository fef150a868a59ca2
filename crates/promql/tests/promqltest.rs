//! Runs the upstream PromQL test scripts (`../../../shared/promql-tests` from this crate, or
//! `PROMQL_TESTS_DIR`) against the in-memory backend, one #[test] per file: every file with
//! the options of Prometheus' own runner, and the files that need no experimental feature
//! again with the default options, and every file once more with every range query split
//! across threads (the parallel path must give the single thread's answers). Known failures live in `skip.txt` with a reason each; a
//! skipped case that passes fails the test, so the list only shrinks.

use std::path::PathBuf;

use promql::EngineOptions;
use promql::promqltest::{Backend, Outcome, SkipList, run_file_with, upstream_options};
use promql::testing::MemStorage;

fn tests_dir() -> PathBuf {
    match std::env::var_os("PROMQL_TESTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/promql-tests"),
    }
}

fn skips() -> SkipList {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/skip.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    SkipList::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `file` with the options of Prometheus' own runner, which turn on the experimental
/// features some scripts exercise.
fn check(file: &str) {
    check_with(file, &upstream_options());
}

/// Runs `file` with `EngineOptions::default()`, as a server runs queries.
fn check_default(file: &str) {
    check_with(file, &EngineOptions::default());
}

/// Runs `file` with every range query of two or more steps per worker split across threads.
fn check_parallel(file: &str) {
    let opts = EngineOptions { parallel_workers: 2, parallel_min_work: 0, ..upstream_options() };
    check_with(file, &opts);
}

fn check_with(file: &str, opts: &EngineOptions) {
    let path = tests_dir().join(file);
    if !path.exists() && std::env::var_os("PROMQL_TESTS_DIR").is_none() {
        eprintln!("{} not found; skipping", path.display());
        return;
    }
    let factory = || Box::new(MemStorage::new()) as Box<dyn Backend>;
    let report = run_file_with(&path, &factory, &skips(), opts);
    if let Some(e) = &report.error {
        panic!("{file}: {e}");
    }
    let failures: Vec<String> = report
        .cases
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Failed(msg) => Some(format!("{file}:{}: {}\n    {msg}", c.line, c.text)),
            _ => None,
        })
        .collect();
    eprintln!("{file}: {}", report.summary());
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
}

macro_rules! files {
    ($check:ident: $($name:ident => $file:literal,)*) => {
        $(#[test] fn $name() { $check($file); })*
    };
}

// Every script, as upstream runs them.
files! { check:
    aggregators => "aggregators.test",
    at_modifier => "at_modifier.test",
    collision => "collision.test",
    duration_expression => "duration_expression.test",
    functions => "functions.test",
    histograms => "histograms.test",
    limit => "limit.test",
    literals => "literals.test",
    name_label_dropping => "name_label_dropping.test",
    native_histograms => "native_histograms.test",
    operators => "operators.test",
    range_queries => "range_queries.test",
    selectors => "selectors.test",
    staleness => "staleness.test",
    subquery => "subquery.test",
    trig_functions => "trig_functions.test",
    type_and_unit => "type_and_unit.test",
}

// The scripts that need no experimental feature also pass with the default options.
mod default_options {
    use super::check_default;

    files! { check_default:
        aggregators => "aggregators.test",
        at_modifier => "at_modifier.test",
        collision => "collision.test",
        functions => "functions.test",
        histograms => "histograms.test",
        limit => "limit.test",
        literals => "literals.test",
        native_histograms => "native_histograms.test",
        operators => "operators.test",
        range_queries => "range_queries.test",
        selectors => "selectors.test",
        staleness => "staleness.test",
        subquery => "subquery.test",
        trig_functions => "trig_functions.test",
    }
}

// Every script again, range queries split across two threads whatever their size.
mod parallel {
    use super::check_parallel;

    files! { check_parallel:
        aggregators => "aggregators.test",
        at_modifier => "at_modifier.test",
        collision => "collision.test",
        duration_expression => "duration_expression.test",
        functions => "functions.test",
        histograms => "histograms.test",
        limit => "limit.test",
        literals => "literals.test",
        name_label_dropping => "name_label_dropping.test",
        native_histograms => "native_histograms.test",
        operators => "operators.test",
        range_queries => "range_queries.test",
        selectors => "selectors.test",
        staleness => "staleness.test",
        subquery => "subquery.test",
        trig_functions => "trig_functions.test",
        type_and_unit => "type_and_unit.test",
    }
}
