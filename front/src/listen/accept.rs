//! Accepting under pressure, for every listener's accept loop ([`crate::listen::server`]): the
//! connection cap, closing idle connections at the cap, and the pause after a failed
//! accept.
//!
//! - **The cap** (`--max-connections`, derived from the fd limit by default: see
//!   [`crate::listen::fds`]). At the cap the [`Gate`] stops accepting: new clients wait in the
//!   kernel's backlog, as HAProxy's paused listeners make them, instead of being
//!   accepted and failed.
//! - **Idle connections go first.** At the cap, keep-alive connections that have been
//!   idle (no request in flight) for [`IDLE_CLOSE_AFTER`] are asked to close, the
//!   longest idle first, up to [`CLOSE_BATCH`] at a time (nginx's
//!   `ngx_drain_connections` does the same with its reusable connections). hyper's
//!   graceful shutdown closes an idle connection at once and lets a busy one finish
//!   its request, so a connection wrongly thought idle still gets its answer. The
//!   minimum idle time spares a client between two requests.
//! - **Failed accepts** (out of descriptors: EMFILE, ENFILE; out of memory: ENOBUFS,
//!   ENOMEM) pause the listener for [`ERROR_PAUSE`] (nginx: 500 ms), after asking idle
//!   connections to close, instead of retrying in a loop. They are counted by kind and
//!   logged through a `RepeatLog`: the first at once, then at most one line per
//!   [`LOG_WINDOW`] carrying `repeats`, the failures it stands for. A connection that
//!   died in the backlog (ECONNABORTED and the like) is the client's: counted, not
//!   logged, no pause.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loadlab_logs::{RepeatLog, Verdict};
use metrics::{Counter, Gauge};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a connection must have been idle before the cap closes it.
pub(crate) const IDLE_CLOSE_AFTER: Duration = Duration::from_secs(1);
/// Most idle connections asked to close at once.
const CLOSE_BATCH: usize = 32;
/// How often a listener at its cap looks again for idle connections to close.
const CAP_RECHECK: Duration = Duration::from_millis(100);
/// How long a listener stops accepting after a failed accept.
const ERROR_PAUSE: Duration = Duration::from_millis(500);
/// At most one log line about failed accepts per listener in this time.
const LOG_WINDOW: Duration = Duration::from_secs(1);

/// The `kind` label values of `http_accept_errors_total`.
pub(crate) const ACCEPT_ERROR_KINDS: [&str; 6] =
    ["emfile", "enfile", "enobufs", "enomem", "aborted", "other"];

/// One listener's admission: its cap, its open connections, its failed accepts.
pub(crate) struct Gate {
    /// The `listener` label.
    name: String,
    /// One permit per connection allowed open.
    slots: Arc<Semaphore>,
    conns: Arc<Registry>,
    /// How long a connection must have been idle before the cap closes it.
    idle_close_after: Duration,
    /// Failed accepts: the first logged, then at most one line per [`LOG_WINDOW`].
    errors: RepeatLog,
    /// When the last failed accept happened; `None` once the episode was settled.
    last_error: Option<Instant>,
    metrics: GateMetrics,
}

struct GateMetrics {
    /// `http_listener_at_cap_total{listener}`.
    at_cap: Counter,
    /// `http_connections_idle_closed_total{listener}`.
    idle_closed: Counter,
    /// `http_accept_errors_total{listener, kind}`, in [`ACCEPT_ERROR_KINDS`] order.
    errors: [Counter; ACCEPT_ERROR_KINDS.len()],
}

/// A connection's place under the cap, held until the connection closes.
#[derive(Debug)]
pub(crate) struct Slot {
    conn: Arc<ConnState>,
    conns: Arc<Registry>,
    _permit: OwnedSemaphorePermit,
}

/// What the cap knows of one open connection.
#[derive(Debug)]
pub(crate) struct ConnState {
    id: u64,
    /// Requests being answered on it (0: idle).
    busy: AtomicUsize,
    /// When it last became idle, in milliseconds since the registry's epoch.
    idle_since_ms: AtomicU64,
    epoch: Instant,
    /// Wakes the connection's task to close it gracefully.
    close: Notify,
}

/// The open connections of one listener.
#[derive(Debug)]
struct Registry {
    /// A mutex taken when a connection opens or closes and when the cap looks for idle
    /// ones, never per request.
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    epoch: Instant,
    /// `http_connections_open{listener}`.
    gauge: Gauge,
}

impl Gate {
    /// The gate of listener `name` (the `listener` label), capped at `max_connections`.
    pub(crate) fn new(name: &str, max_connections: usize) -> Self {
        let label = |metric: &'static str| metrics::counter!(metric, "listener" => name.to_owned());
        let metrics = GateMetrics {
            at_cap: label("http_listener_at_cap_total"),
            idle_closed: label("http_connections_idle_closed_total"),
            errors: ACCEPT_ERROR_KINDS.map(|kind| {
                metrics::counter!(
                    "http_accept_errors_total",
                    "listener" => name.to_owned(),
                    "kind" => kind
                )
            }),
        };
        // Exported at 0 from the start, so `rate()` reads 0 before the first event.
        for counter in metrics
            .errors
            .iter()
            .chain([&metrics.at_cap, &metrics.idle_closed])
        {
            counter.increment(0);
        }
        let gauge = metrics::gauge!("http_connections_open", "listener" => name.to_owned());
        gauge.set(0.0);
        Self {
            name: name.to_owned(),
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            conns: Arc::new(Registry {
                open: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                epoch: Instant::now(),
                gauge,
            }),
            idle_close_after: IDLE_CLOSE_AFTER,
            errors: RepeatLog::new(LOG_WINDOW),
            last_error: None,
            metrics,
        }
    }

    /// The next connection, with its slot; `None` once `shutdown` is cancelled.
    pub(crate) async fn accept(
        &mut self,
        listener: &TcpListener,
        shutdown: &CancellationToken,
    ) -> Option<(TcpStream, SocketAddr, Slot)> {
        let mut permit = None;
        loop {
            let slot = match permit.take() {
                Some(slot) => slot,
                None => self.wait_for_slot(shutdown).await?,
            };
            let accepted = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    self.settle_errors();
                    return Some((stream, peer, self.conns.register(slot)));
                }
                Err(error) => {
                    permit = Some(slot);
                    if !self.accept_failed(&error) {
                        continue;
                    }
                    self.close_idle();
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(ERROR_PAUSE) => {}
                    }
                }
            }
        }
    }

    /// A slot under the cap: at once, or after idle connections were closed or others
    /// ended. `None` once `shutdown` is cancelled.
    async fn wait_for_slot(&self, shutdown: &CancellationToken) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Some(permit);
        }
        self.metrics.at_cap.increment(1);
        tracing::debug!(listener = %self.name, "at the connection cap: not accepting");
        loop {
            self.close_idle();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                // The semaphore is never closed.
                permit = Arc::clone(&self.slots).acquire_owned() => return permit.ok(),
                _ = tokio::time::sleep(CAP_RECHECK) => {}
            }
        }
    }

    /// Counts and (throttled) logs a failed accept; returns whether to pause.
    fn accept_failed(&mut self, error: &io::Error) -> bool {
        let kind = error_kind(error);
        self.metrics.errors[kind].increment(1);
        let kind = ACCEPT_ERROR_KINDS[kind];
        if kind == "aborted" {
            let listener = &self.name;
            tracing::debug!(%listener, %error, "a connection died before it was accepted");
            return false;
        }
        self.last_error = Some(Instant::now());
        if let Verdict::Log { repeats } = self.errors.occurred() {
            tracing::warn!(
                listener = %self.name,
                kind,
                %error,
                repeats,
                pause_ms = ERROR_PAUSE.as_millis() as u64,
                "accepting connections failed: pausing the listener"
            );
        }
        true
    }

    /// Ends an episode of failed accepts once accepts have worked for [`LOG_WINDOW`]
    /// (not at the first success: failures interleaved with successes would then log
    /// every one), with a closing line for the failures not reported yet.
    fn settle_errors(&mut self) {
        if self
            .last_error
            .is_none_or(|last| last.elapsed() < LOG_WINDOW)
        {
            return;
        }
        self.last_error = None;
        if let Some(repeats) = self.errors.settle() {
            tracing::warn!(listener = %self.name, repeats, "accept failures since the last report");
        }
    }

    /// Asks the connections idle the longest to close (see the module docs).
    fn close_idle(&self) {
        let closed = self.conns.close_idle(CLOSE_BATCH, self.idle_close_after);
        if closed > 0 {
            self.metrics.idle_closed.increment(closed as u64);
        }
    }

    /// Sets how long a connection must be idle before the cap closes it (tests).
    #[cfg(test)]
    pub(crate) fn set_idle_close_after(&mut self, after: Duration) {
        self.idle_close_after = after;
    }
}

/// The index in [`ACCEPT_ERROR_KINDS`] of `error`.
fn error_kind(error: &io::Error) -> usize {
    match error.raw_os_error() {
        Some(libc::EMFILE) => 0,
        Some(libc::ENFILE) => 1,
        Some(libc::ENOBUFS) => 2,
        Some(libc::ENOMEM) => 3,
        Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EPROTO | libc::EPERM) => 4,
        _ => 5,
    }
}

impl Registry {
    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    fn register(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let conn = Arc::new(ConnState {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            epoch: self.epoch,
            close: Notify::new(),
        });
        self.lock().insert(conn.id, Arc::clone(&conn));
        self.gauge.increment(1.0);
        Slot {
            conn,
            conns: Arc::clone(self),
            _permit: permit,
        }
    }

    /// Asks up to `max` connections idle for at least `min_idle` to close, the longest
    /// idle first; returns how many. Each is removed from the registry so that it is
    /// asked once.
    fn close_idle(&self, max: usize, min_idle: Duration) -> usize {
        let now = self.now_ms();
        let min_idle = millis(min_idle);
        let mut open = self.lock();
        let mut idle: Vec<(u64, u64)> = open
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0)
            .map(|c| (c.idle_since_ms.load(Ordering::Relaxed), c.id))
            .filter(|&(since, _)| now.saturating_sub(since) >= min_idle)
            .collect();
        idle.sort_unstable();
        idle.truncate(max);
        for (_, id) in &idle {
            if let Some(conn) = open.remove(id) {
                conn.close.notify_one();
            }
        }
        idle.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        // Plain data: a panic elsewhere while holding it leaves nothing half-done.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Slot {
    /// The connection's state, for its task: requests mark it busy, the cap asks it to
    /// close.
    pub(crate) fn conn(&self) -> &Arc<ConnState> {
        &self.conn
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.lock().remove(&self.conn.id);
        self.conns.gauge.decrement(1.0);
    }
}

impl ConnState {
    /// Marks one request in flight until the guard is dropped (its response is
    /// ready: the body may still be streaming, which hyper's graceful close lets end).
    pub(crate) fn begin_request(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    /// Resolves when the cap asks this connection to close.
    pub(crate) async fn close_requested(&self) {
        self.close.notified().await;
    }
}

/// A request in flight on a connection; see [`ConnState::begin_request`].
pub(crate) struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.idle_since_ms
            .store(millis(conn.epoch.elapsed()), Ordering::Relaxed);
        conn.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_sorted_by_kind() {
        let kind = |errno| ACCEPT_ERROR_KINDS[error_kind(&io::Error::from_raw_os_error(errno))];
        assert_eq!(kind(libc::EMFILE), "emfile");
        assert_eq!(kind(libc::ENFILE), "enfile");
        assert_eq!(kind(libc::ENOBUFS), "enobufs");
        assert_eq!(kind(libc::ECONNABORTED), "aborted");
        assert_eq!(kind(libc::EINVAL), "other");
    }

    #[test]
    fn the_longest_idle_connections_close_first_and_busy_ones_never() {
        let mut gate = Gate::new("test", 8);
        // A registry two hours old, so "idle for an hour" can be set up without waiting.
        let two_hours_ago = Instant::now()
            .checked_sub(Duration::from_secs(7200))
            .expect("the clock is past two hours");
        gate.conns = Arc::new(Registry {
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: two_hours_ago,
            gauge: metrics::gauge!("test_open"),
        });
        let slots: Vec<Slot> = (0..4)
            .map(|_| {
                let permit = Arc::clone(&gate.slots).try_acquire_owned().expect("room");
                gate.conns.register(permit)
            })
            .collect();
        // 0 and 2 idle for two hours (2 longer), 1 busy, 3 idle since just now.
        let busy = slots[1].conn().begin_request();
        slots[0].conn().idle_since_ms.store(5, Ordering::Relaxed);
        slots[2].conn().idle_since_ms.store(0, Ordering::Relaxed);
        let hour = Duration::from_secs(3600);
        assert_eq!(gate.conns.close_idle(1, hour), 1, "2 goes first");
        assert_eq!(
            gate.conns.close_idle(8, hour),
            1,
            "then 0; 1 is busy, 3 fresh"
        );
        drop(busy);
        assert_eq!(gate.conns.close_idle(8, hour), 0, "1 became idle just now");
        let asked: Vec<bool> = slots.iter().map(|s| was_asked_to_close(s.conn())).collect();
        assert_eq!(asked, [true, false, true, false]);
        drop(slots);
        assert!(
            gate.conns.lock().is_empty(),
            "closed connections leave the registry"
        );
    }

    /// Whether `conn` was asked to close (its stored notification is taken).
    fn was_asked_to_close(conn: &ConnState) -> bool {
        let notified = conn.close.notified();
        let mut notified = std::pin::pin!(notified);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        notified.as_mut().poll(&mut cx).is_ready()
    }
}
