//! The PostgreSQL store, one database shared by every loadlab process that names it:
//! - `schema`: the writer's session, the `mega` table and its sequence, created or
//!   checked at start;
//! - `backend`: the writer's `Backend`: ids reserved from the sequence, rows copied in
//!   binary, reconnection with backoff;
//! - `keys`: the idempotency keys' table and its claims;
//! - `reader`: the readers, a bounded pool of clients for reads.
//!
//! And here: connecting with loadlab's defaults, and describing a client error.

pub(super) mod backend;
mod keys;
pub(super) mod reader;
mod schema;

use std::time::Duration;

use postgres::{Client, NoTls};

use super::store::PostgresUrl;

/// Connects with loadlab's defaults: a 5 s connect timeout unless the URL sets one,
/// and TCP keepalives so a vanished server is noticed.
fn connect(url: &PostgresUrl, application: &str) -> Result<Client, postgres::Error> {
    let mut config = url.config().clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.application_name(application);
    config.keepalives(true);
    config.connect(NoTls)
}

/// `error` with its causes: the client's own `Display` often says only "db error".
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("postgresql: {}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("postgresql: {error}: {source}"),
            None => format!("postgresql: {error}"),
        },
    }
}
