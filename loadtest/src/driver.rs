//! The open-loop driver of `--mode rate`: sends requests at a fixed rate over keep-alive
//! connections and measures each one from the instant it was *meant* to be sent.
//!
//! Words used here:
//! - the *schedule*: request `i` is intended at `start + i / rate`, and goes to
//!   connection `i mod connections`;
//! - *corrected* latency: from the intended send to the end of the response. A server that
//!   stalls delays every request scheduled during the stall, not only those in flight, and
//!   this is the latency that counts all of them (coordinated omission: a closed-loop
//!   driver like wrk simply sends less while the server stalls);
//! - *uncorrected* latency: from the actual send; kept to show the difference;
//! - *send lag*: how late the driver itself sent a request whose connection was free, a
//!   measure of the driver, not of the server.
//!
//! One HTTP/1.1 request is in flight per connection (no pipelining, like wrk2): a
//! connection still waiting for an answer when its next request is due sends that request
//! as soon as the answer comes, so a slow server shows as late sends, and lateness
//! counts. Everything runs on one thread (a current-thread tokio runtime, hyper's client
//! connections), as wrk runs with `-t1`, leaving the other cores to the servers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;

use crate::pacer::Pacer;
use crate::requests::{RequestMaker, Target};
use crate::scenario::Scenario;
use crate::wrk::{REQUEST_TIMEOUT, SocketErrors};

/// Largest latency the histograms hold, microseconds; larger values are clamped to it.
const HIGHEST_US: u64 = 3_600_000_000;

/// One fixed-rate run.
#[derive(Debug, Clone)]
pub(crate) struct RatePlan {
    /// Base URL of the configuration (scenario paths are appended).
    pub(crate) base: String,
    /// What to send.
    pub(crate) scenario: Scenario,
    /// Keep-alive connections.
    pub(crate) connections: usize,
    /// Intended requests per second.
    pub(crate) rate: f64,
    /// How long the schedule runs.
    pub(crate) duration: Duration,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub(crate) struct Drive {
    /// Latency from the intended send, microseconds, of every answered request.
    pub(crate) corrected: Histogram<u64>,
    /// Latency from the actual send, microseconds.
    pub(crate) uncorrected: Histogram<u64>,
    /// Send lag, microseconds.
    pub(crate) send_lag: Histogram<u64>,
    /// Answered requests (any status).
    pub(crate) answered: u64,
    /// Socket errors; `timeout` also counts requests never sent because the run ended.
    pub(crate) errors: SocketErrors,
    /// Answers outside 2xx.
    pub(crate) non_2xx: u64,
    /// 201 answers: acknowledged inserts.
    pub(crate) created: u64,
    /// From the start of the schedule to the last answer, at least the duration.
    pub(crate) seconds: f64,
    /// Share of the run the driver's thread spent on a CPU (0-1); `None` where the
    /// platform cannot tell.
    pub(crate) busy: Option<f64>,
    /// Share of the run the driver's thread was ready to run but waiting for a CPU
    /// (0-1): on a machine whose cores the servers keep busy, the driver is short of
    /// time without being on a CPU; `None` where the platform cannot tell.
    pub(crate) waiting: Option<f64>,
}

impl Drive {
    /// Answered requests per second.
    pub(crate) fn achieved_rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.answered as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Runs `plan` on this thread and returns its figures. Fails only when the run could not
/// be set up (a bad URL, no runtime); a server that refuses or fails shows in the errors.
pub(crate) fn drive(plan: &RatePlan) -> Result<Drive, String> {
    if !(plan.rate.is_finite() && plan.rate > 0.0) || plan.connections == 0 {
        return Err(format!(
            "a rate run needs a positive rate and connections, got {} req/s over {}",
            plan.rate, plan.connections
        ));
    }
    let target = Target::parse(&plan.base)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the driver's runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    let (cpu_before, waited_before) = (thread_cpu(), thread_waited());
    let wall = Instant::now();
    let mut drive = local.block_on(&runtime, run(plan, target))?;
    let share = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
        (Some(before), Some(after)) => {
            Some(after.saturating_sub(before).as_secs_f64() / wall.elapsed().as_secs_f64())
        }
        _ => None,
    };
    drive.busy = share(cpu_before, thread_cpu());
    drive.waiting = share(waited_before, thread_waited());
    Ok(drive)
}

/// State shared by the dispatcher and the connection tasks (one thread: `Rc`, `Cell`).
struct Shared {
    start: Instant,
    /// Seconds between two intended sends.
    interval: f64,
    connections: usize,
    /// Requests still unsent after this are abandoned (counted as timeouts).
    give_up: Instant,
    /// Set once every intended send has been handed out.
    closed: Cell<bool>,
    tally: RefCell<Tally>,
}

impl Shared {
    fn intended(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 * self.interval)
    }
}

/// One connection's share of the schedule.
#[derive(Default)]
struct Slot {
    /// Intended sends handed to this connection so far.
    due: Cell<u64>,
    notify: Notify,
}

struct Tally {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    send_lag: Histogram<u64>,
    answered: u64,
    errors: SocketErrors,
    non_2xx: u64,
    created: u64,
    last_answer: Instant,
}

async fn run(plan: &RatePlan, target: Target) -> Result<Drive, String> {
    let histogram = || {
        Histogram::<u64>::new_with_bounds(1, HIGHEST_US, 3)
            .map_err(|e| format!("creating a histogram: {e}"))
    };
    // Connect first, outside the schedule: the first requests should not pay for it.
    let mut senders = Vec::with_capacity(plan.connections);
    let mut connect_errors = 0;
    for _ in 0..plan.connections {
        match connect(&target).await {
            Ok(sender) => senders.push(Some(sender)),
            Err(_) => {
                connect_errors += 1;
                senders.push(None);
            }
        }
    }
    // A little ahead, so the first sends are not already late.
    let start = Instant::now() + Duration::from_millis(5);
    let end = start + plan.duration;
    let shared = Rc::new(Shared {
        start,
        interval: 1.0 / plan.rate,
        connections: plan.connections,
        give_up: end + REQUEST_TIMEOUT,
        closed: Cell::new(false),
        tally: RefCell::new(Tally {
            corrected: histogram()?,
            uncorrected: histogram()?,
            send_lag: histogram()?,
            answered: 0,
            errors: SocketErrors {
                connect: connect_errors,
                ..SocketErrors::default()
            },
            non_2xx: 0,
            created: 0,
            last_answer: start,
        }),
    });
    let slots: Vec<Rc<Slot>> = (0..plan.connections)
        .map(|_| Rc::new(Slot::default()))
        .collect();
    let mut tasks = Vec::with_capacity(plan.connections);
    for (k, (slot, sender)) in slots.iter().zip(senders).enumerate() {
        let maker = RequestMaker::new(plan.scenario, target.clone(), seed(k));
        let connection = Connection {
            index: k as u64,
            shared: Rc::clone(&shared),
            slot: Rc::clone(slot),
            target: target.clone(),
            sender,
            maker,
        };
        tasks.push(tokio::task::spawn_local(connection.run()));
    }
    dispatch(&shared, &slots, end).await?;
    for task in tasks {
        task.await
            .map_err(|e| format!("a connection task failed: {e}"))?;
    }
    // Every task has ended, so this is the last reference.
    let tally = Rc::try_unwrap(shared)
        .map_err(|_| "a connection task outlived the run".to_owned())?
        .tally
        .into_inner();
    let seconds = tally
        .last_answer
        .saturating_duration_since(start)
        .max(plan.duration)
        .as_secs_f64();
    Ok(Drive {
        corrected: tally.corrected,
        uncorrected: tally.uncorrected,
        send_lag: tally.send_lag,
        answered: tally.answered,
        errors: tally.errors,
        non_2xx: tally.non_2xx,
        created: tally.created,
        seconds,
        busy: None,
        waiting: None,
    })
}

/// Hands each intended send to its connection at its intended instant, then closes.
async fn dispatch(shared: &Shared, slots: &[Rc<Slot>], end: Instant) -> Result<(), String> {
    let pacer = Pacer::new().map_err(|e| format!("creating the driver's timer: {e}"))?;
    let n = slots.len() as u64;
    let mut i: u64 = 0;
    loop {
        let next = shared.intended(i);
        if next >= end {
            break;
        }
        pacer
            .sleep_until(next)
            .await
            .map_err(|e| format!("the driver's timer failed: {e}"))?;
        // Everything due by now, in one go: at high rates one wake-up serves several.
        let now = Instant::now();
        while shared.intended(i) <= now && shared.intended(i) < end {
            let slot = &slots[(i % n) as usize];
            slot.due.set(slot.due.get() + 1);
            slot.notify.notify_one();
            i += 1;
        }
    }
    shared.closed.set(true);
    for slot in slots {
        slot.notify.notify_one();
    }
    Ok(())
}

/// One keep-alive connection and its share of the schedule.
struct Connection {
    index: u64,
    shared: Rc<Shared>,
    slot: Rc<Slot>,
    target: Target,
    /// `None` until (re)connected.
    sender: Option<SendRequest<Full<Bytes>>>,
    maker: RequestMaker,
}

/// How one exchange ended.
enum Outcome {
    Answered(hyper::StatusCode),
    Connect,
    Write,
    Read,
    Timeout,
}

impl Connection {
    async fn run(mut self) {
        let shared = Rc::clone(&self.shared);
        let n = shared.connections as u64;
        let mut sent: u64 = 0;
        // When the connection last became free: a send before its intended time is
        // impossible, and one after both is the driver's lateness.
        let mut free_at = shared.start;
        loop {
            if sent < self.slot.due.get() {
                let intended = shared.intended(self.index + sent * n);
                sent += 1;
                if Instant::now() >= shared.give_up {
                    shared.tally.borrow_mut().errors.timeout += 1;
                    continue;
                }
                let sent_at = Instant::now();
                let outcome = self.exchange().await;
                let done = Instant::now();
                let mut tally = shared.tally.borrow_mut();
                let lag = sent_at.saturating_duration_since(intended.max(free_at));
                tally.send_lag.saturating_record(micros(lag));
                match outcome {
                    Outcome::Answered(status) => {
                        tally
                            .corrected
                            .saturating_record(micros(done.saturating_duration_since(intended)));
                        tally.uncorrected.saturating_record(micros(done - sent_at));
                        tally.answered += 1;
                        tally.last_answer = tally.last_answer.max(done);
                        if !status.is_success() {
                            tally.non_2xx += 1;
                        }
                        if status == hyper::StatusCode::CREATED {
                            tally.created += 1;
                        }
                    }
                    Outcome::Connect => tally.errors.connect += 1,
                    Outcome::Write => tally.errors.write += 1,
                    Outcome::Read => tally.errors.read += 1,
                    Outcome::Timeout => tally.errors.timeout += 1,
                }
                free_at = done;
            } else if shared.closed.get() {
                return;
            } else {
                self.slot.notify.notified().await;
            }
        }
    }

    /// Sends the next request and reads the whole answer, within [`REQUEST_TIMEOUT`].
    /// On any failure the connection is dropped and the next request reconnects.
    async fn exchange(&mut self) -> Outcome {
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, self.try_exchange()).await;
        match outcome {
            Ok(Outcome::Answered(status)) => Outcome::Answered(status),
            Ok(failed) => {
                self.sender = None;
                failed
            }
            Err(_elapsed) => {
                self.sender = None;
                Outcome::Timeout
            }
        }
    }

    async fn try_exchange(&mut self) -> Outcome {
        let sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => match connect(&self.target).await {
                Ok(sender) => sender,
                Err(_) => return Outcome::Connect,
            },
        };
        let sender = self.sender.insert(sender);
        let Ok(request) = self.maker.next_request() else {
            return Outcome::Write;
        };
        if sender.ready().await.is_err() {
            return Outcome::Write;
        }
        let Ok(response) = sender.send_request(request).await else {
            return Outcome::Read;
        };
        let status = response.status();
        match response.into_body().collect().await {
            Ok(_) => Outcome::Answered(status),
            Err(_) => Outcome::Read,
        }
    }
}

/// Opens one keep-alive HTTP/1.1 connection; its I/O runs as a local task.
async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(target.authority.as_str())
        .await
        .map_err(|e| format!("connecting to {}: {e}", target.authority))?;
    // Requests are small and answered one at a time: Nagle would only add delay.
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {}: {e}", target.authority))?;
    tokio::task::spawn_local(async move {
        // Its end (closed, reset) shows in the next exchange on this connection.
        let _ = connection.await;
    });
    Ok(sender)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A per-connection seed that also differs between runs, so two runs do not insert the
/// same tickets in the same order.
fn seed(k: usize) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now ^ (k as u64 + 1).wrapping_mul(7919)
}

/// CPU time of the calling thread.
#[cfg(target_os = "linux")]
fn thread_cpu() -> Option<Duration> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_THREAD).ok()?;
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Some(time(usage.user_time()) + time(usage.system_time()))
}

/// Not measured off Linux.
#[cfg(not(target_os = "linux"))]
fn thread_cpu() -> Option<Duration> {
    None
}

/// How long the calling thread has waited for a CPU while ready to run (the second
/// field of `/proc/thread-self/schedstat`); `None` where the kernel does not say.
fn thread_waited() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    run_queue_wait(&stat)
}

/// The run-queue wait of a `schedstat` line: `on-CPU-ns waiting-ns timeslices`.
pub(crate) fn run_queue_wait(schedstat: &str) -> Option<Duration> {
    let waited: u64 = schedstat.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(waited))
}
