//! [`Slot`]: one request's place at an upstream, from admission until its response
//! body has been read. Its own module because both the upstream (which hands slots
//! out) and the connections (whose response bodies hold them) use it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::OwnedSemaphorePermit;

/// One request's place at an upstream: counted in its in-flight count, and holding
/// a `max_conns` permit when there is a limit, until dropped (after the response body
/// has been read).
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    in_flight: Arc<AtomicUsize>,
}

impl Slot {
    /// A slot counted in `in_flight` (already incremented by the caller).
    pub(crate) fn new(permit: Option<OwnedSemaphorePermit>, in_flight: Arc<AtomicUsize>) -> Self {
        Self {
            _permit: permit,
            in_flight,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
