//! Store faults on a real serve: a full SQLite store answers 507 naming the fault (never
//! 500), `/readyz` says so within a second and recovers at the first successful
//! commit, the log stays short, and every acknowledged row is still there.
//!
//! Two ways to fill the store: the `--db-max-size` cap (`PRAGMA max_page_count`, no
//! privileges needed), and, when the tests run as root (CI does), a real 1 MiB tmpfs
//! under 12 concurrent inserters. Where `mount` is refused (a container without
//! `CAP_SYS_ADMIN`), the tmpfs test prints why and passes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::support::child::{ChildProcess, free_port, loadlab};
use crate::support::{all_rows, spawn_app_with, ticket, unique_ticket};

/// Polls `condition` every 10 ms until it holds; panics with `what` after `limit`.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// `/readyz`'s status and body.
async fn readiness(client: &reqwest::Client, base: &str) -> (u16, Value) {
    let response = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

/// The value of the series `name{labels}` in the Prometheus text at `base`.
async fn metric(client: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// The ids in the table, read through the API.
async fn stored_ids(base: &str) -> BTreeSet<i64> {
    all_rows(base).await.into_iter().map(|(id, _)| id).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_at_its_size_cap_answers_507_and_readiness_names_the_fault_until_a_commit() {
    // Arrange: a store capped at 64 KiB, filled by batches until one is refused.
    let app = spawn_app_with(&["--db-max-size", "64KiB"]).await;
    let base = format!("http://{}", app.addr);
    let http = client();
    let mut acked = BTreeSet::new();
    let mut seq = 0u64;
    let refused = loop {
        let batch: Vec<Value> = (0..200)
            .map(|_| {
                seq += 1;
                ticket(unique_ticket(seq))
            })
            .collect();
        let response = app
            .post_json("/app/insert/batch", &Value::Array(batch))
            .await;
        if response.status() != 201 {
            break response;
        }
        let body: Value = response.json().await.expect("json");
        let ids = body["ids"].as_array().expect("ids");
        acked.extend(ids.iter().map(|v| v.as_i64().expect("id")));
        assert!(seq < 100_000, "64 KiB never filled up");
    };

    // Assert: 507 naming the fault, for batches and single inserts alike.
    assert_eq!(refused.status(), 507, "a full store is 507, never 500");
    assert_eq!(refused.headers().get("retry-after"), None);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["fault"], "full", "{body}");
    let message = body["error"].as_str().expect("error");
    assert!(
        message.contains("not stored") && message.contains("is full"),
        "{message}"
    );
    // Single rows may still fit in the last page; then they are refused too.
    let single = loop {
        seq += 1;
        let response = app
            .post_json("/app/insert", &ticket(unique_ticket(seq)))
            .await;
        if response.status() != 201 {
            break response;
        }
        let body: Value = response.json().await.expect("json");
        acked.insert(body["id"].as_i64().expect("id"));
        assert!(seq < 100_000, "single rows never filled the last page");
    };
    assert_eq!(single.status(), 507);
    let (status, ready) = readiness(&http, &base).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["fault"], "full", "{ready}");
    let reason = ready["error"].as_str().expect("error");
    assert!(reason.contains("the Mega store is full"), "{reason}");
    let faults = metric(
        &http,
        &base,
        r#"mega_store_faults_total{store="sqlite",kind="full"}"#,
    )
    .await;
    assert!(faults >= 2.0, "both refusals counted: {faults}");
    assert_eq!(
        stored_ids(&base).await,
        acked,
        "every acknowledged row is stored"
    );

    // Act: free pages by deleting the older half of the rows (from outside, as an
    // operator would), then insert again.
    let cut = *acked.iter().nth(acked.len() / 2).expect("rows");
    let db = app.db_path.clone();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite_connection(&db);
        conn.execute("DELETE FROM Mega WHERE id < ?1", [cut])
            .expect("delete");
    })
    .await
    .expect("delete task");
    let again = app
        .post_json("/app/insert", &ticket([1, 2, 3, 4, 5, 6]))
        .await;

    // Assert: the commit clears the fault at once.
    assert_eq!(again.status(), 201, "space was freed");
    let (status, ready) = readiness(&http, &base).await;
    assert_eq!(status, 200, "ready again after a commit: {ready}");
    let kept: BTreeSet<i64> = acked.range(cut..).copied().collect();
    assert!(stored_ids(&base).await.is_superset(&kept));
    app.stop().await;
}

/// Opens the test's SQLite file from outside the app (the app's own connections stay
/// untouched).
fn rusqlite_connection(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
    conn
}

/// A tmpfs mounted on a temp folder, unmounted (lazily, so a still-open file cannot
/// keep it) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`); `Err` with mount's message when
    /// refused (not root, or no `CAP_SYS_ADMIN`).
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount did not run: {e}"))?;
        if out.status.success() {
            Ok(Self { dir })
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// What the inserters were told.
#[derive(Default)]
struct Answers {
    /// Ids of 201 answers.
    acked: BTreeSet<i64>,
    /// Answers per status.
    statuses: BTreeMap<u16, u64>,
}

/// `clients` single-ticket insert loops against `base` until `stop` is set.
fn spawn_inserters(
    base: &str,
    clients: usize,
    answers: &Arc<Mutex<Answers>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let seq = Arc::new(AtomicU64::new(0));
    (0..clients)
        .map(|_| {
            let (base, seq, answers, stop) =
                (base.to_owned(), seq.clone(), answers.clone(), stop.clone());
            tokio::spawn(async move {
                let http = client();
                while !stop.load(Ordering::Relaxed) {
                    let numbers = unique_ticket(seq.fetch_add(1, Ordering::Relaxed));
                    let sent = http
                        .post(format!("{base}/app/insert"))
                        .json(&ticket(numbers))
                        .send()
                        .await;
                    let Ok(response) = sent else { continue };
                    let status = response.status().as_u16();
                    let id = match status {
                        201 => response
                            .json::<Value>()
                            .await
                            .ok()
                            .and_then(|b| b["id"].as_i64()),
                        _ => None,
                    };
                    let mut answers = answers.lock().expect("answers");
                    *answers.statuses.entry(status).or_default() += 1;
                    answers.acked.extend(id);
                }
            })
        })
        .collect()
}

fn count(answers: &Mutex<Answers>, status: u16) -> u64 {
    let answers = answers.lock().expect("answers");
    answers.statuses.get(&status).copied().unwrap_or(0)
}

/// Writes `bytes` of zeros to `path`, as far as the file system lets it.
fn write_filler(path: &PathBuf, bytes: usize) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        if file.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_tmpfs_under_12_inserters_gets_no_500_and_readiness_follows_the_disk() {
    let tmpfs = match Tmpfs::mount("1m") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            eprintln!("skipping the full-tmpfs test: mount -t tmpfs was refused: {why}");
            return;
        }
    };
    // Arrange: loadlab on the tmpfs with its default log filter, most of the space
    // taken by a filler file, so the database fills up after some acknowledged rows.
    let port = free_port();
    let mut command = loadlab();
    command
        .env_remove("RUST_LOG")
        .args(["serve", "--no-front", "--shards", "1", "--threads", "1"])
        .args(["--shard-base-port", &port.to_string(), "--db"])
        .arg(tmpfs.path().join("loadlab.db"));
    let base = format!("http://127.0.0.1:{port}");
    let server =
        ChildProcess::start_ready("loadlab serve", command, &format!("{base}/readyz")).await;
    let filler = tmpfs.path().join("filler");
    write_filler(&filler, 640 * 1024);
    let http = client();
    let (answers, stop) = (
        Arc::new(Mutex::new(Answers::default())),
        Arc::new(AtomicBool::new(false)),
    );
    let inserters = spawn_inserters(&base, 12, &answers, &stop);

    // Act 1: the disk fills up.
    wait_until(Duration::from_secs(60), "the tmpfs fills up", || {
        std::future::ready(count(&answers, 507) > 0)
    })
    .await;
    let first_refusal = Instant::now();
    let (status, ready) = readiness(&http, &base).await;
    assert_eq!(status, 503, "{ready}");
    assert!(first_refusal.elapsed() < Duration::from_secs(1));
    assert_eq!(ready["fault"], "full", "{ready}");
    // The fault goes on: hundreds of refused inserts, for the log to (not) flood.
    wait_until(
        Duration::from_secs(120),
        "inserts keep being refused",
        || std::future::ready(count(&answers, 507) >= 500),
    )
    .await;
    assert_eq!(readiness(&http, &base).await.0, 503, "still full");

    // Act 2: space returns.
    std::fs::remove_file(&filler).expect("remove the filler");
    let freed = Instant::now();
    wait_until(Duration::from_secs(10), "/readyz turns 200", || async {
        readiness(&http, &base).await.0 == 200
    })
    .await;
    let recovered = freed.elapsed();
    let acked_at_recovery = answers.lock().expect("answers").acked.len();
    wait_until(Duration::from_secs(30), "inserts commit again", || {
        std::future::ready(answers.lock().expect("answers").acked.len() > acked_at_recovery + 100)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for inserter in inserters {
        inserter.await.expect("inserter");
    }

    // Assert
    assert!(
        recovered < Duration::from_millis(2500),
        "/readyz took {recovered:?} to recover"
    );
    let answers = std::mem::take(&mut *answers.lock().expect("answers"));
    assert_eq!(answers.statuses.get(&500), None, "{:?}", answers.statuses);
    assert!(
        answers.statuses.keys().all(|s| [201, 503, 507].contains(s)),
        "{:?}",
        answers.statuses
    );
    let faults = metric(
        &http,
        &base,
        r#"mega_store_faults_total{store="sqlite",kind="full"}"#,
    )
    .await;
    assert!(faults >= 1.0, "{faults}");
    let stored = stored_ids(&base).await;
    let lost: Vec<&i64> = answers.acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
    server.sigterm();
    let (exit, log) = server.wait_exit_with_log().await;
    assert!(exit.success(), "loadlab exits 0");
    let lines = log.lines().count();
    eprintln!(
        "full tmpfs: answers {:?}, {} acknowledged, /readyz 200 {recovered:?} after space \
         returned, {lines} log lines",
        answers.statuses,
        answers.acked.len()
    );
    assert!(
        lines < 100,
        "the whole run wrote {lines} log lines ({:?}):\n{log}",
        answers.statuses
    );
}
