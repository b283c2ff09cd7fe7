//! Precise waits for the open-loop driver ([`crate::driver`]): "wake me at this
//! instant", to the tens of microseconds.
//!
//! Why not `tokio::time::sleep_until`: tokio's timer wheel has millisecond ticks and
//! rounds every deadline up to the next one. The driver measures each request from the
//! instant it was *meant* to be sent, so a send up to a millisecond late would add up to a
//! millisecond to every latency it reports, more than a trivial request's whole answer on
//! loopback. On Linux a `timerfd` (a high-resolution kernel timer read through the
//! runtime's epoll) wakes the driver at the instant asked; elsewhere the tokio timer is
//! the fallback, and its rounding is then part of the figures.

use std::io;
use std::time::Instant;

/// A one-shot timer the driver re-arms for each wait; one per driver run.
pub(crate) struct Pacer {
    #[cfg(target_os = "linux")]
    fd: tokio::io::unix::AsyncFd<linux::Timer>,
}

impl Pacer {
    /// A timer registered with the current tokio runtime (which must enable I/O).
    pub(crate) fn new() -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            // `AsyncFd::new` is deprecated for an fd that may be closed while registered;
            // here the `AsyncFd` owns the timer, so the fd lives exactly as long as its
            // registration (and `register`, the replacement, is `unsafe`, which this
            // workspace forbids).
            #[allow(deprecated)]
            let fd = tokio::io::unix::AsyncFd::new(linux::Timer::new()?)?;
            Ok(Self { fd })
        }
        #[cfg(not(target_os = "linux"))]
        {
            Ok(Self {})
        }
    }

    /// Returns at `deadline` (at once if it has passed).
    pub(crate) async fn sleep_until(&self, deadline: Instant) -> io::Result<()> {
        let Some(wait) = deadline.checked_duration_since(Instant::now()) else {
            return Ok(());
        };
        if wait.is_zero() {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        {
            self.fd.get_ref().arm(wait)?;
            loop {
                let mut guard = self.fd.readable().await?;
                match guard.try_io(|timer| timer.get_ref().consume()) {
                    Ok(result) => return result,
                    // Readiness was stale (a wake-up from before this wait): wait again.
                    Err(_would_block) => continue,
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            tokio::time::sleep_until(deadline.into()).await;
            Ok(())
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::time::Duration;

    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

    /// A non-blocking monotonic `timerfd`.
    pub(super) struct Timer(TimerFd);

    impl Timer {
        pub(super) fn new() -> io::Result<Self> {
            let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
            Ok(Self(TimerFd::new(ClockId::CLOCK_MONOTONIC, flags)?))
        }

        /// Fires once, `after` from now.
        pub(super) fn arm(&self, after: Duration) -> io::Result<()> {
            let when = Expiration::OneShot(TimeSpec::from_duration(after));
            Ok(self.0.set(when, TimerSetTimeFlags::empty())?)
        }

        /// Reads the expiration count, which clears readiness; `WouldBlock` if the timer
        /// has not fired yet.
        pub(super) fn consume(&self) -> io::Result<()> {
            let mut count = [0u8; 8];
            nix::unistd::read(self.0.as_fd(), &mut count)?;
            Ok(())
        }
    }

    /// What `AsyncFd` registers with epoll.
    impl AsRawFd for Timer {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }
}
