//! SIGHUP: the process's one handler, and the one place that says what a reload
//! re-reads. `systemctl reload` (`ExecReload=kill -HUP $MAINPID`) lands here.
//!
//! One signal reloads every part in [`Reloadable`], in turn, on a blocking thread
//! (files and DNS block; the runtime that catches the signal also accepts the front's
//! connections):
//! - the token files (`--write-token-file`, `--admin-token-file`);
//! - the front's TLS certificate and key (`--tls-cert`, `--tls-key`);
//! - the front's config file (`--front-config`, `loadlab front --config`);
//! - the access log's file (`--access-log FILE`), reopened for logrotate (by its
//!   writer thread, before its next line).
//!
//! Each part reloads on its own: one that fails keeps what it had, logs why (and
//! counts it where it has a metric), and the others still reload. To make another
//! part reloadable, give [`Reloadable`] a field and [`Reloadable::reload`] a line.
//!
//! One handler rather than one per part: a part that installed its own could miss a
//! signal sent before its task first ran, and the order of the reloads would be
//! whatever the tasks happened to do.

use std::sync::Arc;

use loadlab_front::Front;
use loadlab_front::listen::tls::Certificates;
use loadlab_front::tokens::TokenFile;
use loadlab_logs::access::AccessLogger;
use tokio_util::sync::CancellationToken;

/// Everything SIGHUP re-reads.
#[derive(Debug, Default)]
pub struct Reloadable {
    /// Token files, each re-read whole.
    pub tokens: Vec<Arc<TokenFile>>,
    /// The front's TLS certificate, when it serves TLS.
    pub certificates: Option<Arc<Certificates>>,
    /// The front, when it runs from a config file.
    pub front: Option<Front>,
    /// The access log, when there is one.
    pub access_log: Option<AccessLogger>,
}

impl Reloadable {
    /// Reloads every part, in turn; each logs its own outcome. Blocks (files, DNS).
    pub fn reload(&self) {
        tracing::info!("SIGHUP: reloading");
        for file in &self.tokens {
            reload_tokens(file);
        }
        if let Some(certificates) = &self.certificates {
            // Logged and counted (`tls_certificate_reloads_total`) by `reload`.
            let _ = certificates.reload();
        }
        if let Some(front) = &self.front {
            // Logged and counted (`front_config_reloads_total`) by `reload`.
            let _ = front.reload();
        }
        if let Some(log) = &self.access_log {
            log.reopen();
        }
    }
}

/// Reloads `parts` on every SIGHUP until `shutdown`, on a task of the current runtime.
/// The handler is in place when this returns: call it before the process answers, so
/// that a SIGHUP never finds the default action (exit).
///
/// # Errors
/// When the handler cannot be installed.
///
/// # Panics
/// Outside a tokio runtime.
pub fn spawn_on_hangup(parts: Reloadable, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut hangups = hangups()?;
    let parts = Arc::new(parts);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = hangups.recv() => {
                    if received.is_none() {
                        // The signal driver is gone: the runtime is shutting down.
                        return;
                    }
                }
            }
            let parts = Arc::clone(&parts);
            let _ = tokio::task::spawn_blocking(move || parts.reload()).await;
        }
    });
    Ok(())
}

#[cfg(unix)]
fn hangups() -> anyhow::Result<tokio::signal::unix::Signal> {
    use anyhow::Context as _;
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).context("installing the SIGHUP handler")
}

/// No SIGHUP off unix: a stream that never yields.
#[cfg(not(unix))]
fn hangups() -> anyhow::Result<NoHangups> {
    Ok(NoHangups)
}

#[cfg(not(unix))]
struct NoHangups;

#[cfg(not(unix))]
impl NoHangups {
    async fn recv(&mut self) -> Option<()> {
        std::future::pending().await
    }
}

/// Re-reads one token file, logging the outcome.
fn reload_tokens(file: &TokenFile) {
    let path = file.path().display().to_string();
    match file.reload() {
        Ok(count) => tracing::info!(%path, count, "token file reloaded"),
        Err(e) => {
            let error = format!("{e:#}");
            tracing::warn!(%path, %error, "token file reload failed: keeping its tokens");
        }
    }
}
