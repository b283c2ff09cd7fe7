//! The SQLite side of idempotent inserts: the table `mega_idempotency` (created next to
//! `Mega` on open by `schema`, so existing databases gain it), and the
//! lookups, claims and purges the SQLite writer runs inside its batch transaction.
//!
//! The writer's transactions are `BEGIN IMMEDIATE`: it holds the write lock from the
//! first statement, so a key looked up inside one cannot be committed by another
//! connection before this transaction ends, and the primary key on `key` is the
//! arbiter should two processes ever write one file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::mega::idempotency::{Idempotency, StoredKey};

/// The keys, with their request's fingerprint and first answer. `created_at` is in
/// milliseconds since the Unix epoch; its index serves the purge.
pub(super) const CREATE: &str = "
    CREATE TABLE IF NOT EXISTS mega_idempotency (
        key         TEXT PRIMARY KEY,
        fingerprint BLOB NOT NULL,
        status      INTEGER NOT NULL,
        ids         TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS mega_idempotency_created_at
        ON mega_idempotency (created_at);";

/// The columns the writer reads and writes: an existing table must have them all.
pub(super) const COLUMNS: [&str; 5] = ["key", "fingerprint", "status", "ids", "created_at"];

const LOOKUP: &str =
    "SELECT fingerprint, status, ids, created_at FROM mega_idempotency WHERE key = ?1";
const DELETE: &str = "DELETE FROM mega_idempotency WHERE key = ?1";
const CLAIM: &str = "INSERT INTO mega_idempotency (key, fingerprint, status, ids, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)";
const PURGE: &str = "DELETE FROM mega_idempotency WHERE key IN \
                     (SELECT key FROM mega_idempotency WHERE created_at <= ?1 \
                      ORDER BY created_at LIMIT ?2)";

/// Milliseconds since the Unix epoch, now; the cut-off of `ttl` before it.
fn now_and_cutoff(ttl: Duration) -> (i64, i64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    (now, now.saturating_sub(ttl))
}

/// The key's live record, if any. An expired record is deleted here, so the key can be
/// claimed afresh in this transaction.
pub(super) fn lookup(
    tx: &Transaction<'_>,
    request: &Idempotency,
    ttl: Duration,
) -> rusqlite::Result<Option<StoredKey>> {
    let (_, cutoff) = now_and_cutoff(ttl);
    let key = request.key.as_str();
    let found = tx
        .prepare_cached(LOOKUP)?
        .query_row([key], |row| {
            Ok((
                StoredKey {
                    fingerprint: row.get(0)?,
                    status: row.get(1)?,
                    ids: row.get(2)?,
                },
                row.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    match found {
        Some((_, created_at)) if created_at <= cutoff => {
            tx.prepare_cached(DELETE)?.execute([key])?;
            Ok(None)
        }
        Some((stored, _)) => Ok(Some(stored)),
        None => Ok(None),
    }
}

/// Stores the key with the ids its request's rows got.
pub(super) fn claim(
    tx: &Transaction<'_>,
    request: &Idempotency,
    ids: &str,
) -> rusqlite::Result<()> {
    let (now, _) = now_and_cutoff(Duration::ZERO);
    tx.prepare_cached(CLAIM)?.execute(params![
        request.key.as_str(),
        request.fingerprint.as_bytes(),
        request.status,
        ids,
        now
    ])?;
    Ok(())
}

/// Deletes at most `limit` keys older than `ttl`; how many.
pub(super) fn purge(conn: &Connection, ttl: Duration, limit: usize) -> rusqlite::Result<usize> {
    let (_, cutoff) = now_and_cutoff(ttl);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.prepare_cached(PURGE)?.execute(params![cutoff, limit])
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::super::backend::SqliteBackend;
    use super::*;
    use crate::mega::SyncMode;
    use crate::mega::backend::{Backend, InsertOutcome, Request, WriteError};
    use crate::mega::idempotency::{Fingerprint, IdempotencyKey, Inserted};
    use crate::mega::ticket::MegaTicket;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn ticket(last: i64) -> MegaTicket {
        MegaTicket::new([1, 2, 3, 4, 5, last]).expect("ticket")
    }

    /// A request of `tickets`, under `key` if given.
    fn request(tickets: &[MegaTicket], key: Option<&str>) -> Request {
        let key = key.map(|k| Idempotency {
            key: IdempotencyKey::parse(k.as_bytes()).expect("key"),
            fingerprint: Fingerprint::of("batch", tickets),
            status: 201,
        });
        let (reply, _) = oneshot::channel();
        Request {
            rows: tickets.to_vec(),
            key,
            reply,
        }
    }

    fn open() -> (tempfile::TempDir, SqliteBackend, Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.db");
        let (backend, _) = SqliteBackend::open(&path, SyncMode::Full, None).expect("open");
        let check = Connection::open(&path).expect("open");
        (dir, backend, check)
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    }

    fn write(backend: &mut SqliteBackend, batch: &[Request], ttl: Duration) -> Vec<InsertOutcome> {
        backend.insert_all(batch, ttl).expect("committed")
    }

    #[test]
    fn a_retry_replays_the_first_ids_and_stores_nothing() {
        let (_dir, mut backend, check) = open();
        let tickets = [ticket(6), ticket(7)];
        let first = write(&mut backend, &[request(&tickets, Some("k1"))], DAY);
        let Ok(Inserted::Stored(ids)) = &first[0] else {
            panic!("stored: {first:?}")
        };
        let again = write(&mut backend, &[request(&tickets, Some("k1"))], DAY);
        assert_eq!(
            again,
            [Ok(Inserted::Replayed {
                ids: ids.clone(),
                status: 201
            })]
        );
        assert_eq!(count(&check, "Mega"), 2, "the retry stored nothing");
        assert_eq!(count(&check, "mega_idempotency"), 1);
    }

    #[test]
    fn one_refused_request_never_fails_the_rest_of_its_batch() {
        let (_dir, mut backend, check) = open();
        write(&mut backend, &[request(&[ticket(6)], Some("taken"))], DAY);
        write(&mut backend, &[request(&[ticket(8)], Some("done"))], DAY);
        let batch = [
            request(&[ticket(10)], Some("fresh")),
            // Committed before with another ticket: refused.
            request(&[ticket(11)], Some("taken")),
            request(&[ticket(12)], None),
            // The same key twice in one batch: the second waits on the first.
            request(&[ticket(10)], Some("fresh")),
            // Committed before with this ticket: replayed.
            request(&[ticket(8)], Some("done")),
        ];
        let answers = write(&mut backend, &batch, DAY);
        assert!(matches!(answers[0], Ok(Inserted::Stored(_))), "{answers:?}");
        assert_eq!(answers[1], Err(WriteError::KeyReused));
        assert!(matches!(answers[2], Ok(Inserted::Stored(_))), "{answers:?}");
        assert_eq!(answers[3], Err(WriteError::KeyInFlight));
        assert!(
            matches!(answers[4], Ok(Inserted::Replayed { .. })),
            "{answers:?}"
        );
        assert_eq!(
            count(&check, "Mega"),
            4,
            "2 before, then the fresh and the keyless"
        );
        assert_eq!(count(&check, "mega_idempotency"), 3);
    }

    #[test]
    fn an_expired_key_is_free_again_and_purged() {
        let (_dir, mut backend, check) = open();
        let tickets = [ticket(6)];
        write(&mut backend, &[request(&tickets, Some("old"))], DAY);
        // A zero time to live: the key is expired at once.
        let answers = write(
            &mut backend,
            &[request(&[ticket(7)], Some("old"))],
            Duration::ZERO,
        );
        assert!(matches!(answers[0], Ok(Inserted::Stored(_))), "{answers:?}");
        assert_eq!(count(&check, "Mega"), 2);
        for key in ["a", "b", "c"] {
            write(&mut backend, &[request(&tickets, Some(key))], DAY);
        }
        assert_eq!(count(&check, "mega_idempotency"), 4);
        assert_eq!(
            backend.purge_keys(DAY, 10).expect("purged"),
            0,
            "none expired"
        );
        assert_eq!(
            backend.purge_keys(Duration::ZERO, 3).expect("purged"),
            3,
            "bounded"
        );
        assert_eq!(backend.purge_keys(Duration::ZERO, 3).expect("purged"), 1);
        assert_eq!(count(&check, "mega_idempotency"), 0);
    }

    #[test]
    fn a_database_from_before_idempotent_inserts_gains_the_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        Connection::open(&path)
            .expect("open")
            .execute_batch(
                "CREATE TABLE Mega(id INTEGER PRIMARY KEY AUTOINCREMENT, num1 INTEGER, \
                 num2 INTEGER, num3 INTEGER, num4 INTEGER, num5 INTEGER, num6 INTEGER);
                 INSERT INTO Mega(num1, num2, num3, num4, num5, num6) VALUES (1,2,3,4,5,6);",
            )
            .expect("ancestor schema");
        let (mut backend, rows) = SqliteBackend::open(&path, SyncMode::Full, None).expect("open");
        assert_eq!(rows, 1);
        let answers = write(&mut backend, &[request(&[ticket(6)], Some("k"))], DAY);
        assert_eq!(answers[0], Ok(Inserted::Stored(vec![2])));
        let check = Connection::open(&path).expect("open");
        assert_eq!(count(&check, "mega_idempotency"), 1);
    }

    #[test]
    fn a_foreign_table_of_the_same_name_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .expect("open")
            .execute_batch("CREATE TABLE mega_idempotency(key TEXT PRIMARY KEY, value TEXT);")
            .expect("foreign table");
        let Err(err) = SqliteBackend::open(&path, SyncMode::Full, None) else {
            panic!("opened");
        };
        assert!(err.to_string().contains("mega_idempotency"), "{err}");
    }
}
