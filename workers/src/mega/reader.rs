//! Reads of the `Mega` table, through the readers, a few read connections: read-only
//! SQLite connections here, PostgreSQL clients in `pg_reader`.
//!
//! Reads never go through the writer: in WAL mode SQLite readers see the last committed
//! state without blocking the writer or each other, as PostgreSQL's do. Every method
//! here blocks on the database, so async callers run them off the runtime's workers
//! (`spawn_blocking`: blocking I/O is what it is for).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension};

use super::pg_reader::PgReader;
use super::records::{MegaStats, ReadError, StoredTicket};
use super::schema::{self, SchemaError};
use super::store::{Database, Store};
use super::ticket::MEGA_MAX;

/// The read connections of whichever store holds `Mega`.
#[derive(Debug)]
pub struct MegaReader(Readers);

/// The readers of one store (the glossary's **readers**).
#[derive(Debug)]
enum Readers {
    Sqlite(SqliteReader),
    /// Boxed: r2d2's pool is large, and the enum is built once.
    Postgres(Box<PgReader>),
}

impl MegaReader {
    /// Opens `connections` read connections to a store that the writer has already
    /// prepared (start the [`super::MegaWriter`] first). PostgreSQL connections are
    /// opened as they are first needed.
    pub fn open(db: &Database, connections: usize) -> Result<Self, SchemaError> {
        // Registered at zero so dashboards see the counter before the first overflow.
        metrics::counter!("mega_read_connections_opened_total", "store" => db.store().label())
            .increment(0);
        metrics::counter!("mega_read_retries_total", "store" => db.store().label()).increment(0);
        Ok(Self(match db {
            Database::Sqlite(path) => Readers::Sqlite(SqliteReader::open(path, connections)?),
            Database::Postgres(url) => {
                Readers::Postgres(Box::new(PgReader::open(url, connections)))
            }
        }))
    }

    /// Which store the reads go to.
    pub fn store(&self) -> Store {
        match &self.0 {
            Readers::Sqlite(_) => Store::Sqlite,
            Readers::Postgres(_) => Store::Postgres,
        }
    }

    /// The ticket with this id, if any.
    pub fn get(&self, id: i64) -> Result<Option<StoredTicket>, ReadError> {
        match &self.0 {
            Readers::Sqlite(readers) => readers.get(id),
            Readers::Postgres(readers) => readers.get(id),
        }
    }

    /// Up to `limit` tickets with id greater than `after_id`, in id order (keyset
    /// pagination: pass the last id of a page to get the next).
    pub fn page(&self, after_id: i64, limit: u32) -> Result<Vec<StoredTicket>, ReadError> {
        match &self.0 {
            Readers::Sqlite(readers) => readers.page(after_id, limit),
            Readers::Postgres(readers) => readers.page(after_id, limit),
        }
    }

    /// The row count and how often each number was played, from one consistent view
    /// of the table. Scans the whole table.
    pub fn stats(&self) -> Result<MegaStats, ReadError> {
        match &self.0 {
            Readers::Sqlite(readers) => readers.stats(),
            Readers::Postgres(readers) => readers.stats(),
        }
    }
}

/// The SQLite readers: a fixed set of read-only connections.
struct SqliteReader {
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
    fn open(path: &Path, connections: usize) -> Result<Self, SchemaError> {
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

    fn get(&self, id: i64) -> Result<Option<StoredTicket>, ReadError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, num1, num2, num3, num4, num5, num6 FROM Mega WHERE id = ?1",
            )?;
            Ok(stmt.query_row([id], row_to_ticket).optional()?)
        })
    }

    fn page(&self, after_id: i64, limit: u32) -> Result<Vec<StoredTicket>, ReadError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, num1, num2, num3, num4, num5, num6 FROM Mega \
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(rusqlite::params![after_id, limit], row_to_ticket)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn stats(&self) -> Result<MegaStats, ReadError> {
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

#[cfg(test)]
mod tests {
    use super::super::{MegaTicket, MegaWriter, WriterConfig};
    use super::*;
    use crate::test_support::block_on;

    #[test]
    fn writes_are_acknowledged_with_ids_and_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let writer = MegaWriter::start(WriterConfig::new(&path)).expect("writer");
        let handle = writer.handle();
        let one = MegaTicket::new([1, 2, 3, 4, 5, 6]).expect("ticket");
        let two = MegaTicket::new([60, 59, 58, 57, 56, 55]).expect("ticket");
        let first = block_on(handle.try_insert(one).expect("queued").committed()).expect("ok");
        let many = block_on(
            handle
                .try_insert_many(vec![two, one])
                .expect("queued")
                .committed(),
        )
        .expect("ok");
        assert_eq!(first.len(), 1);
        assert_eq!(many.len(), 2);

        let reader = MegaReader::open(&Database::Sqlite(path.clone()), 2).expect("reader");
        let stored = reader.get(many[0]).expect("read").expect("present");
        assert_eq!(stored.numbers, [60, 59, 58, 57, 56, 55]);
        assert_eq!(reader.get(-1).expect("read"), None);
        let page = reader.page(first[0], 10).expect("page");
        assert_eq!(page.iter().map(|t| t.id).collect::<Vec<_>>(), many);
        let stats = reader.stats().expect("stats");
        assert_eq!(stats.rows, 3);
        assert_eq!(stats.plays[0], 2, "number 1 played twice");
        assert_eq!(stats.plays[59], 1, "number 60 played once");
        writer.shutdown();
        assert!(handle.is_stopped());
        assert_eq!(
            handle.try_insert(one).err(),
            Some(super::super::SubmitError::Closed)
        );
    }

    #[test]
    fn shutdown_commits_everything_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let writer = MegaWriter::start(WriterConfig::new(&path)).expect("writer");
        let handle = writer.handle();
        let ticket = MegaTicket::new([1, 2, 3, 4, 5, 6]).expect("ticket");
        let pending: Vec<_> = (0..500)
            .map(|_| handle.try_insert(ticket).expect("queued"))
            .collect();
        writer.shutdown();
        let ids: Vec<i64> = pending
            .into_iter()
            .map(|p| block_on(p.committed()).expect("committed before exit")[0])
            .collect();
        let reader = MegaReader::open(&Database::Sqlite(path.clone()), 1).expect("reader");
        assert_eq!(reader.stats().expect("stats").rows, 500);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
    }
}
