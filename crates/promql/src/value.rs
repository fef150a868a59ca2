//! Query results: scalars, strings, instant vectors and matrices, plus annotations. Plain
//! structs so that the HTTP layer can serialize them without this crate knowing serde.

use std::sync::Arc;

use model::{FloatHistogram, Labels, Timestamp};

/// One float point of a series in a matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub t: Timestamp,
    pub v: f64,
}

/// One native histogram point of a series in a matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramPoint {
    pub t: Timestamp,
    pub h: Arc<FloatHistogram>,
}

/// One element of an instant vector: a series' labels and its value at `t`, a float `v`
/// or, when `h` is set, a native histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: Timestamp,
    pub v: f64,
    pub h: Option<Arc<FloatHistogram>>,
}

/// One series of a matrix: labels, float points and histogram points, each in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<Point>,
    pub histograms: Vec<HistogramPoint>,
}

/// The value of a query, as Prometheus' API types it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar { t: Timestamp, v: f64 },
    String { t: Timestamp, v: String },
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    /// The Prometheus API name of the result type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Warnings and infos raised while evaluating; returned beside the result, never as errors.
/// Each message appears once, in the order first raised.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub(crate) fn warn(&mut self, msg: String) {
        let msg = format!("PromQL warning: {msg}");
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }

    /// Adds `other`'s messages that are not here yet, after these (first-seen order).
    pub(crate) fn merge(&mut self, other: Annotations) {
        for w in other.warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        for i in other.infos {
            if !self.infos.contains(&i) {
                self.infos.push(i);
            }
        }
    }

    pub(crate) fn info(&mut self, msg: String) {
        let msg = format!("PromQL info: {msg}");
        if !self.infos.contains(&msg) {
            self.infos.push(msg);
        }
    }
}

/// A query's value and the annotations raised computing it.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    pub annotations: Annotations,
}
