//! Prost types generated from `proto/` for encoding (remote read responses, tests, load
//! generators). The ingest hot path does not use them: see `remote_write`.

/// Remote write 1.0 and remote read (`prometheus.*`).
#[allow(clippy::all, missing_docs)] // reason: generated code
pub mod prompb {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Remote write 2.0 (`io.prometheus.write.v2.*`).
#[allow(clippy::all, missing_docs)] // reason: generated code
pub mod v2 {
    include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
}
