//! [`UpstreamConns`]: keep-alive HTTP/1.1 connections to one upstream address.
//!
//! A small set of keep-alive connections on hyper's connection API rather than
//! hyper-util's legacy client: the front knows its upstreams up front, so it needs no
//! connection pool keyed by hashed authority, no boxed response future, and no task
//! spawned per request to wait for the connection to become idle (the legacy client's
//! cost on every HTTP/1.1 response with a body). A connection comes back through
//! [`KeepAliveBody`] when its response body ends.
//!
//! Idle connections are kept last-in first-out, up to `--upstream-idle` per upstream
//! (sized to the concurrency so connections are reused, not churned: a pool smaller
//! than the concurrency opens a connection for every request past it and fills the
//! machine with sockets in TIME_WAIT, as nginx's `keepalive` does; see
//! docs/PERFORMANCE.md), and dropped once idle for [`IDLE_TIMEOUT`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::{Request, Response};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

use super::body::{BodyWatch, IdleTimer, UpstreamBody};
use super::connect::{OpenFailure, open};
use crate::pools::slot::Slot;
use crate::pools::tls::UpstreamTls;

/// How long an idle connection is kept. Shorter than loadlab's own
/// `--header-read-timeout` (10 s), which closes idle keep-alive connections: the front
/// drops them first instead of racing the upstream's close with a new request.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Why sending to an upstream failed.
#[derive(Debug)]
pub(crate) enum SendFailure {
    /// No connection: the request never left, any method may go elsewhere.
    Connect(io::Error),
    /// The TLS handshake with an `https://` member failed: the request never left.
    Tls(io::Error),
    /// The connection failed after the request was handed to it: it may have reached
    /// the upstream.
    Send(hyper::Error),
}

/// Idle connections to one upstream.
#[derive(Debug)]
pub(crate) struct UpstreamConns {
    addr: SocketAddr,
    /// TLS to an `https://` member; `None`: cleartext.
    tls: Option<UpstreamTls>,
    connect_timeout: Duration,
    max_idle: usize,
    /// Idle connections, most recently used last. A mutex held only to push or pop.
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<UpstreamBody>,
    since: Instant,
}

impl UpstreamConns {
    /// No connections yet; nothing connects until the first request.
    pub(crate) fn new(
        addr: SocketAddr,
        tls: Option<UpstreamTls>,
        connect_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        Self {
            addr,
            tls,
            connect_timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `request` on an idle connection, or a new one. A request that an idle
    /// connection refused before writing it (the upstream had closed it) goes on the
    /// next connection: the stale keep-alive problem, solved without a failure.
    pub(crate) async fn send(
        &self,
        mut request: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, SendRequest<UpstreamBody>), SendFailure> {
        loop {
            let (mut sender, reused) = match self.checkout().await {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => request = unsent,
                    // A fresh connection that died before the request went out: as good
                    // as a failed connect.
                    Some(_) => {
                        return Err(SendFailure::Connect(io::Error::other(error.into_error())));
                    }
                    None => return Err(SendFailure::Send(error.into_error())),
                },
            }
        }
    }

    /// Puts a connection whose response has been read back with the idle ones.
    pub(crate) fn checkin(&self, sender: SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// The most recently used live idle connection, once it is ready for a request.
    async fn checkout(&self) -> Option<SendRequest<UpstreamBody>> {
        loop {
            // The guard is dropped at the end of this statement, before any await.
            let popped = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if popped.sender.is_closed() || popped.since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            let mut sender = popped.sender;
            // Just given back, its connection task may not have noticed the end of the
            // response yet: that takes one turn of the task, not a network round trip.
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// A new connection (over TLS to an `https://` member), its driver task spawned
    /// on the current runtime.
    async fn connect(&self) -> Result<SendRequest<UpstreamBody>, SendFailure> {
        open(self.addr, self.tls.as_ref(), self.connect_timeout)
            .await
            .map_err(|failure| match failure {
                OpenFailure::Connect(e) => SendFailure::Connect(e),
                OpenFailure::Tls(e) => SendFailure::Tls(e),
            })
    }
}

/// How long an upstream response body may go without a byte, once its headers are
/// back, before the front cuts it (nginx's `proxy_read_timeout`, 60 s there too).
pub(crate) const RESPONSE_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// An upstream response body that returns its connection to `conns` when it ends,
/// then frees its upstream's slot (in-flight count and `max_conns` permit).
///
/// A body dropped before its end (the client went away) drops the connection too:
/// hyper cannot reuse a connection with an unread response on it. So does a response
/// that came back before its request body was fully written (an early 413), and one
/// that stalls for [`RESPONSE_IDLE_TIMEOUT`] (cut with an error: the client sees the
/// connection close mid-body, as it would from nginx).
pub(crate) struct KeepAliveBody {
    inner: Incoming,
    /// The connection and where it goes back, until given back.
    giveback: Option<(SendRequest<UpstreamBody>, Arc<UpstreamConns>)>,
    /// The request's `max_conns` slot, released after the connection is back (so the
    /// request it lets in finds the connection idle), or on drop.
    slot: Option<Slot>,
    /// Whether the request body went out whole: only then may the connection be reused.
    request: BodyWatch,
    /// Fires after [`RESPONSE_IDLE_TIMEOUT`] of waiting on the upstream for a byte.
    idle: IdleTimer,
    /// `front_response_stalls_total`.
    stalls: metrics::Counter,
}

impl KeepAliveBody {
    /// Wraps `inner`; an already finished body (204, HEAD, `Content-Length: 0`) gives
    /// the connection back at once, as nothing would poll it to its end.
    pub(crate) fn new(
        inner: Incoming,
        sender: SendRequest<UpstreamBody>,
        slot: Slot,
        conns: Arc<UpstreamConns>,
        request: BodyWatch,
        stalls: metrics::Counter,
    ) -> Self {
        use hyper::body::Body as _;
        let mut body = Self {
            inner,
            giveback: Some((sender, conns)),
            slot: Some(slot),
            request,
            idle: IdleTimer::new(RESPONSE_IDLE_TIMEOUT),
            stalls,
        };
        if body.inner.is_end_stream() {
            body.give_back();
        }
        body
    }

    fn give_back(&mut self) {
        if let Some((sender, conns)) = self.giveback.take()
            && self.request.is_finished()
        {
            conns.checkin(sender);
        }
        self.slot = None;
    }
}

impl hyper::body::Body for KeepAliveBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Pending => {
                ready!(this.idle.poll_expired(cx));
                this.stalls.increment(1);
                this.giveback = None;
                this.slot = None;
                return Poll::Ready(Some(Err(axum::Error::new(format!(
                    "the upstream response stalled: no byte for {}s",
                    RESPONSE_IDLE_TIMEOUT.as_secs()
                )))));
            }
            Poll::Ready(None) => this.give_back(),
            // The server stops polling once `is_end_stream` says so: give back on the
            // last frame, not only on the `None` after it.
            Poll::Ready(Some(Ok(_))) => {
                this.idle.progressed();
                if this.inner.is_end_stream() {
                    this.give_back();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.giveback = None;
                this.slot = None;
            }
        }
        polled.map_err(axum::Error::new)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
