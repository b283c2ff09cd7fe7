//! TLS on the front's listener: the certificate loaded from its PEM files, the
//! rustls server configuration, the acceptor that runs a handshake within a time limit,
//! and the reload of the files (on SIGHUP: the service calls [`Certificates::reload`]
//! from its one SIGHUP handler, with the process's other reloadable parts).
//!
//! What is offered: TLS 1.2 and 1.3 only, rustls' `ring` provider (it builds with only
//! a C compiler), ALPN `h2` then `http/1.1`, no client certificates. [`crate::listen::server`]
//! calls [`TlsAcceptor::accept`] on each accepted connection, in the connection's own
//! task, and serves h2 or HTTP/1.1 by the protocol ALPN settled.
//!
//! Reload: the server configuration resolves its certificate through [`Certificates`]
//! on every handshake, so swapping the loaded pair (an [`ArcSwap`]) changes what new
//! handshakes present while connections already open keep theirs: nothing is dropped.
//! A file that does not load (missing, not PEM, a key that does not match) keeps the
//! certificate in use and logs why, counted in
//! `tls_certificate_reloads_total{result="failed"}`.
//!
//! Metrics: `tls_handshakes_total{result}` (`ok`, or why it failed: see
//! [`HANDSHAKE_RESULTS`]), `tls_certificate_expiry_seconds` (refreshed every minute and on
//! each reload), `tls_certificate_reloads_total{result}`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use metrics::{Counter, Gauge};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::limits::TlsConfig;

/// The ALPN protocol id of HTTP/2.
const ALPN_H2: &[u8] = b"h2";

/// The `result` labels of `tls_handshakes_total`: `ok`, or why a handshake failed:
/// `timeout` (not done within the handshake timeout), `closed` (the client went away
/// mid-handshake), `alert` (the client refused: typically it does not trust the
/// certificate), `incompatible` (no TLS version, cipher suite or ALPN protocol in
/// common), `protocol` (not TLS, or malformed), `io` (a socket error).
pub const HANDSHAKE_RESULTS: [&str; 7] = [
    "ok",
    "timeout",
    "closed",
    "alert",
    "incompatible",
    "protocol",
    "io",
];

/// How often the days-to-expiry gauge is brought up to date between reloads.
const EXPIRY_REFRESH: Duration = Duration::from_secs(60);

/// What [`Certificates`] serves now: the chain with its signing key, and what status
/// pages show of its leaf.
struct Loaded {
    key: Arc<CertifiedKey>,
    info: CertificateInfo,
}

/// What the status pages show of the certificate in use.
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    /// The leaf's subject (`CN=localhost`).
    pub subject: String,
    /// The leaf's issuer.
    pub issuer: String,
    /// The end of the leaf's validity.
    pub not_after: SystemTime,
}

impl CertificateInfo {
    /// Days from now to the end of validity (negative once expired).
    pub fn days_left(&self) -> f64 {
        match self.not_after.duration_since(SystemTime::now()) {
            Ok(left) => left.as_secs_f64() / 86_400.0,
            Err(past) => -past.duration().as_secs_f64() / 86_400.0,
        }
    }

    /// As JSON for `/front/status` and `/info`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "subject": self.subject,
            "issuer": self.issuer,
            "not_after": humantime::format_rfc3339_seconds(self.not_after).to_string(),
            "days_left": (self.days_left() * 10.0).round() / 10.0,
        })
    }
}

/// The certificate the front presents, loaded from its files, swapped on reload.
pub struct Certificates {
    files: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Loaded>,
    expiry_seconds: Gauge,
    reloaded: Counter,
    reload_failed: Counter,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("cert_file", &self.files.cert_file)
            .field("key_file", &self.files.key_file)
            .field("subject", &self.current.load().info.subject)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.load().key))
    }
}

impl Certificates {
    /// Loads the pair named by `files`; the error says which file and why.
    fn load(files: &TlsConfig, provider: Arc<CryptoProvider>) -> anyhow::Result<Self> {
        let loaded = load_pair(files, &provider)?;
        let certificates = Self {
            files: files.clone(),
            provider,
            current: ArcSwap::from_pointee(loaded),
            expiry_seconds: metrics::gauge!("tls_certificate_expiry_seconds"),
            reloaded: metrics::counter!("tls_certificate_reloads_total", "result" => "ok"),
            reload_failed: metrics::counter!("tls_certificate_reloads_total", "result" => "failed"),
        };
        certificates.reloaded.increment(0);
        certificates.reload_failed.increment(0);
        certificates.refresh_expiry();
        Ok(certificates)
    }

    /// Reads the files again and, if they load, presents the new pair to the next
    /// handshakes; if not, keeps the current one and returns why.
    pub fn reload(&self) -> anyhow::Result<()> {
        match load_pair(&self.files, &self.provider) {
            Ok(loaded) => {
                tracing::info!(
                    subject = %loaded.info.subject,
                    days_left = loaded.info.days_left(),
                    "TLS certificate reloaded"
                );
                self.current.store(Arc::new(loaded));
                self.reloaded.increment(1);
                self.refresh_expiry();
                Ok(())
            }
            Err(e) => {
                self.reload_failed.increment(1);
                let error = format!("{e:#}");
                tracing::error!(%error, "TLS certificate reload failed: keeping the current one");
                Err(e)
            }
        }
    }

    /// What the status pages show of the certificate in use.
    pub fn info(&self) -> CertificateInfo {
        self.current.load().info.clone()
    }

    fn refresh_expiry(&self) {
        // Prometheus base units: seconds (promtool refuses a `_days` name); the
        // dashboard divides by 86,400.
        self.expiry_seconds
            .set(self.current.load().info.days_left() * 86_400.0);
    }
}

/// Reads and checks a certificate chain and its key.
fn load_pair(files: &TlsConfig, provider: &CryptoProvider) -> anyhow::Result<Loaded> {
    let cert_file = files.cert_file.display();
    let chain = CertificateDer::pem_file_iter(&files.cert_file)
        .with_context(|| format!("reading the certificate file {cert_file}"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the certificate file {cert_file} is not valid PEM"))?;
    let Some(leaf) = chain.first() else {
        anyhow::bail!("the certificate file {cert_file} holds no CERTIFICATE block");
    };
    let info = certificate_info(leaf)
        .with_context(|| format!("the certificate file {cert_file}: its first certificate"))?;
    let key_file = files.key_file.display();
    let key = PrivateKeyDer::from_pem_file(&files.key_file).with_context(|| {
        format!("reading the private key file {key_file} (PEM: PRIVATE KEY, RSA or EC)")
    })?;
    let key = CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!("the private key {key_file} does not fit the certificate {cert_file}")
    })?;
    if info.days_left() < 0.0 {
        let subject = &info.subject;
        tracing::warn!(%subject, "the TLS certificate has expired: serving it anyway");
    }
    Ok(Loaded {
        key: Arc::new(key),
        info,
    })
}

/// The subject, issuer and end of validity of a DER certificate.
fn certificate_info(der: &CertificateDer<'_>) -> anyhow::Result<CertificateInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    let not_after = cert.validity().not_after.timestamp();
    let not_after = match u64::try_from(not_after) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => SystemTime::UNIX_EPOCH,
    };
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after,
    })
}

/// Checks that the files of `files` load, without serving them (`check-config`).
pub fn check(files: &TlsConfig) -> anyhow::Result<CertificateInfo> {
    Ok(load_pair(files, &provider())?.info)
}

/// rustls' `ring` provider, named explicitly: with more than one provider compiled in,
/// rustls would refuse to pick one itself.
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// How the front accepts TLS: the server configuration and the handshake time limit.
/// Cheap to clone (it shares the configuration and the certificates).
#[derive(Clone)]
pub struct TlsAcceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    certificates: Arc<Certificates>,
    handshake_timeout: Duration,
    handshakes: Arc<HandshakeCounters>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("certificates", &self.certificates)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// A connection after its handshake, with the protocol ALPN settled.
pub struct Handshaken {
    /// The decrypted stream.
    pub stream: TlsStream<TcpStream>,
    /// Whether the client chose `h2` (else HTTP/1.1).
    pub h2: bool,
}

impl TlsAcceptor {
    /// Loads the certificate of `files` and builds the server configuration.
    /// Install the metrics recorder first.
    pub fn new(files: &TlsConfig) -> anyhow::Result<Self> {
        let provider = Arc::new(provider());
        let certificates = Arc::new(Certificates::load(files, Arc::clone(&provider))?);
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS 1.2 and 1.3 with the ring provider")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificates) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            certificates,
            handshake_timeout: files.handshake_timeout,
            handshakes: Arc::new(HandshakeCounters::new()),
        })
    }

    /// The certificates this acceptor presents.
    pub fn certificates(&self) -> &Arc<Certificates> {
        &self.certificates
    }

    /// Runs the server side of a handshake on `stream` within the handshake timeout;
    /// `None` when it failed (counted by reason, logged at debug: a client's failure).
    pub async fn accept(&self, stream: TcpStream) -> Option<Handshaken> {
        let result =
            tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await;
        let reason = match result {
            Ok(Ok(stream)) => {
                self.handshakes.ok.increment(1);
                let h2 = stream.get_ref().1.alpn_protocol() == Some(ALPN_H2);
                return Some(Handshaken { stream, h2 });
            }
            Ok(Err(e)) => {
                let reason = failure_reason(&e);
                tracing::debug!(reason, error = %e, "TLS handshake failed");
                reason
            }
            Err(_) => "timeout",
        };
        self.handshakes.failed(reason);
        None
    }

    /// Keeps the expiry gauge current until `shutdown` is cancelled. The reload on
    /// SIGHUP is the caller's to wire, with the process's other reloadable parts:
    /// [`Certificates::reload`] on [`TlsAcceptor::certificates`].
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn_expiry_refresh(&self, shutdown: CancellationToken) {
        let certificates = Arc::clone(&self.certificates);
        tokio::spawn(async move {
            let mut refresh = tokio::time::interval(EXPIRY_REFRESH);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = refresh.tick() => certificates.refresh_expiry(),
                }
            }
        });
    }
}

/// `tls_handshakes_total`, one handle per result.
struct HandshakeCounters {
    ok: Counter,
    failed: Vec<(&'static str, Counter)>,
}

impl HandshakeCounters {
    fn new() -> Self {
        let counter = |result: &'static str| {
            let counter = metrics::counter!("tls_handshakes_total", "result" => result);
            counter.increment(0);
            counter
        };
        Self {
            ok: counter("ok"),
            failed: HANDSHAKE_RESULTS[1..]
                .iter()
                .map(|&reason| (reason, counter(reason)))
                .collect(),
        }
    }

    fn failed(&self, reason: &str) {
        if let Some((_, counter)) = self.failed.iter().find(|(r, _)| *r == reason) {
            counter.increment(1);
        }
    }
}

/// Why a handshake failed, as a `tls_handshakes_total` result.
fn failure_reason(error: &std::io::Error) -> &'static str {
    use rustls::Error as E;
    match error.get_ref().and_then(|e| e.downcast_ref::<E>()) {
        Some(E::AlertReceived(_)) => "alert",
        Some(E::PeerIncompatible(_) | E::NoApplicationProtocol) => "incompatible",
        Some(_) => "protocol",
        None => match error.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => "closed",
            std::io::ErrorKind::InvalidData => "protocol",
            _ => "io",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a self-signed pair with common name `cn` to `dir/front.{pem,key}`.
    fn write_pair(dir: &std::path::Path, cn: &str) -> TlsConfig {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).expect("cert");
        let files = TlsConfig {
            cert_file: dir.join("front.pem"),
            key_file: dir.join("front.key"),
            handshake_timeout: Duration::from_secs(1),
        };
        std::fs::write(&files.cert_file, cert.pem()).expect("cert file");
        std::fs::write(&files.key_file, key.serialize_pem()).expect("key file");
        files
    }

    #[test]
    fn a_pair_loads_with_its_subject_and_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path(), "one");

        let info = check(&files).expect("loads");

        assert_eq!(info.subject, "CN=one");
        assert!(info.days_left() > 365.0, "rcgen's default validity is long");
    }

    #[test]
    fn a_reload_swaps_the_pair_and_a_bad_file_keeps_the_old_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path(), "one");
        let certificates = Certificates::load(&files, Arc::new(provider())).expect("loads");

        write_pair(dir.path(), "two");
        certificates.reload().expect("the new pair loads");
        let swapped = certificates.info().subject;
        std::fs::write(&files.cert_file, "not PEM").expect("break the file");
        let broken = certificates.reload().expect_err("a bad file is refused");

        assert_eq!(swapped, "CN=two");
        assert_eq!(certificates.info().subject, "CN=two");
        assert!(format!("{broken:#}").contains("front.pem"), "{broken:#}");
    }

    #[test]
    fn a_key_that_does_not_fit_the_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path(), "one");
        let other = tempfile::tempdir().expect("tempdir");
        let stranger = write_pair(other.path(), "two");
        let mixed = TlsConfig {
            key_file: stranger.key_file,
            ..files
        };

        let error = check(&mixed).expect_err("refused");

        assert!(format!("{error:#}").contains("does not fit"), "{error:#}");
    }

    #[test]
    fn missing_files_are_named() {
        let files = TlsConfig {
            cert_file: "/nonexistent/cert.pem".into(),
            key_file: "/nonexistent/key.pem".into(),
            handshake_timeout: Duration::from_secs(1),
        };
        let error = format!("{:#}", check(&files).expect_err("refused"));
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
    }
}
