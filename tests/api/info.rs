//! `GET /info`: JSON by default, an escaped, self-contained HTML page for browsers.

use serde_json::Value;

use crate::support::{TestApp, serve_args, spawn_app_on, spawn_app_with_front};

/// What Firefox sends when it opens a page.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
/// A folder name holding every character HTML must escape.
const ODD_FOLDER: &str = "odd <b>&\"q'";

/// An app whose database lives under [`ODD_FOLDER`]; the temp dir must outlive it.
fn spawn_app_in_odd_folder() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join(ODD_FOLDER).join("loadlab.db");
    (spawn_app_on(serve_args(&db, &[])), dir)
}

async fn info_json(app: &TestApp) -> Value {
    let response = app.get("/info").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(response.headers()["vary"], "accept");
    response.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread")]
async fn info_is_json_by_default_with_process_and_service_facts() {
    let before_start = std::time::Instant::now();
    let (app, _dir) = spawn_app_in_odd_folder();

    let info = info_json(&app).await;

    assert_eq!(info["service"]["version"], env!("CARGO_PKG_VERSION"));
    // Uptime counts from the app's start, so it cannot exceed the time since just
    // before it (a Unix timestamp or a process-wide clock would).
    let uptime = info["service"]["uptime_seconds"].as_f64();
    let ceiling = before_start.elapsed().as_secs_f64();
    assert!(
        uptime.is_some_and(|s| (0.0..=ceiling).contains(&s)),
        "uptime {uptime:?} is not within the {ceiling}s since the app started"
    );
    // The app runs inside this test process.
    assert_eq!(info["process"]["pid"], std::process::id());
    assert!(
        info["process"]["arguments"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    assert!(info["process"]["executable"].is_string());
    assert!(info["process"]["working_folder"].is_string());
    assert!(
        info["process"]["resident_memory_bytes"]
            .as_u64()
            .is_some_and(|b| b > 1 << 20)
    );
    assert_eq!(info["host"]["platform"], std::env::consts::OS);
    assert!(info["host"]["cores"].as_u64().is_some_and(|n| n >= 1));
    assert_eq!(info["compute"]["threads"], 2);
    assert_eq!(info["shards"][0]["port"], app.shards[0].port());
    assert_eq!(info["shards"][0]["address"], app.shards[0].to_string());
    assert!(info["front"].is_null(), "no front in this app");
    assert_eq!(info["database"]["path"], app.db_path.display().to_string());
    assert_eq!(info["writer"]["queue_depth"], 0);
    assert_eq!(info["writer"]["accepting"], true);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resident_memory_is_measured_on_every_request() {
    let (app, _dir) = spawn_app_in_odd_folder();
    let before = info_json(&app).await["process"]["resident_memory_bytes"]
        .as_f64()
        .expect("a number");

    // 128 MiB, every page written, in this (the app's) process.
    let ballast = std::hint::black_box(vec![1u8; 128 << 20]);
    let after = info_json(&app).await["process"]["resident_memory_bytes"]
        .as_f64()
        .expect("a number");

    assert!(
        after - before > 64.0 * 1024.0 * 1024.0,
        "resident memory went from {before} to {after}"
    );
    drop(ballast);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn info_is_an_escaped_self_contained_page_for_browsers() {
    let (app, _dir) = spawn_app_in_odd_folder();

    let response = app
        .client
        .get(app.url("/info"))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .expect("sent");

    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let page = response.text().await.expect("text");
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains(&format!("pid {}", std::process::id())));
    assert!(page.contains(&app.shards[0].to_string()));
    assert!(
        page.contains("odd &lt;b&gt;&amp;&quot;q'"),
        "the database path, escaped"
    );
    assert!(
        !page.contains(ODD_FOLDER),
        "the raw folder name must not reach the page"
    );
    assert!(page.contains("<style>"), "inline styles");
    for external in ["<script", "<link", "src=", "url(", "http://", "https://"] {
        assert!(
            !page.contains(external),
            "the page loads nothing else: found {external}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn info_shows_the_front_and_its_upstreams() {
    let app = spawn_app_with_front(&[]).await;
    let front = app.front.expect("a front");

    let info = info_json(&app).await;

    assert_eq!(info["front"]["address"], front.to_string());
    assert!(
        info["front"]["threads"].as_u64().is_some_and(|n| n >= 1),
        "front threads: {}",
        info["front"]["threads"]
    );
    let upstreams = &info["front"]["pools"][0]["upstreams"];
    for shard in &app.shards {
        let shown = upstreams
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| u["addr"] == shard.to_string());
        assert!(
            shown.is_some_and(|u| u["state"] == "up"),
            "{shard} is shown up in {upstreams}"
        );
    }
    app.stop().await;
}
