//! The active health checks (settings: [`crate::config::HealthConfig`]): one task
//! per upstream address sends `GET {path}` every `interval` and flips the upstream
//! only after `fall` consecutive failures or `rise` consecutive successes (pingora's
//! `health_check`), so one lost check moves nothing.
//!
//! Started by [`crate::Front::spawn_health_checks`] on the caller's runtime;
//! each task ends when the shutdown token is cancelled, or when a reload removes its
//! upstream ([`HealthChecks::sync`]). Checks open a fresh connection
//! each time (no keep-alive): what they test is that the upstream still accepts
//! connections and answers, which a long-lived pooled connection would hide. An
//! `https://` member is checked over TLS, verified as requests verify it: a certificate
//! the front does not trust fails the check.
//!
//! A member that is one of this process's shards, reached in-process, is checked
//! without a socket: its check asks the shard itself (still serving, its runtime
//! running tasks). Checked over loopback, such a member was taken out of rotation when
//! clients held every file descriptor, although it served fine.

use std::sync::Arc;

use axum::http::{Request, Uri, header};
use bytes::Bytes;
use http_body_util::Empty;
use tokio_util::sync::CancellationToken;

use crate::config::HealthConfig;
use crate::listen::error::error_chain;
use crate::pools::upstream::Upstream;
use crate::proxy::connect::{OpenFailure, open};

/// The running check tasks: one per upstream address, each stopped by its own token
/// (a child of the front's shutdown token), so a reload can stop the checks of the
/// addresses it removed and start those of the ones it added, while the addresses
/// that stay keep their streaks.
///
/// With `config.active` off, the tasks still tick to keep `front_upstream_up` current
/// (a passive hold ends by time, with no event to publish it).
#[derive(Debug)]
pub(crate) struct HealthChecks {
    /// The runtime the checks run on (the caller's of [`HealthChecks::start`]): a
    /// reload runs on a blocking thread and spawns the new checks here.
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
    config: HealthConfig,
    /// Each checked upstream and the token that stops its task.
    running: Vec<(Arc<Upstream>, CancellationToken)>,
}

impl HealthChecks {
    /// Spawns one check task per upstream on the current runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub(crate) fn start(
        upstreams: &[Arc<Upstream>],
        config: &HealthConfig,
        shutdown: &CancellationToken,
    ) -> Self {
        let mut checks = Self {
            runtime: tokio::runtime::Handle::current(),
            shutdown: shutdown.clone(),
            config: config.clone(),
            running: Vec::new(),
        };
        for upstream in upstreams {
            checks.spawn(upstream);
        }
        checks
    }

    /// Checks exactly `upstreams` with `config` from now on: tasks of upstreams no
    /// longer listed stop, new ones start, and a changed `config` restarts them all.
    pub(crate) fn sync(&mut self, upstreams: &[Arc<Upstream>], config: &HealthConfig) {
        if *config != self.config {
            for (_, stop) in self.running.drain(..) {
                stop.cancel();
            }
            self.config = config.clone();
        }
        self.running.retain(|(upstream, stop)| {
            let kept = upstreams.iter().any(|u| Arc::ptr_eq(u, upstream));
            if !kept {
                stop.cancel();
            }
            kept
        });
        for upstream in upstreams {
            if !self.running.iter().any(|(u, _)| Arc::ptr_eq(u, upstream)) {
                self.spawn(upstream);
            }
        }
    }

    fn spawn(&mut self, upstream: &Arc<Upstream>) {
        let stop = self.shutdown.child_token();
        self.runtime.spawn(check_loop(
            Arc::clone(upstream),
            self.config.clone(),
            stop.clone(),
        ));
        self.running.push((Arc::clone(upstream), stop));
    }
}

/// Checks `upstream` every interval until `shutdown`.
async fn check_loop(upstream: Arc<Upstream>, config: HealthConfig, shutdown: CancellationToken) {
    // Origin form: the request line of a connection opened to the upstream itself.
    let uri = match config.path.parse::<Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            // `validate` checked the path.
            let upstream = upstream.label();
            tracing::error!(upstream, error = %e, "health check URI is invalid: not checking");
            return;
        }
    };
    let mut interval = tokio::time::interval(config.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut streak = Streak::default();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        if config.active {
            let ok = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                ok = check_once(&uri, &upstream, &config) => ok,
            };
            if let Some(up) = streak.record(ok, upstream.is_active_up(), &config)
                && upstream.set_active_up(up)
            {
                if up {
                    tracing::info!(upstream = upstream.label(), "upstream is back up");
                } else {
                    tracing::warn!(
                        upstream = upstream.label(),
                        fall = config.fall,
                        "upstream is down: health checks failed"
                    );
                }
            }
        }
        upstream.publish();
    }
}

/// One check: a 2xx answer within the timeout, on a new connection (over TLS to an
/// `https://` member); for one of this process's shards, its runtime running a task
/// within the timeout (no socket: see `LocalShard::is_responsive`).
async fn check_once(uri: &Uri, upstream: &Upstream, config: &HealthConfig) -> bool {
    if let Some(shard) = upstream.local() {
        return shard.is_responsive(config.timeout).await;
    }
    let request = Request::get(uri.clone())
        .header(header::HOST, upstream.host_header().clone())
        .header(header::USER_AGENT, "loadlab-front-health")
        .body(Empty::<Bytes>::new());
    let Ok(request) = request else { return false };
    let check = async {
        let mut sender = open(upstream.addr(), upstream.tls(), config.timeout)
            .await
            .map_err(|failure| match failure {
                OpenFailure::Connect(e) | OpenFailure::Tls(e) => error_chain(&e),
            })?;
        let response = sender.send_request(request).await;
        response.map(|r| r.status()).map_err(|e| error_chain(&e))
    };
    match tokio::time::timeout(config.timeout, check).await {
        Ok(Ok(status)) => status.is_success(),
        Ok(Err(error)) => {
            tracing::debug!(upstream = upstream.label(), %error, "health check failed");
            false
        }
        Err(_) => {
            tracing::debug!(upstream = upstream.label(), "health check timed out");
            false
        }
    }
}

/// Consecutive results of one upstream's checks.
#[derive(Debug, Default)]
struct Streak {
    successes: u32,
    failures: u32,
}

impl Streak {
    /// Records a result; returns the new state when it should flip.
    fn record(&mut self, ok: bool, up: bool, config: &HealthConfig) -> Option<bool> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            (!up && self.successes >= config.rise).then_some(true)
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            (up && self.failures >= config.fall).then_some(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flip_needs_consecutive_results() {
        let config = HealthConfig {
            rise: 2,
            fall: 3,
            ..HealthConfig::default()
        };
        let mut streak = Streak::default();
        assert_eq!(streak.record(false, true, &config), None);
        assert_eq!(streak.record(false, true, &config), None);
        assert_eq!(
            streak.record(true, true, &config),
            None,
            "a success breaks the streak"
        );
        assert_eq!(streak.record(false, true, &config), None);
        assert_eq!(streak.record(false, true, &config), None);
        assert_eq!(streak.record(false, true, &config), Some(false));
        assert_eq!(streak.record(true, false, &config), None);
        assert_eq!(streak.record(true, false, &config), Some(true));
    }
}
