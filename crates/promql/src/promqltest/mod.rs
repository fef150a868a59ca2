//! The runner of upstream promqltest scripts (`.test` files): parses them, loads their data
//! into a backend, evaluates every `eval` with our engine and checks results the way
//! Prometheus' own runner does.

mod check;
mod nhcb;
mod parse;
mod run;
mod skip;

use model::{Appendable, Queryable};

pub use run::{run_file, run_file_with, run_script, upstream_options};
pub use skip::{SkipEntry, SkipList};

/// What the runner needs of storage: write the loaded data, read it back.
pub trait Backend: Queryable + Appendable {}

impl<T: Queryable + Appendable> Backend for T {}

/// Makes a fresh, empty backend (at the start and at every `clear`).
pub type BackendFactory<'a> = &'a dyn Fn() -> Box<dyn Backend>;

/// The outcome of one `eval` command.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

/// One `eval` command of a file and how it went.
#[derive(Clone, Debug)]
pub struct CaseReport {
    pub line: usize,
    /// The `eval ...` line, trimmed: the case's identity in the skip file.
    pub text: String,
    pub outcome: Outcome,
}

/// Every case of one file.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    pub file: String,
    pub cases: Vec<CaseReport>,
    /// A script-level error (unreadable or unparsable file); no cases ran.
    pub error: Option<String>,
}

impl FileReport {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.outcome)).count()
    }

    pub fn passed(&self) -> usize {
        self.count(|o| *o == Outcome::Passed)
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_))) + usize::from(self.error.is_some())
    }

    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    /// `N passed, N failed, N skipped`, as the CLI prints it.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed, {} skipped", self.passed(), self.failed(), self.skipped())
    }
}
