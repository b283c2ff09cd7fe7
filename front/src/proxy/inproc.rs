//! The in-process path: a pool member that is one of this process's own shards is
//! reached by calling that shard's router on the front thread's thread, with no socket
//! between them (`--front-path inproc`, the default).
//!
//! Over loopback TCP every request is parsed by the front, serialised, written to a
//! socket, parsed again by the shard, and its answer makes the same trip back: for a
//! trivial GET that hop costs as much as the shard's own work (docs/PERFORMANCE.md,
//! "The in-process path"). Here the front hands the
//! request it already parsed to the shard's [`Router`] (a tower service) and streams the
//! router's response to the client.
//!
//! What stays as on the TCP path, because the proxy ([`super::Proxy`]) does it
//! before dispatching here: the pick (round robin, weights, per-route pools,
//! `max_conns`), the header rewriting (hop-by-hop headers out, `X-Forwarded-*` in),
//! the one `--upstream-timeout` deadline, and the front's metrics. The shard's own
//! layers run as for a direct client: `http_requests_total{shard}` and
//! `http_requests_in_flight{shard}` count the request once, under that shard's label.
//!
//! Where the work runs: on the front thread's runtime, not the shard's. Handing the
//! request to the shard's runtime instead (spawn on its `Handle`, answer back on a
//! oneshot) would cost two cross-thread wake-ups per request and buys nothing here:
//! the handlers' heavy work already leaves the calling runtime (compute to the rayon
//! pool, SQLite writes to the writer thread), so no runtime is blocked either way.
//!
//! Health: the front holds only a [`Weak`] reference to a shard's router; the shard's
//! thread holds the strong one for as long as it serves. A shard whose runtime stopped
//! (shut down, failed or panicked) leaves rotation at once, with no check needed; and
//! the front (which the shards' state also holds) forms no reference cycle with them.
//! There is no queue in front of a shard to fill up: a request runs on the front's
//! thread from start to end. What bounds one shard's share is its `max_conns`
//! (`--upstream-max-conns`), as for any upstream: a shard with its slots taken is
//! passed over for one with room. The heavy work's own queues (compute jobs, the Mega
//! writer's) are the whole process's, shared by every shard: when one is full, every
//! shard answers 503 alike, and no choice of shard would do better.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use http_body_util::BodyExt as _;
use hyper::body::Body as _;
use tokio::time::Instant;
use tower::ServiceExt;

use super::attempt::{Attempt, Outcome, response_head};

/// Sends `attempt` (headers already prepared by the proxy) to the shard whose router
/// is `router`, within its deadline. The member's `max_conns` slot is held until the
/// response body has been read. As on the TCP path, a failure reading the client's
/// body is the client's. Never [`Outcome::Failed`]: there is no connection to fail.
pub(crate) async fn send(attempt: Attempt<'_>, router: Arc<Router>) -> Outcome {
    let started = Instant::now();
    // A clone of the router is a clone of one `Arc`: the shard's routes are shared.
    let call = Router::clone(&router).oneshot(attempt.request.map(Body::new));
    let Ok(response) = tokio::time::timeout_at(attempt.deadline, call).await else {
        return Outcome::TimedOut;
    };
    // A router's error type is `Infallible`.
    let response: Response = response.unwrap_or_else(|e| match e {});
    if let Some((fault, detail)) = attempt.client.client_fault() {
        return Outcome::Client(fault, detail);
    }
    let (parts, body) = response_head(attempt.member, started, response);
    let slot = attempt.slot;
    let body = if body.is_end_stream() {
        // Nothing to wait for (an empty body nothing will poll): the slot is freed here.
        body
    } else {
        // The slot lives in the closure: freed when the server drops the body, after
        // its last byte (or unread), as the TCP path's keep-alive body frees its slot.
        Body::new(body.map_frame(move |frame| {
            let _held = &slot;
            frame
        }))
    };
    Outcome::Answered(Response::from_parts(parts, body))
}
