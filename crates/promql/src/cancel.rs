//! Cooperative cancellation of a running query: a shared flag the caller sets (e.g. when the
//! HTTP client goes away) and the evaluator checks wherever it checks the deadline; and an
//! optional deadline the caller sets for several evaluations that form one query.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A cancellation handle. Clones share one flag; once canceled it stays canceled.
///
/// ```
/// let c = promql::Cancel::new();
/// let seen_by_worker = c.clone();
/// c.cancel();
/// assert!(seen_by_worker.is_canceled());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>, Option<Instant>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// This handle (same flag) with a deadline: an evaluation given it times out at the
    /// earlier of `deadline` and its own `timeout` counted from its start. For a query
    /// evaluated in pieces (split range queries), so the timeout bounds the whole query.
    pub fn until(&self, deadline: Instant) -> Cancel {
        Cancel(self.0.clone(), Some(self.1.map_or(deadline, |d| d.min(deadline))))
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.1
    }

    /// Asks every query holding a clone of this handle to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_canceled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Cancels on drop: owned by a request future, it stops the blocking evaluation when the
/// future is dropped (client disconnected) or completes.
#[derive(Debug)]
pub struct CancelOnDrop(pub Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
