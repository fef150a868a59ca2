//! Samples: floats (with the staleness marker), native histograms, exemplars and metadata.

use crate::{Labels, Timestamp};

/// The bit pattern Prometheus writes as a staleness marker: a NaN that no arithmetic produces.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True only for the staleness marker, not for other NaNs.
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A float sample. Values are stored bit for bit (NaN payloads, -0 and infinities survive).
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub t: Timestamp,
    pub v: f64,
}

impl PartialEq for Sample {
    fn eq(&self, o: &Self) -> bool {
        self.t == o.t && self.v.to_bits() == o.v.to_bits()
    }
}

/// A bucket span of a native histogram: `length` consecutive buckets starting `offset` after
/// the previous span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

/// A native histogram with float counts (integer histograms are converted on ingest).
/// Bucket counts are absolute, not deltas. `custom_values` holds the bounds of schema -53
/// (custom buckets, as used for classic histograms converted to native).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FloatHistogram {
    pub counter_reset_hint: u8,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    pub positive_buckets: Vec<f64>,
    pub negative_buckets: Vec<f64>,
    pub custom_values: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSample {
    pub t: Timestamp,
    pub h: Box<FloatHistogram>,
}

/// An exemplar attached to a series.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub t: Timestamp,
    pub v: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    #[default]
    Unknown,
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
}

impl MetricType {
    /// The lower-case name Prometheus' API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Unknown => "unknown",
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }
}

/// Metadata of a metric family, as sent by remote write or a text push.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct MetricMetadata {
    pub metric_family: String,
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_a_specific_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
        assert!(stale_nan().is_nan());
        let s = Sample { t: 1, v: -0.0 };
        assert_ne!(s, Sample { t: 1, v: 0.0 }, "-0 and 0 are different stored values");
    }
}
