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
//! - [`metrics`] and [`telemetry`]: Prometheus metrics and logging.
//!
//! The work itself (the random-histogram kernel, the compute threads, the SQLite writer)
//! lives in the `loadlab-workers` crate; the reverse proxy before the shards, and the
//! listeners, edge layers and JSON errors every listener shares, in `loadlab-front`.
//!
//! # Glossary
//! One word per idea, in code, flags, metrics and docs alike:
//! - **shard**: one listener of `loadlab serve`, serving the whole API on its own
//!   thread and single-threaded runtime; shards share the data (compute, store).
//! - **front**: the reverse proxy before the shards (or before other hosts).
//! - **pool**: a named set of upstreams the front balances over (`[[pools]]` in the
//!   front config). Nothing else is called a pool.
//! - **upstream**: an address the front forwards to; a **member** is an upstream's
//!   place in one pool, with its weight.
//! - **keep-alive connections**: the front's idle connections to one upstream
//!   (`--upstream-idle`).
//! - **front threads**: the threads the front serves connections on
//!   (`--front-threads`).
//! - **compute**: the fixed rayon thread set that runs `/api/randoms` jobs
//!   (`--threads`, `--randoms-queue`).
//! - **writer**: the one thread that writes Mega tickets to the store; **readers**:
//!   the store's read connections (`--read-connections`).
//! - **store**: where Mega tickets live: SQLite (a path) or PostgreSQL (a URL).
//! - **workers**: the `loadlab-workers` crate, the work without HTTP: compute and
//!   stores.

pub mod app;
pub mod cli;
pub mod config;
pub mod count;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod routes;
pub mod shard;
pub mod standalone;
pub mod state;
pub mod telemetry;
