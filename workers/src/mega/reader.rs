//! Reads of the `Mega` table, through the readers, a few read connections: this module
//! dispatches to the store's own (read-only SQLite connections in `sqlite::reader`,
//! PostgreSQL clients in `pg::reader`).
//!
//! Reads never go through the writer: in WAL mode SQLite readers see the last committed
//! state without blocking the writer or each other, as PostgreSQL's do. Every method
//! here blocks on the database, so async callers run them off the runtime's workers
//! (`spawn_blocking`: blocking I/O is what it is for).

use super::pg::reader::PgReader;
use super::records::{MegaStats, ReadError, StoredTicket};
use super::schema::SchemaError;
use super::sqlite::reader::SqliteReader;
use super::store::{Database, Store};

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
