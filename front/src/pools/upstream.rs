//! [`Upstream`]: one upstream address, how to reach it, and its health, shared by every
//! pool that lists the address (so it is checked once and fails once).
//!
//! An upstream is *available* when its active checks say up and no passive failure
//! is holding it out. The request path reads two atomics (and the clock only while a
//! passive failure is recorded); the failure path takes a small mutex.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderValue;
use metrics::{Counter, Gauge};
use tokio::sync::Semaphore;

use crate::config::HealthConfig;
use crate::config::UpstreamLimits;
use crate::listen::window::LiveWindow;
use crate::pools::slot::Slot;
use crate::pools::tls::{Scheme, UpstreamTls};
use crate::proxy::conns::UpstreamConns;

/// Why a try at an upstream failed: the `kind` label of `front_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// No connection could be made (refused, unreachable, connect timeout): the
    /// request never left, so any method may move to the next upstream.
    Connect,
    /// The connection broke after the request was (maybe) sent, before response
    /// headers came back.
    Send,
    /// No response headers within `--upstream-timeout`.
    Timeout,
    /// The TLS handshake with an `https://` member failed (certificate not trusted,
    /// wrong name, no common version): like `Connect`, the request never left.
    Tls,
}

impl FailureKind {
    fn index(self) -> usize {
        match self {
            FailureKind::Connect => 0,
            FailureKind::Send => 1,
            FailureKind::Timeout => 2,
            FailureKind::Tls => 3,
        }
    }

    /// Whether the request cannot have reached the upstream, so any method may move
    /// to the next one.
    pub(crate) fn never_sent(self) -> bool {
        matches!(self, FailureKind::Connect | FailureKind::Tls)
    }
}

/// One upstream address and its health.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// The address as configured (`host:port`): metric label and `Host` header.
    label: String,
    /// Where connections go.
    addr: SocketAddr,
    /// Keep-alive connections to `addr`, one set per front thread (a
    /// connection's driver task runs on the thread that opened it, so only that
    /// thread's requests should use it); an `Arc` because response bodies carry their
    /// pool to give the connection back.
    connections: Box<[Arc<UpstreamConns>]>,
    /// The `Host` header sent upstream (nginx's `$proxy_host`), built once.
    host: HeaderValue,
    /// One permit per request allowed in flight (`max_conns`), shared by every front
    /// thread; `None`: no limit.
    slots: Option<Arc<Semaphore>>,
    /// Requests in flight here (admitted, response body not yet finished), counted
    /// with or without a limit: what a drain waits for. Shared with each [`Slot`].
    in_flight: Arc<AtomicUsize>,
    /// Set by an operator (`POST /front/upstreams/{addr}/drain`): no new requests,
    /// those in flight finish. Lives here, not in the config, so a reload keeps it.
    draining: AtomicBool,
    /// `max_conns` (0: no limit), for messages.
    max_conns: usize,
    /// `front_upstream_queued_total{upstream}`: requests that waited for a slot.
    queued: Counter,
    /// The active checks' verdict. Starts up, so a fresh front serves at once; a dead
    /// upstream is then found by the first failed connect (passive) or by the checks.
    active_up: AtomicBool,
    /// Passive: nanoseconds since `epoch` until which the upstream is skipped; 0 when
    /// no failure holds it out. An atomic so the request path never locks.
    failed_until: AtomicU64,
    /// Failures counted in the current passive window. A mutex because counting and
    /// starting a window must happen together; only failures take it.
    window: Mutex<FailWindow>,
    /// Origin of `failed_until`.
    epoch: Instant,
    /// `max_fails` (0: passive checks off); an atomic because a reload may change it
    /// while requests run.
    max_fails: AtomicU32,
    /// `fail_timeout` in nanoseconds: the window, and how long a failed upstream is
    /// skipped; an atomic for the same reason.
    fail_timeout_nanos: AtomicU64,
    /// `front_upstream_errors_total{upstream, kind}`, one per [`FailureKind`].
    errors: [Counter; 4],
    /// TLS to it (an `https://` member); `None`: cleartext.
    tls: Option<UpstreamTls>,
    /// `front_upstream_up{pool, upstream}`, one per pool listing the address; a
    /// mutex because a reload may change the pools (taken on state changes and health
    /// ticks, never per request).
    up_gauges: Mutex<Vec<Gauge>>,
    /// Its last few seconds, for the live page.
    live: LiveWindow,
    /// Set when the address is one of this process's shards and the front reaches it
    /// in-process ([`super::proxy::inproc`]); unset: over TCP. Set once, before the
    /// upstream serves; a `OnceLock` because the shards' routers exist only after the
    /// front. A reload that keeps the address keeps this upstream, and so its path.
    local: OnceLock<LocalShard>,
}

#[derive(Debug)]
struct FailWindow {
    fails: u32,
    started: Instant,
}

impl Upstream {
    /// An upstream listed by the pools `memberships` (pool name, label in that pool).
    pub(crate) fn new(
        label: &str,
        addr: SocketAddr,
        tls: Option<&UpstreamTls>,
        memberships: &[(&str, &str)],
        max_conns: usize,
        health: &HealthConfig,
        limits: &UpstreamLimits,
    ) -> anyhow::Result<Self> {
        let host = HeaderValue::from_str(label)?;
        let errors = ["connect", "send", "timeout", "tls"].map(|kind| {
            let upstream = label.to_owned();
            metrics::counter!(
                "front_upstream_errors_total",
                "upstream" => upstream,
                "kind" => kind
            )
        });
        let now = Instant::now();
        let upstream = Self {
            live: LiveWindow::new(),
            label: label.to_owned(),
            addr,
            connections: (0..limits.front_threads.max(1))
                .map(|_| {
                    Arc::new(UpstreamConns::new(
                        addr,
                        tls.cloned(),
                        limits.connect_timeout,
                        limits.idle_per_upstream,
                    ))
                })
                .collect(),
            host,
            slots: (max_conns > 0).then(|| Arc::new(Semaphore::new(max_conns))),
            in_flight: Arc::new(AtomicUsize::new(0)),
            draining: AtomicBool::new(false),
            max_conns,
            queued: metrics::counter!(
                "front_upstream_queued_total",
                "upstream" => label.to_owned()
            ),
            active_up: AtomicBool::new(true),
            failed_until: AtomicU64::new(0),
            window: Mutex::new(FailWindow {
                fails: 0,
                started: now,
            }),
            epoch: now,
            max_fails: AtomicU32::new(health.max_fails),
            fail_timeout_nanos: AtomicU64::new(duration_nanos(health.fail_timeout)),
            errors,
            tls: tls.cloned(),
            up_gauges: Mutex::new(Vec::new()),
            local: OnceLock::new(),
        };
        upstream.set_memberships(memberships);
        Ok(upstream)
    }

    /// Applies a (re)loaded config's passive-check settings.
    pub(crate) fn set_passive(&self, health: &HealthConfig) {
        self.max_fails.store(health.max_fails, Ordering::Relaxed);
        self.fail_timeout_nanos
            .store(duration_nanos(health.fail_timeout), Ordering::Relaxed);
    }

    /// The pools listing the address (pool name, label in that pool), after a
    /// (re)load: one `front_upstream_up` gauge each, published at once.
    pub(crate) fn set_memberships(&self, memberships: &[(&str, &str)]) {
        let gauges = memberships
            .iter()
            .map(|&(pool, label)| {
                let (pool, upstream) = (pool.to_owned(), label.to_owned());
                metrics::gauge!("front_upstream_up", "pool" => pool, "upstream" => upstream)
            })
            .collect();
        *self.up_gauges.lock().unwrap_or_else(|e| e.into_inner()) = gauges;
        self.publish();
    }

    fn fail_timeout(&self) -> Duration {
        Duration::from_nanos(self.fail_timeout_nanos.load(Ordering::Relaxed))
    }

    /// Whether an operator is draining it (see [`Self::set_draining`]).
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts (`true`) or ends a drain; returns whether that changed anything.
    pub(crate) fn set_draining(&self, draining: bool) -> bool {
        self.draining.swap(draining, Ordering::Relaxed) != draining
    }

    /// Requests in flight here now (admitted, response not yet fully sent).
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The address as configured.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The shard this address is, when the front reaches it in-process.
    pub(crate) fn local(&self) -> Option<&LocalShard> {
        self.local.get()
    }

    /// Reaches this address in-process, through `shard`; `false` if it already was.
    pub(crate) fn attach_local(&self, shard: LocalShard) -> bool {
        self.local.set(shard).is_ok()
    }

    /// Where connections go.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TLS to it; `None`: cleartext.
    pub(crate) fn tls(&self) -> Option<&UpstreamTls> {
        self.tls.as_ref()
    }

    /// `https` when the front speaks TLS to it, else `http`.
    pub(crate) fn scheme(&self) -> Scheme {
        Scheme::of(self.tls.as_ref())
    }

    /// Front thread `thread`'s keep-alive connections to it.
    pub(crate) fn connections(&self, thread: usize) -> &Arc<UpstreamConns> {
        &self.connections[thread % self.connections.len()]
    }

    /// Whether a request sent now would not wait for a `max_conns` slot.
    pub(crate) fn has_room(&self) -> bool {
        self.slots
            .as_ref()
            .is_none_or(|slots| slots.available_permits() > 0)
    }

    /// A slot for one request in flight, waiting for one if `max_conns` are taken
    /// (first come, first served). Hold it until the response body has been read.
    pub(crate) async fn admit(&self) -> Slot {
        let permit = match &self.slots {
            None => None,
            Some(slots) => match Arc::clone(slots).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.queued.increment(1);
                    // The semaphore is never closed.
                    Arc::clone(slots).acquire_owned().await.ok()
                }
            },
        };
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Slot::new(permit, Arc::clone(&self.in_flight))
    }

    /// `max_conns`; 0: no limit.
    pub(crate) fn max_conns(&self) -> usize {
        self.max_conns
    }

    /// Its last few seconds: what the front's tries at it did.
    pub(crate) fn live(&self) -> &LiveWindow {
        &self.live
    }

    /// The `Host` header to send.
    pub(crate) fn host_header(&self) -> &HeaderValue {
        &self.host
    }

    /// Whether requests may go here now (weights aside).
    pub(crate) fn is_available(&self) -> bool {
        self.active_up.load(Ordering::Relaxed) && !self.passive_failed()
    }

    /// Whether the active checks currently say up.
    pub(crate) fn is_active_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    /// Whether a passive failure holds the upstream out now.
    pub(crate) fn passive_failed(&self) -> bool {
        let until = self.failed_until.load(Ordering::Relaxed);
        until != 0 && self.nanos_since_epoch(Instant::now()) < until
    }

    /// Records a failed try: counts it and, after `max_fails` within `fail_timeout`,
    /// holds the upstream out for `fail_timeout`.
    pub(crate) fn record_failure(&self, kind: FailureKind) {
        self.errors[kind.index()].increment(1);
        let max_fails = self.max_fails.load(Ordering::Relaxed);
        if max_fails == 0 {
            return;
        }
        let fail_timeout = self.fail_timeout();
        let now = Instant::now();
        let tripped = {
            // A poisoned lock only means another thread panicked while counting: the
            // counts are still plain numbers, keep using them.
            let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
            if now.duration_since(window.started) > fail_timeout {
                window.fails = 0;
                window.started = now;
            }
            window.fails += 1;
            if window.fails >= max_fails {
                window.fails = 0;
                let until = self.nanos_since_epoch(now + fail_timeout).max(1);
                self.failed_until.store(until, Ordering::Relaxed);
                true
            } else {
                false
            }
        };
        if tripped {
            tracing::warn!(
                upstream = %self.label,
                kind = ?kind,
                fail_timeout = ?fail_timeout,
                "upstream failed: skipping it for fail_timeout"
            );
            self.publish();
        }
    }

    /// Applies an active-check verdict; returns whether the state flipped. Coming back
    /// up also clears a passive failure: the checks just saw it answer.
    pub(crate) fn set_active_up(&self, up: bool) -> bool {
        let flipped = self.active_up.swap(up, Ordering::Relaxed) != up;
        if flipped && up {
            self.failed_until.store(0, Ordering::Relaxed);
        }
        self.publish();
        flipped
    }

    /// Sets `front_upstream_up` from the current availability. Called on every change
    /// and on every health tick (a passive hold ends by time, with no event).
    pub(crate) fn publish(&self) {
        let up = if self.is_available() { 1.0 } else { 0.0 };
        let gauges = self.up_gauges.lock().unwrap_or_else(|e| e.into_inner());
        for gauge in gauges.iter() {
            gauge.set(up);
        }
    }

    fn nanos_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A shard of this process, as a front member reaches it without a socket.
#[derive(Debug)]
pub(crate) struct LocalShard {
    /// The shard's router; alive while the shard's thread serves (see `proxy::inproc`).
    router: Weak<Router>,
    /// The shard's runtime, once it runs: the health checks ask it to run a task.
    runtime: ShardRuntime,
}

impl LocalShard {
    /// The member side of `router`, which the shard's serving thread keeps alive, on
    /// the runtime `runtime` names once it runs.
    pub(crate) fn new(router: Weak<Router>, runtime: &ShardRuntime) -> Self {
        Self {
            router,
            runtime: runtime.clone(),
        }
    }

    /// Whether the shard still serves.
    pub(crate) fn is_live(&self) -> bool {
        self.router.strong_count() > 0
    }

    /// The shard's router, or `None` once the shard has stopped.
    pub(crate) fn router(&self) -> Option<Arc<Router>> {
        self.router.upgrade()
    }

    /// The active health check of an in-process member: the shard still serves and its
    /// runtime runs a task within `timeout`. No socket is opened, so running out of file
    /// descriptors cannot take a healthy shard out of rotation.
    pub(crate) async fn is_responsive(&self, timeout: Duration) -> bool {
        if !self.is_live() {
            return false;
        }
        let Some(runtime) = self.runtime.0.get() else {
            // Not started yet: the router is alive, so it is starting.
            return true;
        };
        // A runtime that has shut down cancels the task at once (a `JoinError`).
        let ping = runtime.spawn(async {});
        matches!(tokio::time::timeout(timeout, ping).await, Ok(Ok(())))
    }
}

/// The runtime a shard of this process serves on, for the front's health checks of
/// in-process members: created with the shard, set by the shard's thread once its
/// runtime runs ([`ShardRuntime::set_current`]), handed to
/// [`crate::Front::attach_shard`].
#[derive(Debug, Clone, Default)]
pub struct ShardRuntime(Arc<OnceLock<tokio::runtime::Handle>>);

impl ShardRuntime {
    /// A runtime not started yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the current runtime as the shard's: call it on the shard's thread,
    /// inside its runtime. Later calls do nothing.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn set_current(&self) {
        let _ = self.0.set(tokio::runtime::Handle::current());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn upstream(max_fails: u32, fail_timeout: Duration) -> Upstream {
        let health = HealthConfig {
            max_fails,
            fail_timeout,
            ..HealthConfig::default()
        };
        Upstream::new(
            "127.0.0.1:9",
            "127.0.0.1:9".parse().expect("literal"),
            None,
            &[],
            0,
            &health,
            &test_limits(),
        )
        .expect("valid")
    }

    /// Limits for unit tests (nothing connects).
    pub(crate) fn test_limits() -> UpstreamLimits {
        UpstreamLimits {
            response_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            idle_per_upstream: 1,
            front_threads: 1,
            max_conns_per_upstream: 0,
        }
    }

    #[test]
    fn max_fails_failures_hold_an_upstream_out() {
        let u = upstream(2, Duration::from_secs(60));
        u.record_failure(FailureKind::Connect);
        assert!(u.is_available(), "one failure of two allowed");
        u.record_failure(FailureKind::Send);
        assert!(!u.is_available());
        assert!(u.set_active_up(false));
        assert!(u.set_active_up(true), "coming back up is a flip");
        assert!(u.is_available(), "an active rise clears the passive hold");
    }

    #[test]
    fn the_passive_hold_ends_after_fail_timeout() {
        let u = upstream(1, Duration::from_millis(1));
        u.record_failure(FailureKind::Timeout);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !u.is_available() {
            assert!(Instant::now() < deadline, "the hold never ended");
            std::thread::yield_now();
        }
    }

    #[test]
    fn max_fails_zero_disables_passive_checks() {
        let u = upstream(0, Duration::from_secs(60));
        for _ in 0..10 {
            u.record_failure(FailureKind::Connect);
        }
        assert!(u.is_available());
    }
}
