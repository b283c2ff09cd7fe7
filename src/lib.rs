//! loadlab: an HTTP service that stays responsive while it does heavy work, and the
//! tools to measure it under load.
//!
//! # Layout
//! - [`cli`]: the command line (clap), and [`config`]: the validated [`config::Config`].
//! - [`app`]: build (bind, open, start) then run until stopped; the shutdown order.
//! - [`shard`]: the port-sharded listeners (address, thread, `shard` metric label).
//! - [`routes`]: the HTTP API of a shard, one module per resource; [`state`]: what the
//!   handlers share; [`extract`] and [`error`]: JSON in, JSON errors out; [`count`]:
//!   parsing `cant`.
//! - [`standalone`]: `loadlab front`, the front alone over other hosts.
//! - [`metrics`] and [`telemetry`]: Prometheus metrics and logging; `process_metrics`:
//!   the `process_*` metrics, read at each scrape; [`access_log`]: the access log as
//!   `serve` and `front` run it (flags, shutdown).
//! - [`auth`]: tokens on writes; [`reload`]: the one SIGHUP handler and everything it
//!   re-reads (token files, the TLS certificate, the front config, the access log).
//!
//! The work itself (the random-histogram kernel, the compute threads, the SQLite writer)
//! lives in the `loadlab-workers` crate; the reverse proxy before the shards, and the
//! listeners, edge layers and JSON errors every listener shares, in `loadlab-front`.
//!
//! # Glossary
//! One word per idea, in code, flags, metrics and docs alike. Each crate's `lib.rs`
//! states the words it owns: the front's (front, pool, upstream, member, keep-alive
//! connections, front threads) in `loadlab_front`, the work's (workers, compute,
//! writer, readers, store) in `loadlab_workers`; `docs/ARCHITECTURE.md` mirrors them
//! all, and `tests/glossary.rs` keeps the code to them. This crate's own:
//! - **shard**: one listener of `loadlab serve`, serving the whole API on its own
//!   thread and single-threaded runtime; shards share the data (compute, store).

pub mod access_log;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod count;
pub mod error;
pub mod extract;
pub mod metrics;
mod process_metrics;
pub mod reload;
pub mod routes;
pub mod shard;
pub mod standalone;
pub mod state;
pub mod telemetry;
