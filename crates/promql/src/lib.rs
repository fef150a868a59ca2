//! PromQL evaluation over the `model::Queryable` seam: the engine, its functions, aggregations
//! and binary operators, an in-memory backend, and the upstream promqltest script runner.
//!
//! Architecture Invariant: the parser is promql-parser's; everything after the AST is ours.
//! This crate never imports `storage`; it reads through `model::Queryable` only.

mod aggregate;
mod binary;
mod duration_expr;
mod engine;
mod error;
mod eval;
mod float;
mod functions;
mod hash;
mod histogram;
mod value;

pub mod promqltest;
pub mod testing;

pub use engine::{Engine, EngineOptions};
pub use error::Error;
pub use value::{Annotations, HistogramPoint, Point, QueryResult, Sample, Series, Value};
