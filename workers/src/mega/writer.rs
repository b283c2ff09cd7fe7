//! The Mega writer: the one thread per process that writes to the store.
//!
//! A commit is the expensive part of an insert: with SQLite's `synchronous=FULL` a disk
//! sync, with PostgreSQL a round trip plus the server's WAL flush. One transaction per
//! request would cap the store at one sync per row (`cargo bench --bench writer`; the
//! figures are in docs/PERFORMANCE.md). The writer instead
//! commits *batches*: it blocks for the first queued request, takes whatever else is
//! already queued (up to `batch_max_rows` rows, optionally lingering `batch_linger` for
//! more), writes them all in one transaction, commits, and only then answers each
//! request with its ids. Under load the batch grows with the queue, so throughput rises
//! with concurrency (group commit). How a batch is written is the store's business: a
//! `Backend` (SQLite: `mega::sqlite`, PostgreSQL: `mega::pg`).
//!
//! Guarantees:
//! - a request is answered `Ok` only after the transaction holding its rows committed
//!   (with `synchronous=FULL` / `synchronous_commit=on`, after the WAL was synced):
//!   *acknowledged means durable*;
//! - a request's rows commit together or not at all;
//! - a failed commit answers every request in that batch with the error, and the thread
//!   goes on serving the next batch; a lost connection (PostgreSQL) is
//!   [`WriteError::Unavailable`], reconnected with backoff, and while it is down queued
//!   requests are answered `Unavailable` rather than left waiting;
//! - a store fault (full, read-only, I/O error, busy) answers the batch with
//!   [`WriteError::Store`], marks the store unready ([`WriterHandle::store_fault`]) until
//!   a commit succeeds again, and is logged at most once a second with a count
//!   ([`super::health`]);
//! - the queue is bounded: [`WriterHandle::try_insert`] never blocks, it fails with
//!   [`SubmitError::Full`] so async callers can answer 503;
//! - a request under an idempotency key ([`WriterHandle::try_insert_keyed`]) stores its
//!   key with its rows in the same transaction; a retry under a committed key stores
//!   nothing and gets the first answer, and neither it nor a refused one fails the
//!   other requests of its batch (see [`super::idempotency`]). After a commit, when
//!   due, the writer deletes a bounded number of expired keys.
//!
//! Shutdown: [`MegaWriter::shutdown`] (or dropping the [`MegaWriter`]) tells the thread to
//! stop; it commits and answers everything already queued, lets the store finish (SQLite
//! checkpoints the WAL into the main file), and exits; then the caller joins it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use tokio::sync::oneshot;

use super::backend::{Backend, InsertOutcome, Request, WriteError};
use super::health::{ActiveFault, FaultWatch, StoreHealth};
use super::idempotency::{Idempotency, InFlight, Inserted, PURGE_LIMIT, PurgeSchedule};
use super::pg::backend::PgBackend;
use super::schema::{SchemaError, SyncMode};
use super::sqlite::backend::SqliteBackend;
use super::store::Database;
use super::ticket::MegaTicket;

/// Histogram buckets for `mega_batch_rows` (rows per committed transaction).
pub const BATCH_ROWS_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 10000.0,
];

/// How the writer runs.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Where `Mega` lives: a SQLite file (its folder is created if missing) or a
    /// PostgreSQL database.
    pub db: Database,
    /// How hard each commit is synced (PostgreSQL: `full` is `synchronous_commit=on`,
    /// `normal` is `off`).
    pub sync: SyncMode,
    /// Rows per transaction the writer aims for. A single request larger than this is
    /// still committed whole (in a transaction of its own).
    pub batch_max_rows: usize,
    /// How long the writer waits for more requests once it has one; zero: commit what is
    /// queued at once. A linger trades latency for bigger batches at low concurrency.
    pub batch_linger: Duration,
    /// Requests that may wait in the queue; beyond this, submissions fail with `Full`.
    pub queue_capacity: usize,
    /// SQLite only: the largest the database file may grow (`PRAGMA max_page_count`);
    /// past it inserts fail as on a full disk. `None`: as large as the disk allows.
    pub max_size_bytes: Option<u64>,
    /// How long an idempotency key is kept: a retry under it within this time gets the
    /// first answer; after it, the key is free again (and purged).
    pub idempotency_ttl: Duration,
}

impl WriterConfig {
    /// Defaults for `db` (a SQLite path converts): FULL sync, 1024 rows per batch, no
    /// linger, room for 16,384 queued requests, idempotency keys kept 24 hours.
    pub fn new(db: impl Into<Database>) -> Self {
        Self {
            db: db.into(),
            sync: SyncMode::Full,
            batch_max_rows: 1024,
            batch_linger: Duration::ZERO,
            queue_capacity: 16_384,
            max_size_bytes: None,
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// Why a submission was not queued. Nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue holds `queue_capacity` requests; try again shortly.
    #[error("the write queue is full")]
    Full,
    /// The writer is shutting down or has stopped.
    #[error("the writer is not running")]
    Closed,
    /// The request holds no rows.
    #[error("nothing to insert")]
    Empty,
    /// A request under the same idempotency key was submitted to this writer and not
    /// answered yet.
    #[error("a request with the same Idempotency-Key is still in flight")]
    KeyInFlight,
}

/// Why the writer did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened, reached or prepared.
    #[error(transparent)]
    Store(#[from] SchemaError),
    /// The operating system would not start the writer thread (out of threads or
    /// memory).
    #[error("could not start the writer thread")]
    Spawn(#[source] std::io::Error),
    /// The writer thread ended (it panicked) before it said whether the store opened.
    #[error("the writer thread ended while opening the store")]
    ThreadEnded,
}

/// One request on the queue.
enum Message {
    Insert(Request),
    /// Commit what is queued, checkpoint, exit.
    Stop,
}

/// The writer thread's owner. Keep it alive as long as the service writes; call
/// [`MegaWriter::shutdown`] (or drop it) once nothing submits any more.
#[derive(Debug)]
pub struct MegaWriter {
    handle: WriterHandle,
    thread: Option<JoinHandle<()>>,
}

/// A cheap, cloneable way to submit inserts to the writer.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: Sender<Message>,
    /// Set once the writer thread has exited (normally or by panic), so readiness checks
    /// and submitters can tell without touching the channel.
    stopped: Arc<AtomicBool>,
    /// Set when shutdown starts: new submissions are refused from then on, while what is
    /// already queued still commits.
    closing: Arc<AtomicBool>,
    /// Cleared by the writer thread while its store is unreachable (PostgreSQL), set
    /// again once it reconnected: readiness reports it.
    connected: Arc<AtomicBool>,
    /// The store's last fault while it is current, recorded by the writer thread:
    /// readiness reports it.
    health: Arc<StoreHealth>,
    /// Idempotency keys submitted and not answered yet: claimed by submitters,
    /// released by the writer thread once it has the request's outcome.
    in_flight: Arc<InFlight>,
    /// The `store` label of the writer's metrics.
    store: &'static str,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Insert(request) => write!(f, "Insert({} rows)", request.rows.len()),
            Message::Stop => f.write_str("Stop"),
        }
    }
}

impl MegaWriter {
    /// Opens the store (creating file, folder, table and sequence as needed) and starts
    /// the writer thread. Fails if the store cannot be opened or reached, or holds an
    /// incompatible `Mega`.
    ///
    /// The store is opened on the writer thread itself, which then owns it: the
    /// `postgres` client drives its own runtime, and may not be driven from a thread
    /// that runs async tasks (callers may be on one). The caller blocks until the
    /// store is open (milliseconds; the PostgreSQL connect timeout at worst).
    pub fn start(config: WriterConfig) -> Result<Self, StartError> {
        let label = config.db.store().label();
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity.max(1));
        register_series(&config, label);
        let handle = WriterHandle::new(tx, label);
        // The thread reports whether the store opened, then serves (or exits).
        let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel(1);
        let thread = spawn_thread(config, rx, &handle, OpenedSender(opened_tx))
            .map_err(StartError::Spawn)?;
        let failed = match opened_rx.recv() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(StartError::Store(e)),
            Err(_) => Some(StartError::ThreadEnded),
        };
        if let Some(e) = failed {
            // The thread has returned (or is returning) without serving.
            let _ = thread.join();
            return Err(e);
        }
        Ok(Self {
            handle,
            thread: Some(thread),
        })
    }

    /// A handle to submit inserts.
    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Stops the writer: refuses new submissions, commits and answers everything already
    /// queued, checkpoints the WAL, and waits for the thread to exit.
    ///
    /// Blocks the calling thread for as long as that takes (one last batch and a
    /// checkpoint: milliseconds); call it outside the async runtime's workers.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.handle.closing.store(true, Ordering::Release);
        // A blocking send: the queue may be full, and the writer is draining it.
        let _ = self.handle.tx.send(Message::Stop);
        if thread.join().is_err() {
            metrics::counter!("mega_writer_panics_total", "store" => self.handle.store)
                .increment(1);
        }
    }
}

impl Drop for MegaWriter {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl WriterHandle {
    /// A handle on the queue `tx`, the writer running and connected, nothing in flight;
    /// `store` labels its metrics.
    fn new(tx: Sender<Message>, store: &'static str) -> Self {
        Self {
            tx,
            stopped: Arc::new(AtomicBool::new(false)),
            closing: Arc::new(AtomicBool::new(false)),
            connected: Arc::new(AtomicBool::new(true)),
            health: Arc::new(StoreHealth::default()),
            in_flight: Arc::new(InFlight::default()),
            store,
        }
    }

    /// Queues one ticket. Never blocks: a full queue is [`SubmitError::Full`].
    pub fn try_insert(&self, ticket: MegaTicket) -> Result<PendingInsert, SubmitError> {
        self.try_insert_many(vec![ticket])
    }

    /// Queues tickets to be committed together, all or nothing. Never blocks.
    pub fn try_insert_many(&self, rows: Vec<MegaTicket>) -> Result<PendingInsert, SubmitError> {
        self.try_submit(rows, None)
    }

    /// Queues tickets to be committed together under an idempotency key: stored with
    /// the key, or, when the key was committed before, answered from it
    /// ([`Inserted::Replayed`], or [`WriteError::KeyReused`] for another request).
    /// Never blocks; [`SubmitError::KeyInFlight`] if a request under the same key was
    /// submitted here and not answered yet.
    pub fn try_insert_keyed(
        &self,
        rows: Vec<MegaTicket>,
        key: Idempotency,
    ) -> Result<PendingInsert, SubmitError> {
        self.try_submit(rows, Some(key))
    }

    fn try_submit(
        &self,
        rows: Vec<MegaTicket>,
        key: Option<Idempotency>,
    ) -> Result<PendingInsert, SubmitError> {
        if rows.is_empty() {
            return Err(SubmitError::Empty);
        }
        if self.closing.load(Ordering::Acquire) || self.is_stopped() {
            return Err(SubmitError::Closed);
        }
        if let Some(key) = &key
            && !self.in_flight.claim(&key.key)
        {
            return Err(SubmitError::KeyInFlight);
        }
        let (reply, outcome) = oneshot::channel();
        let request = Request { rows, key, reply };
        // The queue-depth gauge is set by the writer once per batch, not here: racing
        // submitters would overwrite each other's values on every request for nothing.
        let refused = match self.tx.try_send(Message::Insert(request)) {
            Ok(()) => return Ok(PendingInsert { outcome }),
            Err(TrySendError::Full(message)) => {
                metrics::counter!("mega_rejected_total", "store" => self.store).increment(1);
                (message, SubmitError::Full)
            }
            Err(TrySendError::Disconnected(message)) => (message, SubmitError::Closed),
        };
        if let (Message::Insert(request), _) = &refused
            && let Some(key) = &request.key
        {
            self.in_flight.release(&key.key);
        }
        Err(refused.1)
    }

    /// Requests waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        self.tx.len()
    }

    /// The queue's capacity, in requests.
    pub fn queue_capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(usize::MAX)
    }

    /// Whether the writer thread has exited (after shutdown, or because it panicked).
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Whether the writer accepts submissions: running and not shutting down.
    pub fn is_accepting(&self) -> bool {
        !self.is_stopped() && !self.closing.load(Ordering::Acquire)
    }

    /// Whether the writer's connection to the store is up (always, for SQLite). While
    /// it is down, queued requests are answered [`WriteError::Unavailable`].
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The store fault that makes the writer unready, if any (see [`super::health`]):
    /// set at the first failed commit, cleared by the next successful one.
    pub fn store_fault(&self) -> Option<ActiveFault> {
        self.health.current()
    }

    /// Batches committed since the writer started, and the rows in them.
    pub fn committed(&self) -> (u64, u64) {
        self.health.committed()
    }

    /// The `store` label: `sqlite` or `postgres`.
    pub fn store(&self) -> &'static str {
        self.store
    }
}

/// A queued request. Await [`PendingInsert::committed`] for its ids. Dropping it does
/// not withdraw the request: queued rows are still committed, just not reported.
#[derive(Debug)]
pub struct PendingInsert {
    outcome: oneshot::Receiver<InsertOutcome>,
}

impl PendingInsert {
    /// Resolves once the request's transaction committed (its ids, stored now or
    /// replayed) or failed.
    pub async fn committed(self) -> Result<Vec<i64>, WriteError> {
        self.answered().await.map(Inserted::into_ids)
    }

    /// Resolves once the request's transaction committed or failed, telling rows
    /// stored now from a replayed answer.
    pub async fn answered(self) -> InsertOutcome {
        self.outcome.await.unwrap_or(Err(WriteError::WriterGone))
    }
}

/// The writer thread's report of opening its store, to the thread in `start`.
struct OpenedSender(std::sync::mpsc::SyncSender<Result<(), SchemaError>>);

impl OpenedSender {
    /// Sends the outcome; the backend when it opened. Also sets `mega_rows`.
    fn report<B>(self, opened: Result<(B, i64), SchemaError>, store: &'static str) -> Option<B> {
        match opened {
            Ok((backend, rows)) => {
                metrics::gauge!("mega_rows", "store" => store).set(rows as f64);
                let _ = self.0.send(Ok(()));
                Some(backend)
            }
            Err(e) => {
                let _ = self.0.send(Err(e));
                None
            }
        }
    }
}

/// Registers the writer's series at start, so dashboards and `rate()` see zeros rather
/// than nothing until the first insert, rejection or failure.
fn register_series(config: &WriterConfig, label: &'static str) {
    metrics::gauge!("mega_writer_queue_capacity", "store" => label)
        .set(config.queue_capacity.max(1) as f64);
    metrics::gauge!("mega_writer_queue_depth", "store" => label).set(0.0);
    metrics::gauge!("mega_writer_connected", "store" => label).set(1.0);
    for name in [
        "mega_inserts_total",
        "mega_insert_errors_total",
        "mega_rejected_total",
        "mega_writer_panics_total",
        "mega_checkpoint_errors_total",
        "mega_reconnects_total",
        "mega_idempotent_replays_total",
    ] {
        metrics::counter!(name, "store" => label).increment(0);
    }
}

/// Starts the writer thread: it opens the store named by `config`, reports that through
/// `opened`, then runs its [`WriterLoop`] on the store's backend until stopped. It
/// shares `handle`'s flags, health and keys in flight.
fn spawn_thread(
    config: WriterConfig,
    rx: Receiver<Message>,
    handle: &WriterHandle,
    opened: OpenedSender,
) -> std::io::Result<JoinHandle<()>> {
    let label = handle.store;
    let stopped = Arc::clone(&handle.stopped);
    let connected = Arc::clone(&handle.connected);
    let faults = FaultWatch::new(Arc::clone(&handle.health), label);
    let in_flight = Arc::clone(&handle.in_flight);
    std::thread::Builder::new()
        .name("loadlab-mega-writer".into())
        .spawn(move || {
            let _stopped = SetOnDrop(stopped);
            match &config.db {
                Database::Sqlite(path) => {
                    let backend = SqliteBackend::open(path, config.sync, config.max_size_bytes);
                    if let Some(backend) = opened.report(backend, label) {
                        WriterLoop::new(backend, rx, &config, label, connected, faults, in_flight)
                            .run();
                    }
                }
                Database::Postgres(url) => {
                    let backend = PgBackend::connect(url, config.sync);
                    if let Some(backend) = opened.report(backend, label) {
                        WriterLoop::new(backend, rx, &config, label, connected, faults, in_flight)
                            .run();
                    }
                }
            }
        })
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The state owned by the writer thread.
struct WriterLoop<'a, B> {
    backend: B,
    rx: Receiver<Message>,
    config: &'a WriterConfig,
    /// The `store` label of every metric the thread records.
    store: &'static str,
    /// Shared with the handles: whether the store is reachable (see
    /// [`WriterHandle::is_connected`]).
    connected: Arc<AtomicBool>,
    /// Shared with the handles: the keys of requests not answered yet.
    in_flight: Arc<InFlight>,
    /// When expired idempotency keys are next deleted.
    purge: PurgeSchedule,
    /// Requests of the batch being gathered; reused between batches.
    batch: Vec<Request>,
    /// Readiness, metrics and aggregated logs of failed commits.
    faults: FaultWatch,
}

impl<'a, B: Backend> WriterLoop<'a, B> {
    fn new(
        backend: B,
        rx: Receiver<Message>,
        config: &'a WriterConfig,
        store: &'static str,
        connected: Arc<AtomicBool>,
        faults: FaultWatch,
        in_flight: Arc<InFlight>,
    ) -> Self {
        // Sized for the common case; grows if needed.
        let batch = Vec::with_capacity(config.batch_max_rows.min(4096));
        Self {
            backend,
            rx,
            config,
            store,
            connected,
            in_flight,
            purge: PurgeSchedule::new(),
            batch,
            faults,
        }
    }

    fn run(mut self) {
        let mut stopping = false;
        while !stopping {
            let Some(first) = self.next_message() else {
                // Every handle is gone: nothing can arrive any more.
                break;
            };
            stopping = self.gather(first);
            self.commit_batch();
        }
        // Drain what was queued before the stop (submitters saw `closing` after it).
        while let Ok(next) = self.rx.try_recv() {
            self.gather(next);
            self.commit_batch();
        }
        metrics::gauge!("mega_writer_queue_depth", "store" => self.store).set(0.0);
        self.backend.finish();
    }

    /// Blocks for the next request. While the store is unreachable, wakes up when the
    /// next reconnection attempt is due, so readiness recovers without traffic.
    fn next_message(&mut self) -> Option<Message> {
        loop {
            match self.check_connection() {
                Ok(()) => return self.rx.recv().ok(),
                Err(wait) => match self.rx.recv_timeout(wait) {
                    Ok(message) => return Some(message),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return None,
                },
            }
        }
    }

    /// Asks the backend to (re)connect if due, and publishes the outcome.
    fn check_connection(&mut self) -> Result<(), Duration> {
        let result = self.backend.reconnect();
        let up = result.is_ok();
        if self.connected.swap(up, Ordering::AcqRel) != up {
            metrics::gauge!("mega_writer_connected", "store" => self.store).set(if up {
                1.0
            } else {
                0.0
            });
        }
        result
    }

    /// Adds `first` and whatever else is queued (up to the row budget, lingering if
    /// configured) to the batch. Returns true if a stop was seen.
    fn gather(&mut self, first: Message) -> bool {
        let mut rows = 0usize;
        let mut deadline = None;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(Message::Insert(request)) => {
                    rows += request.rows.len();
                    self.batch.push(request);
                }
                Some(Message::Stop) => return true,
                None => {}
            }
            if rows >= self.config.batch_max_rows {
                return false;
            }
            next = match self.rx.try_recv() {
                Ok(message) => Some(message),
                Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) if self.config.batch_linger.is_zero() => return false,
                Err(TryRecvError::Empty) => {
                    let until =
                        *deadline.get_or_insert_with(|| Instant::now() + self.config.batch_linger);
                    match self.rx.recv_deadline(until) {
                        Ok(message) => Some(message),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                            return false;
                        }
                    }
                }
            };
        }
    }

    /// Writes the gathered requests in one transaction, commits, and answers each.
    fn commit_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let store = self.store;
        metrics::gauge!("mega_writer_queue_depth", "store" => store).set(self.rx.len() as f64);
        let started = Instant::now();
        let rows: usize = self.batch.iter().map(|r| r.rows.len()).sum();
        let outcome = match self.check_connection() {
            Ok(()) => self
                .backend
                .insert_all(&self.batch, self.config.idempotency_ttl),
            Err(_) => Err(WriteError::Unavailable(
                "the writer is reconnecting to the database".into(),
            )),
        };
        match outcome {
            Ok(answers) => {
                self.record_commit(started, &answers);
                self.faults.committed(rows);
                for (request, answer) in self.batch.drain(..).zip(answers) {
                    answer_request(&self.in_flight, request, answer);
                }
                self.purge_if_due();
            }
            Err(error) => {
                metrics::counter!("mega_insert_errors_total", "store" => store)
                    .increment(rows as u64);
                self.faults.failed(&error);
                for request in self.batch.drain(..) {
                    answer_request(&self.in_flight, request, Err(error.clone()));
                }
                // A lost connection shows at once in readiness, not at the next batch.
                if matches!(error, WriteError::Unavailable(_)) {
                    let _ = self.check_connection();
                }
            }
        }
    }

    /// The metrics of a committed batch: only rows stored now count as inserted.
    fn record_commit(&self, started: Instant, answers: &[InsertOutcome]) {
        let store = self.store;
        let stored: usize = answers
            .iter()
            .map(|a| match a {
                Ok(Inserted::Stored(ids)) => ids.len(),
                _ => 0,
            })
            .sum();
        let replays = answers
            .iter()
            .filter(|a| matches!(a, Ok(Inserted::Replayed { .. })))
            .count();
        metrics::histogram!("mega_commit_duration_seconds", "store" => store)
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("mega_batch_rows", "store" => store).record(stored as f64);
        metrics::counter!("mega_inserts_total", "store" => store).increment(stored as u64);
        metrics::counter!("mega_idempotent_replays_total", "store" => store)
            .increment(replays as u64);
        metrics::gauge!("mega_rows", "store" => store).increment(stored as f64);
    }

    /// Deletes a bounded number of expired idempotency keys, when due. A failure is
    /// retried at the next due time: expired keys only take space, and a lookup
    /// already treats them as absent.
    fn purge_if_due(&mut self) {
        if !self.purge.due() {
            return;
        }
        let purged = self
            .backend
            .purge_keys(self.config.idempotency_ttl, PURGE_LIMIT)
            .ok();
        self.purge.done(purged);
    }
}

/// Answers one request; first marks its key answered, so a client that retries the
/// moment it hears back finds the key committed rather than in flight.
fn answer_request(in_flight: &InFlight, request: Request, answer: InsertOutcome) {
    if let Some(key) = &request.key {
        in_flight.release(&key.key);
    }
    // The caller may have gone away; the rows are stored all the same.
    let _ = request.reply.send(answer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::block_on;

    /// A handle whose queue nobody drains, to test submission limits alone.
    fn undrained(capacity: usize) -> (WriterHandle, Receiver<Message>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let handle = WriterHandle::new(tx, "sqlite");
        (handle, rx)
    }

    #[test]
    fn a_full_queue_refuses_at_once_instead_of_blocking() {
        let (handle, _rx) = undrained(2);
        let ticket = MegaTicket::new([1, 2, 3, 4, 5, 6]).expect("ticket");
        assert!(handle.try_insert(ticket).is_ok());
        assert!(handle.try_insert(ticket).is_ok());
        assert_eq!(handle.try_insert(ticket).err(), Some(SubmitError::Full));
        assert_eq!(handle.queue_depth(), 2);
    }

    #[test]
    fn an_empty_request_is_refused() {
        let (handle, _rx) = undrained(1);
        assert_eq!(
            handle.try_insert_many(Vec::new()).err(),
            Some(SubmitError::Empty)
        );
    }

    #[test]
    fn a_closing_writer_refuses_new_requests() {
        let (handle, _rx) = undrained(1);
        handle.closing.store(true, Ordering::Release);
        let ticket = MegaTicket::new([1, 2, 3, 4, 5, 6]).expect("ticket");
        assert_eq!(handle.try_insert(ticket).err(), Some(SubmitError::Closed));
        assert!(!handle.is_accepting());
    }

    fn keyed(key: &str, ticket: MegaTicket) -> Idempotency {
        Idempotency {
            key: super::super::IdempotencyKey::parse(key.as_bytes()).expect("key"),
            fingerprint: super::super::Fingerprint::of("insert", &[ticket]),
            status: 201,
        }
    }

    #[test]
    fn a_key_is_in_flight_until_answered_and_free_after_a_refusal() {
        let (handle, rx) = undrained(1);
        let ticket = MegaTicket::new([1, 2, 3, 4, 5, 6]).expect("ticket");
        let first = handle
            .try_insert_keyed(vec![ticket], keyed("k", ticket))
            .expect("queued");
        assert_eq!(
            handle
                .try_insert_keyed(vec![ticket], keyed("k", ticket))
                .err(),
            Some(SubmitError::KeyInFlight)
        );
        // A full queue refuses another key, and does not leave it in flight.
        assert_eq!(
            handle
                .try_insert_keyed(vec![ticket], keyed("other", ticket))
                .err(),
            Some(SubmitError::Full)
        );
        assert!(handle.in_flight.claim(&keyed("other", ticket).key));
        // Answering the first releases its key.
        let Ok(Message::Insert(request)) = rx.try_recv() else {
            panic!("queued");
        };
        answer_request(&handle.in_flight, request, Ok(Inserted::Stored(vec![1])));
        assert_eq!(block_on(first.committed()), Ok(vec![1]));
        assert!(handle.in_flight.claim(&keyed("k", ticket).key));
    }

    #[test]
    fn a_retry_through_the_writer_is_replayed_and_counted_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = MegaWriter::start(WriterConfig::new(dir.path().join("t.db"))).expect("writer");
        let handle = writer.handle();
        let ticket = MegaTicket::new([1, 2, 3, 4, 5, 6]).expect("ticket");
        let submit = |t: MegaTicket| {
            block_on(
                handle
                    .try_insert_keyed(vec![t], keyed("retry-1", ticket))
                    .expect("queued")
                    .answered(),
            )
        };
        let first = submit(ticket).expect("stored");
        assert!(matches!(first, Inserted::Stored(_)), "{first:?}");
        assert_eq!(
            submit(ticket),
            Ok(Inserted::Replayed {
                ids: first.ids().to_vec(),
                status: 201
            })
        );
        let other = MegaTicket::new([1, 2, 3, 4, 5, 7]).expect("ticket");
        let reused = block_on(
            handle
                .try_insert_keyed(vec![other], keyed("retry-1", other))
                .expect("queued")
                .answered(),
        );
        assert_eq!(reused, Err(WriteError::KeyReused));
        writer.shutdown();
    }

    #[test]
    fn a_failed_commit_answers_every_request_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let writer = MegaWriter::start(WriterConfig::new(&path)).expect("writer");
        let handle = writer.handle();
        // Make inserts fail from outside: a trigger that aborts every insert.
        let other = rusqlite::Connection::open(&path).expect("open");
        other
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON Mega \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .expect("trigger");
        let ticket = MegaTicket::new([1, 2, 3, 4, 5, 6]).expect("ticket");
        let outcome = block_on(handle.try_insert(ticket).expect("queued").committed());
        assert!(
            matches!(outcome, Err(WriteError::Commit(ref m)) if m.contains("refused")),
            "{outcome:?}"
        );
        other
            .execute_batch("DROP TRIGGER refuse;")
            .expect("drop trigger");
        let ids =
            block_on(handle.try_insert(ticket).expect("queued").committed()).expect("committed");
        assert_eq!(ids.len(), 1, "the writer kept serving after the failure");
        writer.shutdown();
    }
}
