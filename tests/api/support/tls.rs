//! TLS and HTTP/2 test support: self-signed certificates written to PEM files (rcgen),
//! a small client that speaks HTTP/1.1 or h2 over TLS (ALPN) or h2c, reporting
//! the version the server answered with, and an HTTPS upstream ([`TlsUpstream`]) that
//! records what each request came with (SNI, ALPN, User-Agent).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{Request, StatusCode, Version};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tower::ServiceExt as _;

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
        Self::generate_for(dir, name, cn, &["localhost", "127.0.0.1"])
    }

    /// [`Self::generate`] for the names `sans` (host names or IP addresses) instead.
    pub fn generate_for(dir: &Path, name: &str, cn: &str, sans: &[&str]) -> Self {
        let key = rcgen::KeyPair::generate().expect("key pair");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(sans).expect("params");
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

/// What the [`TlsUpstream`] saw of one request.
#[derive(Debug, Clone)]
pub struct Served {
    /// The SNI of its connection (`None`: the client sent none).
    pub sni: Option<String>,
    /// The protocol its connection agreed by ALPN.
    pub alpn: Option<String>,
    pub path: String,
    pub user_agent: String,
}

/// An HTTPS upstream on 127.0.0.1, port 0: `router` over HTTP/1.1 behind TLS with a
/// [`TestCert`], on its own thread and runtime (stopped on drop, closing every
/// connection), recording each request it serves.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    served: Arc<Mutex<Vec<Served>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TlsUpstream {
    /// Serves `router` over TLS, presenting `cert` and offering ALPN `http/1.1`.
    pub fn start(cert: &TestCert, router: axum::Router) -> Self {
        let chain = CertificateDer::pem_file_iter(&cert.cert_file)
            .expect("cert file")
            .collect::<Result<Vec<_>, _>>()
            .expect("cert PEM");
        let key = PrivateKeyDer::from_pem_file(&cert.key_file).expect("key PEM");
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let served = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let record = Arc::clone(&served);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("upstream runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("adopt");
                tokio::select! {
                    _ = accept_loop(listener, acceptor, router, record) => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            addr,
            served,
            stop: Some(stop),
        }
    }

    /// The requests served so far, in order.
    pub fn served(&self) -> Vec<Served> {
        self.served.lock().expect("served").clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: axum::Router,
    served: Arc<Mutex<Vec<Served>>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, router, served) = (acceptor.clone(), router.clone(), served.clone());
        tokio::spawn(async move {
            // A client that refuses the certificate ends here: nothing to serve.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let connection = tls.get_ref().1;
            let sni = connection.server_name().map(str::to_owned);
            let alpn = connection
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            let service = hyper::service::service_fn(move |request: Request<_>| {
                let user_agent = request.headers().get("user-agent");
                served.lock().expect("served").push(Served {
                    sni: sni.clone(),
                    alpn: alpn.clone(),
                    path: request.uri().path().to_owned(),
                    user_agent: user_agent
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned(),
                });
                router.clone().oneshot(request.map(axum::body::Body::new))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
