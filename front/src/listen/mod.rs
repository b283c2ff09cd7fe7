//! The listener kit: what every listener needs, the front's and each shard's of
//! `loadlab serve` alike, and nothing of proxying. The service crate runs its shards
//! with it; the front serves on it too.
//!
//! - [`server`]: accept loops, connection limits, the front's threads, graceful
//!   shutdown.
//! - [`edge`]: the layers every listener puts around its routes (refusals, request
//!   time limit, CORS, JSON 404 and 405).
//! - `leftover`: draining what a handler left of a request body, so its answer is not
//!   lost to a reset.
//! - [`error`]: the JSON error shape, `{"error": "..."}`.
//! - [`limits`]: [`EdgeLimits`](limits::EdgeLimits) and
//!   [`ConnectionLimits`](limits::ConnectionLimits), what every listener is bounded by.

pub mod edge;
pub mod error;
pub(crate) mod leftover;
pub mod limits;
pub mod server;
