//! The access log as `serve` and `front` run it: built from the flags
//! ([`AccessLogConfig`]), opened at start-up (a bad path fails the start), reopened on
//! SIGHUP (by [`crate::reload`], the process's one handler), stopped after the
//! listeners (so the last requests' lines are written). The writer thread and the line
//! formats are in `loadlab_logs`, the layer each listener puts outermost in
//! `loadlab_front::listen::access`.

use anyhow::Context;
use loadlab_logs::access::{AccessLog, Destination};
use loadlab_logs::access_line::AccessFormat;

use crate::cli::{AccessLogFormat, LogArgs};

/// Where the access log goes, and in what format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// A file, or standard output.
    pub destination: Destination,
    /// JSON or combined.
    pub format: AccessFormat,
}

impl AccessLogConfig {
    /// The access log the flags ask for; `None` without `--access-log`.
    pub fn from_args(args: &LogArgs) -> anyhow::Result<Option<Self>> {
        let Some(value) = &args.access_log else {
            return Ok(None);
        };
        if value.trim().is_empty() {
            anyhow::bail!("--access-log needs a file or `-` (standard output)");
        }
        let format = match args.access_log_format {
            AccessLogFormat::Json => AccessFormat::Json,
            AccessLogFormat::Combined => AccessFormat::Combined,
        };
        Ok(Some(Self {
            destination: Destination::parse(value),
            format,
        }))
    }

    /// Opens the destination and starts the writer thread.
    pub fn open(&self) -> anyhow::Result<AccessLog> {
        AccessLog::open(&self.destination, self.format).with_context(|| match &self.destination {
            Destination::File(path) => format!("--access-log: could not open {}", path.display()),
            Destination::Stdout => "--access-log: could not start the writer".to_owned(),
        })
    }
}

/// Stops the writer after the listeners: it writes what is queued and flushes. The
/// join blocks, so off the runtime.
pub async fn stop(log: Option<AccessLog>) {
    if let Some(log) = log {
        let _ = tokio::task::spawn_blocking(move || log.shutdown()).await;
    }
}
