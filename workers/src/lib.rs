//! The work behind loadlab's HTTP API, kept apart from HTTP so it can be tested and
//! benchmarked alone.
//!
//! This crate runs no async runtime and knows nothing of HTTP. Callers (the `loadlab`
//! service) submit work through small typed handles and await a oneshot reply, which
//! is runtime-agnostic.
//!
//! # Layout
//! - [`randoms`]: the random-histogram kernel: N uniform draws in 1..=1000, counted;
//!   and [`method::Method`], the choice between counting and sampling the answer.
//! - [`multinomial`]: the exact sampler of the same histogram, in time independent of N.
//! - [`compute`]: the compute threads: a fixed set of rayon threads with bounded admission and
//!   cooperative cancellation, running the kernel off the caller's threads.
//! - [`mega`]: the Mega-Sena ticket store: validation, the SQLite schema, the single
//!   writer thread with group commit, and the readers (read-only connections).
//!
//! # Glossary
//! The words this crate owns (the service's `lib.rs` names the other crates'
//! glossaries):
//! - **workers**: this crate, the work without HTTP: compute and stores. Nothing in it
//!   is called a worker.
//! - **compute**: the fixed rayon thread set that runs `/api/randoms` jobs
//!   (`--threads`, `--randoms-queue`).
//! - **writer**: the one thread that writes Mega tickets to the store (its loop is a
//!   `WriterLoop`); **readers**: the store's read connections (`--read-connections`).
//! - **store**: where Mega tickets live: SQLite (a path) or PostgreSQL (a URL).

pub mod compute;
pub mod mega;
pub mod method;
pub mod metrics;
pub mod multinomial;
pub mod randoms;

#[cfg(test)]
mod test_support {
    /// Drives one future to completion on the current thread: enough for tests that
    /// await a oneshot, in a crate that deliberately has no async runtime.
    pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
        use std::sync::Arc;
        use std::task::{Context, Poll, Wake, Waker};
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::park();
        }
    }
}
