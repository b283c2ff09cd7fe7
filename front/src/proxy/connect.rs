//! [`open`]: one new HTTP/1.1 connection to an upstream: TCP (with TCP_NODELAY), then,
//! for an `https://` member, a TLS handshake verified by its [`UpstreamTls`], then
//! hyper's HTTP/1.1 handshake, the connection's driver task spawned on the current
//! runtime.
//!
//! Shared by the keep-alive connections of requests ([`super::conns`]) and the health
//! checks (`pools::health`), so a check reaches an `https://` member the way requests
//! do and fails when they would.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Body;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

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

/// Opens a connection to `addr`, over TLS when `tls` is given; the TCP connect and the
/// TLS handshake each get `timeout`.
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
    let stream = within(timeout, "connect", TcpStream::connect(addr))
        .await
        .map_err(OpenFailure::Connect)?;
    stream.set_nodelay(true).map_err(OpenFailure::Connect)?;
    let Some(tls) = tls else {
        return handshake(stream).await.map_err(OpenFailure::Connect);
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
    handshake(stream).await.map_err(OpenFailure::Connect)
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
