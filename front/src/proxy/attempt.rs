//! One try at one pool member, as both transports see it: what goes out ([`Attempt`])
//! and how it ended ([`Outcome`]). The proxy ([`super::Proxy`]) builds the one and
//! judges the other; each transport ([`super::inproc`], [`super::tcp`]) turns the one
//! into the other.

use axum::http::response::Parts;
use axum::http::{self, Request};
use axum::response::Response;
use tokio::time::Instant;

use crate::pools::balance::Member;
use crate::pools::slot::Slot;
use crate::pools::upstream::FailureKind;
use crate::proxy::body::{RequestBody, UpstreamBody};
use crate::proxy::failure::ClientFault;
use crate::proxy::headers::remove_hop_by_hop;

/// One try at one member: the request, already rewritten for that member, and what
/// the transport needs to send it. `R`: the request as the transport takes it, a
/// [`Request`] by default, or a bodiless request's head already in wire form
/// ([`crate::proxy::exchange`]).
pub(crate) struct Attempt<'a, R = Request<UpstreamBody>> {
    /// The member tried: its latency and status metrics are recorded here.
    pub(crate) member: &'a Member,
    /// The request, with the front's headers and this member's `Host`.
    pub(crate) request: R,
    /// The member's slot (in-flight count, `max_conns` permit), held until the
    /// response body has been read.
    pub(crate) slot: Slot,
    /// The forward's one deadline (the upstream timeout or the request time limit).
    pub(crate) deadline: Instant,
    /// The client's body: a failure reading it is the client's, on either transport.
    pub(crate) client: &'a RequestBody,
}

/// How a try ended, as the transport saw it; the proxy decides what the client gets.
pub(crate) enum Outcome {
    /// Response headers came back: the client's answer, whatever its status.
    Answered(Response),
    /// Reading the client's body failed: the proxy answers it, whatever the member
    /// said about the broken body.
    Client(ClientFault, String),
    /// The deadline passed; the proxy decides whose fault that was.
    TimedOut,
    /// The member failed before response headers came back: no connection
    /// ([`FailureKind::Connect`]), or a connection that broke after the request may
    /// have left ([`FailureKind::Send`]); with the error's chain.
    Failed(FailureKind, String),
}

/// A member's response head as the client gets it, on either transport (pingora's
/// `upstream_response_filter`): the member's latency since `started` and its status
/// counted, hop-by-hop headers removed. The body is the transport's to wrap.
pub(crate) fn response_head<B>(
    member: &Member,
    started: Instant,
    response: http::Response<B>,
) -> (Parts, B) {
    member.duration.record(started.elapsed().as_secs_f64());
    member.count_status(response.status().as_u16());
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    (parts, body)
}
