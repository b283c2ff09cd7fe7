//! The TCP transport: a member reached over one of this front thread's keep-alive
//! HTTP/1.1 connections to it ([`crate::proxy::conns`]). Every member that is not one of
//! this process's shards goes this way (those go in-process: [`super::inproc`]).

use std::sync::Arc;

use axum::body::Body;
use axum::http::header::{self, HeaderValue};
use axum::response::Response;
use metrics::Counter;
use tokio::time::Instant;

use super::attempt::{Attempt, Outcome, response_head};
use crate::listen::error::error_chain;
use crate::pools::upstream::FailureKind;
use crate::proxy::conns::{KeepAliveBody, SendFailure, UpstreamConns};

/// Sends `attempt` on `connections` (an idle connection, or a new one) within its
/// deadline. The response body streams back through a [`KeepAliveBody`], which gives the
/// connection back, then the member's `max_conns` slot, when it ends; `stalls` counts
/// the response bodies it cuts for stalling.
pub(crate) async fn send(
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
        Ok(Err(failure)) => {
            if let Some((fault, detail)) = client.client_fault() {
                return Outcome::Client(fault, detail);
            }
            match &failure {
                SendFailure::Connect(e) => Outcome::Failed(FailureKind::Connect, error_chain(e)),
                SendFailure::Send(e) => Outcome::Failed(FailureKind::Send, error_chain(e)),
                SendFailure::Tls(e) => Outcome::Failed(FailureKind::Tls, error_chain(e)),
            }
        }
        Err(_) => Outcome::TimedOut,
    }
}
