//! The access log: a line per request on the front and on each shard's listener, with
//! its status and `X-Request-Id` (passed through when sane, else made up, sent upstream,
//! returned); the file reopened on SIGHUP after logrotate's rename.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::child::{ChildProcess, free_port, loadlab};
use crate::support::spawn_app_with_front;

/// How long a line may take to reach the file (the writer flushes when idle).
const PATIENCE: Duration = Duration::from_secs(20);

/// The JSON lines of `path` (none while it does not exist).
fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Waits (bounded) until `path` has a line for each of `ids` from `listener`; returns
/// the lines.
async fn wait_for_ids(path: &Path, listener: &str, ids: &[&str]) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let lines = json_lines(path);
        let logged = |id: &&str| {
            lines
                .iter()
                .any(|l| l["request_id"] == *id && l["listener"] == listener)
        };
        if ids.iter().all(logged) {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `{listener}` line for some of {ids:?} in {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (bounded) for the first line of `path` that `wanted` picks.
async fn wait_for_line(path: &Path, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(line) = json_lines(path).into_iter().find(|l| wanted(l)) {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such line in {path:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The line of `listener` for request `id`.
fn line<'a>(lines: &'a [Value], listener: &str, id: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["request_id"] == id && l["listener"] == listener)
        .unwrap_or_else(|| panic!("no {listener} line for {id}"))
}

#[tokio::test]
async fn every_request_through_the_front_and_a_shard_has_a_json_line_with_status_and_id() {
    // Arrange: the front over TCP, so the shards' listeners see the proxied requests.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let log_flag = log.display().to_string();
    let app = spawn_app_with_front(&["--access-log", &log_flag, "--front-path", "tcp"]).await;
    let front = app.front.expect("a front");
    let shard = app.shards[0];

    // Act: through the front with the client's id, with a hostile id, to no route,
    // and straight to a shard without an id.
    let get = |url: String, id: Option<&'static str>| {
        let mut request = app.client.get(url);
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    let ok = get(format!("http://{front}/healthz"), Some("client-id-1"))
        .await
        .expect("answered");
    let spaced = get(format!("http://{front}/healthz"), Some("two words"))
        .await
        .expect("answered");
    let missing = get(
        format!("http://{front}/no/such/route"),
        Some("client-id-404"),
    )
    .await
    .expect("answered");
    let direct = get(format!("http://{shard}/healthz"), None)
        .await
        .expect("answered");

    // Assert: the ids returned.
    let id = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("an X-Request-Id answered")
            .to_owned()
    };
    assert_eq!(ok.status(), 200);
    assert_eq!(id(&ok), "client-id-1");
    let made_up = id(&spaced);
    assert_ne!(made_up, "two words");
    assert_eq!(missing.status(), 404);
    assert_eq!(id(&missing), "client-id-404");
    let direct_id = id(&direct);
    assert_eq!(direct_id.len(), 32, "{direct_id}");

    // Assert: the front's lines, with the upstream; the shards' lines for the proxied
    // requests carry the same ids (the front sent them on).
    let front_ids = ["client-id-1", made_up.as_str(), "client-id-404"];
    let lines = wait_for_ids(&log, "front", &front_ids).await;
    let first = line(&lines, "front", "client-id-1");
    assert_eq!(first["status"], 200, "{first}");
    assert_eq!(first["method"], "GET", "{first}");
    assert_eq!(first["path"], "/healthz", "{first}");
    assert!(first["bytes"].as_u64().expect("bytes") > 0, "{first}");
    assert!(first["duration_seconds"].as_f64().is_some(), "{first}");
    assert!(
        first["client"]
            .as_str()
            .expect("client")
            .starts_with("127.0.0.1:"),
        "{first}"
    );
    let upstream = first["upstream"].as_str().expect("an upstream");
    assert!(
        app.shards.iter().any(|s| s.to_string() == upstream),
        "{first}"
    );
    assert_eq!(line(&lines, "front", "client-id-404")["status"], 404);
    let proxied = wait_for_line(&log, |l| {
        l["request_id"] == "client-id-1" && l["listener"] != "front"
    })
    .await;
    assert_eq!(proxied["status"], 200, "{proxied}");
    assert!(proxied["upstream"].is_null(), "{proxied}");
    let lines = wait_for_ids(&log, "shard 0", &[&direct_id]).await;
    assert_eq!(line(&lines, "shard 0", &direct_id)["status"], 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_after_a_rename_reopens_the_file() {
    // Arrange: a combined-format log, and a first line in it.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let port = free_port();
    let mut command = loadlab();
    command
        .args([
            "serve",
            "--shards",
            "1",
            "--shard-base-port",
            "0",
            "--threads",
            "1",
        ])
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--access-log-format",
            "combined",
        ])
        .arg("--access-log")
        .arg(&log)
        .arg("--db")
        .arg(dir.path().join("loadlab.db"));
    let base = format!("http://127.0.0.1:{port}");
    let process =
        ChildProcess::start_ready("loadlab serve", command, &format!("{base}/healthz")).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let send = |id: String| {
        client
            .get(format!("{base}/healthz"))
            .header("x-request-id", id)
            .send()
    };
    send("before-rotation".to_owned()).await.expect("answered");
    wait_for_text(&log, "\"before-rotation\"").await;

    // Act: logrotate's rename, then SIGHUP.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).expect("rename");
    process.signal(nix::sys::signal::Signal::SIGHUP);

    // Assert: requests after the signal land in a new file of the old name (the
    // signal is handled asynchronously: keep asking until one does).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut n = 0;
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"after-rotation-")) {
        assert!(tokio::time::Instant::now() < deadline, "{}", process.log());
        send(format!("after-rotation-{n}")).await.expect("answered");
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new = std::fs::read_to_string(&log).expect("the new file");
    assert!(!new.contains("before-rotation"), "{new}");
    let line = new
        .lines()
        .find(|l| l.contains("after-rotation-"))
        .expect("a line");
    assert!(line.contains("\"GET /healthz HTTP/1.1\" 200 "), "{line}");
    let old = std::fs::read_to_string(&rotated).expect("the rotated file");
    assert!(old.contains("\"before-rotation\""), "{old}");
    process.sigterm();
    assert!(process.wait_exit().await.success());
}

/// Waits (bounded) until `path` contains `text`.
async fn wait_for_text(path: &Path, text: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !std::fs::read_to_string(path).is_ok_and(|t| t.contains(text)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{text}` never logged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
