//! The SQLite [`Backend`] of the writer: one connection to one file, one cached
//! prepared `INSERT` per row, one transaction per batch.

use std::path::Path;

use rusqlite::Connection;

use super::backend::{Backend, Batch, WriteError};
use super::fault::classify_sqlite;
use super::schema::{self, SchemaError, SyncMode};

const INSERT: &str =
    "INSERT INTO Mega (num1, num2, num3, num4, num5, num6) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The writer's SQLite connection.
pub(super) struct SqliteBackend {
    conn: Connection,
}

impl SqliteBackend {
    /// Opens (creating as needed) the file and `Mega`, capped at `max_size_bytes` if
    /// given; also returns the rows it holds.
    pub(super) fn open(
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
    fn insert_all(&mut self, batch: &Batch) -> Result<Vec<Vec<i64>>, WriteError> {
        insert_all(&mut self.conn, batch).map_err(|e| match classify_sqlite(&e) {
            Some(fault) => WriteError::Store {
                fault,
                cause: format!("sqlite: {e}"),
            },
            None => WriteError::Commit(e.to_string()),
        })
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

/// One transaction for the whole batch; the ids per request. On any error the
/// transaction is rolled back (by `Transaction`'s drop) and nothing is stored.
fn insert_all(conn: &mut Connection, batch: &Batch) -> rusqlite::Result<Vec<Vec<i64>>> {
    let tx = conn.transaction()?;
    let mut ids = Vec::with_capacity(batch.len());
    {
        let mut stmt = tx.prepare_cached(INSERT)?;
        for (tickets, _) in batch {
            let mut request_ids = Vec::with_capacity(tickets.len());
            for ticket in tickets {
                let [a, b, c, d, e, f] = ticket.numbers();
                stmt.execute([a, b, c, d, e, f])?;
                request_ids.push(tx.last_insert_rowid());
            }
            ids.push(request_ids);
        }
    }
    tx.commit()?;
    Ok(ids)
}
