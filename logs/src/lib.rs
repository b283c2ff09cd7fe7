//! loadlab's logs beyond `tracing`: log hygiene shared by every crate that logs an error
//! which can repeat per request or per attempt (a full store, a failing `accept`):
//! [`RepeatLog`]; and the access log ([`access`]), one line per request, written by a
//! thread of its own.
//!
//! One log line per failed request wrote 84 MB in 12 s on a full disk, and the log
//! usually lives on the disk that is full. So a place that can fail repeatedly asks its
//! [`RepeatLog`] before it logs: the first occurrence of an episode is logged at once,
//! then at most one line per interval, carrying how many occurrences that line stands
//! for; when the condition ends, [`RepeatLog::settle`] hands back what was not reported
//! yet, for a closing line.
//!
//! The gate decides *whether* to log; the caller logs, with its own target, level,
//! message and fields, so the lines read like every other line of that place. No async
//! runtime and no HTTP types: the workers crate and the front use it alike.
//!
//! An *episode* is a run of occurrences from the first to [`RepeatLog::settle`].
//!
//! # Layout
//! - [`repeat`]: [`RepeatLog`] and its [`Verdict`].
//! - [`access`]: the access log's writer thread ([`access::AccessLog`]) and the handle
//!   the serving threads log through ([`access::AccessLogger`]); [`access_line`]: one
//!   line, [`access_line::AccessRecord`], as JSON or in the combined format.

pub mod access;
pub mod access_line;
pub mod repeat;

pub use repeat::{ONE_SECOND, RepeatLog, Verdict};
