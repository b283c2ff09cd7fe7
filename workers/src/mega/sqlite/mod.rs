//! The SQLite store, one file (the embedded default):
//! - `schema`: opening the file (WAL, the sync mode), creating `Mega` and the
//!   idempotency keys' table, or checking existing ones;
//! - `backend`: the writer's `Backend`: one connection, one transaction per batch;
//! - `keys`: the idempotency keys' lookups, claims and purges inside that transaction;
//! - `reader`: the readers, a fixed set of read-only connections.

pub(super) mod backend;
mod keys;
pub(super) mod reader;
mod schema;
