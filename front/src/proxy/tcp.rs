//! The TCP transport: a member reached over one of this front thread's keep-alive
//! HTTP/1.1 connections to it ([`crate::proxy::conns`]). Every member that is not one of
//! this process's shards goes this way (those go in-process: [`super::inproc`]).
//! A GET or HEAD without a body goes on a bare connection in the request's own task
//! ([`super::exchange`]); a request with a body through hyper's client.

use std::sync::Arc;

use axum::body::Body;
use axum::http::header::{self, HeaderValue};
use axum::response::Response;
use metrics::Counter;
use tokio::time::Instant;

use super::attempt::{Attempt, Outcome, response_head};
use super::exchange::BareHead;
use crate::listen::error::error_chain;
use crate::pools::upstream::FailureKind;
use crate::proxy::body::RequestBody;
use crate::proxy::conns::{ExchangeBody, KeepAliveBody, SendFailure, UpstreamConns};

/// Sends `attempt` on `connections` (an idle connection, or a new one) within its
/// deadline. The response body streams back through a [`KeepAliveBody`], which gives the
/// connection back, then the member's `max_conns` slot, when it ends; `stalls` counts
/// the response bodies it cuts for stalling.
pub(crate) async fn send(
    attempt: Attempt<'_>,
    connections: &Arc<UpstreamConns>,
    stalls: &Counter,
) -> Outcome {
    // Boxed: hyper's client and its connection opening make a future of kilobytes,
    // which every request's future would otherwise carry (and copy as it is moved)
    // for the few requests with a body.
    Box::pin(send_streamed(attempt, connections, stalls)).await
}

/// [`send`] on one of hyper's keep-alive connections.
async fn send_streamed(
    attempt: Attempt<'_>,
    connections: &Arc<UpstreamConns>,
    stalls: &Counter,
) -> Outcome {
    let started = Instant::now();
    let client = attempt.client;
    match tokio::time::timeout_at(attempt.deadline, connections.send(attempt.request)).await {
        Ok(Ok((response, sender))) => {
            let (mut parts, incoming) = response_head(attempt.member, started, response);
            if !client.is_finished() {
                // An early answer: the client's body is not read to its end, so this
                // connection cannot carry another request.
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            let body = KeepAliveBody::new(
                incoming,
                sender,
                attempt.slot,
                Arc::clone(connections),
                client.watch(),
                stalls.clone(),
            );
            Outcome::Answered(Response::from_parts(parts, Body::new(body)))
        }
        Ok(Err(failure)) => failed(client, &failure),
        Err(_) => Outcome::TimedOut,
    }
}

/// Sends a GET or HEAD without a body (its head in wire form, [`BareHead`]) within
/// the attempt's deadline: the head written and the response head read in this task,
/// the body read from the same connection by an [`ExchangeBody`].
pub(crate) async fn send_bodiless(
    attempt: Attempt<'_, BareHead>,
    connections: &Arc<UpstreamConns>,
    stalls: &Counter,
) -> Outcome {
    let started = Instant::now();
    let BareHead { head, head_request } = &attempt.request;
    let sent = connections.send_bodiless(head, *head_request);
    match tokio::time::timeout_at(attempt.deadline, sent).await {
        Ok(Ok((response, reader, conn))) => {
            let (parts, ()) = response_head(attempt.member, started, response);
            let body = ExchangeBody::new(
                conn,
                reader,
                Arc::clone(connections),
                attempt.slot,
                stalls.clone(),
            );
            Outcome::Answered(Response::from_parts(parts, Body::new(body)))
        }
        Ok(Err(failure)) => failed(attempt.client, &failure),
        Err(_) => Outcome::TimedOut,
    }
}

/// A try that got no response head: the client's fault if reading its body failed,
/// else the member's, by kind.
fn failed(client: &RequestBody, failure: &SendFailure) -> Outcome {
    if let Some((fault, detail)) = client.client_fault() {
        return Outcome::Client(fault, detail);
    }
    match failure {
        SendFailure::Connect(e) => Outcome::Failed(FailureKind::Connect, error_chain(e)),
        SendFailure::Send(e) => Outcome::Failed(FailureKind::Send, error_chain(e.as_ref())),
        SendFailure::Tls(e) => Outcome::Failed(FailureKind::Tls, error_chain(e)),
    }
}
