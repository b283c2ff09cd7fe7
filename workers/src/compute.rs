//! The compute threads: where CPU-heavy jobs run, away from any async runtime.
//!
//! A fixed set of rayon threads (not tokio's `spawn_blocking`, whose pool grows to hundreds of
//! threads and whose tasks cannot be stopped) with two guards around it:
//! - *admission*: at most `max_jobs` jobs admitted at once, running or waiting; the next
//!   is refused at once with [`ComputeError::Full`] so the caller can answer 503 rather than
//!   queue without bound;
//! - *cancellation*: each job carries a cancel flag that its [`RandomsJob`] handle raises
//!   when dropped. Dropping a future does not stop work already on a rayon thread, so the
//!   kernel polls the flag between chunks instead.
//!
//! The HTTP layer calls [`Compute::try_count_randoms`] and awaits the returned job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::method::Method;
use crate::randoms::{Histogram, KernelError};

/// Why the pool did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// `max_jobs` jobs are already admitted; try again later.
    #[error("the compute threads are full ({max_jobs} jobs admitted)")]
    Full {
        /// The admission limit that was reached.
        max_jobs: usize,
    },
    /// The job stopped early because its handle was dropped or cancelled.
    #[error("the job was cancelled")]
    Cancelled,
    /// The job ended without a result (its thread panicked): a bug, not a client error.
    #[error("the compute job ended without a result")]
    Lost,
    /// The rayon pool could not be built at start-up.
    #[error("could not build the compute threads: {0}")]
    Build(#[from] rayon::ThreadPoolBuildError),
}

/// A fixed pool of compute threads with bounded admission.
pub struct Compute {
    pool: rayon::ThreadPool,
    /// Jobs admitted and not yet finished (running or waiting for a thread). Shared with
    /// each job's [`Admission`], which gives its slot back when the job really ends, not
    /// when its client goes away: until then the job still occupies the pool.
    admitted: Arc<AtomicUsize>,
    max_jobs: usize,
}

impl std::fmt::Debug for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compute")
            .field("threads", &self.threads())
            .field("in_flight", &self.in_flight())
            .field("max_jobs", &self.max_jobs)
            .finish()
    }
}

impl Compute {
    /// Builds a pool of `threads` threads (`None`: one per core) admitting at most
    /// `max_jobs` jobs at once.
    pub fn new(threads: Option<usize>, max_jobs: usize) -> Result<Self, ComputeError> {
        let mut builder =
            rayon::ThreadPoolBuilder::new().thread_name(|i| format!("loadlab-compute-{i}"));
        if let Some(threads) = threads {
            builder = builder.num_threads(threads);
        }
        let pool = builder.build()?;
        // Register the pool's series at start, so dashboards and `rate()` see zeros rather
        // than nothing until the first rejection or cancellation.
        metrics::gauge!("randoms_jobs_max").set(max_jobs as f64);
        metrics::gauge!("randoms_jobs_in_flight").increment(0.0);
        for method in Method::ALL {
            for name in [
                "randoms_numbers_total",
                "randoms_rejected_total",
                "randoms_cancelled_total",
            ] {
                metrics::counter!(name, "method" => method.as_str()).increment(0);
            }
        }
        Ok(Self {
            pool,
            admitted: Arc::new(AtomicUsize::new(0)),
            max_jobs,
        })
    }

    /// The number of compute threads.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Jobs admitted and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.admitted.load(Ordering::Relaxed)
    }

    /// The admission limit.
    pub fn max_jobs(&self) -> usize {
        self.max_jobs
    }

    /// Admits a job producing the histogram of `n` random numbers from `seed` with
    /// `method`, or refuses it at once with [`ComputeError::Full`]. Await the returned job
    /// for the histogram; drop it to cancel. Both methods are admitted, run and counted
    /// alike: a multinomial job is short, but it is still CPU work off the runtime.
    pub fn try_count_randoms(
        &self,
        n: u64,
        seed: u64,
        method: Method,
    ) -> Result<RandomsJob, ComputeError> {
        self.try_count_randoms_then(n, seed, method, |histogram| histogram)
    }

    /// As [`Compute::try_count_randoms`], and `then` turns the histogram into the job's
    /// result on the compute thread, before the reply: the service renders its JSON
    /// there, so the async runtime only parses, admits, awaits and writes. Rendering
    /// a thousand counts costs more than all the rest of a small job's request on its
    /// serving thread. `then` is not called for a cancelled job.
    pub fn try_count_randoms_then<T: Send + 'static>(
        &self,
        n: u64,
        seed: u64,
        method: Method,
        then: impl FnOnce(Histogram) -> T + Send + 'static,
    ) -> Result<RandomsJob<T>, ComputeError> {
        let admission = self.admit(method)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let (reply, outcome) = oneshot::channel();
        let flag = Arc::clone(&cancel);
        self.pool.spawn(move || {
            let started = Instant::now();
            let result = method.histogram(n, seed, &flag);
            let label = match &result {
                Ok(_) => {
                    metrics::counter!("randoms_numbers_total", "method" => method.as_str())
                        .increment(n);
                    "completed"
                }
                Err(KernelError::Cancelled) => {
                    metrics::counter!("randoms_cancelled_total", "method" => method.as_str())
                        .increment(1);
                    "cancelled"
                }
            };
            metrics::histogram!(
                "randoms_job_duration_seconds",
                "outcome" => label,
                "method" => method.as_str()
            )
            .record(started.elapsed().as_secs_f64());
            let result = result.map(then);
            // Free the slot before replying, so a client that sends its next request as
            // soon as it has this answer finds the slot free.
            drop(admission);
            // The receiver may be gone (client left): nothing to do then.
            let _ = reply.send(result);
        });
        Ok(RandomsJob {
            outcome,
            cancel: CancelOnDrop(cancel),
        })
    }

    fn admit(&self, method: Method) -> Result<Admission, ComputeError> {
        let max_jobs = self.max_jobs;
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_jobs).then_some(n + 1)
            })
            .map_err(|_| {
                metrics::counter!("randoms_rejected_total", "method" => method.as_str())
                    .increment(1);
                ComputeError::Full { max_jobs }
            })?;
        metrics::gauge!("randoms_jobs_in_flight").increment(1.0);
        Ok(Admission(Arc::clone(&self.admitted)))
    }
}

/// One admitted slot; gives it back when dropped.
struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("randoms_jobs_in_flight").decrement(1.0);
    }
}

/// Raises the cancel flag when dropped, so a handler future dropped by a client
/// disconnect stops its job.
#[derive(Debug)]
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// An admitted random-count job. Await [`RandomsJob::outcome`]; dropping the job (or
/// the future) cancels it.
/// `T` is the histogram, or what [`Compute::try_count_randoms_then`] made of it.
#[derive(Debug)]
pub struct RandomsJob<T = Histogram> {
    outcome: oneshot::Receiver<Result<T, KernelError>>,
    cancel: CancelOnDrop,
}

impl<T> RandomsJob<T> {
    /// Waits for the result. Works under any async runtime (or `block_on`).
    pub async fn outcome(mut self) -> Result<T, ComputeError> {
        let result = (&mut self.outcome).await;
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(KernelError::Cancelled)) => Err(ComputeError::Cancelled),
            Err(_) => Err(ComputeError::Lost),
        }
    }

    /// A flag that reads `true` once the job is cancelled (for tests and diagnostics).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::block_on;
    use std::sync::mpsc;

    #[test]
    fn then_makes_the_result_on_a_compute_thread() {
        let pool = Compute::new(Some(2), 4).expect("pool");
        let job = pool
            .try_count_randoms_then(10_000, 5, Method::Draw, |histogram| {
                let total: u64 = histogram.iter().map(|(_, count)| count).sum();
                (total, std::thread::current().name().map(str::to_owned))
            })
            .expect("admitted");
        let (total, thread) = block_on(job.outcome()).expect("a result");
        assert_eq!(total, 10_000);
        let thread = thread.expect("a named thread");
        assert!(thread.starts_with("loadlab-compute-"), "ran on {thread}");
        assert_eq!(pool.in_flight(), 0);
    }

    #[test]
    fn a_job_returns_its_histogram() {
        let pool = Compute::new(Some(2), 4).expect("pool");
        let job = pool
            .try_count_randoms(10_000, 5, Method::Draw)
            .expect("admitted");
        let histogram = block_on(job.outcome()).expect("completed");
        assert_eq!(histogram.total(), 10_000);
        assert_eq!(pool.in_flight(), 0);
    }

    #[test]
    fn a_multinomial_job_returns_its_histogram() {
        let pool = Compute::new(Some(2), 4).expect("pool");
        let n = 1_000_000_000_000_000;
        let job = pool.try_count_randoms(n, 5, Method::Multinomial);
        let histogram = block_on(job.expect("admitted").outcome()).expect("completed");
        assert_eq!(histogram.total(), n);
        assert_eq!(pool.in_flight(), 0);
    }

    #[test]
    fn admission_stops_at_max_jobs_and_frees_slots() {
        let pool = Compute::new(Some(1), 1).expect("pool");
        // Occupy the only thread so the admitted job cannot start or finish yet.
        let (release, wait) = mpsc::channel::<()>();
        let (started, is_started) = mpsc::channel::<()>();
        pool.pool.spawn(move || {
            let _ = started.send(());
            let _ = wait.recv();
        });
        is_started.recv().expect("blocker started");
        let job = pool
            .try_count_randoms(10, 1, Method::Draw)
            .expect("first is admitted");
        assert!(matches!(
            pool.try_count_randoms(10, 1, Method::Draw),
            Err(ComputeError::Full { max_jobs: 1 })
        ));
        release.send(()).expect("release");
        block_on(job.outcome()).expect("completed");
        assert!(
            pool.try_count_randoms(10, 1, Method::Draw).is_ok(),
            "slot given back"
        );
    }

    #[test]
    fn dropping_a_job_cancels_it() {
        let pool = Compute::new(Some(1), 2).expect("pool");
        let job = pool
            .try_count_randoms(u64::MAX / 2, 1, Method::Draw)
            .expect("admitted");
        let flag = job.cancel_flag();
        drop(job);
        assert!(flag.load(Ordering::Relaxed));
        // The slot comes back once the kernel notices the flag.
        while pool.in_flight() > 0 {
            std::thread::yield_now();
        }
    }
}
