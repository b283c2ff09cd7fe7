//! The work behind loadlab's HTTP API, kept apart from HTTP so it can be tested and
//! benchmarked alone.
//!
//! This crate runs no async runtime and knows nothing of HTTP. Callers (the `loadlab`
//! service) submit work through small typed handles and await a oneshot reply, which
//! is runtime-agnostic.
//!
//! # Layout
//! - [`randoms`]: the random-histogram kernel: N uniform draws in 1..=1000, counted.
//! - [`pool`]: the compute pool: a fixed rayon pool with bounded admission and
//!   cooperative cancellation, running the kernel off the caller's threads.
//! - [`mega`]: the Mega-Sena ticket store: validation, the SQLite schema, the single
//!   writer thread with group commit, and a pool of read-only connections.

pub mod mega;
pub mod pool;
pub mod randoms;
