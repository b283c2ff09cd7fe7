//! The pools: their members, how one is picked, and each upstream's health.
//!
//! - `balance`: picking a pool (longest route prefix) and a member (round robin, or
//!   smooth weighted round robin), and panic mode when every member is held out.
//! - `upstream`: one upstream address and its health (active verdict, passive holds).
//! - `health`: the active check tasks.
//! - `tls`: TLS to an `https://` member (its server name, the roots it trusts).
//! - `slot`: one request's place at an upstream (in-flight count, `max_conns` permit).

pub(crate) mod balance;
pub(crate) mod health;
pub(crate) mod slot;
pub(crate) mod tls;
pub(crate) mod upstream;
