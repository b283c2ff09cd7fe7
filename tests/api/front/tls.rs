//! TLS termination and HTTP/2 at the front: h2c with prior knowledge on cleartext
//! listeners (front and shards), HTTP/1.1 and h2 over TLS (ALPN) on both front paths,
//! the cleartext listener beside TLS, the handshake timeout, the certificate's reload
//! on SIGHUP, a reset stream cancelling its compute job, and rapid reset.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

use crate::scrape::wait_until;
use crate::support::child::{ChildProcess, free_port, loadlab};
use crate::support::spawn_app_with_front;
use crate::support::tls::{Answer, TestCert, h2c_get, https_get};

const BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];
const HTTP1_ONLY: &[&[u8]] = &[b"http/1.1"];

fn assert_answer(answer: &Answer, version: Version) {
    assert_eq!(
        (answer.status, answer.version),
        (StatusCode::OK, version),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_with_prior_knowledge_is_answered_by_the_front_on_both_paths_and_by_a_shard() {
    for path in ["inproc", "tcp"] {
        let app = spawn_app_with_front(&["--front-path", path]).await;

        let front = h2c_get(app.addr, "/healthz").await;
        let shard = h2c_get(app.shards[0], "/healthz").await;
        let randoms = h2c_get(app.addr, "/api/randoms?cant=1000&seed=1").await;
        let http1 = app.get("/healthz").await;

        assert_answer(&front, Version::HTTP_2);
        assert_answer(&shard, Version::HTTP_2);
        assert_answer(&randoms, Version::HTTP_2);
        let body: Value = serde_json::from_str(&randoms.body).expect("json");
        assert!(body.is_object(), "{path}: {body}");
        assert_eq!(http1.status(), 200, "HTTP/1.1 still served on {path}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_front_answers_http1_and_h2_by_alpn_on_both_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path(), "front", "loadlab test");
    for path in ["inproc", "tcp"] {
        let owned = cert.flags();
        let mut flags: Vec<&str> = owned.iter().map(String::as_str).collect();
        flags.extend(["--front-path", path]);
        let app = spawn_app_with_front(&flags).await;

        let http1 = https_get(app.addr, &cert.der, HTTP1_ONLY, "/healthz").await;
        let h2 = https_get(app.addr, &cert.der, BOTH, "/healthz").await;
        let randoms = https_get(app.addr, &cert.der, BOTH, "/api/randoms?cant=1000").await;
        let forwarded = https_get(app.addr, &cert.der, BOTH, "/info").await;

        assert_answer(&http1, Version::HTTP_11);
        assert_answer(&h2, Version::HTTP_2);
        assert_answer(&randoms, Version::HTTP_2);
        assert_answer(&forwarded, Version::HTTP_2);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_bind_serves_cleartext_beside_tls_and_the_status_shows_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path(), "front", "loadlab status");
    let mut flags: Vec<String> = cert.flags().to_vec();
    flags.extend(["--plain-bind".to_owned(), "127.0.0.1:0".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = spawn_app_with_front(&flags).await;

    let status = https_get(app.addr, &cert.der, BOTH, "/front/status").await;
    let status: Value = serde_json::from_str(&status.body).expect("json");
    let listeners = status["listeners"].as_array().expect("listeners");
    let plain = app.front_plain.expect("the cleartext listener");
    let over_plain = h2c_get(plain, "/healthz").await;

    assert_eq!(listeners.len(), 2, "{status}");
    assert_eq!(listeners[0]["addr"], app.addr.to_string());
    assert_eq!(listeners[0]["scheme"], "https");
    assert_eq!(
        listeners[0]["protocols"],
        serde_json::json!(["h2", "http/1.1"])
    );
    assert_eq!(listeners[1]["addr"], plain.to_string());
    assert_eq!(listeners[1]["scheme"], "http");
    assert_eq!(status["certificate"]["subject"], "CN=loadlab status");
    let days = status["certificate"]["days_left"].as_f64().expect("days");
    assert!(days > 365.0, "{status}");
    assert_answer(&over_plain, Version::HTTP_2);
    let info = h2c_get(plain, "/info").await;
    assert!(
        info.body.contains("loadlab status"),
        "/info shows the certificate: {}",
        info.body
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_handshake_is_closed_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path(), "front", "loadlab slow");
    let mut flags: Vec<String> = cert.flags().to_vec();
    flags.extend(["--tls-handshake-timeout".to_owned(), "200ms".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = spawn_app_with_front(&flags).await;
    let timeouts = || async {
        let scrape = app
            .client
            .get(format!("http://{}/metrics", app.shards[0]))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        scrape
            .lines()
            .find_map(|l| l.strip_prefix("tls_handshakes_total{result=\"timeout\"} "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = timeouts().await;

    // Connects and says nothing.
    let mut silent = TcpStream::connect(app.addr).await.expect("connect");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte)).await;

    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent client is closed: {read:?}"
    );
    assert!(timeouts().await > before, "the timeout is counted");
    // Others are still served.
    assert_answer(
        &https_get(app.addr, &cert.der, BOTH, "/healthz").await,
        Version::HTTP_2,
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_h2_stream_cancels_its_compute_job() {
    let app = spawn_app_with_front(&["--randoms-max", "1e13"]).await;
    let tcp = TcpStream::connect(app.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    tokio::spawn(connection);
    let request = axum::http::Request::get(format!("http://{}/api/randoms?cant=1e13", app.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    // Hours of work: only a cancel ends it within the test's patience.
    let huge = tokio::spawn(async move { sender.send_request(request).await });
    let state = app.state.clone();
    wait_until("the huge job is admitted", || {
        state.compute().in_flight() == 1
    })
    .await;

    // Dropping the response future resets the stream (RST_STREAM CANCEL).
    huge.abort();

    wait_until("the reset stream's job is cancelled", || {
        state.compute().in_flight() == 0
    })
    .await;
    assert_answer(&h2c_get(app.addr, "/healthz").await, Version::HTTP_2);
    app.stop().await;
}

/// HTTP/2 frame types and error codes the flood uses (RFC 9113).
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame: its 9-byte head, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// Opens and resets streams on one raw h2c connection to `addr` (HEADERS for `GET
/// /healthz`, then RST_STREAM CANCEL at once, many per write), for at most `limit`;
/// returns the error code of the GOAWAY the server sent, if any.
async fn reset_flood(addr: SocketAddr, limit: Duration) -> Option<u32> {
    use tokio::io::AsyncWriteExt as _;
    let (mut read, mut write) = TcpStream::connect(addr)
        .await
        .expect("connect")
        .into_split();
    let goaway = tokio::spawn(async move {
        let mut head = [0u8; 9];
        while read.read_exact(&mut head).await.is_ok() {
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            read.read_exact(&mut payload).await.ok()?;
            if head[3] == GOAWAY && len >= 8 {
                return Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
            }
        }
        None
    });
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(frame(SETTINGS, 0, 0, &[]));
    write.write_all(&start).await.expect("preface");
    // :method GET, :scheme http (indexed), :path /healthz (literal, indexed name).
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend(b"/healthz");
    let deadline = tokio::time::Instant::now() + limit;
    let mut stream = 1u32;
    while tokio::time::Instant::now() < deadline && !goaway.is_finished() {
        let mut batch = Vec::new();
        for _ in 0..50 {
            // END_HEADERS | END_STREAM, then the reset.
            batch.extend(frame(HEADERS, 0x5, stream, &block));
            batch.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
            stream += 2;
        }
        if write.write_all(&batch).await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    tokio::time::timeout(Duration::from_secs(5), goaway)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn rapid_reset_gets_goaway_while_a_polite_client_is_still_answered() {
    let app = spawn_app_with_front(&[]).await;
    let flood = Duration::from_secs(4);
    let floods: Vec<_> = (0..2)
        .map(|_| tokio::spawn(reset_flood(app.addr, flood)))
        .collect();

    // A polite client keeps asking while the floods run.
    let mut answered = 0;
    while floods.iter().any(|f| !f.is_finished()) {
        assert_answer(&h2c_get(app.addr, "/healthz").await, Version::HTTP_2);
        answered += 1;
    }
    let mut ends = Vec::new();
    for flood in floods {
        ends.push(flood.await.expect("flood task"));
    }

    assert_eq!(
        ends,
        [Some(ENHANCE_YOUR_CALM); 2],
        "each flood ends in GOAWAY"
    );
    assert!(answered > 0);
    assert_answer(&h2c_get(app.addr, "/healthz").await, Version::HTTP_2);
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_certificate_without_dropping_connections_and_a_bad_file_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = TestCert::generate(dir.path(), "front", "loadlab first");
    let (port, plain, shard) = (free_port(), free_port(), free_port());
    let mut command = loadlab();
    command
        .args(["serve", "--shards", "1", "--threads", "1", "--db"])
        .arg(dir.path().join("loadlab.db"))
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(["--plain-bind", &format!("127.0.0.1:{plain}")])
        .args(["--shard-base-port", &shard.to_string()])
        .args(first.flags());
    let process = ChildProcess::start_ready(
        "loadlab serve with TLS",
        command,
        &format!("http://127.0.0.1:{plain}/healthz"),
    )
    .await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let subject = |body: &str| -> String {
        let status: Value = serde_json::from_str(body).expect("json");
        status["certificate"]["subject"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let plain_get = |path: &'static str| {
        let addr: SocketAddr = format!("127.0.0.1:{plain}").parse().expect("addr");
        async move { h2c_get(addr, path).await }
    };
    // A connection opened before the reload, kept open across it.
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = crate::support::tls::tls_connector(&first.der, HTTP1_ONLY)
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("handshake");
    let (mut kept, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http/1.1");
    tokio::spawn(connection);

    // A new pair in the same files, then SIGHUP.
    let second = TestCert::generate(dir.path(), "front", "loadlab second");
    process.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = plain_get("/front/status").await;
        if subject(&status.body) == "CN=loadlab second" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reloaded:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let renewed = https_get(addr, &second.der, BOTH, "/healthz").await;
    let request = axum::http::Request::get("/healthz")
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let on_kept = kept
        .send_request(request)
        .await
        .expect("the kept connection answers");

    // A broken file: the second certificate stays.
    std::fs::write(&second.cert_file, "not a certificate").expect("write");
    process.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = plain_get("/metrics").await;
        if metrics
            .body
            .contains("tls_certificate_reloads_total{result=\"failed\"} 1")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed reload:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kept_cert = https_get(addr, &second.der, BOTH, "/healthz").await;
    let status = plain_get("/front/status").await;

    assert_answer(&renewed, Version::HTTP_2);
    assert_eq!(on_kept.status(), 200);
    assert_answer(&kept_cert, Version::HTTP_2);
    assert_eq!(subject(&status.body), "CN=loadlab second");
    assert!(process.log().contains("reload failed"), "{}", process.log());
    process.sigterm();
    assert!(process.wait_exit().await.success());
}
