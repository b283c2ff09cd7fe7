//! The multi-host proof, on one machine: two `loadlab serve --no-front` processes share
//! one PostgreSQL database behind a `loadlab front` process, as two hosts would.
//!
//! Concurrent inserts go through the front. Then: every acknowledged id is unique and
//! reads back through the front with its own ticket (whichever process answers),
//! `/app/mega/stats` agrees exactly with the rows acknowledged, both processes wrote,
//! and `kill -9` of one app process under load loses no acknowledged row.
//!
//! Tickets are unique per request (see [`unique_ticket`]), so the table can be checked
//! against what each client was told.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use crate::support::child::{ChildProcess, free_port, loadlab};
use crate::support::postgres::fresh_database_async;
use crate::support::{all_rows, ticket, unique_ticket};

/// What the clients were told.
#[derive(Default)]
struct Ledger {
    /// Ticket -> id, for 201 answers.
    acked: HashMap<[i64; 6], i64>,
    /// Requests without a 201: an error status, or no answer (the row may exist).
    unknown: usize,
}

/// A child process (`loadlab serve` or `loadlab front`), killed when dropped.
struct Process {
    process: ChildProcess,
    base: String,
}

impl Process {
    /// Spawns `loadlab <args>` answering on `port`, and waits until `ready_path`
    /// answers 200.
    async fn start(args: &[&str], port: u16, ready_path: &str) -> Self {
        let mut command = loadlab();
        // Quiet: the front warns, as it should, about the process killed on purpose.
        command.args(args).env("RUST_LOG", "error");
        let base = format!("http://127.0.0.1:{port}");
        let ready = format!("{base}{ready_path}");
        let process = ChildProcess::start_ready("loadlab", command, &ready).await;
        Self { process, base }
    }

    /// An app process on the shared database.
    async fn app(db: &str) -> Self {
        let port = free_port();
        let port_arg = port.to_string();
        let args = [
            "serve",
            "--no-front",
            "--shards",
            "1",
            "--threads",
            "1",
            "--shard-base-port",
            &port_arg,
            "--db",
            db,
        ];
        Self::start(&args, port, "/readyz").await
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Runs `clients` insert loops against `base` until `stop` is set.
fn spawn_load(
    base: &str,
    clients: usize,
    seq: &Arc<AtomicU64>,
    ledger: &Arc<Mutex<Ledger>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|_| {
            let (base, seq, ledger, stop) =
                (base.to_owned(), seq.clone(), ledger.clone(), stop.clone());
            tokio::spawn(async move {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    let numbers = unique_ticket(seq.fetch_add(1, Ordering::Relaxed));
                    let response = client
                        .post(format!("{base}/app/insert"))
                        .json(&ticket(numbers))
                        .send()
                        .await;
                    let id = match response {
                        Ok(r) if r.status() == 201 => r
                            .json::<Value>()
                            .await
                            .ok()
                            .and_then(|body| body["id"].as_i64()),
                        _ => None,
                    };
                    let mut ledger = ledger.lock().await;
                    match id {
                        Some(id) => {
                            ledger.acked.insert(numbers, id);
                        }
                        None => ledger.unknown += 1,
                    }
                }
            })
        })
        .collect()
}

async fn wait_for_acks(ledger: &Mutex<Ledger>, at_least: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while ledger.lock().await.acked.len() < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the load never reached {at_least} acks"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn stop_load(stop: &AtomicBool, clients: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
    stop.store(false, Ordering::Relaxed);
}

/// Every row, read page by page through `base`, by id (each id listed once).
async fn rows_by_id(base: &str) -> HashMap<i64, [i64; 6]> {
    let mut rows = HashMap::new();
    for (id, numbers) in all_rows(base).await {
        assert!(rows.insert(id, numbers).is_none(), "id listed twice");
    }
    rows
}

/// Checks the acknowledgements against the table: ids unique, none missing, each
/// with its own ticket, no ticket stored twice.
fn check_acked(ledger: &Ledger, rows: &HashMap<i64, [i64; 6]>) {
    let ids: HashSet<i64> = ledger.acked.values().copied().collect();
    assert_eq!(
        ids.len(),
        ledger.acked.len(),
        "an id was acknowledged for two tickets"
    );
    let tickets: HashSet<[i64; 6]> = rows.values().copied().collect();
    assert_eq!(tickets.len(), rows.len(), "a ticket was stored twice");
    for (numbers, id) in &ledger.acked {
        assert_eq!(
            rows.get(id),
            Some(numbers),
            "acknowledged id {id} does not hold its ticket"
        );
    }
}

/// Reads every acknowledged id back through `base`, eight at a time.
async fn read_back(base: &str, ledger: &Ledger) {
    let acked: Vec<([i64; 6], i64)> = ledger.acked.iter().map(|(t, id)| (*t, *id)).collect();
    let chunks: Vec<Vec<([i64; 6], i64)>> = acked
        .chunks(acked.len().div_ceil(8).max(1))
        .map(<[_]>::to_vec)
        .collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let base = base.to_owned();
            tokio::spawn(async move {
                let client = client();
                for (numbers, id) in chunk {
                    let stored: Value = client
                        .get(format!("{base}/app/mega/{id}"))
                        .send()
                        .await
                        .expect("read")
                        .json()
                        .await
                        .expect("json");
                    assert_eq!(stored, {
                        let mut want = ticket(numbers);
                        want["id"] = id.into();
                        want
                    });
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("read-back task");
    }
}

/// `/app/mega/stats` through `base` equals what `rows` holds.
async fn check_stats(base: &str, rows: &HashMap<i64, [i64; 6]>) {
    let stats: Value = client()
        .get(format!("{base}/app/mega/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["rows"], rows.len() as u64);
    let mut plays = [0u64; 60];
    for numbers in rows.values() {
        for n in numbers {
            plays[(*n - 1) as usize] += 1;
        }
    }
    for (i, want) in plays.iter().enumerate() {
        assert_eq!(
            stats["plays"][(i + 1).to_string()],
            *want,
            "plays of {}",
            i + 1
        );
    }
}

/// Rows this app process committed, from its own `/metrics`.
async fn inserts_of(app: &Process) -> f64 {
    let text = client()
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("mega_inserts_total{store=\"postgres\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_app_processes_on_one_postgres_behind_the_front_agree_and_survive_kill_9() {
    let Some(db) = fresh_database_async("multihost").await else {
        return;
    };
    // Arrange: two app processes on the same database (the first creates the schema,
    // the second finds it), and a front over both.
    let (a, b) = tokio::join!(Process::app(&db), Process::app(&db));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("front.toml");
    let upstream =
        |p: &Process| format!("{{ addr = \"{}\" }}", p.base.trim_start_matches("http://"));
    std::fs::write(
        &config,
        format!(
            "[health]\ninterval = \"100ms\"\ntimeout = \"500ms\"\nrise = 2\nfall = 2\n\
             [[pools]]\nname = \"app\"\nupstreams = [{}, {}]\n",
            upstream(&a),
            upstream(&b)
        ),
    )
    .expect("write the front config");
    let front_port = free_port();
    let bind = format!("127.0.0.1:{front_port}");
    let config_arg = config.display().to_string();
    let front = Process::start(
        &["front", "--config", &config_arg, "--bind", &bind],
        front_port,
        "/readyz",
    )
    .await;

    // Act 1: concurrent inserts through the front, then quiet.
    let (seq, ledger, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(Ledger::default())),
        Arc::new(AtomicBool::new(false)),
    );
    let clients = spawn_load(&front.base, 16, &seq, &ledger, &stop);
    wait_for_acks(&ledger, 1500).await;
    stop_load(&stop, clients).await;

    // Assert 1: every request answered 201, ids unique, each reads back through the
    // front, stats exact, and both processes wrote.
    {
        let ledger = ledger.lock().await;
        assert_eq!(
            ledger.unknown, 0,
            "without failures every insert is acknowledged"
        );
        let rows = rows_by_id(&front.base).await;
        assert_eq!(
            rows.len(),
            ledger.acked.len(),
            "rows stored == rows acknowledged"
        );
        check_acked(&ledger, &rows);
        read_back(&front.base, &ledger).await;
        check_stats(&front.base, &rows).await;
    }
    let (wrote_a, wrote_b) = (inserts_of(&a).await, inserts_of(&b).await);
    assert!(
        wrote_a > 0.0 && wrote_b > 0.0,
        "both processes wrote: {wrote_a} and {wrote_b}"
    );

    // Act 2: load again, and kill -9 one app process in the middle of it.
    let acked_before = ledger.lock().await.acked.len();
    let clients = spawn_load(&front.base, 16, &seq, &ledger, &stop);
    wait_for_acks(&ledger, acked_before + 1000).await;
    let mut a = a;
    a.process.kill();
    let acked_at_kill = ledger.lock().await.acked.len();
    // The survivor goes on acknowledging through the front.
    wait_for_acks(&ledger, acked_at_kill + 1000).await;
    stop_load(&stop, clients).await;

    // Assert 2: nothing acknowledged is lost, nothing stored twice, stats exact.
    let ledger = ledger.lock().await;
    let rows = rows_by_id(&front.base).await;
    check_acked(&ledger, &rows);
    assert!(
        rows.len() <= ledger.acked.len() + ledger.unknown,
        "{} rows, but only {} acknowledged and {} unanswered",
        rows.len(),
        ledger.acked.len(),
        ledger.unknown
    );
    check_stats(&front.base, &rows).await;
    read_back(&front.base, &ledger).await;
    drop((a, b, front));
}
