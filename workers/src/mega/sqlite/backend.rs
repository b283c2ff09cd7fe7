//! The SQLite [`Backend`] of the writer: one connection to one file, one cached
//! prepared `INSERT` per row, one transaction per batch.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::{keys, schema};
use crate::mega::backend::{Backend, Batch, InsertOutcome, WriteError};
use crate::mega::fault::classify_sqlite;
use crate::mega::idempotency::{self, Inserted};
use crate::mega::schema::{SchemaError, SyncMode};

const INSERT: &str =
    "INSERT INTO Mega (num1, num2, num3, num4, num5, num6) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The writer's SQLite connection.
pub(in crate::mega) struct SqliteBackend {
    conn: Connection,
}

impl SqliteBackend {
    /// Opens (creating as needed) the file and `Mega`, capped at `max_size_bytes` if
    /// given; also returns the rows it holds.
    pub(in crate::mega) fn open(
        path: &Path,
        sync: SyncMode,
        max_size_bytes: Option<u64>,
    ) -> Result<(Self, i64), SchemaError> {
        let conn = schema::open_for_writing(path, sync)?;
        if let Some(bytes) = max_size_bytes {
            cap_size(&conn, bytes)?;
        }
        let rows: i64 = conn.query_row("SELECT count(*) FROM Mega", [], |r| r.get(0))?;
        Ok((Self { conn }, rows))
    }
}

impl Backend for SqliteBackend {
    fn insert_all(
        &mut self,
        batch: &Batch,
        ttl: Duration,
    ) -> Result<Vec<InsertOutcome>, WriteError> {
        insert_all(&mut self.conn, batch, ttl).map_err(write_error)
    }

    fn purge_keys(&mut self, ttl: Duration, limit: usize) -> Result<usize, WriteError> {
        keys::purge(&self.conn, ttl, limit).map_err(write_error)
    }

    fn finish(&mut self) {
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            metrics::counter!("mega_checkpoint_errors_total", "store" => "sqlite").increment(1);
            tracing::error!(error = %e, "the final WAL checkpoint failed");
        }
    }
}

/// Caps the file at `bytes` (rounded down to whole pages, at least one).
/// `max_page_count` belongs to the connection, not the file: it holds for the writer's
/// connection only, which is the only one that writes. A cap below the current size
/// leaves the file as it is and refuses every insert that needs a new page.
fn cap_size(conn: &Connection, bytes: u64) -> Result<(), SchemaError> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let page_size = u64::try_from(page_size).unwrap_or(4096).max(1);
    let pages = (bytes / page_size).clamp(1, u64::from(u32::MAX));
    // The pragma answers with the cap in force, so it is a query, not an execute.
    let _: i64 = conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
        r.get(0)
    })?;
    Ok(())
}

/// A failed statement as the writer reports it: a store fault (full, read-only, I/O,
/// busy) as such, anything else as a failed commit.
fn write_error(e: rusqlite::Error) -> WriteError {
    match classify_sqlite(&e) {
        Some(fault) => WriteError::Store {
            fault,
            cause: format!("sqlite: {e}"),
        },
        None => WriteError::Commit(e.to_string()),
    }
}

/// One transaction for the whole batch; each request's answer. On any error the
/// transaction is rolled back (by `Transaction`'s drop) and nothing is stored. A
/// request under a live key stores nothing and is answered from the key's record.
fn insert_all(
    conn: &mut Connection,
    batch: &Batch,
    ttl: Duration,
) -> rusqlite::Result<Vec<InsertOutcome>> {
    // IMMEDIATE: the write lock from the start, so the keys read below stay current
    // until the commit (see `keys`).
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let repeats = idempotency::repeats_in(batch.iter().map(|r| r.key.as_ref()));
    let mut out = Vec::with_capacity(batch.len());
    {
        let mut stmt = tx.prepare_cached(INSERT)?;
        for (request, repeat) in batch.iter().zip(repeats) {
            if repeat {
                out.push(Err(WriteError::KeyInFlight));
                continue;
            }
            if let Some(key) = &request.key
                && let Some(stored) = keys::lookup(&tx, key, ttl)?
            {
                out.push(stored.answer(key).map_err(WriteError::from));
                continue;
            }
            let mut request_ids = Vec::with_capacity(request.rows.len());
            for ticket in &request.rows {
                let [a, b, c, d, e, f] = ticket.numbers();
                stmt.execute([a, b, c, d, e, f])?;
                request_ids.push(tx.last_insert_rowid());
            }
            if let Some(key) = &request.key {
                keys::claim(&tx, key, &idempotency::encode_ids(&request_ids))?;
            }
            out.push(Ok(Inserted::Stored(request_ids)));
        }
    }
    tx.commit()?;
    Ok(out)
}
