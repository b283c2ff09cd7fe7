//! The live page: `/live` is one HTML page with nothing from elsewhere, `/live/events`
//! streams a JSON event a second (read over a raw socket), and a real browser (headless
//! Chromium) draws the charts from the stream.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::browser::{Browser, PATIENCE, chromium_or_skip};
use crate::support::spawn_app_with_front;

#[tokio::test]
async fn live_is_one_html_page_with_nothing_from_elsewhere() {
    // Arrange
    let app = spawn_app_with_front(&[]).await;

    // Act
    let response = app.get("/live").await;

    // Assert
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("text");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .expect("text");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let page = response.text().await.expect("a body");
    assert!(page.contains("new EventSource(\"live/events\")"), "{page}");
    for external in ["src=\"", "href=\"http", "@import", "url(http"] {
        assert!(!page.contains(external), "the page loads `{external}...`");
    }
    app.stop().await;
}

/// Reads `GET /live/events` at `addr` over a raw socket until the first `data:` line
/// (bounded by the socket's read timeout); the response head and that event.
pub(crate) fn first_event(addr: SocketAddr) -> (String, Value) {
    first_event_of(addr, "/live/events")
}

/// [`first_event`] of the event stream at `path`.
pub(crate) fn first_event_of(addr: SocketAddr, path: &str) -> (String, Value) {
    let mut stream = TcpStream::connect(addr).expect("connected");
    stream
        .set_read_timeout(Some(Duration::from_secs(4)))
        .expect("timeout");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: loadlab\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("request sent");
    let started = Instant::now();
    let mut head = String::new();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line);
        assert!(
            read.is_ok_and(|n| n > 0) && started.elapsed() < Duration::from_secs(4),
            "no data line within 4 s; read so far:\n{head}"
        );
        if let Some(data) = line.strip_prefix("data:") {
            let event = serde_json::from_str(data.trim()).expect("the event is JSON");
            return (head, event);
        }
        head.push_str(&line);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_sends_a_json_data_line_within_4_seconds() {
    // Arrange
    let app = spawn_app_with_front(&[]).await;
    let front = app.front.expect("a front");
    app.get("/healthz").await;

    // Act
    let (head, event) = tokio::task::spawn_blocking(move || first_event(front))
        .await
        .expect("reader");

    // Assert
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    let shards = event["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 2, "{event}");
    for key in [
        "requests_per_second",
        "p50_ms",
        "p99_ms",
        "in_flight",
        "errors_per_second",
    ] {
        assert!(shards[0].get(key).is_some(), "no {key} in {event}");
    }
    let upstreams = event["upstreams"].as_array().expect("upstreams");
    assert_eq!(upstreams.len(), 2, "{event}");
    assert_eq!(upstreams[0]["state"], "up", "{event}");
    assert!(event["compute"]["capacity"].as_u64().is_some(), "{event}");
    assert!(event["writer"]["queue"].as_u64().is_some(), "{event}");
    assert_eq!(event["generation"], 1, "no reload yet: {event}");
    app.stop().await;
}

/// What the test reads of the page (also while it is still loading): events drawn,
/// cards, chart points, the first shard chart's line, the connection state and each
/// upstream's state.
const PAGE_STATE: &str = r#"JSON.stringify({
    events: Number(document.body?.dataset.events ?? 0),
    shards: document.querySelectorAll('#shards .card').length,
    upstreams: Array.from(document.querySelectorAll('#upstreams .card .state'))
        .map(s => s.textContent),
    points: Math.min(...Array.from(document.querySelectorAll('#shards svg.chart'))
        .map(s => Number(s.dataset.points))),
    line: document.querySelector('#shards svg polyline')?.getAttribute('points') ?? '',
    conn: document.getElementById('conn')?.textContent ?? '',
    work: document.querySelectorAll('#work .card').length,
})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_draws_the_live_charts_from_the_stream() {
    let test = "a_browser_draws_the_live_charts_from_the_stream";
    let Some(chromium) = chromium_or_skip(test) else {
        return;
    };
    // Arrange: an app with some traffic while the page watches.
    let app = spawn_app_with_front(&[]).await;
    let url = app.url("/live");
    let traffic = {
        let (client, healthz) = (app.client.clone(), app.url("/healthz"));
        tokio::spawn(async move {
            loop {
                let _ = client.get(&healthz).send().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let shots = tempfile::tempdir().expect("tempdir");
    let screenshot = shots.path().join("live.png");

    // Act: load the page and wait until it has drawn three events.
    let (state, screenshot) = tokio::task::spawn_blocking(move || {
        let mut browser = Browser::open(&chromium, &url);
        let deadline = Instant::now() + PATIENCE;
        let state = loop {
            let state: Value = browser
                .evaluate(PAGE_STATE)
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null);
            if state["events"].as_u64() >= Some(3) && state["points"].as_u64() >= Some(3) {
                break state;
            }
            assert!(Instant::now() < deadline, "{state}\n{}", browser.log());
            std::thread::sleep(Duration::from_millis(100));
        };
        browser.screenshot(&screenshot);
        (state, screenshot)
    })
    .await
    .expect("browser");
    traffic.abort();

    // Assert: a card per shard and upstream, live, with a line of three points or more.
    assert_eq!(state["shards"], 2, "{state}");
    assert_eq!(
        state["upstreams"],
        serde_json::json!(["up", "up"]),
        "{state}"
    );
    assert_eq!(state["conn"], "live", "{state}");
    assert_eq!(state["work"], 2, "{state}");
    let points = state["line"]
        .as_str()
        .expect("a line")
        .split_whitespace()
        .count();
    assert!(points >= 3, "{state}");
    let png = std::fs::metadata(&screenshot).expect("a screenshot");
    assert!(png.len() > 1000, "{png:?}");
    eprintln!("screenshot: {}", screenshot.display());
    app.stop().await;
}
