//! loadlab: an HTTP service that stays responsive while it does heavy work, and the
//! tools to measure it under load.
//!
//! # Layout
//! - [`cli`]: the command line (clap), and [`config`]: the validated [`config::Config`].
//! - [`app`]: build (bind, open, start) then run until stopped; the shutdown order.
//! - [`server`]: one listener's accept loop: connection cap, header-read timeout,
//!   graceful drain. [`edge`]: the layers every listener puts around its routes (CORS,
//!   request timeout, JSON 404s).
//! - [`leftover`]: draining request bodies a handler left unread.
//! - [`routes`]: the HTTP API of a shard, one module per resource; [`state`]: what the
//!   handlers share; [`extract`] and [`error`]: JSON in, JSON errors out; [`count`]:
//!   parsing `cant`.
//! - [`front`]: the reverse proxy before the shards (or before other hosts).
//! - [`metrics`] and [`telemetry`]: Prometheus metrics and logging.
//!
//! The work itself (the random-histogram kernel, the compute pool, the SQLite writer)
//! lives in the `loadlab-workers` crate.

pub mod app;
pub mod cli;
pub mod config;
pub mod count;
pub mod edge;
pub mod error;
pub mod extract;
pub mod front;
pub mod leftover;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod state;
pub mod telemetry;
