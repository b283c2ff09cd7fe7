//! The listener kit: what every listener needs, the front's and each shard's of
//! `loadlab serve` alike, and nothing of proxying. The service crate runs its shards
//! with it; the front serves on it too.
//!
//! - [`access`]: the access-log layer (a line per request, `X-Request-Id`).
//! - [`server`]: accept loops, connection limits, the front's threads, graceful
//!   shutdown.
//! - [`edge`]: the layers every listener puts around its routes (refusals, request
//!   time limit, CORS, JSON 404 and 405).
//! - `leftover`: draining what a handler left of a request body, so its answer is not
//!   lost to a reset.
//! - [`error`]: the JSON error shape, `{"error": "..."}`.
//! - [`protocol`]: which HTTP a connection speaks (HTTP/1.1, h2 by ALPN, h2c by its
//!   preface), served with hyper's builder for it, and the HTTP/2 limits.
//! - [`window`]: [`window::LiveWindow`], the last few seconds of one place's requests
//!   (a shard, an upstream), for the live page.
//! - [`tls`]: the front's certificate, the TLS handshake and its reload on SIGHUP.
//! - [`limits`]: [`EdgeLimits`](limits::EdgeLimits) and
//!   [`ConnectionLimits`](limits::ConnectionLimits), what every listener is bounded by.
//! - `accept`: the connection cap, closing idle connections at it, the pause and
//!   throttled log after failed accepts; [`fds`]: the fd limit, raised at start, and
//!   the default cap derived from it.

pub(crate) mod accept;
pub mod access;
pub mod edge;
pub mod error;
pub mod fds;
pub(crate) mod leftover;
pub mod limits;
pub mod protocol;
pub mod server;
pub mod tls;
pub mod window;
