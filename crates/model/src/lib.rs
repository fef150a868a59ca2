//! The data model shared by every promlake crate: label sets, samples, matchers, tenants,
//! and the `Appendable`/`Queryable` seam where storage and query meet.
//!
//! Architecture Invariant: this crate knows nothing of HTTP, JSON, Parquet or PromQL syntax.
//! `storage` implements the seam traits and `promql` consumes them; neither imports the other.

mod error;
mod labels;
mod matcher;
mod prefetch;
mod sample;
mod seam;
mod series_cache;
mod tenant;

pub use error::ModelError;
pub use labels::{Interner, Label, LabelStr, Labels, LabelsBuilder, METRIC_NAME};
pub use matcher::{MatchOp, Matcher};
pub use prefetch::prefetch;
pub use sample::{
    Exemplar, FloatHistogram, HistogramSample, MetricMetadata, MetricType, STALE_NAN_BITS, Sample,
    Span, is_stale_nan, stale_nan,
};
pub use seam::{
    AppendOutcome, Appendable, Queryable, RejectReason, Rejection, Samples, SeamError, SelectHints,
    Series, SeriesIter, SeriesWrite, WriteBatch,
};
pub use series_cache::{SeriesCache, SeriesHandle, SeriesKey, SeriesRef};
pub use tenant::TenantId;

/// Milliseconds since the Unix epoch, as Prometheus counts time.
pub type Timestamp = i64;
