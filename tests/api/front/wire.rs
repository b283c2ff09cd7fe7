//! What an HTTP/1.1 upstream may send back to a GET, relayed whole over the front's
//! bare connections (`front/src/proxy/exchange.rs`): bodies framed by chunks or by the
//! close, interim answers, and keep-alive connections the upstream closes behind the
//! front's back. The upstream here is a plain socket that writes its answer as given.

use std::io::{Read, Write};
use std::net::TcpListener as StdListener;

use super::*;

/// An upstream that reads one request head per connection, writes `answer` and closes
/// (a keep-alive answer that it does not keep: the stale keep-alive race, every time);
/// counts the connections.
fn spawn_one_answer_upstream(answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while let Ok(n @ 1..) = stream.read(&mut chunk) {
                head.extend_from_slice(&chunk[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let _ = stream.write_all(answer);
                    break;
                }
            }
        }
    });
    (addr, connections)
}

async fn front_over(upstream: SocketAddr) -> TestFront {
    let config = format!("{NO_ACTIVE_HEALTH}{}", pool("main", &[(upstream, 1)]));
    spawn_front(&config, limits(Duration::from_secs(5))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_every_keep_alive_connection_costs_no_get() {
    let (upstream, connections) =
        spawn_one_answer_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    let front = front_over(upstream).await;

    for i in 0..30 {
        let response = front.client.get(front.url("/")).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        assert_eq!(response.text().await.expect("body"), "ok", "request {i}");
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        30,
        "one connection each"
    );
    assert!(
        front.is_up(upstream),
        "no failure held against the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_close_framed_and_interim_answers_reach_the_client_whole() {
    let answers: [(&'static [u8], &str); 3] = [
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
            "hello, world",
        ),
        (
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the upstream closes",
            "until the upstream closes",
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
            "final",
        ),
    ];
    for (answer, expected) in answers {
        let (upstream, _) = spawn_one_answer_upstream(answer);
        let front = front_over(upstream).await;
        let response = front.client.get(front.url("/")).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{expected}");
        assert!(
            response
                .headers()
                .get("transfer-encoding")
                .is_none_or(|te| te == "chunked")
        );
        assert_eq!(response.text().await.expect("body"), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_answer_is_a_502_that_names_it() {
    let (upstream, _) =
        spawn_one_answer_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\nx");
    let front = front_over(upstream).await;
    let response = front.client.get(front.url("/")).send().await.expect("sent");
    let message = expect_error(response, 502).await;
    assert!(message.contains("Content-Length"), "{message}");
}
