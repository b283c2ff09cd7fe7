//! [`UpstreamConns`]: keep-alive HTTP/1.1 connections to one upstream address.
//!
//! A small set of keep-alive connections on hyper's connection API rather than
//! hyper-util's legacy client: the front knows its upstreams up front, so it needs no
//! connection pool keyed by hashed authority, no boxed response future, and no task
//! spawned per request to wait for the connection to become idle (the legacy client's
//! cost on every HTTP/1.1 response with a body). A connection comes back through
//! [`KeepAliveBody`] when its response body ends.
//!
//! Requests without a body (GET, HEAD) skip hyper's client: they go on bare
//! connections of their own, in the request's own task ([`super::exchange`]), and
//! their response body ([`ExchangeBody`]) gives the connection back the same way.
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
use super::connect::{OpenFailure, open, open_stream};
use super::exchange::{BodyReader, RawConn};
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
    Send(Box<dyn std::error::Error + Send + Sync>),
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
    idle: Mutex<Vec<Idle<SendRequest<UpstreamBody>>>>,
    /// Idle bare connections, for requests without a body; the same way.
    idle_bare: Mutex<Vec<Idle<RawConn>>>,
}

#[derive(Debug)]
struct Idle<C> {
    conn: C,
    since: Instant,
}

/// Pops the most recently used connection of `idle` that has been idle less than
/// [`IDLE_TIMEOUT`].
fn pop_fresh<C>(idle: &Mutex<Vec<Idle<C>>>) -> Option<C> {
    loop {
        // The guard is dropped at the end of this statement: held only to pop.
        let popped = idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        if popped.since.elapsed() <= IDLE_TIMEOUT {
            return Some(popped.conn);
        }
    }
}

/// Puts `conn` back with `idle`, unless `max` are idle already.
fn push_idle<C>(idle: &Mutex<Vec<Idle<C>>>, conn: C, max: usize) {
    let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
    if idle.len() < max {
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }
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
            idle_bare: Mutex::new(Vec::new()),
        }
    }

    /// Sends a request without a body, `head` on the wire ([`super::exchange`]), on
    /// an idle bare connection or a new one, and reads the response head. A stale
    /// idle connection (the upstream closed it before a byte of answer) passes the
    /// request to the next: GET and HEAD are safe to send again.
    pub(crate) async fn send_bodiless(
        &self,
        head: &[u8],
        head_request: bool,
    ) -> Result<(Response<()>, BodyReader, RawConn), SendFailure> {
        loop {
            let (mut conn, reused) = match self.checkout_bare() {
                Some(conn) => (conn, true),
                None => (self.connect_bare().await?, false),
            };
            match conn.exchange(head, head_request).await {
                Ok((response, body)) => return Ok((response, body, conn)),
                Err(failure) if reused && failure.stale => {}
                Err(failure) => return Err(SendFailure::Send(failure.error.into())),
            }
        }
    }

    /// Puts a bare connection whose response has been read back with the idle ones.
    pub(crate) fn checkin_bare(&self, conn: RawConn) {
        push_idle(&self.idle_bare, conn, self.max_idle);
    }

    /// The most recently used idle bare connection still open.
    fn checkout_bare(&self) -> Option<RawConn> {
        loop {
            let mut conn = pop_fresh(&self.idle_bare)?;
            if conn.is_reusable() {
                return Some(conn);
            }
        }
    }

    /// A new bare connection (over TLS to an `https://` member). Its future is boxed:
    /// kilobytes with the TLS handshake, needed once per connection, not carried in
    /// every request's future.
    async fn connect_bare(&self) -> Result<RawConn, SendFailure> {
        Box::pin(open_stream(
            self.addr,
            self.tls.as_ref(),
            self.connect_timeout,
        ))
        .await
        .map(RawConn::new)
        .map_err(SendFailure::from)
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
                    None => return Err(SendFailure::Send(error.into_error().into())),
                },
            }
        }
    }

    /// Puts a connection whose response has been read back with the idle ones.
    pub(crate) fn checkin(&self, sender: SendRequest<UpstreamBody>) {
        if !sender.is_closed() {
            push_idle(&self.idle, sender, self.max_idle);
        }
    }

    /// The most recently used live idle connection, once it is ready for a request.
    async fn checkout(&self) -> Option<SendRequest<UpstreamBody>> {
        loop {
            let mut sender = pop_fresh(&self.idle)?;
            if sender.is_closed() {
                continue;
            }
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
            .map_err(SendFailure::from)
    }
}

impl From<OpenFailure> for SendFailure {
    fn from(failure: OpenFailure) -> Self {
        match failure {
            OpenFailure::Connect(e) => SendFailure::Connect(e),
            OpenFailure::Tls(e) => SendFailure::Tls(e),
        }
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

/// The response body of a request without a body ([`super::exchange`]), read from its
/// bare connection as the client takes it; like [`KeepAliveBody`], it gives the
/// connection back when the body ends (if the response allows reuse), then frees its
/// upstream's slot; dropped early, or stalled for [`RESPONSE_IDLE_TIMEOUT`], it closes
/// the connection instead.
pub(crate) struct ExchangeBody {
    /// The connection, until given back or dropped.
    conn: Option<RawConn>,
    reader: BodyReader,
    conns: Arc<UpstreamConns>,
    /// The request's `max_conns` slot, released after the connection is back.
    slot: Option<Slot>,
    idle: IdleTimer,
    /// `front_response_stalls_total`.
    stalls: metrics::Counter,
}

impl ExchangeBody {
    /// Reads the body from `conn` with `reader`; a body already at its end (204,
    /// HEAD, `Content-Length: 0`) gives the connection back at once.
    pub(crate) fn new(
        conn: RawConn,
        reader: BodyReader,
        conns: Arc<UpstreamConns>,
        slot: Slot,
        stalls: metrics::Counter,
    ) -> Self {
        let mut body = Self {
            conn: Some(conn),
            reader,
            conns,
            slot: Some(slot),
            idle: IdleTimer::new(RESPONSE_IDLE_TIMEOUT),
            stalls,
        };
        if body.reader.is_done() {
            body.finish();
        }
        body
    }

    /// The body ended: the connection goes back if it may carry another request.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.reader.leaves_reusable(&conn)
        {
            self.conns.checkin_bare(conn);
        }
        self.slot = None;
    }

    /// The body failed: the connection closes.
    fn abandon(&mut self) {
        self.conn = None;
        self.slot = None;
    }
}

impl hyper::body::Body for ExchangeBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        match this.reader.poll_data(conn, cx) {
            Poll::Pending => {
                ready!(this.idle.poll_expired(cx));
                this.stalls.increment(1);
                this.abandon();
                Poll::Ready(Some(Err(axum::Error::new(format!(
                    "the upstream response stalled: no byte for {}s",
                    RESPONSE_IDLE_TIMEOUT.as_secs()
                )))))
            }
            Poll::Ready(Some(Ok(data))) => {
                this.idle.progressed();
                // The server stops polling once `is_end_stream` says so: give back on
                // the last piece, not only on the `None` after it.
                if this.reader.is_done() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                this.abandon();
                Poll::Ready(Some(Err(axum::Error::new(error))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.reader.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::proxy::exchange::tests::read_request_head;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: up\r\n\r\n";

    /// An upstream that answers `answers_per_connection` requests on each connection
    /// with `ok`, then closes it; counts the connections it accepted.
    async fn upstream(answers_per_connection: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    for _ in 0..answers_per_connection {
                        if !read_request_head(&mut socket).await {
                            return;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn conns(addr: SocketAddr) -> Arc<UpstreamConns> {
        Arc::new(UpstreamConns::new(addr, None, Duration::from_secs(1), 8))
    }

    /// One GET through `conns`, its body read (or dropped unread when `read` is false).
    async fn get(conns: &Arc<UpstreamConns>, read: bool) -> Result<Bytes, SendFailure> {
        let (response, reader, conn) = conns.send_bodiless(GET, false).await?;
        assert_eq!(response.status(), 200);
        let slot = Slot::new(None, Arc::new(AtomicUsize::new(1)));
        let counter = metrics::Counter::noop();
        let body = ExchangeBody::new(conn, reader, Arc::clone(conns), slot, counter);
        if !read {
            return Ok(Bytes::new());
        }
        let collected = body.collect().await.expect("body");
        Ok(collected.to_bytes())
    }

    #[tokio::test]
    async fn gets_one_after_another_share_one_connection() {
        let (addr, accepted) = upstream(usize::MAX).await;
        let conns = conns(addr);
        for _ in 0..5 {
            assert_eq!(get(&conns, true).await.expect("answer"), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_unread_takes_its_connection_with_it() {
        let (addr, accepted) = upstream(usize::MAX).await;
        let conns = conns(addr);
        get(&conns, false).await.expect("answer");
        // The body held "ok" unread in the connection's buffer: it never goes back.
        assert_eq!(get(&conns, true).await.expect("answer"), "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_costs_no_request() {
        // One answer per connection: every idle connection is closed by the upstream,
        // the stale keep-alive race on every request.
        let (addr, accepted) = upstream(1).await;
        let conns = conns(addr);
        for _ in 0..5 {
            assert_eq!(get(&conns, true).await.expect("no failure"), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn an_upstream_that_is_gone_is_a_connect_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let failure = get(&conns(addr), true).await.expect_err("refused");
        assert!(matches!(failure, SendFailure::Connect(_)), "{failure:?}");
    }
}
