//! Integration tests: real servers on port 0, real SQLite files in temp dirs.
//! One test binary (faster to build and link than one per file), one module per area.

mod access_log;
mod auth;
mod dashboard;
mod docs;
mod durability;
mod fds;
mod front;
mod health;
mod idempotency;
mod info;
mod live;
mod logs;
mod mega;
mod metrics;
mod postgres_mega;
mod postgres_multihost;
mod prometheus;
mod randoms;
mod scrape;
mod store_faults;
mod support;
