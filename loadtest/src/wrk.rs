//! Running wrk and reading its result: the command line for one run, a bounded wait,
//! and the `LOADLAB_RESULT` line printed by `benches/wrk/report.lua`, turned into a
//! [`Measurement`].

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::process::run_logged;
use crate::rows::{HasRows, RowCheck};

/// wrk's per-request timeout: a request slower than this counts as a timeout error and
/// leaves the latency figures. Generous, so slow configurations show as slow.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The marker of the line that report.lua prints.
const RESULT_MARKER: &str = "LOADLAB_RESULT ";

/// How to run wrk.
#[derive(Debug, Clone)]
pub(crate) struct WrkCommand {
    /// The whole command line, `taskset` included when pinning.
    pub(crate) argv: Vec<String>,
    /// The run's length, to bound the wait.
    pub(crate) duration: Duration,
}

impl WrkCommand {
    /// A run of `duration` with `connections` over `threads` threads, `script` (relative
    /// to the package root, wrk's working folder) against `url`.
    pub(crate) fn new(
        pin: bool,
        threads: usize,
        connections: usize,
        duration: Duration,
        script: &str,
        url: &str,
    ) -> Self {
        let mut argv = crate::process::pinned(pin, 1);
        argv.push("wrk".into());
        argv.push(format!("-t{threads}"));
        argv.push(format!("-c{connections}"));
        argv.push(format!("-d{}s", duration.as_secs()));
        argv.push(format!("--timeout={}s", REQUEST_TIMEOUT.as_secs()));
        argv.push("--latency".into());
        argv.extend(["-s".into(), script.into(), url.into()]);
        Self { argv, duration }
    }

    /// Runs it from `cwd`, its output to `log`, and parses the result line.
    pub(crate) fn run(&self, cwd: &Path, log: &Path) -> Result<WrkResult, String> {
        // wrk stops itself after -d; the margin covers its start and a slow last request.
        let limit = self.duration + REQUEST_TIMEOUT + Duration::from_secs(20);
        parse_result(&run_logged("wrk", &self.argv, cwd, log, limit)?)
    }
}

/// What report.lua's `done()` prints: wrk's summary, in its own units (microseconds),
/// named as in the Lua script; [`Measurement::from_wrk`] turns it into the report's.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WrkResult {
    requests: u64,
    duration_us: u64,
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
    status: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    /// 2xx responses; `null` unless the script counted responses (insert, mixed).
    count_2xx: Option<u64>,
    /// Responses outside 2xx; `null` likewise.
    count_non2xx: Option<u64>,
    /// 201 responses: acknowledged inserts; `null` likewise.
    count_201: Option<u64>,
}

/// Finds and parses the `LOADLAB_RESULT` line in wrk's output.
pub(crate) fn parse_result(output: &str) -> Result<WrkResult, String> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_MARKER))
        .ok_or_else(|| {
            format!(
                "wrk printed no {}line: {}",
                RESULT_MARKER,
                crate::process::shorten(output, 300)
            )
        })?;
    serde_json::from_str(line).map_err(|e| format!("bad {}line `{line}`: {e}", RESULT_MARKER))
}

/// Socket-level errors as wrk counts them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SocketErrors {
    /// Failed connects.
    pub(crate) connect: u64,
    /// Failed or reset reads.
    pub(crate) read: u64,
    /// Failed writes.
    pub(crate) write: u64,
    /// Requests slower than wrk's `--timeout`.
    pub(crate) timeout: u64,
}

impl SocketErrors {
    /// All of them.
    pub(crate) fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// What a run's requests came to, the same in every mode and from every load generator
/// (wrk, h2load, the rate driver), so the reports, results.csv and results.json read
/// them alike.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Answers {
    /// Completed responses.
    pub(crate) requests: u64,
    /// Measured seconds (rate mode: from the first intended send to the last answer).
    pub(crate) seconds: f64,
    /// Socket errors (rate mode: timeouts include requests the run ended before
    /// sending).
    pub(crate) errors: SocketErrors,
    /// Responses outside 2xx. Where a wrk script does not count responses (healthz,
    /// randoms), wrk's own status errors: 4xx and 5xx.
    pub(crate) non_2xx: u64,
    /// Acknowledged inserts against rows found (insert and mixed).
    #[serde(flatten)]
    pub(crate) rows: RowCheck,
}

/// One measured run, in the report's units.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Measurement {
    /// Completed responses per second.
    pub(crate) rps: f64,
    /// Median latency, milliseconds.
    pub(crate) p50_ms: f64,
    /// 90th percentile latency, milliseconds.
    pub(crate) p90_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub(crate) p99_ms: f64,
    /// 99.9th percentile latency, milliseconds.
    pub(crate) p999_ms: f64,
    /// Slowest response, milliseconds.
    pub(crate) max_ms: f64,
    /// What its requests came to (flattened: results.json keeps one level).
    #[serde(flatten)]
    pub(crate) answers: Answers,
    /// What TLS and ALPN settled on, where the load generator says (h2load: `TLSv1.3,
    /// TLS_AES_128_GCM_SHA256, h2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) negotiated: Option<String>,
}

impl Measurement {
    /// Converts wrk's figures.
    pub(crate) fn from_wrk(r: &WrkResult) -> Self {
        let seconds = r.duration_us as f64 / 1e6;
        let ms = |us: u64| us as f64 / 1e3;
        Self {
            rps: if seconds > 0.0 {
                r.requests as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms(r.p50_us),
            p90_ms: ms(r.p90_us),
            p99_ms: ms(r.p99_us),
            p999_ms: ms(r.p999_us),
            max_ms: ms(r.max_us),
            answers: Answers {
                requests: r.requests,
                seconds,
                errors: SocketErrors {
                    connect: r.connect,
                    read: r.read,
                    write: r.write,
                    timeout: r.timeout,
                },
                non_2xx: r.count_non2xx.unwrap_or(r.status),
                rows: RowCheck {
                    inserts_acked: r.count_2xx.and(r.count_201),
                    ..RowCheck::default()
                },
            },
            negotiated: None,
        }
    }
}

impl HasRows for Measurement {
    fn rows_mut(&mut self) -> &mut RowCheck {
        &mut self.answers.rows
    }
}

/// Socket errors in words: `0`, or `3 (read 2, timeout 1)`.
pub(crate) fn errors(e: SocketErrors) -> String {
    if e.total() == 0 {
        return "0".to_owned();
    }
    let parts: Vec<String> = [
        ("connect", e.connect),
        ("read", e.read),
        ("write", e.write),
        ("timeout", e.timeout),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{what} {n}"))
    .collect();
    format!("{} ({})", e.total(), parts.join(", "))
}
