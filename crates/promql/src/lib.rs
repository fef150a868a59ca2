//! PromQL evaluation over the `model::Queryable` seam: the engine, its functions, aggregations
//! and binary operators, an in-memory backend, and the upstream promqltest script runner.
//!
//! # Using the engine
//!
//! ```
//! use model::{Appendable, Labels, Sample, SeriesWrite, TenantId, WriteBatch};
//! use promql::{Engine, EngineOptions, Value, testing::MemStorage};
//!
//! let storage = MemStorage::new();
//! let tenant = TenantId::default_tenant();
//! let labels = Labels::from_pairs([("__name__", "up"), ("job", "api")]).unwrap();
//! let samples = (0..10).map(|i| Sample { t: i * 15_000, v: 1.0 }).collect();
//! let batch = WriteBatch {
//!     series: vec![SeriesWrite { labels, samples, ..Default::default() }],
//!     ..Default::default()
//! };
//! storage.append(&tenant, batch).unwrap();
//!
//! let engine = Engine::new(EngineOptions::default());
//! let res = engine.instant_query(&storage, &tenant, "sum by (job) (up)", 60_000).unwrap();
//! let Value::Vector(v) = res.value else { panic!("not a vector") };
//! assert_eq!((v[0].labels.to_string().as_str(), v[0].v), ("{job=\"api\"}", 1.0));
//! assert!(res.annotations.warnings.is_empty());
//! ```
//!
//! # How evaluation works
//!
//! A query is parsed by promql-parser; everything after the AST is ours. Before evaluating,
//! the evaluator walks the AST once, works out the time window every selector will read
//! (following offsets, `@`, subqueries and the lookback delta) and selects each selector's
//! series once (`eval.rs`). It then evaluates the AST one step at a time: a range query is a
//! loop of instant evaluations whose vectors are collected into series (`engine.rs`).
//! Range selectors hand out windows into the loaded points without copying. Steps are
//! independent, so a large range query splits its steps into contiguous runs evaluated on
//! `EngineOptions::parallel_workers` threads over the same loaded data, and concatenates the
//! runs' series; the upstream scripts also run with every range query split, to hold the
//! result identical to the single-threaded one.
//!
//! Range queries first go through `series.rs`: the nodes it covers (selectors, the common
//! range functions, the common aggregations, over plain float series) are computed one series
//! at a time over all steps, with moving windows and group keys computed once per series;
//! the step-by-step evaluator then reads those results at each step, or the whole answer
//! comes from `series.rs` when it covers the whole query. Results are identical either way
//! (tested against `EngineOptions::series_at_a_time` off).
//!
//! A query stops with `Error::Canceled` at its next step (or while loading series) once the
//! `Cancel` handle passed to `instant_query_with`/`range_query_with` is set; the HTTP server
//! sets it when the client goes away.
//!
//! Architecture Invariant: this crate reads storage only through `model::Queryable`, always
//! with an explicit tenant, and never imports `storage`. It knows nothing of HTTP or JSON:
//! results are plain structs (`value.rs`), warnings and infos travel beside them in
//! `Annotations`, failures are the one `Error` enum.
//!
//! Architecture Invariant: no panic is reachable from query text. Time arithmetic saturates,
//! every loop over steps checks the deadline and the cancel handle, and held samples are counted against
//! `EngineOptions::max_samples`.

mod aggregate;
mod binary;
mod cancel;
mod duration_expr;
mod engine;
mod error;
mod eval;
mod float;
mod functions;
mod go_string;
mod hash;
mod histogram;
mod series;
mod value;

pub mod promqltest;
pub mod testing;

pub use cancel::{Cancel, CancelOnDrop};
pub use engine::{Engine, EngineOptions};
pub use error::Error;
pub use value::{Annotations, HistogramPoint, Point, QueryResult, Sample, Series, Value};
