//! The process log: `--log-format json` makes every line on stderr a JSON object, the
//! start line names the build, the addresses (plainly), the shards, the threads and the
//! database, and the stop line says how long it served and how many requests.

use serde_json::Value;

use crate::support::child::{ChildProcess, free_port, loadlab};

/// `loadlab serve` with a front on a free port and two shards, its log in `format`
/// at the default filter (no `RUST_LOG`).
async fn serve(format: &str, db: &std::path::Path) -> (ChildProcess, String) {
    let port = free_port();
    let mut command = loadlab();
    command
        .env_remove("RUST_LOG")
        .args([
            "serve",
            "--shards",
            "2",
            "--shard-base-port",
            "0",
            "--threads",
            "1",
        ])
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            format,
        ])
        .arg("--db")
        .arg(db);
    let base = format!("http://127.0.0.1:{port}");
    let process =
        ChildProcess::start_ready("loadlab serve", command, &format!("{base}/readyz")).await;
    (process, base)
}

/// Sends `n` requests to `/healthz`, each answered 200.
async fn get_healthz(base: &str, n: usize) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for _ in 0..n {
        let status = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("answered")
            .status();
        assert_eq!(status, 200);
    }
}

/// The line whose `message` is `message`.
fn line_with<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["message"] == message)
        .unwrap_or_else(|| panic!("no `{message}` line in {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn with_log_format_json_every_line_is_json_and_the_start_and_stop_lines_say_it_all() {
    // Arrange
    let dir = tempfile::tempdir().expect("tempdir");
    let (process, base) = serve("json", &dir.path().join("loadlab.db")).await;
    get_healthz(&base, 5).await;

    // Act
    process.sigterm();
    let (status, log) = process.wait_exit_with_log().await;

    // Assert: every line parses, and the two lines carry their fields.
    assert!(status.success(), "{log}");
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "no `{key}` in {line}");
        }
    }
    let start = line_with(&lines, "loadlab is serving");
    assert_eq!(start["version"], env!("CARGO_PKG_VERSION"), "{start}");
    let commit = start["commit"].as_str().expect("a commit");
    assert!(!commit.is_empty(), "{start}");
    assert_eq!(
        start["front"],
        base.trim_start_matches("http://"),
        "{start}"
    );
    assert_eq!(start["shards"], 2, "{start}");
    assert_eq!(start["threads"], 1, "{start}");
    let db = dir.path().join("loadlab.db").display().to_string();
    assert_eq!(start["database"], db, "{start}");
    let shard_addrs = start["shard_addrs"].as_str().expect("shard addresses");
    assert_eq!(shard_addrs.split(',').count(), 2, "{start}");
    assert!(!start.to_string().contains("Some("), "{start}");
    let stop = line_with(&lines, "loadlab stopped");
    assert!(stop["uptime_seconds"].as_f64().is_some(), "{stop}");
    assert!(stop["uptime"].is_string(), "{stop}");
    assert!(
        stop["front_requests"].as_u64().expect("a count") >= 5,
        "{stop}"
    );
    assert!(stop["requests"].as_u64().expect("a count") >= 5, "{stop}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_text_start_line_shows_plain_addresses() {
    // Arrange
    let dir = tempfile::tempdir().expect("tempdir");
    let (process, base) = serve("text", &dir.path().join("loadlab.db")).await;

    // Act
    process.sigterm();
    let (status, log) = process.wait_exit_with_log().await;

    // Assert
    assert!(status.success(), "{log}");
    let start = log
        .lines()
        .find(|l| l.contains("loadlab is serving"))
        .unwrap_or_else(|| panic!("no start line in:\n{log}"));
    let front = format!("front={}", base.trim_start_matches("http://"));
    assert!(start.contains(&front), "{start}");
    assert!(!start.contains("Some("), "{start}");
    assert!(log.lines().any(|l| l.contains("loadlab stopped")), "{log}");
}
