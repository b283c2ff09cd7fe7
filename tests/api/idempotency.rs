//! Idempotent inserts on a real serve (SQLite): a retry under the same `Idempotency-Key`
//! gets the first answer and stores nothing; another body under the key is a 422; a key
//! whose first request is still in flight is a 409; bad keys are a 400; keys expire
//! after `--idempotency-ttl` and are purged. (Retries across `kill -9` are in
//! `durability`, across a PostgreSQL restart in `postgres_mega`.)

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestApp, expect_error, spawn_app, spawn_app_with, ticket};

/// POSTs `body` to `path` under `key`.
async fn post_keyed(app: &TestApp, path: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("request sent")
}

/// The `id` of a 201 single insert.
async fn created_id(response: reqwest::Response) -> i64 {
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("an id")
}

/// `mega_idempotent_replays_total` for SQLite. The recorder is shared by every app of
/// this test binary, so tests compare it before and after.
async fn replays(app: &TestApp) -> u64 {
    let metrics = app.get("/metrics").await.text().await.expect("text");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("mega_idempotent_replays_total{store=\"sqlite\"} "))
        .and_then(|v| v.parse().ok())
        .expect("the replay counter is exported")
}

async fn rows(app: &TestApp) -> u64 {
    let stats: Value = app.get("/app/mega/stats").await.json().await.expect("json");
    stats["rows"].as_u64().expect("rows")
}

/// Rows of `mega_idempotency` in the app's file (read-only, beside the writer).
fn stored_keys(app: &TestApp) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(
        &app.db_path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open");
    conn.query_row("SELECT count(*) FROM mega_idempotency", [], |r| r.get(0))
        .expect("count")
}

#[tokio::test]
async fn a_retry_with_the_same_key_returns_the_first_ids_and_stores_nothing() {
    let app = spawn_app().await;
    let replays_before = replays(&app).await;
    let body = ticket([4, 8, 15, 16, 23, 42]);
    let first = post_keyed(&app, "/app/insert", "order-1", &body).await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let id = created_id(first).await;

    let retry = post_keyed(&app, "/app/insert", "order-1", &body).await;
    assert_eq!(
        retry
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(created_id(retry).await, id, "the same id again");
    // The key may be sent as a structured-field string, as the IETF draft writes it.
    let quoted = post_keyed(&app, "/app/insert", "\"order-1\"", &body).await;
    assert_eq!(created_id(quoted).await, id);
    assert_eq!(rows(&app).await, 1, "retries store nothing");

    // A batch: the same ids, in order, and nothing more stored.
    let batch = json!([ticket([1, 2, 3, 4, 5, 6]), ticket([7, 8, 9, 10, 11, 12])]);
    let first: Value = post_keyed(&app, "/app/insert/batch", "batch-1", &batch)
        .await
        .json()
        .await
        .expect("json");
    let retry = post_keyed(&app, "/app/insert/batch", "batch-1", &batch).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.json::<Value>().await.expect("json"), first);
    assert_eq!(first["count"], 2);
    assert_eq!(rows(&app).await, 3);

    // Without a key, the same ticket is simply stored again.
    let again = created_id(app.post_json("/app/insert", &body).await).await;
    assert_ne!(again, id);
    // Three replays here (other tests may add theirs meanwhile).
    assert!(replays(&app).await >= replays_before + 3);
    app.stop().await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_a_bad_key_is_400() {
    let app = spawn_app().await;
    let body = ticket([4, 8, 15, 16, 23, 42]);
    created_id(post_keyed(&app, "/app/insert", "k-1", &body).await).await;

    let other = ticket([4, 8, 15, 16, 23, 43]);
    let message = expect_error(post_keyed(&app, "/app/insert", "k-1", &other).await, 422).await;
    assert!(message.contains("different request"), "{message}");
    // The same ticket as a batch is another request, too.
    let as_batch = json!([body]);
    expect_error(
        post_keyed(&app, "/app/insert/batch", "k-1", &as_batch).await,
        422,
    )
    .await;
    assert_eq!(rows(&app).await, 1);

    let long = "k".repeat(256);
    for (key, want) in [
        ("", "empty"),
        ("\"\"", "empty"),
        (long.as_str(), "at most 255"),
        ("two words", "visible ASCII"),
        ("back\\slash", "visible ASCII"),
    ] {
        let message = expect_error(post_keyed(&app, "/app/insert", key, &body).await, 400).await;
        assert!(message.contains(want), "{key:?}: {message}");
    }
    let non_ascii = app
        .client
        .post(app.url("/app/insert"))
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").expect("obs-text"),
        )
        .json(&body)
        .send()
        .await
        .expect("sent");
    expect_error(non_ascii, 400).await;
    let twice = app
        .client
        .post(app.url("/app/insert"))
        .header("Idempotency-Key", "a")
        .header("Idempotency-Key", "b")
        .json(&body)
        .send()
        .await
        .expect("sent");
    let message = expect_error(twice, 400).await;
    assert!(message.contains("one Idempotency-Key"), "{message}");
    assert_eq!(rows(&app).await, 1, "refused requests store nothing");
    app.stop().await;
}

/// Holds SQLite's write lock (`BEGIN IMMEDIATE`) on `path` on its own thread until
/// told to let go: the writer's next transaction waits behind it (its busy timeout is
/// 5 s, far longer than the test needs).
fn hold_write_lock(
    path: std::path::PathBuf,
) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("BEGIN IMMEDIATE").expect("lock");
        locked_tx.send(()).expect("report the lock");
        let _ = release_rx.recv();
        conn.execute_batch("COMMIT").expect("release");
    });
    (locked_rx, release_tx)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_whose_first_request_is_in_flight_is_409() {
    let app = spawn_app().await;
    let (locked, release) = hold_write_lock(app.db_path.clone());
    tokio::task::spawn_blocking(move || locked.recv())
        .await
        .expect("lock task")
        .expect("locked");
    let body = ticket([1, 2, 3, 4, 5, 6]);
    let send = || {
        let (client, url, body) = (app.client.clone(), app.url("/app/insert"), body.clone());
        tokio::spawn(async move {
            client
                .post(url)
                .header("Idempotency-Key", "slow-1")
                .json(&body)
                .send()
                .await
                .expect("sent")
        })
    };
    // Two requests under one key: whichever reaches the writer first waits on the
    // lock, so the other must be answered, and with 409, while the lock is held.
    let (mut a, mut b) = (send(), send());
    let (first, held) = tokio::select! {
        answered = &mut a => (answered, b),
        answered = &mut b => (answered, a),
    };
    let message = expect_error(first.expect("task"), 409).await;
    assert!(message.contains("in flight"), "{message}");
    release.send(()).expect("release the lock");
    let id = created_id(held.await.expect("task")).await;
    // Once answered, the key is committed: a retry is a replay, not a 409.
    let retry = post_keyed(&app, "/app/insert", "slow-1", &body).await;
    assert_eq!(created_id(retry).await, id);
    assert_eq!(rows(&app).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_expire_after_the_ttl_and_are_purged() {
    let app = spawn_app_with(&["--idempotency-ttl", "3s"]).await;
    let body = ticket([1, 2, 3, 4, 5, 6]);
    let first = created_id(post_keyed(&app, "/app/insert", "ttl-1", &body).await).await;
    created_id(post_keyed(&app, "/app/insert", "ttl-2", &body).await).await;
    // Within the TTL a retry replays; once it passed, the same request stores anew.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let second = loop {
        let id = created_id(post_keyed(&app, "/app/insert", "ttl-1", &body).await).await;
        if id != first {
            break id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rows(&app).await, 3);
    // The new key is live again: its retry is a replay of the second insert.
    let retry = created_id(post_keyed(&app, "/app/insert", "ttl-1", &body).await).await;
    assert_eq!(retry, second);
    // The writer purges expired keys after commits: ttl-2 goes, with no request for it.
    while stored_keys(&app) > 1 {
        assert!(tokio::time::Instant::now() < deadline, "never purged");
        created_id(app.post_json("/app/insert", &body).await).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[test]
fn a_ttl_under_a_second_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = crate::support::serve_args(&dir.path().join("x.db"), &["--idempotency-ttl", "10ms"]);
    let err = loadlab::config::Config::from_args(&args).expect_err("refused");
    assert!(err.to_string().contains("--idempotency-ttl"), "{err}");
}
