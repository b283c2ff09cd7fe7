//! The Mega API on PostgreSQL: the same answers as on SQLite (inserts, reads, pages,
//! stats, validation), plus what only a networked store has: `/info` shows the store
//! without the password, a full queue is 503 + Retry-After, and a lost connection is a
//! 503 followed by a reconnection, never a 500 or a phantom acknowledgement.
//!
//! Idempotent retries survive killed sessions and a server restart: 16 writers that
//! retry under one `Idempotency-Key` per ticket until acknowledged leave exactly one row
//! per key.
//!
//! Each test runs on a database of its own on the private server of [`crate::pg`];
//! without PostgreSQL installed (and `CI` unset) they print a message and pass.

use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::postgres::{fresh_database_async, private_server, query_i64};
use crate::support::{
    assert_insert_reads_back, assert_two_pages, expect_error, insert_each_until_acknowledged,
    spawn_app_on_postgres, ticket, ticket_key,
};

#[tokio::test(flavor = "multi_thread")]
async fn postgres_insert_read_page_and_stats_answer_as_on_sqlite() {
    let Some(url) = fresh_database_async("api").await else {
        return;
    };
    let app = spawn_app_on_postgres(&url, &[]);

    // Insert one, read it back; unknown and malformed ids.
    let id = assert_insert_reads_back(&app).await;

    // A batch: all stored, ids in submission order; a bad batch stores nothing.
    let good: Vec<Value> = (0..20).map(|i| ticket([1, 2, 3, 4, 5, 10 + i])).collect();
    let response = app
        .post_json("/app/insert/batch", &Value::Array(good))
        .await;
    assert_eq!(response.status(), 201);
    let ids: Vec<i64> = response.json::<Value>().await.expect("json")["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_i64().expect("id"))
        .collect();
    assert_eq!(ids.len(), 20);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids ascend: {ids:?}");
    let mut mixed: Vec<Value> = (0..5).map(|_| ticket([10, 20, 30, 40, 50, 60])).collect();
    mixed[3] = ticket([10, 20, 30, 40, 50, 50]);
    let message = expect_error(
        app.post_json("/app/insert/batch", &Value::Array(mixed))
            .await,
        400,
    )
    .await;
    assert!(message.starts_with("ticket 3:"), "{message}");
    expect_error(
        app.post_json("/app/insert", &json!({"num1": 1, "num2": 2}))
            .await,
        400,
    )
    .await;

    // Pages in id order.
    let first = format!("/app/mega?after_id={id}&limit=15");
    assert_two_pages(&app, &first, &ids[..15], 100, 5).await;

    // Stats: 21 rows; 1 was played by the 20 batch rows, 4 by the single one.
    let stats: Value = app.get("/app/mega/stats").await.json().await.expect("json");
    assert_eq!(stats["rows"], 21);
    assert_eq!(stats["plays"]["1"], 20);
    assert_eq!(stats["plays"]["4"], 21);
    assert_eq!(stats["plays"]["42"], 1);
    assert_eq!(stats["plays"]["60"], 0);
    assert_eq!(stats["plays"].as_object().expect("plays").len(), 60);

    // The table itself agrees.
    assert_eq!(query_i64(&url, "SELECT count(*) FROM mega").await, [21]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_info_names_the_store_and_hides_the_password() {
    let Some(url) = fresh_database_async("info").await else {
        return;
    };
    // Trust authentication ignores the password, so one can be given and must not show.
    let with_password = url.replacen("postgres@", "postgres:hunter2@", 1);
    let app = spawn_app_on_postgres(&with_password, &[]);
    let info: Value = app.get("/info").await.json().await.expect("json");
    assert_eq!(info["database"]["store"], "postgres");
    let shown = info["database"]["url"].as_str().expect("a url");
    assert!(shown.contains("postgres:***@127.0.0.1"), "{shown}");
    assert!(!info.to_string().contains("hunter2"), "{info}");
    assert_eq!(info["writer"]["connected"], true);
    assert_eq!(app.get("/readyz").await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("mega_writer_connected{store=\"postgres\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

/// Holds `LOCK TABLE mega` in an open transaction on its own thread until told to let
/// go, so the writer's `COPY` waits behind it.
fn hold_table_lock(url: String) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (locked_tx, locked_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        let mut tx = client.transaction().expect("begin");
        tx.batch_execute("LOCK TABLE mega IN ACCESS EXCLUSIVE MODE")
            .expect("lock");
        locked_tx.send(()).expect("report the lock");
        let _ = release_rx.recv();
        tx.commit().expect("release");
    });
    (locked_rx, release_tx)
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_full_queue_answers_503_with_retry_after_and_loses_nothing() {
    let Some(url) = fresh_database_async("full_queue").await else {
        return;
    };
    let app = spawn_app_on_postgres(&url, &["--writer-queue", "1"]);
    let (locked, release) = hold_table_lock(url.clone());
    tokio::task::spawn_blocking(move || locked.recv())
        .await
        .expect("lock task")
        .expect("locked");

    // The first insert is taken by the writer, which then waits on the lock.
    let first = {
        let (client, url) = (app.client.clone(), app.url("/app/insert"));
        tokio::spawn(async move {
            client
                .post(url)
                .json(&ticket([1, 2, 3, 4, 5, 6]))
                .send()
                .await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while query_i64(
        &url,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = 'loadlab-writer' AND wait_event_type = 'Lock'",
    )
    .await
        != [1]
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The second fills the queue (one slot); the third finds it full.
    let second = {
        let (client, url) = (app.client.clone(), app.url("/app/insert"));
        tokio::spawn(async move {
            client
                .post(url)
                .json(&ticket([7, 8, 9, 10, 11, 12]))
                .send()
                .await
        })
    };
    while app.state.writer().queue_depth() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "never queued");
        tokio::task::yield_now().await;
    }
    let third = app
        .post_json("/app/insert", &ticket([13, 14, 15, 16, 17, 18]))
        .await;
    assert_eq!(third.status(), 503);
    assert_eq!(
        third.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    expect_error(third, 503).await;

    release.send(()).expect("release the lock");
    for pending in [first, second] {
        let response = pending.await.expect("task").expect("answered");
        assert_eq!(response.status(), 201);
    }
    assert_eq!(query_i64(&url, "SELECT count(*) FROM mega").await, [2]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_lost_connection_is_503_then_the_writer_reconnects() {
    let Some(url) = fresh_database_async("reconnect").await else {
        return;
    };
    let app = spawn_app_on_postgres(&url, &[]);
    let before = app
        .post_json("/app/insert", &ticket([1, 2, 3, 4, 5, 6]))
        .await;
    assert_eq!(before.status(), 201);
    let reconnects_before = reconnects(&app).await;

    // Kill the writer's session from the server side, as a server restart would.
    let killed = query_i64(
        &url,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'loadlab-writer' AND datname = current_database()) AS t",
    )
    .await;
    assert_eq!(killed, [1]);

    // The batch in flight on the dead session fails as unavailable, never as a 500.
    let during = app
        .post_json("/app/insert", &ticket([7, 8, 9, 10, 11, 12]))
        .await;
    let status = during.status().as_u16();
    assert!(status == 503 || status == 201, "status {status}");
    let lost_acknowledged = status == 201;

    // Then the writer reconnects and inserts succeed again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let response = app
            .post_json("/app/insert", &ticket([13, 14, 15, 16, 17, 18]))
            .await;
        if response.status() == 201 {
            break response;
        }
        assert_eq!(response.status(), 503, "only 503 while reconnecting");
        assert!(tokio::time::Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let id = after.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id");
    assert!(app.get(&format!("/app/mega/{id}")).await.status() == 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    let rows = query_i64(&url, "SELECT count(*) FROM mega").await;
    let expected = if lost_acknowledged { 3 } else { 2 };
    assert_eq!(rows, [expected], "503 means not stored");
    // The recorder is shared by every app of this test binary (the restart tests
    // reconnect too), so the count is compared, not matched.
    assert!(reconnects(&app).await > reconnects_before);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_reads_after_a_restart_all_succeed() {
    // Arrange: a server of its own (the restart must not reach other tests), an app
    // with four pooled read connections, all of them opened and idle.
    let Some(server) = tokio::task::spawn_blocking(|| private_server("read_restart"))
        .await
        .expect("server")
    else {
        return;
    };
    let url = server.url("postgres");
    let app = spawn_app_on_postgres(&url, &["--read-connections", "4"]);
    let batch: Vec<Value> = (0..10).map(|i| ticket([1, 2, 3, 4, 5, 10 + i])).collect();
    let inserted = app
        .post_json("/app/insert/batch", &Value::Array(batch))
        .await;
    assert_eq!(inserted.status(), 201);
    let ids: Vec<i64> = inserted.json::<Value>().await.expect("json")["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_i64().expect("id"))
        .collect();
    let readers = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'loadlab-reader'";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while query_i64(&url, readers).await != [4] {
        // Reads make the pool open its connections.
        assert_eq!(app.get("/app/mega/stats").await.status(), 200);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool never filled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Act: restart the server; `pg_ctl -w` returns once it accepts connections.
    tokio::task::spawn_blocking(move || {
        server.restart_fast();
        server
    })
    .await
    .expect("restart");
    let reads = ids.iter().chain(&ids).map(|id| {
        let (client, url) = (app.client.clone(), app.url(&format!("/app/mega/{id}")));
        tokio::spawn(async move { client.get(url).send().await.expect("sent").status() })
    });
    let statuses = futures_join(reads.collect()).await;
    let page = app.get("/app/mega?limit=5").await.status();
    let stats = app.get("/app/mega/stats").await.status();

    // Assert: every read after the restart succeeded; the dead pooled connections
    // were retried on fresh ones.
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!((page.as_u16(), stats.as_u16()), (200, 200));
    let metrics = app.get("/metrics").await.text().await.expect("text");
    let retries: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mega_read_retries_total{store=\"postgres\"} "))
        .and_then(|v| v.parse().ok())
        .expect("mega_read_retries_total");
    assert!(retries >= 1.0, "{metrics}");
    app.stop().await;
}

/// Awaits every task, in order.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

/// `mega_reconnects_total` for PostgreSQL, as `app` exports it.
async fn reconnects(app: &crate::support::TestApp) -> u64 {
    let metrics = app.get("/metrics").await.text().await.expect("text");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("mega_reconnects_total{store=\"postgres\"} "))
        .and_then(|v| v.parse().ok())
        .expect("the reconnect counter is exported")
}

/// Waits (bounded) until `n` loadlab writer sessions wait on a lock.
async fn wait_for_waiting_writers(url: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while query_i64(
        url,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = 'loadlab-writer' AND wait_event_type = 'Lock'",
    )
    .await
        != [n]
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {n} writers waiting"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_one_key_through_two_processes_is_stored_once_and_replayed() {
    let Some(url) = fresh_database_async("key_arbiter").await else {
        return;
    };
    // Two writers on one database, as two hosts would be.
    let (one, two) = (
        spawn_app_on_postgres(&url, &[]),
        spawn_app_on_postgres(&url, &[]),
    );
    let send = |app: &crate::support::TestApp, body: Value| {
        let (client, url) = (app.client.clone(), app.url("/app/insert"));
        tokio::spawn(async move {
            client
                .post(url)
                .header("Idempotency-Key", "shared-1")
                .json(&body)
                .send()
                .await
                .expect("sent")
        })
    };
    let body = ticket([1, 2, 3, 4, 5, 6]);
    // The first process claims the key, then its copy waits behind a table lock: its
    // request is in flight, uncommitted.
    let (locked, release) = hold_table_lock(url.clone());
    tokio::task::spawn_blocking(move || locked.recv())
        .await
        .expect("lock task")
        .expect("locked");
    let first = send(&one, body.clone());
    wait_for_waiting_writers(&url, 1).await;
    // The second process's claim of the same key waits for the first's transaction.
    let second = send(&two, body.clone());
    wait_for_waiting_writers(&url, 2).await;
    release.send(()).expect("release the lock");
    let (first, second) = (first.await.expect("task"), second.await.expect("task"));
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (201, 201)
    );
    assert!(first.headers().get("idempotent-replayed").is_none());
    assert_eq!(
        second
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let id = |v: Value| v["id"].as_i64().expect("id");
    assert_eq!(
        id(first.json().await.expect("json")),
        id(second.json().await.expect("json"))
    );
    assert_eq!(query_i64(&url, "SELECT count(*) FROM mega").await, [1]);
    // Another ticket under the key is refused by either process.
    let other = send(&one, ticket([1, 2, 3, 4, 5, 7])).await.expect("task");
    expect_error(other, 422).await;
    assert_eq!(query_i64(&url, "SELECT count(*) FROM mega").await, [1]);
    one.stop().await;
    two.stop().await;
}

/// Waits (bounded) until the app has committed `rows` rows in all.
async fn wait_for_inserts(app: &crate::support::TestApp, rows: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = app.get("/metrics").await.text().await.expect("text");
        let done = metrics
            .lines()
            .find_map(|l| l.strip_prefix("mega_inserts_total{store=\"postgres\"} "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if done >= rows {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck below {rows} rows"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_idempotent_retries_across_a_restart_and_killed_backends_store_each_key_once() {
    const WRITERS: u64 = 16;
    const KEYS: u64 = 60;
    let Some(server) = tokio::task::spawn_blocking(|| private_server("idempotent_retries"))
        .await
        .expect("server task")
    else {
        return;
    };
    let url = server.url("postgres");
    let app = spawn_app_on_postgres(&url, &[]);
    let base = format!("http://{}", app.addr);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(insert_each_until_acknowledged(base.clone(), w * KEYS, KEYS)))
        .collect();

    // A third of the way: kill every session of loadlab's (the writer's in flight).
    wait_for_inserts(&app, WRITERS * KEYS / 3).await;
    let killed = query_i64(
        &url,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE 'loadlab%' AND datname = current_database()) AS t",
    )
    .await;
    assert!(killed[0] >= 1, "the writer's session was killed");
    // Two thirds of the way: restart the server under the load.
    wait_for_inserts(&app, 2 * WRITERS * KEYS / 3).await;
    let server = tokio::task::spawn_blocking(move || {
        server.restart_fast();
        server
    })
    .await
    .expect("restart task");

    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.expect("writer task"));
    }
    assert_eq!(acked.len() as u64, WRITERS * KEYS);

    // Exactly one row per key, with the id its writer was told.
    let stored = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            client
                .query(
                    "SELECT id, num1, num2, num3, num4, num5, num6 FROM mega",
                    &[],
                )
                .expect("rows")
                .iter()
                .map(|row| {
                    let n = |i: usize| i64::from(row.get::<_, i16>(i));
                    (row.get::<_, i64>(0), [n(1), n(2), n(3), n(4), n(5), n(6)])
                })
                .collect::<Vec<_>>()
        }
    })
    .await
    .expect("query task");
    assert_eq!(
        stored.len() as u64,
        WRITERS * KEYS,
        "one row per key, no more"
    );
    let by_ticket: std::collections::HashMap<[i64; 6], i64> =
        stored.iter().map(|(id, numbers)| (*numbers, *id)).collect();
    assert_eq!(by_ticket.len(), stored.len(), "no ticket stored twice");
    for (seq, numbers, id) in &acked {
        assert_eq!(by_ticket.get(numbers), Some(id), "ticket {seq}");
    }
    assert_eq!(
        query_i64(&url, "SELECT count(*) FROM mega_idempotency").await,
        [(WRITERS * KEYS) as i64]
    );

    // A replayed key returns the original id and stores nothing.
    let (seq, numbers, id) = &acked[acked.len() / 2];
    let replay = app
        .client
        .post(app.url("/app/insert"))
        .header("Idempotency-Key", ticket_key(*seq))
        .json(&ticket(*numbers))
        .send()
        .await
        .expect("sent");
    assert_eq!(replay.status(), 201);
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(replay.json::<Value>().await.expect("json")["id"], *id);
    assert_eq!(
        query_i64(&url, "SELECT count(*) FROM mega").await,
        [(WRITERS * KEYS) as i64]
    );
    app.stop().await;
    drop(server);
}
