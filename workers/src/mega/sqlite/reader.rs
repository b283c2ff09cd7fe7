//! Reads of SQLite's `Mega`: a fixed set of read-only connections (the glossary's
//! **readers** on SQLite), opened by `schema::open_for_reading`.
//!
//! In WAL mode these see the last committed state without blocking the writer or each
//! other. Every method blocks on the database.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension};

use super::schema;
use crate::mega::records::{MegaStats, ReadError, StoredTicket};
use crate::mega::schema::SchemaError;
use crate::mega::ticket::MEGA_MAX;

/// The SQLite readers: a fixed set of read-only connections.
pub(in crate::mega) struct SqliteReader {
    /// Idle connections. A `std` mutex held only to pop or push: never across a query.
    idle: Mutex<Vec<Connection>>,
    /// How many connections to keep idle.
    size: usize,
    path: std::path::PathBuf,
}

impl std::fmt::Debug for SqliteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReader")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteReader {
    /// Opens `connections` (at least one) read-only connections to `path`.
    pub(in crate::mega) fn open(path: &Path, connections: usize) -> Result<Self, SchemaError> {
        let size = connections.max(1);
        let idle = (0..size)
            .map(|_| schema::open_for_reading(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            idle: Mutex::new(idle),
            size,
            path: path.to_path_buf(),
        })
    }

    /// Runs `f` on an idle connection, or on a fresh one when all are busy (so a burst of
    /// reads never waits on the readers; the extra connection is closed after use).
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ReadError>,
    ) -> Result<T, ReadError> {
        let pooled = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                // Counted: if this keeps growing, --read-connections is too small.
                metrics::counter!("mega_read_connections_opened_total", "store" => "sqlite")
                    .increment(1);
                schema::open_for_reading(&self.path).map_err(|e| match e {
                    SchemaError::Sqlite(e) => ReadError::Sqlite(e),
                    other => {
                        ReadError::Sqlite(rusqlite::Error::InvalidPath(other.to_string().into()))
                    }
                })?
            }
        };
        let result = f(&conn);
        // Keep at most the configured number of idle connections; extras are closed.
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.size
        {
            idle.push(conn);
        }
        result
    }

    /// The ticket with this id, if any.
    pub(in crate::mega) fn get(&self, id: i64) -> Result<Option<StoredTicket>, ReadError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, num1, num2, num3, num4, num5, num6 FROM Mega WHERE id = ?1",
            )?;
            Ok(stmt.query_row([id], row_to_ticket).optional()?)
        })
    }

    /// Up to `limit` tickets after `after_id`, in id order.
    pub(in crate::mega) fn page(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<StoredTicket>, ReadError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, num1, num2, num3, num4, num5, num6 FROM Mega \
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(rusqlite::params![after_id, limit], row_to_ticket)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The row count and the plays per number, from one statement (one snapshot).
    pub(in crate::mega) fn stats(&self) -> Result<MegaStats, ReadError> {
        self.with_conn(|conn| {
            let mut stats = MegaStats {
                rows: 0,
                plays: [0; MEGA_MAX as usize],
            };
            let mut stmt =
                conn.prepare_cached("SELECT num1, num2, num3, num4, num5, num6 FROM Mega")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                stats.rows += 1;
                for i in 0..6 {
                    let n: i64 = row.get(i)?;
                    // Rows written by others may hold anything; count only valid numbers.
                    if let Some(slot) = usize::try_from(n - 1)
                        .ok()
                        .and_then(|i| stats.plays.get_mut(i))
                    {
                        *slot += 1;
                    }
                }
            }
            Ok(stats)
        })
    }
}

fn row_to_ticket(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredTicket> {
    Ok(StoredTicket {
        id: row.get(0)?,
        numbers: [
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
        ],
    })
}
