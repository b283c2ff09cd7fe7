//! Acknowledged means committed: graceful shutdown under load and `kill -9` under load
//! lose no acknowledged row, store no row that was answered with an error, and store
//! nothing twice. Clients that retry under an `Idempotency-Key` across a `kill -9` and
//! restart store each ticket exactly once.
//!
//! Each request carries a unique ticket (its sequence number written in base 10, one
//! digit per column: `num_i = 10 * i + 1 + digit_i`, so the six numbers are always
//! distinct), which lets the table be checked against what every client was told.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use crate::support::child::{
    ChildProcess, assert_sigterm_lets_a_slow_job_finish, free_port, loadlab,
};
use crate::support::{
    all_rows, insert_each_until_acknowledged, serve_args, spawn_app_on, ticket, ticket_key,
    unique_ticket,
};

/// What the clients were told.
#[derive(Default)]
struct Ledger {
    /// Ticket -> id, for 201 answers.
    acked: HashMap<[i64; 6], i64>,
    /// Tickets answered with an error status.
    refused: Vec<[i64; 6]>,
}

/// Runs `clients` insert loops against `base` until `stop` is set; returns the ledger.
fn spawn_load(
    base: String,
    clients: usize,
    seq: Arc<AtomicU64>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|_| {
            let (base, seq, ledger, stop) =
                (base.clone(), seq.clone(), ledger.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("client");
                while !stop.load(Ordering::Relaxed) {
                    let numbers = unique_ticket(seq.fetch_add(1, Ordering::Relaxed));
                    match client
                        .post(format!("{base}/app/insert"))
                        .json(&ticket(numbers))
                        .send()
                        .await
                    {
                        Ok(response) if response.status() == 201 => {
                            // A 201 whose body is cut off still counts as unknown, not acked.
                            if let Ok(body) = response.json::<Value>().await {
                                let id = body["id"].as_i64().expect("201 carries an id");
                                ledger.lock().await.acked.insert(numbers, id);
                            }
                        }
                        Ok(_) => ledger.lock().await.refused.push(numbers),
                        // No answer: the row may or may not exist; both are fine.
                        Err(_) => {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            tokio::task::yield_now().await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Checks the table against the ledger; returns how many acked rows were checked.
fn check(rows: &[(i64, [i64; 6])], ledger: &Ledger) -> usize {
    let mut stored: HashMap<[i64; 6], i64> = HashMap::new();
    for (id, numbers) in rows {
        assert!(
            stored.insert(*numbers, *id).is_none(),
            "ticket {numbers:?} stored twice"
        );
    }
    for (numbers, id) in &ledger.acked {
        assert_eq!(
            stored.get(numbers),
            Some(id),
            "acknowledged ticket {numbers:?} (id {id}) is missing"
        );
    }
    for numbers in &ledger.refused {
        assert!(
            !stored.contains_key(numbers),
            "ticket {numbers:?} was answered with an error but stored"
        );
    }
    ledger.acked.len()
}

async fn wait_for_acks(ledger: &Mutex<Ledger>, at_least: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ledger.lock().await.acked.len() < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the load never reached {at_least} acks"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_under_load_keeps_every_acknowledged_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("loadlab.db");
    let app = spawn_app_on(serve_args(&db, &[]));
    let base = format!("http://{}", app.addr);
    let (seq, ledger, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(Ledger::default())),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let clients = spawn_load(base, 16, seq, ledger.clone(), stop.clone());
    wait_for_acks(&ledger, 2000).await;
    app.stop().await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
    // Reopen the same file and compare.
    let reopened = spawn_app_on(serve_args(&db, &[]));
    let rows = all_rows(&format!("http://{}", reopened.addr)).await;
    let checked = check(&rows, &*ledger.lock().await);
    assert!(checked >= 2000);
    reopened.stop().await;
}

/// A `loadlab serve` child process on a free port.
struct Server {
    process: ChildProcess,
    base: String,
}

impl Server {
    async fn start(db: &std::path::Path) -> Self {
        Self::start_on(db, free_port()).await
    }

    /// Starts on `port` (a restart keeps its clients' address).
    async fn start_on(db: &std::path::Path, port: u16) -> Self {
        let mut command = loadlab();
        command
            .args(["serve", "--no-front", "--shards", "1", "--threads", "1"])
            .args(["--shard-base-port", &port.to_string(), "--db"])
            .arg(db);
        let base = format!("http://127.0.0.1:{port}");
        let process =
            ChildProcess::start_ready("loadlab serve", command, &format!("{base}/readyz")).await;
        Self { process, base }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_loses_no_acknowledged_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("loadlab.db");
    let mut server = Server::start(&db).await;
    let (seq, ledger, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(Ledger::default())),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let clients = spawn_load(server.base.clone(), 16, seq, ledger.clone(), stop.clone());
    wait_for_acks(&ledger, 2000).await;
    // SIGKILL: no shutdown path runs, whatever was in flight is cut.
    server.process.kill();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
    drop(server);
    let restarted = Server::start(&db).await;
    let rows = all_rows(&restarted.base).await;
    let checked = check(&rows, &*ledger.lock().await);
    assert!(checked >= 2000, "checked {checked} acknowledged rows");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("loadlab.db")).await;
    assert_sigterm_lets_a_slow_job_finish(server.process, &server.base).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_then_idempotent_retries_store_each_ticket_once() {
    const CLIENTS: u64 = 16;
    const EACH: u64 = 150;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("loadlab.db");
    let port = free_port();
    let mut server = Server::start_on(&db, port).await;
    let base = server.base.clone();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(insert_each_until_acknowledged(base.clone(), c * EACH, EACH)))
        .collect();
    // Kill once a third of the tickets are in: requests are in flight, some committed
    // with their answers lost. Then restart on the same file and port.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while all_rows(&base).await.len() < (CLIENTS * EACH / 3) as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the load never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.process.kill();
    drop(server);
    let restarted = Server::start_on(&db, port).await;
    let mut acked = Vec::new();
    for client in clients {
        acked.extend(client.await.expect("client task"));
    }
    let rows = all_rows(&restarted.base).await;
    assert_eq!(
        rows.len() as u64,
        CLIENTS * EACH,
        "one row per ticket, no more"
    );
    let ledger = Ledger {
        acked: acked
            .iter()
            .map(|&(_, numbers, id)| (numbers, id))
            .collect(),
        refused: Vec::new(),
    };
    // No ticket twice, every one with the id its client was told.
    assert_eq!(check(&rows, &ledger) as u64, CLIENTS * EACH);
    // A retry now replays the first answer.
    let (seq, numbers, id) = acked[0];
    let replay: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(format!("{}/app/insert", restarted.base))
        .header("Idempotency-Key", ticket_key(seq))
        .json(&ticket(numbers))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(replay["id"], id);
    assert_eq!(all_rows(&restarted.base).await.len() as u64, CLIENTS * EACH);
}
