//! Integration tests of the `wire` crate, one binary:
//!
//! - `samples`: valid payloads of every kind, shared by the other modules.
//! - `fuzz`: property tests that feed random and mutated bytes to every decoder (no panic,
//!   bounded output) and check the zero-copy walker against prost on random valid requests.
//! - `roundtrip`: random batches through the encoders and back through the decoders.
//! - `corpus`: replays `tests/corpus/` (checked-in inputs, named `<decoder>-<ok|err>-*`), and
//!   checks payloads captured from a real Prometheus and Pushgateway against prost / line counts.

mod corpus;
mod fuzz;
mod roundtrip;
mod samples;
