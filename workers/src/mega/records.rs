//! What reads of `Mega` return ([`StoredTicket`], [`MegaStats`]) and why one fails
//! ([`ReadError`]), shared by the SQLite reader ([`super::reader`]) and the PostgreSQL
//! one, which therefore do not import each other's module for them.

use super::fault::{StoreFault, classify_sqlite};
use super::schema::SchemaError;
use super::ticket::MEGA_MAX;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// SQLite failed to run the query.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Every pooled connection was busy and an extra one could not be opened.
    #[error("could not open a read connection: {0}")]
    Open(#[from] SchemaError),
    /// PostgreSQL failed to run the query on a live connection.
    #[error("{0}")]
    Postgres(String),
    /// The database could not be reached (no connection within the pool's timeout, or
    /// the connection died during the query); the same read may succeed later.
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    /// PostgreSQL failed the read for a fault of its own (an I/O error, busy); the same
    /// read may succeed later.
    #[error("the store {}: {cause}", fault.describe())]
    Store {
        /// Which fault.
        fault: StoreFault,
        /// The server's message.
        cause: String,
    },
}

impl ReadError {
    /// Whether the failure is the database being out of reach (a 503 for clients)
    /// rather than a failed query.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ReadError::Unavailable(_))
    }

    /// The store fault behind the error, if it is one ([`StoreFault::ConnectionLost`]
    /// for [`ReadError::Unavailable`]).
    pub fn fault(&self) -> Option<StoreFault> {
        match self {
            ReadError::Sqlite(e) | ReadError::Open(SchemaError::Sqlite(e)) => classify_sqlite(e),
            ReadError::Store { fault, .. } => Some(*fault),
            ReadError::Unavailable(_) => Some(StoreFault::ConnectionLost),
            ReadError::Open(_) | ReadError::Postgres(_) => None,
        }
    }
}

/// A stored ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredTicket {
    /// The row id given at insert.
    pub id: i64,
    /// `num1`..`num6` as stored.
    pub numbers: [i64; 6],
}

/// What the table holds, in aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MegaStats {
    /// Rows in the table.
    pub rows: u64,
    /// `plays[i]` is how many stored tickets hold number `i + 1`.
    pub plays: [u64; MEGA_MAX as usize],
}
