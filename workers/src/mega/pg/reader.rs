//! Reads of PostgreSQL's `mega`, through an r2d2 pool of clients.
//!
//! The pool is bounded (`--read-connections`): a burst of reads waits up to
//! [`CHECKOUT_TIMEOUT`] for a client instead of opening connections without limit,
//! since a PostgreSQL server allows only `max_connections` (100 by default) across every
//! process that shares it.
//!
//! After a server restart (or `pg_terminate_backend`) every idle pooled client is dead,
//! and nothing tells until it is used: r2d2 tests a client on checkout only at the price
//! of a round trip per read. So a read whose pooled client turns out dead is retried
//! once on a fresh connection (reads are idempotent): once the server accepts
//! connections again, no read fails. The fresh connection is used once and closed
//! (r2d2 cannot adopt it); the dead one is dropped by the pool when it comes back
//! closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;
use r2d2_postgres::r2d2;

use super::describe;
use crate::mega::fault::{StoreFault, classify_pg};
use crate::mega::records::{MegaStats, ReadError, StoredTicket};
use crate::mega::store::PostgresUrl;
use crate::mega::ticket::MEGA_MAX;

/// How long a read waits for a pooled client before it fails as unavailable.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

const GET: &str = "SELECT id, num1, num2, num3, num4, num5, num6 FROM mega WHERE id = $1";
const PAGE: &str = "SELECT id, num1, num2, num3, num4, num5, num6 FROM mega \
                    WHERE id > $1 ORDER BY id LIMIT $2";
/// The row count (`n` null) and the plays per number, in one statement so both come
/// from the same snapshot: a stats answer never counts a row in one and not the other.
const STATS: &str = "
    WITH t AS (SELECT num1, num2, num3, num4, num5, num6 FROM mega)
    SELECT NULL::smallint AS n, count(*) FROM t
    UNION ALL
    SELECT v.n, count(*) FROM t
    CROSS JOIN LATERAL (VALUES (t.num1), (t.num2), (t.num3), (t.num4), (t.num5), (t.num6))
        AS v(n)
    GROUP BY v.n";

/// A bounded pool of PostgreSQL clients for reads.
pub(in crate::mega) struct PgReader {
    /// `Some` until dropped (see the `Drop` impl).
    pool: Option<r2d2::Pool<PostgresConnectionManager<NoTls>>>,
    url: PostgresUrl,
    /// The pool's client configuration, for the fresh connection of a retried read.
    config: postgres::Config,
}

/// Closing a `postgres` client blocks on its own runtime, which panics on a thread
/// that runs async tasks, and the last owner of the reader may be on one (the app's
/// state is dropped wherever its last clone goes). So the pool is closed on a thread
/// of its own; the caller waits for it (a few milliseconds).
impl Drop for PgReader {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let closing = std::thread::Builder::new()
                .name("loadlab-pg-close".into())
                .spawn(move || drop(pool));
            if let Ok(thread) = closing {
                let _ = thread.join();
            }
        }
    }
}

impl std::fmt::Debug for PgReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReader").field("url", &self.url).finish()
    }
}

/// Counts connections the pool opens beyond its first `size` (reconnections after the
/// server restarted, or replacements of broken clients): the PostgreSQL meaning of
/// `mega_read_connections_opened_total`.
#[derive(Debug)]
struct CountOpened {
    size: u64,
    opened: AtomicU64,
}

impl r2d2::HandleEvent for CountOpened {
    fn handle_acquire(&self, _event: r2d2::event::AcquireEvent) {
        if self.opened.fetch_add(1, Ordering::Relaxed) >= self.size {
            metrics::counter!("mega_read_connections_opened_total", "store" => "postgres")
                .increment(1);
        }
    }
}

impl PgReader {
    /// A pool of at most `connections` clients, opened in the background (no wait
    /// here: the writer has just proved the server reachable).
    pub(in crate::mega) fn open(url: &PostgresUrl, connections: usize) -> Self {
        let size = u32::try_from(connections.max(1)).unwrap_or(u32::MAX);
        let mut config = url.config().clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CHECKOUT_TIMEOUT);
        }
        config.application_name("loadlab-reader");
        config.keepalives(true);
        let manager = PostgresConnectionManager::new(config.clone(), NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .connection_timeout(CHECKOUT_TIMEOUT)
            // r2d2 still drops clients whose connection closed; a test query on every
            // checkout would add a round trip to each read.
            .test_on_check_out(false)
            .event_handler(Box::new(CountOpened {
                size: u64::from(size),
                opened: AtomicU64::new(0),
            }))
            .build_unchecked(manager);
        Self {
            pool: Some(pool),
            url: url.clone(),
            config,
        }
    }

    /// Runs `f` on a pooled client; if that client turns out dead, once more on a fresh
    /// connection. Blocks: callers are on a blocking thread (closing a `postgres`
    /// client blocks on its own runtime).
    fn with_client<T>(
        &self,
        mut f: impl FnMut(&mut postgres::Client) -> Result<T, postgres::Error>,
    ) -> Result<T, ReadError> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| ReadError::Unavailable("the read connections are closed".into()))?;
        let mut client = pool
            .get()
            .map_err(|e| ReadError::Unavailable(format!("{}: {e}", self.url)))?;
        let error = match f(&mut client) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let dead = client.is_closed() || classify_pg(&error) == Some(StoreFault::ConnectionLost);
        // Back to the pool, which drops it if it is closed; a dead one not yet closed
        // fails its next read, which is retried the same way.
        drop(client);
        if !dead {
            return Err(read_error(&error));
        }
        metrics::counter!("mega_read_retries_total", "store" => "postgres").increment(1);
        let mut fresh = self
            .config
            .connect(NoTls)
            .map_err(|e| ReadError::Unavailable(format!("{}: {}", self.url, describe(&e))))?;
        f(&mut fresh).map_err(|e| read_error(&e))
    }

    pub(in crate::mega) fn get(&self, id: i64) -> Result<Option<StoredTicket>, ReadError> {
        self.with_client(|client| client.query_opt(GET, &[&id])?.map(to_ticket).transpose())
    }

    pub(in crate::mega) fn page(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<StoredTicket>, ReadError> {
        self.with_client(|client| {
            client
                .query(PAGE, &[&after_id, &i64::from(limit)])?
                .into_iter()
                .map(to_ticket)
                .collect()
        })
    }

    pub(in crate::mega) fn stats(&self) -> Result<MegaStats, ReadError> {
        self.with_client(|client| {
            let mut stats = MegaStats {
                rows: 0,
                plays: [0; MEGA_MAX as usize],
            };
            for row in client.query(STATS, &[])? {
                let number: Option<i16> = row.try_get(0)?;
                let count = u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0);
                match number {
                    None => stats.rows = count,
                    // Rows written by others may hold anything; count only valid numbers.
                    Some(n) => {
                        if let Some(slot) = usize::try_from(n - 1)
                            .ok()
                            .and_then(|i| stats.plays.get_mut(i))
                        {
                            *slot += count;
                        }
                    }
                }
            }
            Ok(stats)
        })
    }
}

/// A failed read as [`ReadError`]: a lost connection is `Unavailable`, another store
/// fault `Store`, anything else `Postgres`.
fn read_error(error: &postgres::Error) -> ReadError {
    match classify_pg(error) {
        Some(StoreFault::ConnectionLost) => ReadError::Unavailable(describe(error)),
        Some(fault) => ReadError::Store {
            fault,
            cause: describe(error),
        },
        None => ReadError::Postgres(describe(error)),
    }
}

fn to_ticket(row: postgres::Row) -> Result<StoredTicket, postgres::Error> {
    let mut numbers = [0i64; 6];
    for (i, slot) in numbers.iter_mut().enumerate() {
        *slot = i64::from(row.try_get::<_, i16>(i + 1)?);
    }
    Ok(StoredTicket {
        id: row.try_get(0)?,
        numbers,
    })
}
