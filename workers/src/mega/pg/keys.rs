//! The PostgreSQL side of idempotent inserts: the table `mega_idempotency` (created
//! with `mega`, so existing databases gain it), and the claims and purges the
//! PostgreSQL writer runs.
//!
//! Several processes may write under the same key at once. Each batch claims its keys
//! with one `INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE <expired>` inside its
//! transaction: a key committed by another transaction is left alone (and read back
//! for the answer), an expired one is taken over, and a key another transaction holds
//! uncommitted makes this one wait for that transaction's end, then see its outcome.
//! Keys are claimed in sorted order, so two batches never wait on each other in a
//! cycle. `ON CONFLICT` raises no error, so one request's conflict never aborts the
//! others' rows.

use std::collections::HashSet;
use std::time::Duration;

use postgres::{Client, Statement, Transaction};

use crate::mega::idempotency::{Idempotency, StoredKey};

/// Created with `mega`, under the same advisory lock.
pub(super) const CREATE: &str = "
    CREATE TABLE IF NOT EXISTS mega_idempotency (
        key         text PRIMARY KEY,
        fingerprint bytea NOT NULL,
        status      smallint NOT NULL,
        ids         text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX IF NOT EXISTS mega_idempotency_created_at
        ON mega_idempotency (created_at);";

/// Claims keys; returns those claimed (new, or expired and taken over). `$5` is the
/// time to live in seconds. The server's clock decides expiry, the same for all hosts.
const CLAIM: &str = "
    INSERT INTO mega_idempotency AS k (key, fingerprint, status, ids, created_at)
    SELECT u.key, u.fingerprint, u.status, u.ids, now()
    FROM unnest($1::text[], $2::bytea[], $3::int2[], $4::text[])
        AS u(key, fingerprint, status, ids)
    ORDER BY u.key
    ON CONFLICT (key) DO UPDATE SET
        fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status,
        ids = EXCLUDED.ids, created_at = EXCLUDED.created_at
    WHERE k.created_at <= now() - $5::float8 * interval '1 second'
    RETURNING k.key";

/// The records of keys that were not claimed: committed by others and live.
const EXISTING: &str =
    "SELECT key, fingerprint, status, ids FROM mega_idempotency WHERE key = ANY($1::text[])";

const PURGE: &str = "
    DELETE FROM mega_idempotency WHERE key IN (
        SELECT key FROM mega_idempotency
        WHERE created_at <= now() - $1::float8 * interval '1 second'
        ORDER BY created_at LIMIT $2::bigint
        FOR UPDATE SKIP LOCKED)";

/// The statements, prepared once per connection.
pub(super) struct KeyStatements {
    claim: Statement,
    existing: Statement,
    purge: Statement,
}

impl KeyStatements {
    pub(super) fn prepare(client: &mut Client) -> Result<Self, postgres::Error> {
        Ok(Self {
            claim: client.prepare(CLAIM)?,
            existing: client.prepare(EXISTING)?,
            purge: client.prepare(PURGE)?,
        })
    }
}

/// One keyed request to claim: its key and the ids its rows will get if it wins.
pub(super) struct Claim<'a> {
    pub request: &'a Idempotency,
    pub ids: String,
}

/// What claiming one key found.
pub(super) enum Claimed {
    /// This transaction holds the key now: the request's rows must be stored with it.
    Won,
    /// A live key committed earlier: its record answers the request.
    Taken(StoredKey),
    /// Neither (the key was deleted between the two statements, which the locks taken
    /// should rule out): the request is refused as in flight, and the client retries.
    Vanished,
}

/// Claims every key of `claims` (distinct keys) in `tx`; what each found.
pub(super) fn claim(
    tx: &mut Transaction<'_>,
    statements: &KeyStatements,
    claims: &[Claim<'_>],
    ttl: Duration,
) -> Result<Vec<Claimed>, postgres::Error> {
    let keys: Vec<&str> = claims.iter().map(|c| c.request.key.as_str()).collect();
    let fingerprints: Vec<&[u8]> = claims
        .iter()
        .map(|c| c.request.fingerprint.as_bytes())
        .collect();
    // HTTP statuses fit an i16.
    let statuses: Vec<i16> = claims
        .iter()
        .map(|c| i16::try_from(c.request.status).unwrap_or(i16::MAX))
        .collect();
    let ids: Vec<&str> = claims.iter().map(|c| c.ids.as_str()).collect();
    let ttl = ttl.as_secs_f64();
    let claimed: HashSet<String> = tx
        .query(
            &statements.claim,
            &[&keys, &fingerprints, &statuses, &ids, &ttl],
        )?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut answers: Vec<Claimed> = keys
        .iter()
        .map(|k| {
            if claimed.contains(*k) {
                Claimed::Won
            } else {
                Claimed::Vanished
            }
        })
        .collect();
    let lost: Vec<&str> = keys
        .iter()
        .zip(&answers)
        .filter(|(_, a)| matches!(a, Claimed::Vanished))
        .map(|(k, _)| *k)
        .collect();
    if lost.is_empty() {
        return Ok(answers);
    }
    for row in tx.query(&statements.existing, &[&lost])? {
        let key: String = row.try_get(0)?;
        let status: i16 = row.try_get(2)?;
        let stored = StoredKey {
            fingerprint: row.try_get(1)?,
            status: u16::try_from(status).unwrap_or(0),
            ids: row.try_get(3)?,
        };
        if let Some(i) = keys.iter().position(|k| *k == key) {
            answers[i] = Claimed::Taken(stored);
        }
    }
    Ok(answers)
}

/// Deletes at most `limit` keys older than `ttl`; how many. Keys locked by a running
/// claim are skipped, not waited for.
pub(super) fn purge(
    client: &mut Client,
    statements: &KeyStatements,
    ttl: Duration,
    limit: usize,
) -> Result<usize, postgres::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let deleted = client.execute(&statements.purge, &[&ttl.as_secs_f64(), &limit])?;
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}
