//! The seam between storage and everything above it: `Appendable` for writes, `Queryable`
//! for reads. Both take the tenant explicitly on every call.

use crate::{
    Exemplar, FloatHistogram, HistogramSample, Labels, Matcher, MetricMetadata, Sample, SeriesKey,
    TenantId, Timestamp,
};

/// The samples of one [`SeriesWrite`].
pub type Samples = smallvec::SmallVec<[Sample; 1]>;

/// One series' share of a write: its labels and the samples to append, in any order.
#[derive(Clone, Debug, Default)]
pub struct SeriesWrite {
    pub labels: Labels,
    /// Inline when there is one sample (a scrape-driven sender's usual series), so decoding a
    /// request allocates nothing per series; build one with `vec![..].into()` or `[s].into()`.
    pub samples: Samples,
    pub histograms: Vec<(Timestamp, FloatHistogram)>,
    pub exemplars: Vec<Exemplar>,
    /// How the decoder resolved the series against the tenant's [`crate::SeriesCache`]
    /// (`SeriesKey::None` when it used none). `labels` is set unless the key is a
    /// `SeriesKey::Hit`: then a decoder may leave it empty (the remote write 1.0 decoder does),
    /// and the series' labels are the handle's (`SeriesHandle::labels`).
    pub key: SeriesKey,
}

/// A write request after decoding and validation, before storage.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    pub series: Vec<SeriesWrite>,
    pub metadata: Vec<MetricMetadata>,
}

impl WriteBatch {
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

/// Why storage refused (part of) one series.
#[derive(Clone, Debug, PartialEq)]
pub enum RejectReason {
    /// A sample at this timestamp already exists with a different value.
    DuplicateTimestamp { t: Timestamp },
    /// The sample is older than the out-of-order window allows.
    OutOfBounds { t: Timestamp, min_valid: Timestamp },
    /// A per-tenant limit (named as in the config) refused the series.
    Limit { limit: &'static str, value: u64 },
}

impl RejectReason {
    /// A short, stable name for metrics (`reason` label).
    pub fn name(&self) -> &'static str {
        match self {
            RejectReason::DuplicateTimestamp { .. } => "duplicate_timestamp",
            RejectReason::OutOfBounds { .. } => "out_of_bounds",
            RejectReason::Limit { limit, .. } => limit,
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectReason::DuplicateTimestamp { t } => {
                write!(f, "duplicate sample for timestamp {t} with a different value")
            }
            RejectReason::OutOfBounds { t, min_valid } => write!(
                f,
                "sample timestamp {t} is too old: older than the out-of-order window allows (oldest accepted {min_valid})"
            ),
            RejectReason::Limit { limit, value } => write!(f, "limit {limit}={value} reached"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub labels: Labels,
    pub reason: RejectReason,
    /// How many samples of the series were refused for this reason.
    pub samples: usize,
}

/// What storage did with a batch. Rejected samples are named; everything else is durable.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppendOutcome {
    pub samples_written: usize,
    pub histograms_written: usize,
    pub exemplars_written: usize,
    pub series_created: usize,
    pub rejected: Vec<Rejection>,
}

/// A fault in the layer below the seam. Client mistakes are `Rejection`s, never this.
#[derive(Debug, thiserror::Error)]
pub enum SeamError {
    /// Storage failed (disk, WAL, object store). Senders should retry.
    #[error("storage failure: {0}")]
    Storage(String),
    /// A read exceeded a limit; the message names it.
    #[error("{0}")]
    Limit(String),
    #[error("query canceled")]
    Canceled,
}

/// Accepts writes. Durable when `append` returns: the data is in the WAL (fsynced unless the
/// operator turned that off) and visible to queries.
pub trait Appendable: Send + Sync {
    fn append(&self, tenant: &TenantId, batch: WriteBatch) -> Result<AppendOutcome, SeamError>;
}

/// The time range of a read, both ends inclusive, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectHints {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl SelectHints {
    pub fn all() -> SelectHints {
        SelectHints { start: i64::MIN, end: i64::MAX }
    }
}

/// One series with its samples in the requested range, sorted by time, deduplicated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub histograms: Vec<HistogramSample>,
}

/// Series in label order, one at a time, so a reader never holds more than it consumes.
pub type SeriesIter<'a> = Box<dyn Iterator<Item = Result<Series, SeamError>> + Send + 'a>;

/// Reads. Label listings are answered from the index without touching samples.
pub trait Queryable: Send + Sync {
    fn select<'a>(
        &'a self,
        tenant: &TenantId,
        hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<SeriesIter<'a>, SeamError>;

    fn label_names(
        &self,
        tenant: &TenantId,
        hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, SeamError>;

    fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, SeamError>;
}
