//! Errors raised while building model values from untrusted input.

/// What was wrong with a label set, matcher or tenant id. Messages name the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("label name is empty")]
    EmptyLabelName,
    #[error(
        "invalid label name {0:?}: must match [a-zA-Z_][a-zA-Z0-9_]* (or be valid UTF-8 when utf8 names are on)"
    )]
    InvalidLabelName(String),
    #[error("duplicate label name {0:?}")]
    DuplicateLabelName(String),
    #[error("series has no metric name (__name__ label)")]
    MissingMetricName,
    #[error("invalid regular expression {pattern:?}: {reason}")]
    InvalidRegex { pattern: String, reason: String },
    #[error("invalid tenant id {0:?}: 1-150 characters of [a-zA-Z0-9_.-], not '.' or '..'")]
    InvalidTenant(String),
}
