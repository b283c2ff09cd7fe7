//! Running out of file descriptors: `loadlab serve` under a hard limit of 256 and a
//! flood of 600 idle connections keeps its in-process shards in rotation (their health
//! checks need no socket), answers every request once the flood is gone, and writes a
//! bounded number of accept-error lines (the cap keeps it off EMFILE; failed accepts
//! pause the listener and are logged at most once a second).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::support::child::{ChildProcess, free_port};

/// Connections the flood opens.
const FLOOD: usize = 600;
/// How long the flood holds its connections.
const HOLD: Duration = Duration::from_secs(3);
/// How long `/healthz` is called after the flood.
const AFTER: Duration = Duration::from_secs(5);
/// The log messages of failed accepts.
const ACCEPT_ERROR_LINES: [&str; 2] = [
    "accepting connections failed",
    "accept failures since the last report",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_default_cap_waits_in_the_backlog_and_takes_no_shard_down() {
    let flood = flood_a_serve_under_256_fds(&[]).await;
    assert!(
        flood.metric("http_listener_at_cap_total", "") >= 1.0,
        "the front reached its cap"
    );
    assert_eq!(
        flood.metric("http_accept_errors_total", ",kind=\"emfile\""),
        0.0,
        "the cap kept the front off EMFILE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_that_exhausts_the_fds_pauses_accepting_and_takes_no_shard_down() {
    // A cap past the limit: accepts do fail with EMFILE.
    let flood = flood_a_serve_under_256_fds(&["--max-connections", "1000"]).await;
    assert!(
        flood.metric("http_accept_errors_total", ",kind=\"emfile\"") >= 1.0,
        "the process ran out of descriptors"
    );
}

/// What [`flood_a_serve_under_256_fds`] saw after its checks passed.
struct Flood {
    /// The front's address, its `listener` label.
    front: String,
    /// A scrape of the front's `/metrics` after the flood.
    metrics: String,
}

impl Flood {
    /// The value of `name{listener="<front>"<more labels>}`.
    fn metric(&self, name: &str, more_labels: &str) -> f64 {
        let series = format!("{name}{{listener=\"{}\"{more_labels}}}", self.front);
        metric_value(&self.metrics, &series)
    }
}

/// Runs `loadlab serve` (two in-process shards, `extra` flags) under a hard limit of
/// 256 descriptors, floods its front with [`FLOOD`] connections held [`HOLD`], and
/// checks the "done when": no member was ever down (watched over a connection
/// opened before the flood), every `/healthz` in the [`AFTER`] that follow answers 200,
/// at most 10 accept-error lines were logged. The process must then exit 0 on SIGTERM.
async fn flood_a_serve_under_256_fds(extra: &[&str]) -> Flood {
    // The flood needs its 600 descriptors on this side too.
    let _ = loadlab_front::listen::fds::raise_soft_limit();
    let dir = tempfile::tempdir().expect("tempdir");
    let front = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_loadlab"))
        .args(["serve", "--bind", &front, "--shard-base-port", "0"])
        .args(["--shards", "2", "--threads", "1", "--db"])
        .arg(dir.path().join("loadlab.db"))
        .args(extra)
        .env("RUST_LOG", "warn,loadlab=info");
    let process = ChildProcess::start_ready(
        "loadlab serve under ulimit -n 256",
        command,
        &format!("http://{front}/readyz"),
    )
    .await;
    let log = process.log_text();
    assert!(
        log.contains("file descriptor limit") && log.contains("hard=256"),
        "the limit is logged at start:\n{log}"
    );

    // A connection opened before the flood watches the members all along.
    let (stop, stopped) = watch::channel(false);
    let watcher = tokio::spawn(watch_members(
        TcpStream::connect(&front).await.expect("connect"),
        stopped,
    ));

    let opened = flood(&front).await;
    let calls = healthz_for(&front, AFTER).await;
    stop.send(true).expect("the watcher runs");
    let (polls, downs) = watcher.await.expect("watcher");

    eprintln!("{extra:?}: {opened} opened, {polls} status polls, {calls} /healthz calls after");
    assert!(
        opened > 256,
        "the flood got past the fd limit: {opened} opened"
    );
    assert!(polls >= 10, "the members were watched ({polls} polls)");
    assert!(downs.is_empty(), "members went down: {downs:?}");
    assert!(calls > 0, "/healthz was called after the flood");
    let log = process.log_text();
    let accept_lines = log
        .lines()
        .filter(|line| ACCEPT_ERROR_LINES.iter().any(|m| line.contains(m)))
        .count();
    eprintln!("{extra:?}: {accept_lines} accept-error lines");
    assert!(
        accept_lines <= 10,
        "{accept_lines} accept-error lines:\n{log}"
    );
    let metrics = get_text(&format!("http://{front}/metrics")).await;

    process.sigterm();
    assert!(
        process.wait_exit().await.success(),
        "exits 0 after the flood"
    );
    Flood { front, metrics }
}

/// Opens [`FLOOD`] connections to `addr` (each connect given 3 s: past the cap they
/// wait in the backlog, or the kernel drops their SYN), holds them for [`HOLD`], closes
/// them; returns how many opened.
async fn flood(addr: &str) -> usize {
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..FLOOD {
        let addr = addr.to_owned();
        connecting.spawn(async move {
            tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
                .await
                .ok()
                .and_then(Result::ok)
        });
    }
    let mut open = Vec::new();
    while let Some(connected) = connecting.join_next().await {
        open.extend(connected.expect("connect task"));
    }
    let opened = open.len();
    tokio::time::sleep(HOLD).await;
    drop(open);
    opened
}

/// Calls `/healthz` on `addr` for `span`, each call on a new connection; every call
/// must answer 200. Returns how many were made.
async fn healthz_for(addr: &str, span: Duration) -> usize {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = format!("http://{addr}/healthz");
    let end = Instant::now() + span;
    let mut calls = 0;
    while Instant::now() < end {
        let response = client.get(&url).send().await;
        let status = response.map(|r| r.status().as_u16());
        assert!(
            matches!(status, Ok(200)),
            "call {calls} after the flood: {status:?}"
        );
        calls += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    calls
}

/// Polls `GET /front/status` on `stream` every 50 ms until `stop` turns true; returns
/// the number of polls and every member seen down.
async fn watch_members(
    mut stream: TcpStream,
    mut stop: watch::Receiver<bool>,
) -> (usize, Vec<String>) {
    let (mut polls, mut downs) = (0, Vec::new());
    while !*stop.borrow() {
        stream
            .write_all(b"GET /front/status HTTP/1.1\r\nhost: loadlab\r\n\r\n")
            .await
            .expect("the watching connection stays open");
        let status: Value = serde_json::from_slice(&read_body(&mut stream).await).expect("json");
        polls += 1;
        for pool in status["pools"].as_array().expect("pools") {
            for member in pool["upstreams"].as_array().expect("upstreams") {
                if member["state"] == "down" {
                    downs.push(format!("{member} at poll {polls}"));
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), stop.changed()).await;
    }
    (polls, downs)
}

/// Reads one response with a `Content-Length` from `stream`; returns its body.
async fn read_body(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .expect("a content-length")
                .trim()
                .parse()
                .expect("a number");
            if received.len() >= end + 4 + length {
                return received[end + 4..end + 4 + length].to_vec();
            }
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the watching connection was closed");
        received.extend_from_slice(&chunk[..n]);
    }
}

async fn get_text(url: &str) -> String {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    client
        .get(url)
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text")
}

/// The value of the series `series` (name and labels, as exported) in `metrics`.
fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .unwrap_or_else(|| panic!("{series} is exported"))
        .trim()
        .parse()
        .expect("a number")
}
