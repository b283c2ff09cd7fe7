//! The Mega-Sena ticket store: the table `Mega` in SQLite (one file, the embedded
//! default) or PostgreSQL (one database shared by many loadlab processes).
//!
//! - [`ticket`]: [`MegaTicket`], a validated ticket: six distinct numbers in 1..=60.
//! - [`store`]: [`Database`], where `Mega` lives (a file path or a `postgres://` URL).
//! - [`schema`]: what opening either store shares: [`SyncMode`] and [`SchemaError`].
//! - `sqlite/` and `pg/`: one folder per store, each with its schema (creating the
//!   tables or checking existing ones), the writer's backend, the idempotency keys'
//!   statements and the readers.
//! - [`writer`]: the only writer of the process: one thread fed by a bounded channel
//!   that commits many requests per transaction and answers each only after its rows
//!   are committed; the store-specific part is a backend (`sqlite`, `pg`);
//!   [`StartError`], why it did not start.
//! - [`fault`]: [`StoreFault`], the failures of a store itself (full, read-only, I/O
//!   error, busy, out of reach), and how each store's errors map to them; [`health`]:
//!   [`StoreHealth`], the writer's view of its store for readiness.
//! - [`idempotency`]: inserts a client can retry safely: an `Idempotency-Key` stored
//!   with the request's rows (`sqlite::keys`, `pg::keys`), a retry answered from it.
//! - [`reader`]: [`MegaReader`], the readers of whichever store, for lookups, pages and
//!   stats; [`records`]: what reads return.
//!
//! A *row* is one stored ticket; a *request* is what one caller submits to the writer:
//! one row or an all-or-nothing list of rows; a *batch* is what the writer commits in one
//! transaction: as many queued requests as fit in `batch_max_rows`.

mod backend;
pub mod fault;
pub mod health;
pub mod idempotency;
mod pg;
pub mod reader;
pub mod records;
pub mod schema;
mod sqlite;
pub mod store;
pub mod ticket;
pub mod writer;

pub use backend::{InsertOutcome, WriteError};
pub use fault::StoreFault;
pub use health::{ActiveFault, StoreHealth};
pub use idempotency::{Fingerprint, Idempotency, IdempotencyKey, Inserted, KeyError};
pub use reader::MegaReader;
pub use records::{MegaStats, ReadError, StoredTicket};
pub use schema::{SchemaError, SyncMode};
pub use store::{Database, DatabaseError, PostgresUrl, Store, mask_password};
pub use ticket::{MegaTicket, TicketError};
pub use writer::{MegaWriter, PendingInsert, StartError, SubmitError, WriterConfig, WriterHandle};
