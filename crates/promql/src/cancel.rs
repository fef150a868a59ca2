//! Cooperative cancellation of a running query: a shared flag the caller sets (e.g. when the
//! HTTP client goes away) and the evaluator checks wherever it checks the deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A cancellation handle. Clones share one flag; once canceled it stays canceled.
///
/// ```
/// let c = promql::Cancel::new();
/// let seen_by_worker = c.clone();
/// c.cancel();
/// assert!(seen_by_worker.is_canceled());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
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
