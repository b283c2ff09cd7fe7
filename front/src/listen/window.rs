//! [`LiveWindow`]: the last few seconds of one place's requests (a shard, an upstream),
//! kept by the process for its live page: requests and errors per second, latency
//! quantiles, requests in flight. Read by the process itself, not scraped: the
//! Prometheus metrics are text for scrapers, and a rate needs two scrapes.
//!
//! A ring of one-second slots, each with its counts and a latency histogram of
//! fixed log-spaced buckets (four per doubling: a quantile is off by at most a
//! fifth). Recording takes an uncontended mutex (a shard's requests are recorded on
//! its own thread, and on the front's threads for the in-process path).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Seconds the ring holds (the window read, plus the second being filled).
const SLOTS: usize = 8;

/// Complete seconds the quantiles are taken over.
pub const QUANTILE_SECONDS: u64 = 5;

/// Latency buckets: the first holds everything under [`FIRST_MICROS`], then four per
/// doubling, up to about two minutes (the last holds everything longer).
const BUCKETS: usize = 96;

/// The first bucket's upper bound, in microseconds.
const FIRST_MICROS: u64 = 16;

/// The last few seconds of one place's requests.
#[derive(Debug)]
pub struct LiveWindow {
    /// Slot seconds count from here.
    origin: Instant,
    ring: Mutex<[Slot; SLOTS]>,
    in_flight: AtomicI64,
    requests: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Which second (since `origin`) this slot holds.
    second: u64,
    requests: u64,
    errors: u64,
    latency: [u32; BUCKETS],
}

impl Slot {
    const EMPTY: Slot = Slot {
        second: u64::MAX,
        requests: 0,
        errors: 0,
        latency: [0; BUCKETS],
    };
}

/// What a [`LiveWindow`] shows now.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LiveSnapshot {
    /// Requests answered in the last complete second.
    pub requests_per_second: u64,
    /// Of those, errors (5xx, or no answer).
    pub errors_per_second: u64,
    /// Median latency over the last [`QUANTILE_SECONDS`] complete seconds, in
    /// milliseconds; `None` without requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile, likewise.
    pub p99_ms: Option<f64>,
    /// Requests being handled now.
    pub in_flight: i64,
    /// Requests answered since start.
    pub requests: u64,
    /// Errors since start.
    pub errors: u64,
}

/// A request counted in flight until dropped (also when its future is dropped).
#[derive(Debug)]
pub struct InFlight<'a>(&'a LiveWindow);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for LiveWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            ring: Mutex::new([Slot::EMPTY; SLOTS]),
            in_flight: AtomicI64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Records a request answered after `latency`; `error`: a 5xx or no answer.
    pub fn record(&self, latency: Duration, error: bool) {
        self.record_at(Instant::now(), latency, error);
    }

    /// [`LiveWindow::record`] at `now` (tests drive the clock).
    pub fn record_at(&self, now: Instant, latency: Duration, error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let second = self.second_of(now);
        let mut ring = self.lock();
        let slot = &mut ring[(second % SLOTS as u64) as usize];
        if slot.second != second {
            *slot = Slot {
                second,
                ..Slot::EMPTY
            };
        }
        slot.requests += 1;
        slot.errors += u64::from(error);
        let bucket = &mut slot.latency[bucket_of(latency)];
        *bucket = bucket.saturating_add(1);
    }

    /// What the window shows now.
    pub fn snapshot(&self) -> LiveSnapshot {
        self.snapshot_at(Instant::now())
    }

    /// [`LiveWindow::snapshot`] at `now`.
    pub fn snapshot_at(&self, now: Instant) -> LiveSnapshot {
        let current = self.second_of(now);
        let ring = *self.lock();
        let complete = |ago: u64| {
            let second = current.checked_sub(ago)?;
            ring.iter().find(|s| s.second == second)
        };
        let last = complete(1);
        let mut latency = [0u64; BUCKETS];
        for slot in (1..=QUANTILE_SECONDS).filter_map(complete) {
            for (sum, n) in latency.iter_mut().zip(slot.latency) {
                *sum += u64::from(n);
            }
        }
        LiveSnapshot {
            requests_per_second: last.map_or(0, |s| s.requests),
            errors_per_second: last.map_or(0, |s| s.errors),
            p50_ms: quantile_ms(&latency, 0.5),
            p99_ms: quantile_ms(&latency, 0.99),
            in_flight: self.in_flight.load(Ordering::Relaxed).max(0),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    fn second_of(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [Slot; SLOTS]> {
        // Plain counters: still usable after a panic elsewhere.
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The bucket of `latency`: 0 below [`FIRST_MICROS`], then four per doubling.
fn bucket_of(latency: Duration) -> usize {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if micros < FIRST_MICROS {
        return 0;
    }
    let doubling = u64::from(63 - micros.leading_zeros()); // >= 4
    let quarter = (micros >> (doubling - 2)) & 3;
    let index = 1 + (doubling - 4) * 4 + quarter;
    usize::try_from(index).map_or(BUCKETS - 1, |i| i.min(BUCKETS - 1))
}

/// The upper bound of bucket `index`, in microseconds.
fn bucket_upper_micros(index: usize) -> u64 {
    if index == 0 {
        return FIRST_MICROS;
    }
    let index = index as u64 - 1;
    let (doubling, quarter) = (4 + index / 4, index % 4);
    (5 + quarter) << (doubling - 2)
}

/// The `q` quantile of `counts` (the upper bound of the bucket it falls in), in
/// milliseconds; `None` when empty.
fn quantile_ms(counts: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the quantile, 1-based: at least the first request.
    let rank = ((total as f64 * q).ceil() as u64).max(1);
    let mut seen = 0;
    for (index, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bucket_upper_micros(index) as f64 / 1000.0);
        }
    }
    Some(bucket_upper_micros(BUCKETS - 1) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_bound_their_latencies() {
        for micros in [
            0u64, 15, 16, 17, 100, 999, 1000, 1500, 65_000, 1_000_000, 60_000_000,
        ] {
            let bucket = bucket_of(Duration::from_micros(micros));
            assert!(
                micros < bucket_upper_micros(bucket),
                "{micros} us in bucket {bucket}"
            );
            if bucket > 0 {
                assert!(micros >= bucket_upper_micros(bucket - 1), "{micros} us");
            }
        }
        assert!(bucket_upper_micros(BUCKETS - 2) > 100_000_000);
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS - 1);
    }

    #[test]
    fn a_snapshot_reads_the_last_complete_second_and_quantiles_of_the_last_five() {
        let window = LiveWindow::new();
        let at =
            |s: u64, ms: u64| window.origin + Duration::from_secs(s) + Duration::from_millis(ms);
        // Second 2: 99 quick requests, 1 slow one that failed; second 3: 10 quick.
        for i in 0..100 {
            let slow = i == 99;
            let latency = Duration::from_micros(if slow { 80_000 } else { 1_000 });
            window.record_at(at(2, i), latency, slow);
        }
        for i in 0..10 {
            window.record_at(at(3, i), Duration::from_micros(1_000), false);
        }

        let snapshot = window.snapshot_at(at(4, 500));

        assert_eq!(snapshot.requests_per_second, 10);
        assert_eq!(snapshot.errors_per_second, 0);
        assert_eq!(snapshot.requests, 110);
        assert_eq!(snapshot.errors, 1);
        let p50 = snapshot.p50_ms.expect("a median");
        assert!((1.0..1.3).contains(&p50), "{p50}");
        let p99 = snapshot.p99_ms.expect("a p99");
        assert!(
            (1.0..1.3).contains(&p99),
            "110 requests, 1 slow: p99 is quick ({p99})"
        );
        // Seconds later, the window has moved past them all.
        let later = window.snapshot_at(at(20, 0));
        assert_eq!(later.requests_per_second, 0);
        assert_eq!(later.p50_ms, None);
    }

    #[test]
    fn in_flight_counts_until_the_guard_drops() {
        let window = LiveWindow::new();
        let guard = window.enter();
        assert_eq!(window.snapshot().in_flight, 1);
        drop(guard);
        assert_eq!(window.snapshot().in_flight, 0);
    }
}
