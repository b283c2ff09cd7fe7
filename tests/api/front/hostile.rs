//! Hostile and clumsy clients against a real `serve` (front + two shards), over raw
//! TCP: request smuggling shapes ported from Http11Probe's SMUG-* cases as data,
//! oversized and malformed bodies, pipelining, slow and vanishing clients. After every
//! case the front must still answer `/healthz` with 200 and see every upstream up: a
//! client's fault never takes an upstream out.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::raw::{Expect, check, chunked_filler, exchange, read_exchange, request, ticket_json};
use super::*;
use crate::support::TestApp;

/// The two ways the front reaches the shards of its own process (`--front-path`):
/// the cases that send bodies run on both, as their failures differ (a socket to
/// the shard, or the shard's router called in-process).
const FRONT_PATHS: [&str; 2] = ["tcp", "inproc"];

/// Asserts the front still serves `/healthz` and sees every upstream up.
async fn assert_front_healthy(app: &TestApp, case: &str) {
    let response = app.client.get(app.url("/healthz")).send().await;
    let status = response.map(|r| r.status().as_u16());
    assert!(
        matches!(status, Ok(200)),
        "{case}: /healthz gave {status:?}"
    );
    assert_every_upstream_up(app, case).await;
}

async fn assert_every_upstream_up(app: &TestApp, case: &str) {
    let status: Value = app
        .client
        .get(app.url("/front/status"))
        .send()
        .await
        .expect("front status")
        .json()
        .await
        .expect("JSON");
    for pool in status["pools"].as_array().expect("pools") {
        assert_eq!(pool["panic"], false, "{case}: {pool}");
        for upstream in pool["upstreams"].as_array().expect("upstreams") {
            assert_eq!(
                upstream["up"], true,
                "{case}: an upstream is down: {upstream}"
            );
        }
    }
}

/// The `Content-Type` line of a JSON request.
const JSON: &str = "Content-Type: application/json\r\n";

/// Http11Probe's request-smuggling cases (and a few of HTTP Garden's shapes), as
/// (name, raw request, what the front answers). Each is sent on its own connection;
/// a trailing `GET` smuggled after a refused request must never be answered.
fn smuggling_cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    // A JSON insert with the `extra` header lines (each ending in CRLF) and `body`.
    let post =
        |extra: &str, body: &[u8]| request("POST", "/app/insert", &format!("{JSON}{extra}"), body);
    let smuggled = "GET /healthz HTTP/1.1\r\nHost: loadlab.test\r\n\r\n";
    vec![
        // CL and TE together: hyper uses TE, drops CL and ends keep-alive, so the
        // bytes after the chunked body are never read as a request.
        (
            "SMUG-CL-TE-BOTH",
            post(
                "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n",
                format!("0\r\n\r\n{smuggled}").as_bytes(),
            ),
            Expect::StatusThenClose(400),
        ),
        (
            "SMUG-DUPLICATE-CL",
            post("Content-Length: 2\r\nContent-Length: 40\r\n", b"{}"),
            Expect::StatusThenClose(400),
        ),
        (
            "SMUG-CL-LIST-DIFFERENT",
            post("Content-Length: 2, 40\r\n", b"{}"),
            Expect::StatusThenClose(400),
        ),
        (
            "SMUG-CL-NEGATIVE",
            post("Content-Length: -1\r\n", b"{}"),
            Expect::StatusThenClose(400),
        ),
        (
            "SMUG-CL-PLUS-SIGN",
            post("Content-Length: +2\r\n", b"{}"),
            Expect::StatusThenClose(400),
        ),
        (
            "SMUG-TE-NOT-CHUNKED-LAST",
            post("Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
            Expect::StatusThenClose(400),
        ),
        (
            "SMUG-TE-XCHUNKED",
            post("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
            Expect::StatusThenClose(400),
        ),
        (
            "SMUG-TE-HTTP10",
            [
                "POST /app/insert HTTP/1.0\r\nHost: loadlab.test\r\n",
                JSON,
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ]
            .concat()
            .into_bytes(),
            Expect::StatusThenClose(400),
        ),
        (
            "SMUG-OBS-FOLD",
            request("GET", "/healthz", "X-Folded: a\r\n b\r\n", b""),
            Expect::StatusThenClose(400),
        ),
        (
            "SMUG-TE-OBS-FOLD",
            post("Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"),
            Expect::StatusThenClose(400),
        ),
        (
            "SMUG-SPACE-BEFORE-COLON",
            post("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
            Expect::StatusThenClose(400),
        ),
        (
            "SMUG-BARE-CR-HEADER",
            request("GET", "/healthz", "X-Bad: a\rb\r\n", b""),
            Expect::StatusThenClose(400),
        ),
        // The body's framing is bad: the front answers for the client, in JSON.
        (
            "SMUG-CHUNK-SIZE-INVALID",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"zz\r\nhello\r\n0\r\n\r\n",
            ),
            Expect::JsonError(400),
        ),
        (
            "SMUG-CHUNK-SIZE-OVERFLOW",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            ),
            Expect::JsonError(400),
        ),
        (
            "SMUG-CHUNK-EXT-OVERSIZED",
            post(
                "Transfer-Encoding: chunked\r\n",
                format!("2;ext={}\r\n{{}}\r\n0\r\n\r\n", "x".repeat(40 * 1024)).as_bytes(),
            ),
            Expect::JsonError(400),
        ),
        (
            "SMUG-CHUNK-MISSING-CRLF",
            post("Transfer-Encoding: chunked\r\n", b"2\r\n{}XX0\r\n\r\n"),
            Expect::JsonError(400),
        ),
        // Bare LF line ends: hyper reads them and forwards CRLF, never the LF.
        (
            "SMUG-BARE-LF",
            b"GET /healthz HTTP/1.1\nHost: loadlab.test\n\n".to_vec(),
            Expect::Status(200),
        ),
        (
            "HOST-MISSING",
            b"GET /healthz HTTP/1.1\r\n\r\n".to_vec(),
            Expect::JsonError(400),
        ),
        (
            "HOST-DUPLICATE",
            request("GET", "/healthz", "Host: other.test\r\n", b""),
            Expect::JsonError(400),
        ),
        (
            "HEADERS-40KB",
            request(
                "GET",
                "/healthz",
                &format!("X-Big: {}\r\n", "a".repeat(40 * 1024)),
                b"",
            ),
            Expect::JsonError(431),
        ),
        (
            "HEADER-LINE-100KB",
            request(
                "GET",
                "/healthz",
                &format!("X-Big: {}\r\n", "a".repeat(100 * 1024)),
                b"",
            ),
            Expect::JsonError(431),
        ),
        (
            "METHOD-NOT-ALLOWED",
            request("DELETE", "/healthz", "", b""),
            Expect::JsonError(405),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_get_their_exact_answer_and_leave_every_upstream_up() {
    for path in FRONT_PATHS {
        smuggling_shapes_get_their_exact_answer_and_leave_every_upstream_up_on(path).await;
    }
}

async fn smuggling_shapes_get_their_exact_answer_and_leave_every_upstream_up_on(path: &str) {
    eprintln!("--front-path {path}");
    let app = crate::support::spawn_app_with_front(&["--front-path", path]).await;
    let front = app.front.expect("a front");

    for (name, raw, expect) in smuggling_cases() {
        let until_close = matches!(expect, Expect::StatusThenClose(_));
        let got = exchange(front, &raw, 1, until_close).await;
        check(name, &got, expect);
        assert_front_healthy(&app, name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_gets_json_405_with_allow_from_front_and_shard() {
    let app = crate::support::spawn_app_with_front(&[]).await;

    let on_front = exchange(
        app.front.expect("front"),
        &request("POST", "/front/status", "Content-Length: 0\r\n", b""),
        1,
        false,
    )
    .await;
    let on_shard = exchange(
        app.shards[0],
        &request("DELETE", "/healthz", "", b""),
        1,
        false,
    )
    .await;

    for (side, got, allow) in [("front", on_front, "GET"), ("shard", on_shard, "GET")] {
        let response = &got.responses[0];
        assert_eq!(response.status, 405, "{side}: {response:?}");
        assert!(response.json_error().contains("not allowed"), "{side}");
        let allowed = response.header("allow").unwrap_or_default();
        assert!(allowed.contains(allow), "{side}: Allow: {allowed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_the_shards_413_every_time_plain_and_chunked() {
    for path in FRONT_PATHS {
        oversized_bodies_get_the_shards_413_every_time_plain_and_chunked_on(path).await;
    }
}

async fn oversized_bodies_get_the_shards_413_every_time_plain_and_chunked_on(path: &str) {
    eprintln!("--front-path {path}");
    let app = crate::support::spawn_app_with_front(&["--front-path", path]).await;
    let front = app.front.expect("front");
    // 300 KB: over the 64 KiB body limit of /app/insert.
    let filler = vec![b' '; 300_000];
    let plain = request(
        "POST",
        "/app/insert",
        &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            filler.len()
        ),
        &filler,
    );
    let chunked = request(
        "POST",
        "/app/insert",
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
        &chunked_filler(300_000),
    );

    for (shape, raw) in [("plain", &plain), ("chunked", &chunked)] {
        for attempt in 0..100 {
            let got = exchange(front, raw, 1, false).await;
            let case = format!("{shape} #{attempt}");
            check(&case, &got, Expect::JsonError(413));
            assert!(
                got.responses[0].json_error().contains("size limit"),
                "{case}"
            );
        }
        assert_every_upstream_up(&app, shape).await;
    }
    assert_front_healthy(&app, "oversized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_bursts_leave_every_upstream_up() {
    for path in FRONT_PATHS {
        malformed_and_oversized_bursts_leave_every_upstream_up_on(path).await;
    }
}

async fn malformed_and_oversized_bursts_leave_every_upstream_up_on(path: &str) {
    eprintln!("--front-path {path}");
    let app = crate::support::spawn_app_with_front(&["--front-path", path]).await;
    let front = app.front.expect("front");
    let malformed = request(
        "POST",
        "/app/insert",
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
        b"zz\r\nhello\r\n0\r\n\r\n",
    );
    let oversized = request(
        "POST",
        "/app/insert",
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
        &chunked_filler(300_000),
    );

    for attempt in 0..50 {
        let got = exchange(front, &malformed, 1, false).await;
        check(
            &format!("malformed #{attempt}"),
            &got,
            Expect::JsonError(400),
        );
    }
    for attempt in 0..50 {
        let got = exchange(front, &oversized, 1, false).await;
        check(
            &format!("oversized #{attempt}"),
            &got,
            Expect::JsonError(413),
        );
    }

    // The outage this guards against lasted fail_timeout (10 s) at ~20 calls/s: 200
    // calls right after the burst would have seen it.
    let mut failed = Vec::new();
    for call in 0..200 {
        match app.client.get(app.url("/healthz")).send().await {
            Ok(r) if r.status() == StatusCode::OK => {}
            other => failed.push((call, other.map(|r| r.status()))),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 200 /healthz calls failed: {failed:?}",
        failed.len()
    );
    assert_every_upstream_up(&app, "after the burst").await;
    // Counted as the client's (other tests in this process add to it, never take away).
    let scrape = app.get("/metrics").await.text().await.expect("a scrape");
    let malformed = scrape
        .lines()
        .find_map(|line| line.strip_prefix(r#"front_client_errors_total{kind="malformed"} "#))
        .and_then(|value| value.trim().parse::<f64>().ok());
    assert!(malformed.is_some_and(|n| n >= 50.0), "{malformed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let app = crate::support::spawn_app_with_front(&[]).await;
    let body = ticket_json();
    let mut raw = request("GET", "/healthz", "", b"");
    raw.extend(request(
        "POST",
        "/app/insert",
        &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ),
        body.as_bytes(),
    ));
    raw.extend(request("GET", "/nowhere", "", b""));

    let got = exchange(app.front.expect("front"), &raw, 3, false).await;

    let statuses: Vec<u16> = got.responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 201, 404], "{got:?}");
    assert_front_healthy(&app, "pipelined").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_served_and_slow_headers_are_cut_at_the_header_timeout() {
    let app = crate::support::spawn_app_with_front(&["--header-read-timeout", "500ms"]).await;
    let front = app.front.expect("front");

    // A body trickling in, 10 ms a piece: slow, but within every limit.
    let body = ticket_json();
    let mut stream = TcpStream::connect(front).await.expect("connect");
    let head = format!(
        "POST /app/insert HTTP/1.1\r\nHost: loadlab.test\r\n{JSON}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    for piece in body.as_bytes().chunks(8) {
        // The client's pace, not a wait for the server.
        tokio::time::sleep(Duration::from_millis(10)).await;
        stream.write_all(piece).await.expect("piece");
    }
    let got = read_exchange(&mut stream, 1, false).await;
    assert_eq!(
        got.responses.first().map(|r| r.status),
        Some(201),
        "{got:?}"
    );

    // Headers that never finish: closed once the header-read timeout passes.
    let mut stream = TcpStream::connect(front).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: loadlab.test\r\nX-Slow: ")
        .await
        .expect("partial head");
    let got = read_exchange(&mut stream, 1, true).await;
    assert!(got.closed, "the slow client was never cut: {got:?}");
    assert!(got.responses.iter().all(|r| r.status != 200), "{got:?}");

    assert_front_healthy(&app, "slow clients").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_mid_body_or_mid_response_leave_every_upstream_up() {
    for path in FRONT_PATHS {
        clients_that_vanish_mid_body_or_mid_response_leave_every_upstream_up_on(path).await;
    }
}

async fn clients_that_vanish_mid_body_or_mid_response_leave_every_upstream_up_on(path: &str) {
    eprintln!("--front-path {path}");
    let app = crate::support::spawn_app_with_front(&["--front-path", path]).await;
    let front = app.front.expect("front");

    for _ in 0..20 {
        // Half a body, then gone.
        let mut stream = TcpStream::connect(front).await.expect("connect");
        let head = request(
            "POST",
            "/app/insert",
            "Content-Type: application/json\r\nContent-Length: 50000\r\n",
            &[b' '; 20_000],
        );
        stream.write_all(&head).await.expect("half a request");
        drop(stream);

        // A chunked body cut mid-chunk.
        let mut stream = TcpStream::connect(front).await.expect("connect");
        let head = request(
            "POST",
            "/app/insert",
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
            b"4000\r\n    ",
        );
        stream.write_all(&head).await.expect("half a chunk");
        drop(stream);

        // A large response, the client gone before reading it.
        let mut stream = TcpStream::connect(front).await.expect("connect");
        stream
            .write_all(&request(
                "GET",
                "/info",
                "Accept: application/json\r\n",
                b"",
            ))
            .await
            .expect("request");
        drop(stream);
    }

    assert_front_healthy(&app, "vanishing clients").await;
    let got = exchange(front, &request("GET", "/healthz", "", b""), 1, false).await;
    assert_eq!(got.responses[0].status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_held_out_by_passive_checks_only_is_tried_anyway() {
    let upstream = TestUpstream::start("only");
    let config = format!("{NO_ACTIVE_HEALTH}{}", pool("main", &[(upstream.addr, 1)]));
    let front = spawn_front(&config, limits(Duration::from_millis(300))).await;

    // A timeout is the upstream's failure: with max_fails = 1 it is held out.
    front
        .expect_504_after("/slow", Duration::from_millis(300))
        .await;
    assert!(!front.is_up(upstream.addr), "held out after the timeout");
    let status = front.front.status();
    assert_eq!(status["pools"][0]["panic"], true, "{status}");

    // Held out by passive checks only: tried anyway, and it answers.
    let response = front
        .client
        .get(front.url("/work"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-upstream-name"], "only");
}

/// An upstream that answers 413 as soon as it has a request's headers, then reads
/// and discards the body until the client is done (as HAProxy or a loadlab shard
/// would), then closes. A plain thread with blocking sockets: it lives until the
/// test process ends.
fn spawn_early_answerer() -> SocketAddr {
    use std::io::{Read, Write};
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 64 * 1024];
                while let Ok(n @ 1..) = stream.read(&mut chunk) {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let body = br#"{"error":"too large for the early answerer"}"#;
                let head = format!(
                    "HTTP/1.1 413 Payload Too Large\r\n{JSON}Content-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
                while let Ok(1..) = stream.read(&mut chunk) {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_is_relayed_and_blames_no_upstream() {
    let early = spawn_early_answerer();
    let config = format!("{NO_ACTIVE_HEALTH}{}", pool("main", &[(early, 1)]));
    let front = spawn_front(&config, limits(Duration::from_secs(5))).await;
    let body = vec![b' '; 4 << 20];
    let raw = request(
        "POST",
        "/upload",
        &format!("Content-Length: {}\r\n", body.len()),
        &body,
    );

    for attempt in 0..10 {
        let got = exchange(front.addr, &raw, 1, false).await;
        check(&format!("early #{attempt}"), &got, Expect::JsonError(413));
        assert!(got.responses[0].json_error().contains("early answerer"));
    }

    assert!(front.is_up(early), "an early answer is not a failure");
}
