//! [`Proxy`]: forwards one request to a pool, with failover, and streams the answer
//! back.
//!
//! Per request: strip hop-by-hop headers, add `X-Forwarded-*`, then try members in
//! the pool's order until one answers with headers:
//! - a failed connect moves on for any method (the request never left);
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

mod inproc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::header::{self, HeaderValue};
use axum::http::uri::{PathAndQuery, Uri};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use metrics::Counter;
use tokio::time::Instant;

use super::balance::{Member, Pool, requests_counter};
use super::body::RequestBody;
use super::conns::{PooledBody, SendFailure};
use super::failure::{ClientErrors, ClientFault};
use super::headers::{prepare_request_headers, remove_hop_by_hop};
use super::upstream::FailureKind;
use crate::config::UpstreamLimits;
use crate::edge::request_timed_out;
use crate::error::{error_chain, json_error};

/// What forwarding needs besides the pools: the limits and the retry counter. The
/// connections live with each upstream ([`super::conns::UpstreamConns`]).
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

    /// Forwards `req` to a member of `pool` on front thread `worker`'s connections;
    /// see the module docs for the rules. `request_limit` is the edge's request time
    /// limit, which the front's edge leaves to the proxy ([`crate::edge::guard_proxy`]).
    pub(crate) async fn forward(
        &self,
        pool: &Pool,
        worker: usize,
        req: Request,
        request_limit: Duration,
    ) -> Response {
        let (mut parts, body) = req.into_parts();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        prepare_request_headers(&mut parts.headers, peer);
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let idempotent = is_idempotent(&parts.method);
        let body = RequestBody::new(body);
        // One deadline for the whole forward, and one timer at a time: the upstream
        // timeout, or the request time limit where that is shorter.
        let deadline = Instant::now() + self.limits.response_timeout.min(request_limit);
        let tries = pool.members().len();
        let mut tried = Vec::new();
        let mut last_failure: Option<(usize, String)> = None;
        for attempt in 0..tries {
            let Some(index) = pool.pick(&tried) else {
                break;
            };
            let Some(upstream_body) = body.for_try(attempt) else {
                break;
            };
            if attempt > 0 {
                self.retries.increment(1);
            }
            let member = &pool.members()[index];
            let upstream = &member.upstream;
            // A copy for each try but the last: the client consumes the request, and a
            // failed try does not give it back. An in-process try gives them back.
            let headers = if attempt + 1 < tries && member.local.get().is_none() {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            let mut request = axum::http::Request::new(upstream_body);
            *request.method_mut() = parts.method.clone();
            // Origin form on the wire: the connection already says which upstream.
            *request.uri_mut() = Uri::from(path_and_query.clone());
            *request.headers_mut() = headers;
            request
                .headers_mut()
                .insert(header::HOST, upstream.host_header().clone());
            let Ok(slot) = tokio::time::timeout_at(deadline, upstream.admit()).await else {
                if self.request_limit_binds(request_limit) {
                    return request_timed_out(request_limit);
                }
                member.count_status(StatusCode::GATEWAY_TIMEOUT.as_u16());
                return json_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "upstream {} had its max_conns ({}) requests in flight and none finished \
                            within the {}s upstream timeout",
                        upstream.label(),
                        upstream.max_conns(),
                        self.limits.response_timeout.as_secs_f64()
                    ),
                );
            };
            if let Some(shard) = member.local.get() {
                // One of our shards: call its router here, no socket (see `inproc`).
                match shard.router() {
                    Some(router) => {
                        return match inproc::forward(member, router, request, slot, deadline, &body)
                            .await
                        {
                            Ok(response) => response,
                            Err(inproc::Failed::Client(fault, detail)) => {
                                self.client_fault(fault, &detail)
                            }
                            Err(inproc::Failed::TimedOut) => {
                                self.timed_out(member, &body, request_limit)
                            }
                        };
                    }
                    // It stopped since the pick: like a refused connect, try the next.
                    None => {
                        parts.headers = std::mem::take(request.headers_mut());
                        tried.push(index);
                        continue;
                    }
                }
            }
            let started = Instant::now();
            let connections = upstream.connections(worker);
            match tokio::time::timeout_at(deadline, connections.send(request)).await {
                Ok(Ok((response, sender))) => {
                    member.duration.record(started.elapsed().as_secs_f64());
                    member.count_status(response.status().as_u16());
                    let (mut parts, incoming) = response.into_parts();
                    remove_hop_by_hop(&mut parts.headers);
                    if !body.is_finished() {
                        // An early answer: the client's body is not read to its end,
                        // so this connection cannot carry another request.
                        parts
                            .headers
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    let pooled = PooledBody::new(
                        incoming,
                        sender,
                        slot,
                        Arc::clone(connections),
                        body.watch(),
                        self.stalls.clone(),
                    );
                    return Response::from_parts(parts, Body::new(pooled));
                }
                Ok(Err(failure)) => {
                    if let Some((fault, detail)) = body.client_fault() {
                        return self.client_fault(fault, &detail);
                    }
                    let (kind, message) = match &failure {
                        SendFailure::Connect(e) => (FailureKind::Connect, error_chain(e)),
                        SendFailure::Send(e) => (FailureKind::Send, error_chain(e)),
                    };
                    upstream.record_failure(kind);
                    let label = upstream.label();
                    let error = &message;
                    tracing::debug!(upstream = label, ?kind, %error, "upstream try failed");
                    last_failure = Some((index, message));
                    if kind == FailureKind::Send && !idempotent {
                        break;
                    }
                    tried.push(index);
                }
                Err(_) => return self.timed_out(member, &body, request_limit),
            }
        }
        match last_failure {
            Some((index, message)) => {
                let member = &pool.members()[index];
                member.count_status(StatusCode::BAD_GATEWAY.as_u16());
                let panic = if pool.in_panic() {
                    format!(
                        "no upstream of pool `{}` is available (all held out, tried anyway); ",
                        pool.name()
                    )
                } else {
                    String::new()
                };
                json_error(
                    StatusCode::BAD_GATEWAY,
                    format!("{panic}upstream {} failed: {message}", member.label),
                )
            }
            None => {
                requests_counter(pool.name(), "none", StatusCode::BAD_GATEWAY.as_u16())
                    .increment(1);
                json_error(
                    StatusCode::BAD_GATEWAY,
                    format!("no upstream of pool `{}` is available", pool.name()),
                )
            }
        }
    }

    /// Whether the request time limit `request_limit`, not the upstream timeout, sets
    /// the deadline (a tie goes to the upstream timeout, whose answer says more).
    fn request_limit_binds(&self, request_limit: Duration) -> bool {
        request_limit < self.limits.response_timeout
    }

    /// The answer when the deadline passed during a try, on either path: the edge's
    /// answer when it was the request time limit; else the client's fault while its
    /// body was still coming (the upstream was waiting for it), or a timeout held
    /// against the upstream.
    fn timed_out(&self, member: &Member, body: &RequestBody, request_limit: Duration) -> Response {
        if self.request_limit_binds(request_limit) {
            return request_timed_out(request_limit);
        }
        if !body.is_finished() {
            return self.client_fault(ClientFault::Timeout, "");
        }
        member.upstream.record_failure(FailureKind::Timeout);
        member.count_status(StatusCode::GATEWAY_TIMEOUT.as_u16());
        json_error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "upstream {} did not answer within the {}s upstream timeout",
                member.upstream.label(),
                self.limits.response_timeout.as_secs_f64()
            ),
        )
    }

    /// The front's own answer to a fault on the client's side, counted; the upstream
    /// is not blamed and nothing is retried.
    fn client_fault(&self, fault: ClientFault, detail: &str) -> Response {
        self.client_errors.count(fault);
        tracing::debug!(kind = fault.label(), error = detail, "client body failed");
        fault.response(detail)
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
