//! The self-signed certificate of the TLS rows (`front-tls`, `front-h2`, `nginx-h2`,
//! `haproxy-h2`): generated once per harness run with rcgen (ECDSA P-256, for
//! `localhost` and `127.0.0.1`), so the harness needs no `openssl` program, and written
//! into each measured run's folder by [`crate::target`], where every server of the run
//! reads the same one.

/// The certificate file in a run folder (PEM), as the front's `--tls-cert` and nginx's
/// `ssl_certificate` read it.
pub(crate) const CERT_FILE: &str = "cert.pem";
/// The private key file (PEM, PKCS#8).
pub(crate) const KEY_FILE: &str = "key.pem";
/// The certificate and its key in one file: HAProxy's `crt` wants both together.
pub(crate) const BUNDLE_FILE: &str = "tls.pem";

/// A self-signed certificate and its key, as PEM text.
#[derive(Debug, Clone)]
pub(crate) struct SelfSigned {
    cert_pem: String,
    key_pem: String,
}

impl SelfSigned {
    /// Generates one for `localhost` and `127.0.0.1`. The load generators do not verify
    /// it (neither wrk nor h2load checks certificates): it exists so TLS is negotiated.
    pub(crate) fn generate() -> Result<Self, String> {
        let key = rcgen::KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params =
            rcgen::CertificateParams::new(names).map_err(|e| format!("certificate names: {e}"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("self-signing the certificate: {e}"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes [`CERT_FILE`], [`KEY_FILE`] and [`BUNDLE_FILE`] into `dir`.
    pub(crate) fn write_into(&self, dir: &std::path::Path) -> Result<(), String> {
        let bundle = format!("{}{}", self.cert_pem, self.key_pem);
        for (name, text) in [
            (CERT_FILE, self.cert_pem.as_str()),
            (KEY_FILE, self.key_pem.as_str()),
            (BUNDLE_FILE, bundle.as_str()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        Ok(())
    }
}
