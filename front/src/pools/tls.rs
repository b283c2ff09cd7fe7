//! [`UpstreamTls`]: how the front speaks TLS to an `https://` member of its config: the
//! name it verifies (and sends as SNI) and the roots it trusts, either the system's or
//! only those of the member's `ca_file`.
//!
//! Everything that can fail (reading `ca_file`, finding system roots) fails here, when
//! the config is loaded: `check-config`, the start and a SIGHUP reload report it, and a
//! front that runs holds only client configs that were built whole.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context as _, bail};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sha2::{Digest as _, Sha256};

/// How a member is reached: the scheme written before its `host:port` (none means
/// `http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Cleartext HTTP/1.1.
    Http,
    /// HTTP/1.1 over TLS.
    Https,
}

impl Scheme {
    /// `Https` with TLS settings, else `Http`.
    pub fn of(tls: Option<&UpstreamTls>) -> Self {
        if tls.is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }

    /// `http` or `https`, as `/front/status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Splits a member's `addr` as written into its scheme and its `host:port`:
/// `host:port` and `http://host:port` are cleartext, `https://host:port` is TLS; any
/// other scheme, a missing port or anything after the port is refused, naming `addr`.
pub(crate) fn split_scheme(addr: &str) -> anyhow::Result<(Scheme, &str)> {
    // Schemes are case-insensitive (RFC 3986 section 3.1).
    let (scheme, authority) = match addr.split_once("://") {
        None => (Scheme::Http, addr),
        Some((http, rest)) if http.eq_ignore_ascii_case("http") => (Scheme::Http, rest),
        Some((https, rest)) if https.eq_ignore_ascii_case("https") => (Scheme::Https, rest),
        Some((other, _)) => bail!(
            "upstream `{addr}`: the scheme `{other}` is not supported (write host:port, \
                http://host:port or https://host:port)"
        ),
    };
    if authority.contains(['/', '?', '#', '@']) {
        bail!("upstream `{addr}`: write only host:port after the scheme (no path, no user)");
    }
    let port = authority.rsplit_once(':').map(|(_, port)| port);
    if authority.ends_with(']') || port.is_none_or(|p| p.parse::<u16>().is_err()) {
        bail!("upstream `{addr}` has no port: write host:port");
    }
    Ok((scheme, authority))
}

/// TLS to one `https://` member: its server name and the client config that verifies it.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The host as written, checked against the certificate; sent as SNI unless it is
    /// an IP address (the certificate must then name that address).
    server_name: ServerName<'static>,
    /// The member's `ca_file`; `None`: the system roots.
    ca_file: Option<PathBuf>,
    /// SHA-256 of the trusted roots' DER, so a reload that changes a CA file's contents
    /// gives the member a new client (same path, new roots).
    roots_digest: [u8; 32],
    /// TLS 1.2 and 1.3 with the ring provider, ALPN `http/1.1`, no client certificate.
    client: Arc<ClientConfig>,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl PartialEq for UpstreamTls {
    /// Same name, same file, same roots: a reload may keep the member's connections.
    fn eq(&self, other: &Self) -> bool {
        self.server_name == other.server_name
            && self.ca_file == other.ca_file
            && self.roots_digest == other.roots_digest
    }
}

impl UpstreamTls {
    /// TLS to `authority` (`host:port`, as `split_scheme` returned it), trusting only
    /// the certificates in `ca_file`, or the system roots without one.
    pub fn new(authority: &str, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_owned())
            .with_context(|| format!("upstream `{authority}`: `{host}` is not a host name"))?;
        let (client, roots_digest) = match ca_file {
            Some(file) => {
                let (roots, digest) = load_ca_file(file)?;
                (client_config(roots)?, digest)
            }
            None => system_roots()?,
        };
        Ok(Self {
            server_name,
            ca_file: ca_file.map(Path::to_path_buf),
            roots_digest,
            client,
        })
    }

    /// The name verified against the upstream's certificate.
    pub(crate) fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }

    /// A connector with this member's client config.
    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(Arc::clone(&self.client))
    }

    /// The member's `ca_file`, `None` when it trusts the system roots.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }
}

/// The certificates of a PEM bundle as a root store, and their digest; the error names
/// the file.
fn load_ca_file(file: &Path) -> anyhow::Result<(RootCertStore, [u8; 32])> {
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("ca_file {}: not a readable PEM file", file.display()))?;
    if certs.is_empty() {
        bail!("ca_file {}: no certificate in it", file.display());
    }
    let mut roots = RootCertStore::empty();
    let mut digest = Sha256::new();
    for (i, cert) in certs.into_iter().enumerate() {
        digest.update(cert.as_ref());
        roots.add(cert).with_context(|| {
            format!(
                "ca_file {}: certificate {} is not a usable CA",
                file.display(),
                i + 1
            )
        })?;
    }
    Ok((roots, digest.finalize().into()))
}

/// A client config and the digest of the roots it trusts.
type Verifying = (Arc<ClientConfig>, [u8; 32]);

/// The client config over the system's roots, loaded once per process (the first
/// `https://` member without `ca_file` loads them); an error when none could be loaded.
fn system_roots() -> anyhow::Result<Verifying> {
    static SYSTEM: OnceLock<Result<Verifying, String>> = OnceLock::new();
    let loaded = SYSTEM.get_or_init(|| {
        // Honours SSL_CERT_FILE and SSL_CERT_DIR, else the distribution's bundle.
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let mut digest = Sha256::new();
        for cert in &found.certs {
            digest.update(cert.as_ref());
        }
        let (added, _unusable) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
            return Err(format!(
                "no system root certificates could be loaded ({}): give the https members a \
                    ca_file",
                if errors.is_empty() {
                    "none found".to_owned()
                } else {
                    errors.join("; ")
                }
            ));
        }
        let client = client_config(roots).map_err(|e| format!("{e:#}"))?;
        Ok((client, digest.finalize().into()))
    });
    loaded.clone().map_err(anyhow::Error::msg)
}

/// TLS 1.2 and 1.3 over the ring provider, trusting `roots`, offering only `http/1.1`
/// (the front speaks HTTP/1.1 to its upstreams), without a client certificate.
fn client_config(roots: RootCertStore) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .context("the TLS provider refuses TLS 1.2 and 1.3")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_http_and_https_addresses_split() {
        assert_eq!(split_scheme("h:1").expect("bare"), (Scheme::Http, "h:1"));
        assert_eq!(
            split_scheme("http://h:1").expect("http"),
            (Scheme::Http, "h:1")
        );
        assert_eq!(
            split_scheme("https://[::1]:443").expect("https"),
            (Scheme::Https, "[::1]:443")
        );
        assert_eq!(
            split_scheme("HTTPS://h:1").expect("schemes ignore case"),
            (Scheme::Https, "h:1")
        );
    }

    #[test]
    fn other_schemes_paths_and_missing_ports_are_refused_by_name() {
        let error = |addr: &str| format!("{:#}", split_scheme(addr).expect_err(addr));
        assert!(error("ftp://h:21").contains("the scheme `ftp` is not supported"));
        assert!(error("ftp://h:21").contains("ftp://h:21"));
        assert!(error("https://h:1/api").contains("no path"));
        assert!(error("https://h").contains("has no port"));
        assert!(error("https://[::1]").contains("has no port"));
        assert!(error("http://h:x").contains("has no port"));
    }

    #[test]
    fn the_server_name_is_the_host_as_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["ca.test".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        std::fs::write(&file, cert.pem()).expect("write");
        let tls = UpstreamTls::new("api.internal:8443", Some(&file)).expect("loads");
        assert_eq!(tls.server_name().to_str(), "api.internal");
        let ip = UpstreamTls::new("[::1]:8443", Some(&file)).expect("loads");
        assert!(matches!(ip.server_name(), ServerName::IpAddress(_)));
        assert_eq!(tls, tls.clone());
        assert_ne!(tls, ip);
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.pem");
        let error = format!(
            "{:#}",
            UpstreamTls::new("h:1", Some(&missing)).expect_err("missing")
        );
        assert!(error.contains("missing.pem"), "{error}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").expect("write");
        let error = format!(
            "{:#}",
            UpstreamTls::new("h:1", Some(&empty)).expect_err("empty")
        );
        assert!(
            error.contains("empty.pem") && error.contains("no certificate"),
            "{error}"
        );
    }
}
