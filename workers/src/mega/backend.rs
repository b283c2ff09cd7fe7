//! What the writer asks of a store: [`Backend`], one batch written in one transaction,
//! and what a request is answered with ([`InsertOutcome`], [`WriteError`]). Its own
//! module so the writer and the stores (`sqlite`, `pg`) depend on it, not on each
//! other.

use std::time::Duration;

use tokio::sync::oneshot;

use super::fault::StoreFault;
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
}

impl WriteError {
    /// The store fault behind the error, if it is one: [`WriteError::Store`]'s, and
    /// [`StoreFault::ConnectionLost`] for [`WriteError::Unavailable`].
    pub fn fault(&self) -> Option<StoreFault> {
        match self {
            WriteError::Store { fault, .. } => Some(*fault),
            WriteError::Unavailable(_) => Some(StoreFault::ConnectionLost),
            WriteError::Commit(_) | WriteError::WriterGone => None,
        }
    }

    /// The underlying cause, without the "not committed" preamble.
    pub fn cause(&self) -> String {
        match self {
            WriteError::Commit(cause)
            | WriteError::Unavailable(cause)
            | WriteError::Store { cause, .. } => cause.clone(),
            WriteError::WriterGone => self.to_string(),
        }
    }
}

/// The ids given to a request's rows, in the order the rows were submitted.
pub type InsertOutcome = Result<Vec<i64>, WriteError>;

/// The requests of one batch: each request's rows and where to answer it.
pub(crate) type Batch = [(Vec<MegaTicket>, oneshot::Sender<InsertOutcome>)];

/// How one store writes a batch: the part of the writer that differs between SQLite
/// and PostgreSQL. Owned and called only by the writer thread.
pub(crate) trait Backend: Send + 'static {
    /// Makes sure a connection is usable, reconnecting if it is due. `Err(wait)`: the
    /// store is unreachable and the next attempt is due in `wait`. An embedded store is
    /// always `Ok`.
    fn reconnect(&mut self) -> Result<(), Duration> {
        Ok(())
    }

    /// Writes every request of `batch` in one transaction and commits; the ids per
    /// request, in order. On error nothing of the batch is stored (or, when the
    /// connection died during `COMMIT`, nothing of it was acknowledged).
    fn insert_all(&mut self, batch: &Batch) -> Result<Vec<Vec<i64>>, WriteError>;

    /// Called once after the last batch (SQLite checkpoints its WAL).
    fn finish(&mut self) {}
}
