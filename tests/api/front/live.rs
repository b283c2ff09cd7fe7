//! The front's own live page, for `loadlab front` (which has no shards): `/front/live`
//! is the same page as `serve`'s `/live`, and `/front/live/events` streams the front's
//! members, its config generation and its uptime.

use super::*;
use crate::live::first_event_of;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_serves_the_live_page_with_its_members_and_nothing_else() {
    // Arrange: one member, one request through it.
    let upstream = TestUpstream::start("a");
    let config = format!("{NO_ACTIVE_HEALTH}{}", pool("main", &[(upstream.addr, 1)]));
    let front = spawn_front(&config, limits(Duration::from_secs(5))).await;
    assert_eq!(front.upstream_of("/x").await, "a");

    // Act
    let page = front
        .client
        .get(front.url("/front/live"))
        .send()
        .await
        .expect("sent");
    let addr = front.addr;
    let (head, event) =
        tokio::task::spawn_blocking(move || first_event_of(addr, "/front/live/events"))
            .await
            .expect("the reader ran");

    // Assert: the page, whole by itself, reads the stream beside it.
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.expect("a body");
    assert!(html.contains("new EventSource(\"live/events\")"), "{html}");
    // The stream: the front's figures only, its member up with the request counted.
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("text/event-stream"),
        "{head}"
    );
    assert_eq!(event["generation"], 1, "{event}");
    assert!(event["uptime_seconds"].as_f64().is_some(), "{event}");
    assert!(
        event.get("shards").is_none() && event.get("writer").is_none(),
        "{event}"
    );
    let members = event["upstreams"].as_array().expect("upstreams");
    assert_eq!(members.len(), 1, "{event}");
    assert_eq!(members[0]["addr"], upstream.addr.to_string(), "{event}");
    assert_eq!(members[0]["state"], "up", "{event}");
    assert!(
        members[0]["requests"].as_u64().is_some_and(|n| n >= 1),
        "{event}"
    );
}

/// What the test reads of the front's page: events drawn, each upstream card's state
/// and chart points, whether the shard and work sections are hidden, the connection.
const FRONT_PAGE_STATE: &str = r#"JSON.stringify({
    events: Number(document.body?.dataset.events ?? 0),
    upstreams: Array.from(document.querySelectorAll('#upstreams .card .state'))
        .map(s => s.textContent),
    points: Number(document.querySelector('#upstreams svg.chart')?.dataset.points ?? 0),
    shards_hidden: document.getElementById('shards-title')?.hidden ?? false,
    work_hidden: document.getElementById('work-title')?.hidden ?? false,
    conn: document.getElementById('conn')?.textContent ?? '',
})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_draws_the_fronts_members_and_hides_what_it_has_not() {
    use crate::support::browser::{Browser, PATIENCE, chromium_or_skip};
    let test = "a_browser_draws_the_fronts_members_and_hides_what_it_has_not";
    let Some(chromium) = chromium_or_skip(test) else {
        return;
    };
    // Arrange: two members.
    let (a, b) = (TestUpstream::start("a"), TestUpstream::start("b"));
    let config = format!(
        "{NO_ACTIVE_HEALTH}{}",
        pool("main", &[(a.addr, 1), (b.addr, 1)])
    );
    let front = spawn_front(&config, limits(Duration::from_secs(5))).await;
    let url = front.url("/front/live");

    // Act: load the page and wait until it has drawn three events.
    let state = tokio::task::spawn_blocking(move || {
        let mut browser = Browser::open(&chromium, &url);
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let state: serde_json::Value = browser
                .evaluate(FRONT_PAGE_STATE)
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(serde_json::Value::Null);
            if state["events"].as_u64() >= Some(3) && state["points"].as_u64() >= Some(3) {
                break state;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{state}\n{}",
                browser.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .expect("browser");

    // Assert: a live card per member; no empty shard or work section.
    assert_eq!(
        state["upstreams"],
        serde_json::json!(["up", "up"]),
        "{state}"
    );
    assert_eq!(state["conn"], "live", "{state}");
    assert_eq!(state["shards_hidden"], true, "{state}");
    assert_eq!(state["work_hidden"], true, "{state}");
}
