//! [`Proxy`]: forwards one request to a pool, with failover, and streams the answer
//! back.
//!
//! Per request: strip hop-by-hop headers, add `X-Forwarded-*`, then try members in
//! the pool's order until one answers with headers:
//! - a failed connect (or TLS handshake, to an `https://` member) moves on for any
//!   method (the request never left);
//! - a failure after the request may have been sent moves on only for idempotent
//!   methods (nginx's `proxy_next_upstream error`), and only while the request body
//!   has not been read (bodies are streamed, never buffered, so a body that started
//!   going out cannot be sent again);
//! - at most one try per member, all within one `--upstream-timeout` deadline: past
//!   it the client gets 504 (a slow upstream is not retried: the next would be as
//!   slow, and the deadline would multiply);
//! - a member at its `max_conns` is passed over for one with room; when all are full
//!   the request waits for a slot within the same deadline (504 past it);
//! - no member left: 502 at once (a pool whose members are all held out by passive
//!   checks tries them anyway: see [`super::balance`]).
//!
//! Once response headers are back the response is the client's, whatever its
//! status: nothing is retried after bytes went to the client. An upstream may answer
//! before it has read the whole request body (an early 413): hyper hands that answer
//! over as soon as its head arrives, and it goes to the client with
//! `Connection: close`; that upstream connection is not pooled.
//!
//! A failure reading the *client's* body is the client's ([`super::failure`]):
//! answered here (400, 408), counted in `front_client_errors_total`, never retried,
//! never held against the upstream.
//!
//! # Phases
//! Each step of a forward is a named function (as pingora-proxy names a proxied
//! request's phases):
//! - [`Proxy::forward`]: the retry policy: which member next, and whether to go on.
//! - `Outgoing::new` and `Outgoing::upstream_request`: the header policy
//!   ([`crate::proxy::headers`]), once per request and once per try.
//! - `Proxy::try_member`: one try: a `max_conns` slot, the member's `Transport`, and
//!   what the try's [`attempt::Outcome`] means for the client and the member.
//! - `Transport`: `InProcess` ([`inproc`]) or `Tcp` ([`tcp`]), each in its own file,
//!   each turning an [`attempt::Attempt`] into an [`attempt::Outcome`].
//! - The answers the front gives itself ([`answers`]): 504 when no `max_conns` slot
//!   or no answer came in time, 502 when the last member failed or none was left, and
//!   the client's faults (400, 408: [`crate::proxy::failure`]).

mod answers;
mod attempt;
pub(crate) mod body;
pub(crate) mod connect;
pub(crate) mod conns;
mod exchange;
pub(crate) mod failure;
pub(crate) mod headers;
mod inproc;
mod tcp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::uri::{PathAndQuery, Uri};
use axum::http::{Method, Version};
use axum::response::Response;
use metrics::Counter;
use tokio::time::Instant;

use self::attempt::{Attempt, Outcome};
use self::exchange::{BareHead, encode_head, is_bodiless};
use crate::config::UpstreamLimits;
use crate::listen::access::UpstreamSlot;
use crate::listen::edge::request_timed_out;
use crate::listen::protocol::OverTls;
use crate::pools::balance::{Member, Pool};
use crate::pools::slot::Slot;
use crate::pools::upstream::FailureKind;
use crate::proxy::body::{RequestBody, UpstreamBody};
use crate::proxy::conns::UpstreamConns;
use crate::proxy::failure::{ClientErrors, ClientFault};
use crate::proxy::headers::prepare_request_headers;

/// What forwarding needs besides the pools: the limits and the retry counter. The
/// connections live with each upstream ([`crate::proxy::conns::UpstreamConns`]).
#[derive(Debug)]
pub(crate) struct Proxy {
    limits: UpstreamLimits,
    /// `front_retries_total`: tries after the first.
    retries: Counter,
    /// `front_client_errors_total{kind}`.
    client_errors: ClientErrors,
    /// `front_response_stalls_total`: upstream response bodies cut for stalling.
    stalls: Counter,
}

/// The client's request as every try sends it: its headers rewritten once, its body
/// kept for a retry while unread, and the forward's one deadline.
struct Outgoing {
    method: Method,
    /// The client's HTTP version: a shard's router gets it as it came (h2
    /// included); over TCP every request goes out as HTTP/1.1, the version of the
    /// upstream connections.
    version: Version,
    /// Origin form on the wire: the connection already says which upstream.
    path_and_query: PathAndQuery,
    headers: HeaderMap,
    body: RequestBody,
    /// The upstream timeout, or the request time limit where that is shorter: one
    /// timer at a time for the whole forward.
    deadline: Instant,
    /// The edge's request time limit, which the front's edge leaves to the proxy.
    request_limit: Duration,
    /// Where the access log learns which upstream was tried last; `None` without an
    /// access log.
    upstream_slot: Option<UpstreamSlot>,
}

/// What the retry policy does after one try.
enum Next {
    /// The client's answer: the forward ends with it.
    Answer(Response),
    /// The member failed (`message` says how); another may be tried if `retry`.
    Failed { message: String, retry: bool },
    /// The member could not be tried (its in-process shard stopped since the pick):
    /// like a refused connect, the next is tried.
    Skipped,
}

/// How a try reaches its member; each transport lives in its own file.
enum Transport<'a> {
    /// One of this process's shards: its router called on this thread ([`inproc`]).
    InProcess(Arc<Router>),
    /// Any other upstream: one of this front thread's keep-alive connections to it
    /// ([`tcp`]); `stalls` counts response bodies cut for stalling.
    Tcp {
        connections: &'a Arc<UpstreamConns>,
        stalls: &'a Counter,
    },
}

impl Proxy {
    /// A proxy bounded by `limits`.
    pub(crate) fn new(limits: UpstreamLimits) -> Self {
        Self {
            limits,
            retries: metrics::counter!("front_retries_total"),
            client_errors: ClientErrors::new(),
            stalls: {
                let stalls = metrics::counter!("front_response_stalls_total");
                stalls.increment(0);
                stalls
            },
        }
    }

    /// Forwards `req` to a member of `pool` on front thread `thread`'s connections:
    /// the retry policy (see the module docs), one [`Proxy::try_member`] per member.
    /// `request_limit` is the edge's request time limit, which the front's edge leaves
    /// to the proxy ([`crate::listen::edge::guard_proxy`]).
    pub(crate) async fn forward(
        &self,
        pool: &Pool,
        thread: usize,
        req: Request,
        request_limit: Duration,
    ) -> Response {
        let deadline = Instant::now() + self.limits.response_timeout.min(request_limit);
        let mut outgoing = Outgoing::new(req, deadline, request_limit);
        let tries = pool.members().len();
        let mut tried = Vec::new();
        let mut last_failure: Option<(usize, String)> = None;
        for attempt in 0..tries {
            let Some(index) = pool.pick(&tried) else {
                break;
            };
            let Some(body) = outgoing.body.for_try(attempt) else {
                break;
            };
            if attempt > 0 {
                self.retries.increment(1);
            }
            let member = &pool.members()[index];
            let last = attempt + 1 == tries;
            match self
                .try_member(member, thread, &mut outgoing, body, last)
                .await
            {
                Next::Answer(response) => return response,
                Next::Skipped => {}
                Next::Failed { message, retry } => {
                    last_failure = Some((index, message));
                    if !retry {
                        break;
                    }
                }
            }
            tried.push(index);
        }
        match last_failure {
            Some((index, message)) => {
                answers::upstream_failed(pool, &pool.members()[index], &message)
            }
            None => answers::no_upstream_available(pool),
        }
    }

    /// One try at `member`: a `max_conns` slot within the deadline, the member's
    /// transport, and what the try's outcome means for the client and the member.
    /// `last`: no member is tried after this one.
    async fn try_member(
        &self,
        member: &Member,
        thread: usize,
        outgoing: &mut Outgoing,
        body: UpstreamBody,
        last: bool,
    ) -> Next {
        let admitted = tokio::time::timeout_at(outgoing.deadline, member.upstream.admit()).await;
        let Ok(slot) = admitted else {
            return Next::Answer(self.no_slot_in_time(member, outgoing.request_limit));
        };
        let Some(transport) = Transport::of(member, thread, &self.stalls) else {
            return Next::Skipped;
        };
        if let Some(slot) = &outgoing.upstream_slot {
            slot.note(&member.label);
        }
        let live = member.upstream.live();
        let (in_flight, started) = (live.enter(), std::time::Instant::now());
        let outcome = match transport {
            Transport::InProcess(router) => {
                // An in-process try always ends the forward (answered, timed out, or
                // the client's fault): it may have the request's only copy of the
                // headers.
                let mut request = outgoing.upstream_request(member, body, false);
                *request.version_mut() = outgoing.version;
                inproc::send(outgoing.attempt(member, request, slot), router).await
            }
            Transport::Tcp {
                connections,
                stalls,
            } => match outgoing.bare_head(member, &body) {
                Some(head) => {
                    let attempt = outgoing.attempt(member, head, slot);
                    tcp::send_bodiless(attempt, connections, stalls).await
                }
                None => {
                    // Another member may be tried after this one: it gets a copy of the
                    // headers.
                    let request = outgoing.upstream_request(member, body, !last);
                    tcp::send(outgoing.attempt(member, request, slot), connections, stalls).await
                }
            },
        };
        drop(in_flight);
        match &outcome {
            Outcome::Answered(response) => {
                live.record(started.elapsed(), response.status().is_server_error());
            }
            Outcome::TimedOut | Outcome::Failed(..) => live.record(started.elapsed(), true),
            Outcome::Client(..) => {}
        }
        match outcome {
            Outcome::Answered(response) => Next::Answer(response),
            Outcome::Client(fault, detail) => Next::Answer(self.client_fault(fault, &detail)),
            Outcome::TimedOut => {
                Next::Answer(self.timed_out(member, &outgoing.body, outgoing.request_limit))
            }
            Outcome::Failed(kind, message) => {
                member.upstream.record_failure(kind);
                let (label, error) = (member.upstream.label(), &message);
                tracing::debug!(upstream = label, ?kind, %error, "upstream try failed");
                // A request that may have reached the upstream is sent again only if
                // repeating it is harmless.
                let retry = kind.never_sent() || is_idempotent(&outgoing.method);
                Next::Failed { message, retry }
            }
        }
    }
}

/// What the front answers itself when a try gets no response; the answers' shapes are
/// in [`answers`].
impl Proxy {
    /// Whether the request time limit `request_limit`, not the upstream timeout, sets
    /// the deadline (a tie goes to the upstream timeout, whose answer says more).
    fn request_limit_binds(&self, request_limit: Duration) -> bool {
        request_limit < self.limits.response_timeout
    }

    /// No `max_conns` slot at `member` before the deadline: the edge's answer when it
    /// was the request time limit, else a 504.
    fn no_slot_in_time(&self, member: &Member, request_limit: Duration) -> Response {
        if self.request_limit_binds(request_limit) {
            return request_timed_out(request_limit);
        }
        answers::no_slot_in_time(member, self.limits.response_timeout)
    }

    /// The deadline passed during a try, on either transport: the edge's answer when it
    /// was the request time limit; else the client's fault while its body was still
    /// coming (the upstream was waiting for it), or a 504 held against the upstream.
    fn timed_out(&self, member: &Member, body: &RequestBody, request_limit: Duration) -> Response {
        if self.request_limit_binds(request_limit) {
            return request_timed_out(request_limit);
        }
        if !body.is_finished() {
            return self.client_fault(ClientFault::Timeout, "");
        }
        member.upstream.record_failure(FailureKind::Timeout);
        answers::upstream_timed_out(member, self.limits.response_timeout)
    }

    /// The front's own answer to a fault on the client's side (400, 408), counted; the
    /// upstream is not blamed and nothing is retried.
    fn client_fault(&self, fault: ClientFault, detail: &str) -> Response {
        self.client_errors.count(fault);
        tracing::debug!(kind = fault.label(), error = detail, "client body failed");
        fault.response(detail)
    }
}

impl Outgoing {
    /// The client's request, its headers rewritten for every try
    /// ([`prepare_request_headers`]: hop-by-hop headers out, `X-Forwarded-*` in).
    fn new(req: Request, deadline: Instant, request_limit: Duration) -> Self {
        let (mut parts, body) = req.into_parts();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let over_tls = parts.extensions.get::<OverTls>().is_some();
        let upstream_slot = parts.extensions.remove::<UpstreamSlot>();
        // An h2 request names its host in `:authority` (the URI), not in `Host`: the
        // upstream gets it as `X-Forwarded-Host` all the same.
        if let Some(authority) = parts.uri.authority()
            && !parts.headers.contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(header::HOST, host);
        }
        prepare_request_headers(&mut parts.headers, peer, over_tls);
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Self {
            method: parts.method,
            version: parts.version,
            path_and_query,
            headers: parts.headers,
            body: RequestBody::new(body),
            deadline,
            request_limit,
            upstream_slot,
        }
    }

    /// This forward's try at `member` with `request` (in the transport's form) and
    /// `slot`, within the forward's deadline.
    fn attempt<'a, R>(&'a self, member: &'a Member, request: R, slot: Slot) -> Attempt<'a, R> {
        Attempt {
            member,
            request,
            slot,
            deadline: self.deadline,
            client: &self.body,
        }
    }

    /// For a GET or HEAD without a body, its head for `member` in wire form, written
    /// from the client's headers as they are: no copy of them for a retry, nothing
    /// to give back when a try fails ([`crate::proxy::exchange`]).
    fn bare_head(&self, member: &Member, body: &UpstreamBody) -> Option<BareHead> {
        is_bodiless(&self.method, &self.headers, body).then(|| {
            let path = self.path_and_query.as_str();
            encode_head(
                &self.method,
                path,
                member.upstream.host_header(),
                &self.headers,
            )
        })
    }

    /// The request for one try at `member`: origin form, the member's own `Host`.
    /// `keep_headers`: another try may follow, so this one gets a copy of the
    /// headers (a try consumes its request, and a failed one does not give it back).
    fn upstream_request(
        &mut self,
        member: &Member,
        body: UpstreamBody,
        keep_headers: bool,
    ) -> axum::http::Request<UpstreamBody> {
        let headers = if keep_headers {
            self.headers.clone()
        } else {
            std::mem::take(&mut self.headers)
        };
        let mut request = axum::http::Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = Uri::from(self.path_and_query.clone());
        *request.headers_mut() = headers;
        request
            .headers_mut()
            .insert(header::HOST, member.upstream.host_header().clone());
        request
    }
}

impl<'a> Transport<'a> {
    /// `member`'s transport on front thread `thread`; `None` when `member` is one of
    /// this process's shards and it has stopped since the pick.
    fn of(member: &'a Member, thread: usize, stalls: &'a Counter) -> Option<Self> {
        match member.upstream.local() {
            None => Some(Self::Tcp {
                connections: member.upstream.connections(thread),
                stalls,
            }),
            Some(shard) => shard.router().map(Self::InProcess),
        }
    }
}

/// RFC 9110 9.2.2: methods whose repetition has the effect of a single request.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_to_repeat_methods_are_idempotent() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }
}
