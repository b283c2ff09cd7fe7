//! What the writer asks of a store: [`Backend`], one batch written in one transaction,
//! and what a request is answered with ([`InsertOutcome`], [`WriteError`]). Its own
//! module so the writer and the stores (`sqlite`, `pg`) depend on it, not on each
//! other.

use std::time::Duration;

use tokio::sync::oneshot;

use super::fault::StoreFault;
use super::idempotency::{Idempotency, Inserted};
use super::ticket::MegaTicket;

/// Why a queued request was not committed. None of its rows were stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The transaction holding the request failed and was rolled back.
    #[error("the insert was not committed: {0}")]
    Commit(String),
    /// The store could not be reached (connection lost or not yet re-established); the
    /// same request may succeed once it is back.
    #[error("the database is unreachable, the insert was not committed: {0}")]
    Unavailable(String),
    /// The store itself refused the write (full, read-only, I/O error, busy): not the
    /// request's doing; the same request may succeed once the fault clears.
    #[error("the insert was not committed: the store {}: {cause}", fault.describe())]
    Store {
        /// Which fault.
        fault: StoreFault,
        /// The store's own message.
        cause: String,
    },
    /// The writer stopped before answering (it panicked or the process is ending).
    #[error("the writer stopped before committing the insert")]
    WriterGone,
    /// The request's idempotency key was committed earlier with a different request;
    /// nothing was stored. Only this request fails: the rest of its batch commits.
    #[error("the Idempotency-Key was already used with a different request")]
    KeyReused,
    /// An earlier request under the same idempotency key is in the same batch, not
    /// committed yet; nothing was stored for this one.
    #[error("a request with the same Idempotency-Key is still in flight")]
    KeyInFlight,
}

impl WriteError {
    /// The store fault behind the error, if it is one: [`WriteError::Store`]'s, and
    /// [`StoreFault::ConnectionLost`] for [`WriteError::Unavailable`].
    pub fn fault(&self) -> Option<StoreFault> {
        match self {
            WriteError::Store { fault, .. } => Some(*fault),
            WriteError::Unavailable(_) => Some(StoreFault::ConnectionLost),
            WriteError::Commit(_)
            | WriteError::WriterGone
            | WriteError::KeyReused
            | WriteError::KeyInFlight => None,
        }
    }

    /// The underlying cause, without the "not committed" preamble.
    pub fn cause(&self) -> String {
        match self {
            WriteError::Commit(cause)
            | WriteError::Unavailable(cause)
            | WriteError::Store { cause, .. } => cause.clone(),
            WriteError::WriterGone | WriteError::KeyReused | WriteError::KeyInFlight => {
                self.to_string()
            }
        }
    }
}

/// What a request is answered with: its rows' ids (stored now or, for a retry under an
/// idempotency key, replayed), in the order the rows were submitted.
pub type InsertOutcome = Result<Inserted, WriteError>;

/// One request of a batch: its rows, its idempotency key if any, and where to answer.
#[derive(Debug)]
pub(crate) struct Request {
    pub rows: Vec<MegaTicket>,
    pub key: Option<Idempotency>,
    pub reply: oneshot::Sender<InsertOutcome>,
}

/// The requests of one batch.
pub(crate) type Batch = [Request];

/// How one store writes a batch: the part of the writer that differs between SQLite
/// and PostgreSQL. Owned and called only by the writer thread.
pub(crate) trait Backend: Send + 'static {
    /// Makes sure a connection is usable, reconnecting if it is due. `Err(wait)`: the
    /// store is unreachable and the next attempt is due in `wait`. An embedded store is
    /// always `Ok`.
    fn reconnect(&mut self) -> Result<(), Duration> {
        Ok(())
    }

    /// Writes every request of `batch` in one transaction and commits; each request's
    /// answer, in order. A request under an idempotency key already committed (and not
    /// older than `ttl`) stores nothing and is answered from the key's record, or with
    /// [`WriteError::KeyReused`]: such answers never fail the rest of the batch. On
    /// `Err` nothing of the batch is stored (or, when the connection died during
    /// `COMMIT`, nothing of it was acknowledged).
    fn insert_all(
        &mut self,
        batch: &Batch,
        ttl: Duration,
    ) -> Result<Vec<InsertOutcome>, WriteError>;

    /// Deletes at most `limit` idempotency keys older than `ttl`, in a transaction of
    /// its own; how many it deleted.
    fn purge_keys(&mut self, ttl: Duration, limit: usize) -> Result<usize, WriteError>;

    /// Called once after the last batch (SQLite checkpoints its WAL).
    fn finish(&mut self) {}
}

impl From<super::idempotency::Refused> for WriteError {
    fn from(refused: super::idempotency::Refused) -> Self {
        match refused {
            super::idempotency::Refused::KeyReused => WriteError::KeyReused,
            super::idempotency::Refused::Unreadable(why) => WriteError::Commit(why),
        }
    }
}
