//! Test support, in one place: [`spawn_app`] builds a real loadlab in this process on
//! port 0 with a temp database and returns once it is bound (no sleeps: the listeners
//! exist before serving starts); [`child`] runs programs as child processes.

#![allow(dead_code, unreachable_pub)]

pub mod browser;
pub mod child;
pub mod postgres;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use loadlab::app::App;
use loadlab::cli::{Cli, Command, ServeArgs};
use loadlab::config::Config;
use tokio_util::sync::CancellationToken;

/// A running app and what tests need to talk to it.
pub struct TestApp {
    /// Where clients go: the front, or the first shard without one.
    pub addr: SocketAddr,
    /// Each shard's address.
    pub shards: Vec<SocketAddr>,
    /// The front's address, if it runs.
    pub front: Option<SocketAddr>,
    /// The front's cleartext listener beside its TLS one (`--plain-bind`), if any.
    pub front_plain: Option<SocketAddr>,
    /// The database file (empty when the app runs on PostgreSQL).
    pub db_path: PathBuf,
    /// A client with no connection reuse surprises: keep-alive on, no proxy.
    pub client: reqwest::Client,
    pub state: loadlab::state::AppState,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// The `serve` arguments tests start from: one shard on port 0, no front, 2 compute
/// threads, a temp database. `extra` flags are appended (later flags win).
pub fn serve_args(db: &std::path::Path, extra: &[&str]) -> ServeArgs {
    let mut argv: Vec<String> = [
        "loadlab",
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--shard-base-port",
        "0",
        "--shards",
        "1",
        "--no-front",
        "--threads",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push("--db".into());
    argv.push(db.display().to_string());
    argv.extend(extra.iter().map(|s| s.to_string()));
    match Cli::try_parse_from(argv)
        .expect("test arguments parse")
        .command
    {
        Command::Serve(args) => args,
        other => panic!("expected serve, got {other:?}"),
    }
}

/// Spawns an app with the default test arguments.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Spawns an app with extra `serve` flags.
pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("loadlab.db");
    let mut app = spawn_app_on(serve_args(&db, extra));
    app._dir = Some(dir);
    app
}

/// Spawns an app with the front before its shards: the default test arguments without
/// `--no-front`, two shards (so round robin has a choice), then `extra`. The front
/// listens on `--bind 127.0.0.1:0`; `TestApp::addr` is the front's address.
pub async fn spawn_app_with_front(extra: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("loadlab.db");
    let mut flags = vec!["--shards", "2"];
    flags.extend_from_slice(extra);
    let mut args = serve_args(&db, &flags);
    args.no_front = false;
    let mut app = spawn_app_on(args);
    app._dir = Some(dir);
    app
}

/// Spawns an app on a PostgreSQL database (`url`), with the default test arguments
/// and `extra`.
pub fn spawn_app_on_postgres(url: &str, extra: &[&str]) -> TestApp {
    spawn_app_on(serve_args(std::path::Path::new(url), extra))
}

/// Spawns an app from full arguments (the caller owns the database's folder).
pub fn spawn_app_on(args: ServeArgs) -> TestApp {
    let config = Config::from_args(&args).expect("valid config");
    spawn_built(App::build(config).expect("app builds"))
}

/// Spawns an app the caller built, and perhaps changed first (`App::stop_writer`). The
/// caller owns the database's folder.
pub fn spawn_built(app: App) -> TestApp {
    // Empty for a PostgreSQL app (see `db`).
    let db_path = match &app.state().config().writer.db {
        loadlab_workers::mega::Database::Sqlite(path) => path.clone(),
        loadlab_workers::mega::Database::Postgres(_) => PathBuf::new(),
    };
    let addr = app.public_addr();
    let shards = app.shard_addrs().to_vec();
    let front = app.front_addr();
    let front_plain = app.front_plain_addr();
    let state = app.state().clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        addr,
        shards,
        front,
        front_plain,
        db_path,
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        state,
        shutdown,
        task,
        _dir: None,
    }
}

impl TestApp {
    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Graceful shutdown; asserts the app stopped cleanly.
    pub async fn stop(self) -> Option<tempfile::TempDir> {
        self.shutdown.cancel();
        self.task
            .await
            .expect("app task")
            .expect("app stopped cleanly");
        self._dir
    }
}

/// A valid ticket body.
pub fn ticket(numbers: [i64; 6]) -> serde_json::Value {
    serde_json::json!({
        "num1": numbers[0], "num2": numbers[1], "num3": numbers[2],
        "num4": numbers[3], "num5": numbers[4], "num6": numbers[5],
    })
}

/// GETs the Mega page at `first` and asserts it lists exactly `first_ids`, in order;
/// then follows its `next_after_id` with `limit={rest_limit}` and asserts that page
/// holds `rest_len` tickets and is the last.
pub async fn assert_two_pages(
    app: &TestApp,
    first: &str,
    first_ids: &[i64],
    rest_limit: u32,
    rest_len: usize,
) {
    let page: serde_json::Value = app.get(first).await.json().await.expect("json");
    let got: Vec<i64> = page["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(got, first_ids);
    let next = page["next_after_id"].as_i64().expect("a next page");
    let rest: serde_json::Value = app
        .get(&format!("/app/mega?after_id={next}&limit={rest_limit}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(rest["tickets"].as_array().expect("tickets").len(), rest_len);
    assert_eq!(rest["next_after_id"], serde_json::Value::Null);
}

/// Every row of the table, `(id, numbers)` in id order, read page by page through the
/// HTTP API of the instance at `base`.
pub async fn all_rows(base: &str) -> Vec<(i64, [i64; 6])> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut rows = Vec::new();
    let mut after = 0i64;
    loop {
        let page: serde_json::Value = client
            .get(format!("{base}/app/mega?after_id={after}&limit=1000"))
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("json");
        for t in page["tickets"].as_array().expect("tickets") {
            let n = |k: &str| t[k].as_i64().expect("number");
            rows.push((
                n("id"),
                [
                    n("num1"),
                    n("num2"),
                    n("num3"),
                    n("num4"),
                    n("num5"),
                    n("num6"),
                ],
            ));
        }
        match page["next_after_id"].as_i64() {
            Some(next) => after = next,
            None => return rows,
        }
    }
}

/// Inserts one ticket into `app` and reads it back by its id, which it returns; an
/// unknown id is 404, a malformed one 400 (the same on either store).
pub async fn assert_insert_reads_back(app: &TestApp) -> i64 {
    let response = app
        .post_json("/app/insert", &ticket([4, 8, 15, 16, 23, 42]))
        .await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.expect("json");
    let id = body["id"].as_i64().expect("an id");
    let stored: serde_json::Value = app
        .get(&format!("/app/mega/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        stored,
        serde_json::json!(
            {"id": id, "num1": 4, "num2": 8, "num3": 15, "num4": 16, "num5": 23, "num6": 42}
        )
    );
    expect_error(app.get("/app/mega/999999").await, 404).await;
    expect_error(app.get("/app/mega/abc").await, 400).await;
    id
}

/// Asserts `response` is a JSON error with `status`, returning its message.
pub async fn expect_error(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status, "status");
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    body["error"]
        .as_str()
        .expect("an `error` string")
        .to_owned()
}

/// The unique ticket of request `seq` (seq < 1,000,000): its digits, one per column,
/// `num_i = 10 * i + 1 + digit_i`, so the six numbers are always distinct and a table
/// can be checked against what every client was told.
pub fn unique_ticket(seq: u64) -> [i64; 6] {
    let mut numbers = [0i64; 6];
    let mut rest = seq;
    for (i, slot) in numbers.iter_mut().enumerate() {
        *slot = 10 * i as i64 + 1 + (rest % 10) as i64;
        rest /= 10;
    }
    numbers
}

/// The `Idempotency-Key` [`insert_each_until_acknowledged`] sends for ticket `seq`.
pub fn ticket_key(seq: u64) -> String {
    format!("ticket-{seq}")
}

/// Inserts the [`unique_ticket`]s `first..first + count` into `{base}/app/insert` one
/// after another, each under its own key ([`ticket_key`]), retrying each until it is
/// acknowledged: on no answer, 503 (the store or the server is away) or 409 (its first
/// attempt is still in flight). Any other answer, or 180 s without progress, fails the
/// test. Returns each ticket's `(seq, numbers, id)` as told.
pub async fn insert_each_until_acknowledged(
    base: String,
    first: u64,
    count: u64,
) -> Vec<(u64, [i64; 6], i64)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(180);
    let mut acked = Vec::new();
    for seq in first..first + count {
        let numbers = unique_ticket(seq);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "ticket {seq} never stored"
            );
            let sent = client
                .post(format!("{base}/app/insert"))
                .header("Idempotency-Key", ticket_key(seq))
                .json(&ticket(numbers))
                .send()
                .await;
            match sent {
                Ok(response) if response.status() == 201 => {
                    // A 201 whose body is cut off is retried: the retry replays it.
                    if let Ok(body) = response.json::<serde_json::Value>().await {
                        acked.push((seq, numbers, body["id"].as_i64().expect("an id")));
                        break;
                    }
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    assert!(
                        status == 503 || status == 409,
                        "ticket {seq}: {status} {:?}",
                        response.text().await
                    );
                }
                Err(_) => {}
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    acked
}
