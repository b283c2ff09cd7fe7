//! The writer's view of its store's health, for readiness ([`StoreHealth`], shared
//! with every [`super::WriterHandle`]), and the writer's bookkeeping of failed commits
//! (`FaultWatch`: metrics, aggregated log lines, the shared state).
//!
//! A store fault (full, read-only, I/O error, busy) marks the store unhealthy at the
//! first failed commit, and a successful commit marks it healthy again at once. Without
//! traffic nothing would ever commit, so a fault is also forgotten [`FAULT_HOLD`] after
//! the last failure (half-open, as a circuit breaker): readiness lets traffic try again
//! rather than keep a healed store out of rotation forever (an orchestrator that
//! removes unready instances sends them nothing). While the fault lasts, every failure
//! renews it, so a store that stays full stays unready. A lost connection is not kept
//! here: the writer reconnects in the background and publishes that through
//! [`super::WriterHandle::is_connected`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use loadlab_logs::{RepeatLog, Verdict};

use super::backend::WriteError;
use super::fault::StoreFault;

/// How long a fault keeps the store unready after its last failure, without a commit.
pub const FAULT_HOLD: Duration = Duration::from_secs(5);

/// The store's last fault, if it is still current, and what it has committed. Shared
/// between the writer thread (which records) and readiness checks and the live page
/// (which read).
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// Batches committed since start.
    batches: AtomicU64,
    /// Rows in those batches.
    rows: AtomicU64,
    /// Whether `current` holds a fault: lets the writer skip the lock on every healthy
    /// commit.
    faulted: AtomicBool,
    /// A `std` mutex: taken once per failed batch and once per readiness probe, never
    /// across I/O.
    current: Mutex<Option<ActiveFault>>,
}

/// A store fault that readiness reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveFault {
    /// What kind of fault.
    pub fault: StoreFault,
    /// The store's own message for the last failure.
    pub cause: String,
    /// When the last failure happened.
    pub last_seen: Instant,
}

impl ActiveFault {
    /// The readiness reason: "the Mega store is full: sqlite: database or disk is full".
    pub fn reason(&self) -> String {
        format!("the Mega store {}: {}", self.fault.describe(), self.cause)
    }
}

impl StoreHealth {
    /// The fault that makes the store unready now, if any.
    pub fn current(&self) -> Option<ActiveFault> {
        self.current_at(Instant::now())
    }

    fn current_at(&self, now: Instant) -> Option<ActiveFault> {
        if !self.faulted.load(Ordering::Acquire) {
            return None;
        }
        self.lock()
            .clone()
            .filter(|active| now.saturating_duration_since(active.last_seen) < FAULT_HOLD)
    }

    fn record_fault(&self, fault: StoreFault, cause: &str, now: Instant) {
        *self.lock() = Some(ActiveFault {
            fault,
            cause: cause.to_owned(),
            last_seen: now,
        });
        self.faulted.store(true, Ordering::Release);
    }

    /// Clears the fault; whether there was one.
    /// Batches committed since start, and the rows in them.
    pub fn committed(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.rows.load(Ordering::Relaxed),
        )
    }

    fn record_commit(&self, rows: usize) -> bool {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        if !self.faulted.swap(false, Ordering::AcqRel) {
            return false;
        }
        *self.lock() = None;
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ActiveFault>> {
        // Plain data: usable even if a holder panicked.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The writer thread's bookkeeping of commit outcomes: the shared [`StoreHealth`], the
/// `mega_store_faults_total` counter, and log lines aggregated per second (a store
/// that stays full would otherwise log once per batch).
#[derive(Debug)]
pub(crate) struct FaultWatch {
    health: std::sync::Arc<StoreHealth>,
    store: &'static str,
    /// Failed commits, store faults or not: one episode from the first failure to the
    /// next successful commit.
    failures: RepeatLog,
}

impl FaultWatch {
    pub(crate) fn new(health: std::sync::Arc<StoreHealth>, store: &'static str) -> Self {
        register_metrics(store);
        Self {
            health,
            store,
            failures: RepeatLog::per_second(),
        }
    }

    /// A batch failed with `error`: counts it, marks the store unhealthy if it is a
    /// store fault, and logs if the gate allows.
    pub(crate) fn failed(&self, error: &WriteError) {
        let fault = error.fault();
        let kind = fault.map_or("other", StoreFault::label);
        if let Some(fault) = fault {
            metrics::counter!("mega_store_faults_total", "store" => self.store, "kind" => kind)
                .increment(1);
            if fault != StoreFault::ConnectionLost {
                self.health
                    .record_fault(fault, &error.cause(), Instant::now());
            }
        }
        if let Verdict::Log { repeats } = self.failures.occurred() {
            tracing::error!(
                store = self.store,
                kind,
                %error,
                repeats,
                "a Mega batch was not committed"
            );
        }
    }

    /// A batch of `rows` committed: the store is healthy; closes the log episode if one
    /// ran.
    pub(crate) fn committed(&self, rows: usize) {
        let was_faulted = self.health.record_commit(rows);
        if was_faulted || self.failures.is_running() {
            let repeats = self.failures.settle().unwrap_or(0);
            tracing::warn!(store = self.store, repeats, "the Mega store commits again");
        }
    }
}

/// Registers the fault counters at zero, so dashboards see 0 rather than nothing.
fn register_metrics(store: &'static str) {
    for fault in StoreFault::ALL {
        metrics::counter!("mega_store_faults_total", "store" => store, "kind" => fault.label())
            .increment(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_holds_until_a_commit_or_its_hold_runs_out() {
        let health = StoreHealth::default();
        let t0 = Instant::now();
        assert_eq!(health.current_at(t0), None);
        health.record_fault(StoreFault::Full, "database or disk is full", t0);
        let active = health.current_at(t0).expect("faulted");
        assert_eq!(active.fault, StoreFault::Full);
        assert_eq!(
            active.reason(),
            "the Mega store is full: database or disk is full"
        );
        assert!(health.current_at(t0 + FAULT_HOLD / 2).is_some());
        assert_eq!(health.current_at(t0 + FAULT_HOLD), None, "half-open");
        health.record_fault(StoreFault::Full, "again", t0 + FAULT_HOLD);
        assert!(health.current_at(t0 + FAULT_HOLD).is_some(), "renewed");
        assert!(health.record_commit(1));
        assert_eq!(health.current_at(t0 + FAULT_HOLD), None);
        assert!(!health.record_commit(1), "nothing to clear");
    }
}
