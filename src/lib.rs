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
//! The work itself (the random-histogram kernel, the compute pool, the SQLite writer)
//! lives in the `loadlab-workers` crate; the reverse proxy before the shards, and the
//! listeners, edge layers and JSON errors every listener shares, in `loadlab-front`.

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
