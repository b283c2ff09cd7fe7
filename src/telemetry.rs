//! Logging: `tracing` set up once, at start-up, by the binary ([`init`]), and what
//! every log identifies the build by ([`VERSION`], [`COMMIT`]).
//!
//! `RUST_LOG` chooses the filter (`EnvFilter` syntax); the default,
//! [`DEFAULT_FILTER`], logs every loadlab crate at `info` and dependencies at `warn`.
//! `--log-format json` writes one JSON object per line (flattened: `timestamp`,
//! `level`, `target`, `message` and the event's fields side by side), panics
//! included, for log shippers.
//!
//! No request is logged at `info`: per-request log lines are what made the Node
//! ancestors slow. At `debug`, each request a shard answers is logged
//! (`RUST_LOG=loadlab::shard=debug`): for chasing a problem, not for production.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The filter without `RUST_LOG`: each crate of the workspace by name (a crate left out
/// would lose its `info` lines, e.g. the front's "upstream is back up"), and
/// dependencies at `warn`.
pub const DEFAULT_FILTER: &str = "warn,loadlab=info,loadlab_front=info,loadlab_workers=info,\
    loadlab_logs=info,loadlab_loadtest=info";

/// The crate's version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from (`git rev-parse --short HEAD` at build
/// time, by `build.rs`), or `unknown` when it was not built from a git checkout.
pub const COMMIT: &str = env!("LOADLAB_GIT_COMMIT");

/// Installs the global subscriber on stderr in `format`. Safe to call more than once:
/// later calls do nothing (tests start many apps in one process).
///
/// Text is compact, with colours only on a terminal: a log redirected to a file
/// (`2>loadlab.log`, systemd, the load-test harness) gets plain text, not ANSI escape
/// codes. JSON also routes panics through the log, so no line on stderr is left
/// unparseable.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .compact()
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    if installed.is_ok() && format == LogFormat::Json {
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(ToString::to_string);
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let thread = std::thread::current().name().map(str::to_owned);
            tracing::error!(message, location, thread, "panic");
        }));
    }
}

/// [`DEFAULT_FILTER`], parsed.
fn default_filter() -> EnvFilter {
    EnvFilter::new(DEFAULT_FILTER)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// A log sink the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    #[test]
    fn the_default_filter_shows_info_from_every_crate_and_only_warnings_from_others() {
        // Arrange
        let sink = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(default_filter())
            .with_writer(sink.clone())
            .finish();

        // Act
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "loadlab::app", "from loadlab");
            tracing::info!(target: "loadlab_front::pools::health", "from the front");
            tracing::info!(target: "loadlab_workers::mega", "from the workers");
            tracing::info!(target: "loadlab_logs::access", "from the logs");
            tracing::info!(target: "loadlab_loadtest", "from the harness");
            tracing::info!(target: "hyper::proto", "from hyper at info");
            tracing::warn!(target: "hyper::proto", "from hyper at warn");
            tracing::debug!(target: "loadlab::shard", "a request");
        });

        // Assert
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
        for shown in [
            "from loadlab",
            "from the front",
            "from the workers",
            "from the logs",
            "from the harness",
            "from hyper at warn",
        ] {
            assert!(text.contains(shown), "`{shown}` missing from:\n{text}");
        }
        assert!(!text.contains("hyper at info"), "{text}");
        assert!(!text.contains("a request"), "{text}");
    }
}
