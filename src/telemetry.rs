//! Logging: `tracing` set up once, at start-up, by the binary.
//!
//! `RUST_LOG` chooses the filter (`EnvFilter` syntax); the default logs loadlab at
//! `info` and its dependencies at `warn`. No request is logged at `info`: per-request
//! log lines are what made the Node ancestors slow; use `RUST_LOG=loadlab=debug`.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (stderr, compact). Safe to call more than once: later
/// calls do nothing (tests start many apps in one process).
///
/// Colours only on a terminal: a log redirected to a file (`2>loadlab.log`, systemd,
/// the load-test harness) gets plain text, not ANSI escape codes.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,loadlab=info,loadlab_workers=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .compact()
        .try_init();
}
