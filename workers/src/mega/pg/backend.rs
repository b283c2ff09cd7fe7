//! The PostgreSQL [`Backend`] of the writer.
//!
//! Several loadlab processes may write the same database at once, each with its own
//! writer thread committing its own batches. Ids come from the sequence `mega_id_seq`,
//! which hands out unique values across sessions without locking the table. `COPY`
//! returns no ids and `INSERT ... RETURNING` promises no row order, so the writer
//! *reserves* ids first (`nextval` once per id, [`RESERVE_AHEAD`] at a time), then copies
//! each batch's rows with ids from that reserve in binary: each id maps back to its
//! request exactly.
//!
//! A lost connection fails the batch in flight with [`WriteError::Unavailable`]. When
//! it died while the copy was committing, the rows may or may not be stored; either way
//! none of them is acknowledged. The writer reconnects with exponential backoff. A
//! client that retries under an `Idempotency-Key` learns which (`keys`): a batch
//! holding keyed requests claims their keys and copies their rows in one explicit
//! transaction.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::{Client, Statement};

use loadlab_logs::{RepeatLog, Verdict};

use super::describe;
use super::keys::{self, Claim, Claimed, KeyStatements};
use super::schema::{open, prepare_schema};
use crate::mega::backend::{Backend, Batch, InsertOutcome, WriteError};
use crate::mega::fault::{StoreFault, classify_pg};
use crate::mega::idempotency::{self, Idempotency, Inserted};
use crate::mega::schema::{SchemaError, SyncMode};
use crate::mega::store::PostgresUrl;
use crate::mega::ticket::MegaTicket;

/// Ids reserved per round trip to the sequence, at least. Reserving ahead saves that
/// round trip on most batches; the price is gaps: a process that stops leaves its unused
/// ids unused (ids are unique and increase per process, but are not dense).
const RESERVE_AHEAD: usize = 1024;

/// Reserves `$1` ids from the sequence.
const NEXT_IDS: &str = "SELECT nextval('mega_id_seq') FROM generate_series(1, $1::bigint)";

const COPY: &str = "COPY mega (id, num1, num2, num3, num4, num5, num6) FROM STDIN BINARY";

/// The column types `COPY ... BINARY` must match exactly.
const COLUMN_TYPES: [Type; 7] = [
    Type::INT8,
    Type::INT2,
    Type::INT2,
    Type::INT2,
    Type::INT2,
    Type::INT2,
    Type::INT2,
];

/// First wait after a failed reconnection attempt; doubled per failure up to
/// [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The writer's connection, and when to try again while it is down.
pub(in crate::mega) struct PgBackend {
    url: PostgresUrl,
    sync: SyncMode,
    /// `None` while the connection is down.
    client: Option<Session>,
    /// When the next reconnection attempt is due.
    retry_at: Instant,
    /// The wait after the next failed attempt.
    backoff: Duration,
    /// Ids taken from the sequence and not yet used, ascending. They stay valid across
    /// reconnections: the sequence never hands them out again.
    reserved: VecDeque<i64>,
    /// Failed reconnection attempts: logged at most once a second (the backoff starts
    /// at 100 ms), the count carried by the next line.
    reconnect_failures: RepeatLog,
}

impl PgBackend {
    /// Connects, creates the sequence and table if absent, and checks an existing table;
    /// also returns the rows it holds.
    pub(in crate::mega) fn connect(
        url: &PostgresUrl,
        sync: SyncMode,
    ) -> Result<(Self, i64), SchemaError> {
        let mut client = open(url, sync)?;
        prepare_schema(&mut client)?;
        let rows: i64 = client
            .query_one("SELECT count(*) FROM mega", &[])
            .and_then(|row| row.try_get(0))
            .map_err(|e| SchemaError::Postgres(describe(&e)))?;
        let backend = Self {
            url: url.clone(),
            sync,
            client: Some(Session::prepare(client)?),
            retry_at: Instant::now(),
            backoff: BACKOFF_MIN,
            reserved: VecDeque::new(),
            reconnect_failures: RepeatLog::per_second(),
        };
        Ok((backend, rows))
    }
}

/// The writer's connection and its statements, prepared once per connection: a
/// statement given as text is prepared again on every call, one more round trip per
/// batch.
struct Session {
    client: Client,
    next_ids: Statement,
    copy: Statement,
    keys: KeyStatements,
}

impl Session {
    fn prepare(mut client: Client) -> Result<Self, SchemaError> {
        let pg = |e: postgres::Error| SchemaError::Postgres(describe(&e));
        let next_ids = client.prepare(NEXT_IDS).map_err(pg)?;
        let copy = client.prepare(COPY).map_err(pg)?;
        let keys = KeyStatements::prepare(&mut client).map_err(pg)?;
        Ok(Self {
            client,
            next_ids,
            copy,
            keys,
        })
    }
}

/// Why a batch failed.
enum BatchError {
    Postgres(postgres::Error),
    /// The sequence answered with the wrong number of ids (a bug or a foreign trigger).
    Ids(String),
}

impl From<postgres::Error> for BatchError {
    fn from(e: postgres::Error) -> Self {
        BatchError::Postgres(e)
    }
}

impl Backend for PgBackend {
    fn reconnect(&mut self) -> Result<(), Duration> {
        if self.client.as_ref().is_some_and(|s| !s.client.is_closed()) {
            return Ok(());
        }
        self.client = None;
        let now = Instant::now();
        if now < self.retry_at {
            return Err(self.retry_at - now);
        }
        match open(&self.url, self.sync).and_then(Session::prepare) {
            Ok(client) => {
                metrics::counter!("mega_reconnects_total", "store" => "postgres").increment(1);
                let failed_attempts = self.reconnect_failures.settle().unwrap_or(0);
                tracing::warn!(url = %self.url, failed_attempts, "the Mega writer reconnected");
                self.client = Some(client);
                self.backoff = BACKOFF_MIN;
                Ok(())
            }
            Err(e) => {
                if let Verdict::Log { repeats } = self.reconnect_failures.occurred() {
                    tracing::warn!(error = %e, repeats, "the Mega writer could not reconnect");
                }
                self.retry_at = Instant::now() + self.backoff;
                let wait = self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                Err(wait)
            }
        }
    }

    fn insert_all(
        &mut self,
        batch: &Batch,
        ttl: Duration,
    ) -> Result<Vec<InsertOutcome>, WriteError> {
        let Some(session) = self.client.as_mut() else {
            return Err(WriteError::Unavailable("not connected".into()));
        };
        let written = if batch.iter().any(|r| r.key.is_some()) {
            write_keyed_batch(session, &mut self.reserved, batch, ttl)
        } else {
            write_batch(session, &mut self.reserved, batch).map(|ids| {
                ids.into_iter()
                    .map(|ids| Ok(Inserted::Stored(ids)))
                    .collect()
            })
        };
        self.outcome(written)
    }

    fn purge_keys(&mut self, ttl: Duration, limit: usize) -> Result<usize, WriteError> {
        let Some(session) = self.client.as_mut() else {
            return Err(WriteError::Unavailable("not connected".into()));
        };
        let purged = keys::purge(&mut session.client, &session.keys, ttl, limit)
            .map_err(BatchError::Postgres);
        self.outcome(purged)
    }
}

impl PgBackend {
    /// A write's result as the writer sees it: a lost connection is `Unavailable` (and
    /// the next attempt reconnects at once), a failed statement a `Commit` error.
    fn outcome<T>(&mut self, written: Result<T, BatchError>) -> Result<T, WriteError> {
        let Some(session) = self.client.as_mut() else {
            return Err(WriteError::Unavailable("not connected".into()));
        };
        match written {
            Ok(done) => Ok(done),
            Err(BatchError::Ids(message)) => Err(WriteError::Commit(message)),
            Err(BatchError::Postgres(e)) => match classify_pg(&e) {
                _ if session.client.is_closed() => Err(self.lost(&e)),
                Some(StoreFault::ConnectionLost) => Err(self.lost(&e)),
                Some(fault) => Err(WriteError::Store {
                    fault,
                    cause: describe(&e),
                }),
                None => Err(WriteError::Commit(describe(&e))),
            },
        }
    }

    /// The connection died: drops it, due for reconnection at once (the server may be
    /// back already, after a restart; if not, the backoff starts from there).
    fn lost(&mut self, error: &postgres::Error) -> WriteError {
        self.client = None;
        self.retry_at = Instant::now();
        WriteError::Unavailable(describe(error))
    }
}

/// Takes `rows` ids from `reserved`, first topping it up from the sequence (at least
/// [`RESERVE_AHEAD`] at a time) when it holds too few. Ids reserved but never stored are
/// a gap, never reused: after a failed copy their rows may or may not exist.
fn take_ids(
    session: &mut Session,
    reserved: &mut VecDeque<i64>,
    rows: usize,
) -> Result<Vec<i64>, BatchError> {
    if reserved.len() < rows {
        let want = (rows - reserved.len()).max(RESERVE_AHEAD);
        let mut fresh = session
            .client
            .query(&session.next_ids, &[&(want as i64)])?
            .iter()
            .map(|row| row.try_get::<_, i64>(0))
            .collect::<Result<Vec<_>, _>>()?;
        if fresh.len() != want {
            return Err(BatchError::Ids(format!(
                "the sequence gave {} ids, {want} were asked for",
                fresh.len()
            )));
        }
        // Ascending, and above every id reserved before (the sequence only grows): a
        // request's ids and the batch's requests come in submission order.
        fresh.sort_unstable();
        reserved.extend(fresh);
    }
    Ok(reserved.drain(..rows).collect())
}

/// Copies the batch's rows in binary with their reserved ids. One `COPY` outside an
/// explicit transaction is a transaction of its own: all rows or none, committed (and,
/// with `synchronous_commit=on`, flushed) before the server confirms it, in one round
/// trip instead of `BEGIN`, `COPY`, `COMMIT`. A copy that fails midway is aborted when
/// the writer is dropped unfinished.
fn write_batch(
    session: &mut Session,
    reserved: &mut VecDeque<i64>,
    batch: &Batch,
) -> Result<Vec<Vec<i64>>, BatchError> {
    let ids = ids_per_request(session, reserved, batch)?;
    let mut writer = BinaryCopyInWriter::new(session.client.copy_in(&session.copy)?, &COLUMN_TYPES);
    for (request, request_ids) in batch.iter().zip(&ids) {
        write_rows(&mut writer, &request.rows, request_ids)?;
    }
    writer.finish()?;
    Ok(ids)
}

/// A batch holding keyed requests, in one explicit transaction: ids reserved for every
/// row, the keys claimed (with the ids their rows get), the rows copied of the requests
/// that won their key or have none, then `COMMIT`. A request answered from its key's
/// record leaves its reserved ids unused (a gap, as after a failed copy).
fn write_keyed_batch(
    session: &mut Session,
    reserved: &mut VecDeque<i64>,
    batch: &Batch,
    ttl: Duration,
) -> Result<Vec<InsertOutcome>, BatchError> {
    let ids = ids_per_request(session, reserved, batch)?;
    let repeats = idempotency::repeats_in(batch.iter().map(|r| r.key.as_ref()));
    let mut answers: Vec<Option<InsertOutcome>> = repeats
        .iter()
        .map(|&repeat| repeat.then_some(Err(WriteError::KeyInFlight)))
        .collect();
    // The first request under each key, by index.
    let keyed: Vec<(usize, &Idempotency)> = batch
        .iter()
        .enumerate()
        .filter(|(i, _)| !repeats[*i])
        .filter_map(|(i, r)| r.key.as_ref().map(|key| (i, key)))
        .collect();
    let claims: Vec<Claim<'_>> = keyed
        .iter()
        .map(|&(i, request)| Claim {
            request,
            ids: idempotency::encode_ids(&ids[i]),
        })
        .collect();
    let mut tx = session.client.transaction()?;
    let found = keys::claim(&mut tx, &session.keys, &claims, ttl)?;
    for (&(i, key), found) in keyed.iter().zip(found) {
        answers[i] = match found {
            Claimed::Won => None,
            Claimed::Taken(stored) => Some(stored.answer(key).map_err(WriteError::from)),
            Claimed::Vanished => Some(Err(WriteError::KeyInFlight)),
        };
    }
    let to_store = || {
        batch
            .iter()
            .zip(&ids)
            .zip(&answers)
            .filter(|(_, a)| a.is_none())
    };
    if to_store().next().is_some() {
        let mut writer = BinaryCopyInWriter::new(tx.copy_in(&session.copy)?, &COLUMN_TYPES);
        for ((request, request_ids), _) in to_store() {
            write_rows(&mut writer, &request.rows, request_ids)?;
        }
        writer.finish()?;
    }
    tx.commit()?;
    Ok(answers
        .into_iter()
        .zip(ids)
        .map(|(answer, ids)| answer.unwrap_or(Ok(Inserted::Stored(ids))))
        .collect())
}

/// Reserved ids for every row of the batch, split per request, in order.
fn ids_per_request(
    session: &mut Session,
    reserved: &mut VecDeque<i64>,
    batch: &Batch,
) -> Result<Vec<Vec<i64>>, BatchError> {
    let rows: usize = batch.iter().map(|r| r.rows.len()).sum();
    let mut next = take_ids(session, reserved, rows)?.into_iter();
    Ok(batch
        .iter()
        .map(|r| next.by_ref().take(r.rows.len()).collect())
        .collect())
}

/// Writes one request's rows with their ids into a running copy.
fn write_rows(
    writer: &mut BinaryCopyInWriter<'_>,
    rows: &[MegaTicket],
    ids: &[i64],
) -> Result<(), postgres::Error> {
    for (ticket, id) in rows.iter().zip(ids) {
        let [a, b, c, d, e, f] = ticket.numbers().map(i16::from);
        writer.write(&[id, &a, &b, &c, &d, &e, &f])?;
    }
    Ok(())
}
