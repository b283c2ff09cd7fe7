//! Which HTTP a client connection speaks, and serving it with hyper's builder for that
//! version: HTTP/1.1, h2 over TLS (chosen by ALPN), or h2c (cleartext HTTP/2 with prior
//! knowledge, recognised by its connection preface). Every listener (front and shards)
//! serves connections through here, from [`crate::listen::server`].
//!
//! Why not hyper-util's `auto` builder, which also tells h2c from HTTP/1.1 by the
//! preface: it waits for those first bytes with no time limit, so a client that
//! connects and says nothing (or half a preface) would hold a connection slot forever,
//! where HTTP/1.1 alone had the header-read timeout. Here the preface is read within
//! that same timeout, and the version is known when the connection is counted in
//! `http_connections_total{protocol}`.
//!
//! HTTP/2 limits, the same on every listener:
//! - [`H2_MAX_CONCURRENT_STREAMS`] streams open at once per connection (nginx's
//!   `http2_max_concurrent_streams`);
//! - header lists up to `MAX_HEAD_BUFFER`: as hyper's HTTP/1.1 buffer, past which the
//!   stream is refused, and the edge answers JSON 431 past its own limit below that;
//! - flow control: [`H2_STREAM_WINDOW`] per stream and [`H2_CONNECTION_WINDOW`] per
//!   connection, which bounds what one connection makes the front buffer;
//! - rapid reset (CVE-2023-44487): a client that resets more than
//!   [`H2_MAX_PENDING_RESETS`] streams before they were served, or makes the server
//!   reset more than [`H2_MAX_LOCAL_ERROR_RESETS`], gets GOAWAY. A stream reset while
//!   its request runs drops the request's future, which cancels its work (a randoms
//!   job's cancel flag is raised on drop), so resets buy no free CPU.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use metrics::Counter;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower::ServiceExt as _;

use super::accept::ConnState;
use super::edge::HttpService;
use super::limits::ConnectionLimits;
use super::tls::TlsAcceptor;

/// hyper's read buffer per HTTP/1.1 connection, and the largest h2 header list: the
/// largest request head parsed.
pub(crate) const MAX_HEAD_BUFFER: usize = 2 * super::edge::MAX_HEADER_BYTES;

/// Streams open at once on one h2 connection.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// Bytes a client may send on one h2 stream before the server reads them.
pub const H2_STREAM_WINDOW: u32 = 256 * 1024;
/// Bytes a client may send on one h2 connection, all streams together, before the
/// server reads them.
pub const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Streams a client may reset before the server accepted them, before GOAWAY (h2's
/// default, named here so it is set on purpose).
pub const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams the server may reset for a client's protocol errors, before GOAWAY.
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// The client connection preface of HTTP/2 (RFC 9113 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The `protocol` labels of `http_connections_total`.
pub const PROTOCOLS: [&str; 3] = ["http1", "h2", "h2c"];

/// Marks a request that came over TLS (a request extension), for `X-Forwarded-Proto`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverTls;

/// hyper's builders for both versions, with loadlab's limits, and the connection
/// counters.
pub(crate) struct Protocols {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// Time to the end of the preface (or the first bytes that are not one).
    preface_timeout: std::time::Duration,
    /// `http_connections_total{protocol}`, in [`PROTOCOLS`] order.
    counted: [Counter; 3],
}

impl Protocols {
    pub(crate) fn new(limits: &ConnectionLimits) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper's default buffer (~400 KiB) takes a 100 KB header line; this stops
            // a header block past twice the edge's limit with hyper's own (empty) 431,
            // and the edge answers JSON 431 between the two.
            .max_buf_size(MAX_HEAD_BUFFER)
            .keep_alive(true);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .max_header_list_size(MAX_HEAD_BUFFER as u32)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS);
        Self {
            http1,
            http2,
            preface_timeout: limits.header_read_timeout,
            counted: PROTOCOLS.map(|protocol| {
                let counter = metrics::counter!("http_connections_total", "protocol" => protocol);
                counter.increment(0);
                counter
            }),
        }
    }

    /// Serves one accepted connection to its end: the TLS handshake first when `tls`
    /// is given, then HTTP/1.1 or h2 as the client chose. Each request marks `conn`
    /// busy until its response is ready, so a connection between requests (HTTP/1.1)
    /// or with no stream open (h2) counts as idle to the connection cap. Once `close`
    /// resolves the connection closes gracefully: at once before or between requests,
    /// else once those in flight are answered. Failures are the client's (a reset, a
    /// timeout, a bad handshake): nothing to answer.
    pub(crate) async fn serve(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        service: impl HttpService,
        conn: &Arc<ConnState>,
        close: impl Future<Output = ()>,
    ) {
        let service = move |over_tls: bool| {
            let conn = Arc::clone(conn);
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                if over_tls {
                    req.extensions_mut().insert(OverTls);
                }
                let busy = conn.begin_request();
                let response = service.clone().oneshot(req.map(axum::body::Body::new));
                async move {
                    let response = response.await;
                    drop(busy);
                    response
                }
            })
        };
        let mut close = std::pin::pin!(close);
        if let Some(tls) = tls {
            // A client still in its handshake has sent no request: closing it is free.
            let handshaken = tokio::select! {
                handshaken = tls.accept(stream) => handshaken,
                _ = close.as_mut() => None,
            };
            let Some(handshaken) = handshaken else {
                return;
            };
            let (io, service) = (TokioIo::new(handshaken.stream), service(true));
            if handshaken.h2 {
                self.counted[1].increment(1);
                until_closed(self.http2.serve_connection(io, service), close).await;
            } else {
                self.counted[0].increment(1);
                until_closed(self.http1.serve_connection(io, service), close).await;
            }
            return;
        }
        let read = tokio::select! {
            read = tokio::time::timeout(self.preface_timeout, read_preface(&mut stream)) => read,
            _ = close.as_mut() => return,
        };
        let Ok(Ok(Some(start))) = read else {
            // Silent past the header-read timeout, closed, or a socket error.
            return;
        };
        let h2 = start.is_h2();
        let io = TokioIo::new(Rewind {
            start,
            inner: stream,
        });
        if h2 {
            self.counted[2].increment(1);
            until_closed(self.http2.serve_connection(io, service(false)), close).await;
        } else {
            self.counted[0].increment(1);
            until_closed(self.http1.serve_connection(io, service(false)), close).await;
        }
    }
}

/// Serves `connection` to its end, closing it gracefully once `close` resolves.
async fn until_closed<C: GracefulConnection>(
    connection: C,
    close: Pin<&mut impl Future<Output = ()>>,
) {
    let mut connection = std::pin::pin!(connection);
    // Errors here are the client's (reset, timeout): nothing to answer.
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = close => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// The first bytes of a connection, read to tell h2c from HTTP/1.1.
struct Start {
    bytes: [u8; H2_PREFACE.len()],
    len: usize,
    /// How many of `bytes` were handed on already.
    read: usize,
}

impl Start {
    fn is_h2(&self) -> bool {
        self.len == H2_PREFACE.len() && self.bytes == *H2_PREFACE
    }
}

/// Reads until the bytes so far are the whole h2 preface or cannot be one; `None`
/// when the client closed first.
async fn read_preface(stream: &mut TcpStream) -> io::Result<Option<Start>> {
    let mut start = Start {
        bytes: [0; H2_PREFACE.len()],
        len: 0,
        read: 0,
    };
    while start.len < H2_PREFACE.len() {
        let n = stream.read(&mut start.bytes[start.len..]).await?;
        if n == 0 {
            return Ok(None);
        }
        start.len += n;
        if start.bytes[..start.len] != H2_PREFACE[..start.len] {
            break;
        }
    }
    Ok(Some(start))
}

/// A stream whose first bytes were read already: they are read again first.
struct Rewind {
    start: Start,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let start = &mut self.start;
        if start.read < start.len {
            let n = buf.remaining().min(start.len - start.read);
            buf.put_slice(&start.bytes[start.read..start.read + n]);
            start.read += n;
            if start.read == start.len && buf.remaining() > 0 {
                // What else has arrived goes in the same read: hyper sizes its next
                // reads (and so where its head-size limit bites) by how full this one
                // came back, so a short first read would change what it accepts. An
                // error here comes back on the next read; `Pending` registered the
                // waker, which at worst wakes the task once for nothing.
                let _ = Pin::new(&mut self.inner).poll_read(cx, buf);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
