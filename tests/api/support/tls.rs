//! TLS and HTTP/2 test support: self-signed certificates written to PEM files (rcgen),
//! and a small client that speaks HTTP/1.1 or h2 over TLS (ALPN) or h2c, reporting
//! the version the server answered with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{Request, StatusCode, Version};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// A self-signed certificate for `localhost` and `127.0.0.1` with the common name
/// `cn`, its files, and its DER for a client's root store.
pub struct TestCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    /// Generates a certificate with common name `cn`, written as `{name}.pem` and
    /// `{name}.key` in `dir`.
    pub fn generate(dir: &Path, name: &str, cn: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("key pair");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        let cert = params.self_signed(&key).expect("self-signed");
        let cert_file = dir.join(format!("{name}.pem"));
        let key_file = dir.join(format!("{name}.key"));
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        Self {
            cert_file,
            key_file,
            der: cert.der().clone(),
        }
    }

    /// `--tls-cert FILE --tls-key FILE`.
    pub fn flags(&self) -> [String; 4] {
        [
            "--tls-cert".to_owned(),
            self.cert_file.display().to_string(),
            "--tls-key".to_owned(),
            self.key_file.display().to_string(),
        ]
    }
}

/// What a request got: status, the HTTP version of the answer, the body as text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub version: Version,
    pub body: String,
}

/// A TLS client trusting only `root`, offering `alpn` (e.g. `[b"h2", b"http/1.1"]`).
pub fn tls_connector(root: &CertificateDer<'static>, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root certificate");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// GETs `path` from `addr` over TLS (server name `localhost`, trusting `root`),
/// offering `alpn`; HTTP/2 when the server picked `h2`, else HTTP/1.1.
pub async fn https_get(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    alpn: &[&[u8]],
    path: &str,
) -> Answer {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = tls_connector(root, alpn)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let uri = format!("https://localhost:{}{path}", addr.port());
    if h2 {
        get_h2(TokioIo::new(tls), &uri).await
    } else {
        get_http1(TokioIo::new(tls), path).await
    }
}

/// GETs `path` from `addr` as cleartext HTTP/2 with prior knowledge (h2c).
pub async fn h2c_get(addr: SocketAddr, path: &str) -> Answer {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    get_h2(TokioIo::new(tcp), &format!("http://{addr}{path}")).await
}

async fn get_h2<I>(io: I, uri: &str) -> Answer
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("h2 handshake");
    tokio::spawn(connection);
    let request = Request::get(uri)
        .body(Empty::<Bytes>::new())
        .expect("request");
    answer(sender.send_request(request).await.expect("h2 response")).await
}

async fn get_http1<I>(io: I, path: &str) -> Answer
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("http/1.1 handshake");
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    answer(
        sender
            .send_request(request)
            .await
            .expect("http/1.1 response"),
    )
    .await
}

async fn answer(response: hyper::Response<hyper::body::Incoming>) -> Answer {
    let (status, version) = (response.status(), response.version());
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        version,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
