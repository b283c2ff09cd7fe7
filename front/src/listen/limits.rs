//! The limits every listener applies, the front's and each shard's: [`EdgeLimits`]
//! (the edge's layers: CORS, the request time limit) and [`ConnectionLimits`] (the
//! accept loop's: open connections, the header-read timeout, the shutdown grace), and
//! [`TlsConfig`] (the front's certificate files and handshake time limit).
//! Set from the command line (the service crate's config); the front's own
//! upstream-side limits are [`crate::UpstreamLimits`].

use std::path::PathBuf;
use std::time::Duration;

/// TLS on the front's listener (`--tls-cert`/`--tls-key`, or `tls_cert`/`tls_key` in
/// the front config): see [`crate::listen::tls`].
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM file: the certificate, then any intermediates (a chain).
    pub cert_file: PathBuf,
    /// PEM file: its private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
    /// Time a client gets to finish the handshake before its connection is closed.
    pub handshake_timeout: Duration,
}

/// [`TlsConfig::handshake_timeout`] unless set.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-listener connection limits.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Time a client gets to send a request's headers before its connection is closed.
    pub header_read_timeout: Duration,
    /// Open connections at once; further clients wait to be accepted.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests before dropping them.
    pub shutdown_grace: Duration,
}

/// Limits applied at every listener (the front's and, in `loadlab serve`, each shard's).
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// CORS allow-list; empty: no CORS headers. `*` allows any origin.
    pub cors_origins: Vec<String>,
    /// Time to answer a request end to end (504 after).
    pub request_timeout: Duration,
    /// Connection-level limits.
    pub connections: ConnectionLimits,
}
