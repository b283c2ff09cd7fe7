//! File descriptors: the process's limit (`RLIMIT_NOFILE`), raised at start, and the
//! connection cap derived from it.
//!
//! Every connection, upstream socket, health check, database file and runtime costs
//! a descriptor. A systemd service starts with a soft limit of 1024 (unless
//! `LimitNOFILE` says more) although its hard limit is usually far higher: the
//! binary raises the soft limit to the hard one at start ([`raise_soft_limit`], as Go
//! does since 1.19), then caps the connections each listener accepts
//! ([`connection_cap`]) so that clients cannot take the descriptors the rest of the
//! process needs (HAProxy derives its limits the same way from `maxconn`).

use std::io;

use rlimit::Resource;

/// The process's `RLIMIT_NOFILE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// What `open`, `socket` and `accept` are held to (EMFILE past it).
    pub soft: u64,
    /// The most the soft limit may be raised to without privileges.
    pub hard: u64,
}

/// The limit now.
pub fn current() -> io::Result<FdLimit> {
    let (soft, hard) = Resource::NOFILE.get()?;
    Ok(FdLimit { soft, hard })
}

/// Raises the soft limit to the hard limit; returns the limit before and after.
///
/// Call once, at start, before anything reads the limit.
pub fn raise_soft_limit() -> io::Result<(FdLimit, FdLimit)> {
    let before = current()?;
    if before.soft < before.hard {
        Resource::NOFILE.set(before.hard, before.hard)?;
    }
    Ok((before, current()?))
}

/// The default connection cap of a listener: the descriptors under `soft` left once
/// `reserved` are set aside for the rest of the process, divided by what one client
/// connection costs (`fds_per_connection`: 1 when requests are served in-process, 2
/// when each may hold an upstream socket too, 3 when that upstream is a listener of
/// this very process). At least 1.
pub fn connection_cap(soft: u64, reserved: u64, fds_per_connection: u64) -> usize {
    let spare = soft.saturating_sub(reserved) / fds_per_connection.max(1);
    usize::try_from(spare).unwrap_or(usize::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve_and_divides_by_the_cost_of_a_connection() {
        assert_eq!(connection_cap(1024, 124, 1), 900);
        assert_eq!(connection_cap(1024, 124, 3), 300);
        assert_eq!(connection_cap(100, 200, 1), 1, "never 0");
        assert_eq!(
            connection_cap(u64::MAX, 0, 0),
            usize::MAX,
            "no division by 0"
        );
    }

    #[test]
    fn raising_ends_at_the_hard_limit() {
        let (before, after) = raise_soft_limit().expect("getrlimit works");
        assert_eq!(after.hard, before.hard);
        assert_eq!(after.soft, after.hard);
    }
}
