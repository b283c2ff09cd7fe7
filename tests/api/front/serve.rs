//! The front inside `loadlab serve` (over its shards, CORS preflights at every
//! listener) and alone (`loadlab front`).

use super::*;
use crate::support::child::{ChildProcess, loadlab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_from_an_allowed_origin_passes_and_from_another_is_refused() {
    let app = spawn_app_with_front(&["--cors-origin", "https://ok.example"]).await;

    for addr in [app.addr, app.shards[0]] {
        let preflight = |origin: &str| {
            app.client
                .request(
                    reqwest::Method::OPTIONS,
                    format!("http://{addr}/api/randoms"),
                )
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .send()
        };
        let allowed = preflight("https://ok.example").await.expect("sent");
        assert!(
            allowed.status().is_success(),
            "{addr}: {}",
            allowed.status()
        );
        assert_eq!(
            allowed.headers()["access-control-allow-origin"],
            "https://ok.example"
        );
        let refused = preflight("https://evil.example").await.expect("sent");
        let message = expect_error(refused, 403).await;
        assert_eq!(message, "origin https://evil.example is not allowed");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_puts_the_front_over_its_shards() {
    let app = spawn_app_with_front(&[]).await;
    assert_eq!(Some(app.addr), app.front);

    let health = app.get("/healthz").await;
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "/healthz goes through the front"
    );
    let status: Value = app.get("/front/status").await.json().await.expect("json");
    let mut listed: Vec<String> = status["pools"][0]["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .map(|u| u["addr"].as_str().expect("addr").to_owned())
        .collect();
    listed.sort();
    let mut shards: Vec<String> = app.shards.iter().map(|a| a.to_string()).collect();
    shards.sort();
    assert_eq!(listed, shards);
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("front_requests_total"),
        "front metrics are exported"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadlab_front_runs_alone_and_exits_cleanly_on_sigterm() {
    let upstream = TestUpstream::start("echo");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("front.toml");
    std::fs::write(
        &config,
        format!("{FAST_HEALTH}{}", pool("main", &[(upstream.addr, 1)])),
    )
    .expect("write config");
    let bind = closed_port();
    let mut command = loadlab();
    command
        .args(["front", "--config"])
        .arg(&config)
        .args(["--bind", &bind.to_string()]);
    let child = ChildProcess::start("loadlab front", command);
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");

    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        match client.get(format!("http://{bind}/work")).send().await {
            Ok(response) => break response,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("loadlab front never answered: {e}"),
        }
    };
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-upstream-name"], "echo");

    child.sigterm();
    let status = child.wait_exit().await;
    assert!(status.success(), "exit status {status}");
}
