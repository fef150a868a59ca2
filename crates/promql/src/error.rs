//! The one error type of the crate: what failed while parsing or evaluating a query.

use model::SeamError;

/// Why a query (or a test script) could not be answered. Messages follow Prometheus' wording
/// where the upstream test scripts match on them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query text does not parse.
    #[error("{0}")]
    Parse(String),
    /// The query parses but is not valid for this kind of evaluation (e.g. a range vector
    /// as the result of a range query).
    #[error("{0}")]
    InvalidQuery(String),
    /// Evaluation hit a data-dependent failure, e.g. duplicate label sets after a function.
    #[error("{0}")]
    Execution(String),
    /// The query would hold more samples in memory than `EngineOptions::max_samples`.
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The query ran longer than `EngineOptions::timeout`.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The caller canceled the query through its `Cancel` handle (e.g. the client went away).
    #[error("query canceled")]
    Canceled,
    /// Storage under the seam failed.
    #[error(transparent)]
    Storage(#[from] SeamError),
    /// A promqltest script is malformed; names the file line.
    #[error("line {line}: {msg}")]
    TestScript { line: usize, msg: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for a data-dependent evaluation error.
pub(crate) fn exec_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Execution(msg.into()))
}
