//! The Mega-Sena ticket store, in the SQLite table `Mega`.
//!
//! - [`ticket`]: [`MegaTicket`], a validated ticket: six distinct numbers in 1..=60.
//! - [`schema`]: opening the database file, the pragmas, creating `Mega` or checking
//!   that an existing one is compatible with the ancestor's readers.
//! - [`writer`]: the only writer: one thread fed by a bounded channel that commits many
//!   requests per transaction and answers each only after its rows are committed.
//! - [`reader`]: a small pool of read-only connections for lookups, pages and stats.
//!
//! A *row* is one stored ticket; a *request* is what one caller submits to the writer:
//! one row or an all-or-nothing list of rows; a *batch* is what the writer commits in one
//! transaction: as many queued requests as fit in `batch_max_rows`.

pub mod reader;
pub mod schema;
pub mod ticket;
pub mod writer;

pub use reader::{MegaReader, MegaStats, ReadError, StoredTicket};
pub use schema::{SchemaError, SyncMode};
pub use ticket::{MegaTicket, TicketError};
pub use writer::{
    InsertOutcome, MegaWriter, PendingInsert, SubmitError, WriteError, WriterConfig, WriterHandle,
};
