//! [`RepeatLog`]: one place's repeating error, aggregated into a bounded number of log
//! lines (see the crate's documentation for why).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The interval most callers want: at most one line a second per place.
pub const ONE_SECOND: Duration = Duration::from_secs(1);

/// Aggregates one place's repeating occurrences into a bounded number of log lines:
/// at most one per `interval`, plus the first of each episode.
///
/// Cheap enough for a hot error path: one uncontended mutex per occurrence (held for a
/// comparison and an add), nothing on the success path.
#[derive(Debug)]
pub struct RepeatLog {
    interval: Duration,
    /// The episode so far. A `std` mutex: held for a few instructions, never across I/O.
    state: Mutex<Episode>,
}

#[derive(Debug, Default)]
struct Episode {
    /// When the last line was allowed; `None`: no episode is running.
    last_line: Option<Instant>,
    /// Occurrences since that line that were not logged.
    unreported: u64,
}

/// What the caller does with an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log a line now. `repeats`: the occurrences since the previous line that were not
    /// logged, not counting this one (0 for the first of an episode).
    Log {
        /// Occurrences folded into this line.
        repeats: u64,
    },
    /// Do not log: counted, and reported by a later line or by [`RepeatLog::settle`].
    Quiet,
}

impl RepeatLog {
    /// A gate allowing at most one line per `interval` (after the first of an episode).
    /// `const`, so a place can keep one in a `static`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(Episode {
                last_line: None,
                unreported: 0,
            }),
        }
    }

    /// A gate allowing at most one line a second.
    pub const fn per_second() -> Self {
        Self::new(ONE_SECOND)
    }

    /// Counts one occurrence now; says whether to log it.
    pub fn occurred(&self) -> Verdict {
        self.occurred_at(Instant::now())
    }

    /// [`RepeatLog::occurred`] at a given time (tests drive the clock).
    pub fn occurred_at(&self, now: Instant) -> Verdict {
        let mut episode = self.lock();
        let due = episode
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            episode.last_line = Some(now);
            Verdict::Log {
                repeats: std::mem::take(&mut episode.unreported),
            }
        } else {
            episode.unreported += 1;
            Verdict::Quiet
        }
    }

    /// Ends the episode (the condition cleared): the occurrences not reported yet, if
    /// any, for a closing line. The next occurrence starts a new episode and is logged
    /// at once.
    pub fn settle(&self) -> Option<u64> {
        let mut episode = self.lock();
        episode.last_line = None;
        Some(std::mem::take(&mut episode.unreported)).filter(|&n| n > 0)
    }

    /// Whether an episode is running (an occurrence since the last settle).
    pub fn is_running(&self) -> bool {
        self.lock().last_line.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Episode> {
        // A panic while holding it leaves plain counters behind: still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for RepeatLog {
    fn default() -> Self {
        Self::per_second()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_line_per_interval_with_the_count() {
        let gate = RepeatLog::per_second();
        let t0 = Instant::now();
        assert_eq!(gate.occurred_at(t0), Verdict::Log { repeats: 0 });
        for ms in 1..1000 {
            let at = t0 + Duration::from_millis(ms);
            assert_eq!(gate.occurred_at(at), Verdict::Quiet, "at {ms} ms");
        }
        assert_eq!(
            gate.occurred_at(t0 + Duration::from_millis(1000)),
            Verdict::Log { repeats: 999 }
        );
        assert_eq!(
            gate.occurred_at(t0 + Duration::from_millis(1001)),
            Verdict::Quiet
        );
    }

    #[test]
    fn a_flood_writes_one_line_per_second_at_most() {
        let gate = RepeatLog::per_second();
        let t0 = Instant::now();
        // 100,000 occurrences over ten seconds.
        let lines = (0..100_000u64)
            .filter(|i| {
                let at = t0 + Duration::from_micros(i * 100);
                matches!(gate.occurred_at(at), Verdict::Log { .. })
            })
            .count();
        assert_eq!(lines, 10);
    }

    #[test]
    fn settle_reports_the_rest_and_the_next_episode_logs_at_once() {
        let gate = RepeatLog::per_second();
        let t0 = Instant::now();
        assert!(!gate.is_running());
        assert_eq!(gate.settle(), None, "nothing happened");
        gate.occurred_at(t0);
        gate.occurred_at(t0 + Duration::from_millis(10));
        gate.occurred_at(t0 + Duration::from_millis(20));
        assert!(gate.is_running());
        assert_eq!(gate.settle(), Some(2));
        assert!(!gate.is_running());
        assert_eq!(gate.settle(), None, "already reported");
        assert_eq!(
            gate.occurred_at(t0 + Duration::from_millis(30)),
            Verdict::Log { repeats: 0 },
            "a new episode starts with a line"
        );
    }
}
