//! One new connection to an upstream: [`open_stream`] connects TCP (with TCP_NODELAY)
//! then, for an `https://` member, makes a TLS handshake verified by its
//! [`UpstreamTls`]; [`open`] adds hyper's HTTP/1.1 handshake, the connection's driver
//! task spawned on the current runtime.
//!
//! Shared by the keep-alive connections of requests ([`super::conns`]: hyper's for
//! requests with a body, the bare stream for the [`super::exchange`] of those without)
//! and the health checks (`pools::health`), so a check reaches an `https://` member the
//! way requests do and fails when they would.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Body;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::pools::tls::UpstreamTls;

/// Why no connection could be opened. Either way no request went out.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    /// TCP: refused, unreachable, timed out.
    Connect(io::Error),
    /// The TLS handshake: an untrusted certificate, a wrong name, no common version, or
    /// no answer within the connect timeout.
    Tls(io::Error),
}

/// Opens an HTTP/1.1 connection to `addr`, over TLS when `tls` is given; the TCP
/// connect and the TLS handshake each get `timeout`.
pub(crate) async fn open<B>(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> Result<SendRequest<B>, OpenFailure>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = open_stream(addr, tls, timeout).await?;
    handshake(stream).await.map_err(OpenFailure::Connect)
}

/// Opens a byte stream to `addr`, over TLS when `tls` is given; the TCP connect and
/// the TLS handshake each get `timeout`.
pub(crate) async fn open_stream(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> Result<UpstreamIo, OpenFailure> {
    let stream = within(timeout, "connect", TcpStream::connect(addr))
        .await
        .map_err(OpenFailure::Connect)?;
    stream.set_nodelay(true).map_err(OpenFailure::Connect)?;
    let Some(tls) = tls else {
        return Ok(UpstreamIo::Plain(stream));
    };
    let connecting = tls.connector().connect(tls.server_name().clone(), stream);
    let stream = within(timeout, "TLS handshake", connecting)
        .await
        .map_err(|e| {
            let name = tls.server_name().to_str();
            OpenFailure::Tls(io::Error::new(
                e.kind(),
                format!("TLS handshake with `{name}` failed: {e}"),
            ))
        })?;
    Ok(UpstreamIo::Tls(Box::new(stream)))
}

/// A connection to an upstream: cleartext, or TLS to an `https://` member (boxed: a
/// TLS session's state is a few hundred bytes, a TCP stream's a few words).
#[derive(Debug)]
pub(crate) enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// `step` within `timeout`, a timeout being an error that names the step.
async fn within<T>(
    timeout: Duration,
    step: &str,
    future: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(timeout, future).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{step} timed out after {timeout:?}"),
        )
    })?
}

/// HTTP/1.1 over `io`, its connection driven by a spawned task.
async fn handshake<B, T>(io: T) -> io::Result<SendRequest<B>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        // Errors end the connection; the request that saw them reports them.
        let _ = connection.await;
    });
    Ok(sender)
}
