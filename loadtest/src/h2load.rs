//! Running h2load (Debian's `nghttp2-client`) for the h2 rows (`front-h2`, `nginx-h2`,
//! `haproxy-h2`): wrk speaks no HTTP/2. The command line of one run, a bounded wait,
//! and its result turned into the same [`Measurement`] as wrk's.
//!
//! h2load prints only the mean and spread of its request times, so the percentiles come
//! from its per-request log (`--log-file`: start time, status, microseconds to the end of
//! the response, one request a line), read into an HDR histogram: from the actual send,
//! as wrk measures. Its summary gives the duration, the errors and the status classes.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::process::run_logged;
use crate::rows::RowCheck;
use crate::scenario::Scenario;
use crate::wrk::{Answers, Measurement, SocketErrors};

/// The most concurrent streams any h2 row's server allows per connection (nginx's
/// `http2_max_concurrent_streams` default, and loadlab's front's): `--h2-streams` above
/// it would queue in the client, not the server.
pub(crate) const MAX_STREAMS: usize = 128;
/// The highest latency the histogram holds, microseconds: a minute, far past any run.
const HIGHEST_US: u64 = 60_000_000;

/// How to run h2load.
#[derive(Debug, Clone)]
pub(crate) struct H2loadCommand {
    /// The whole command line, `taskset` included when pinning.
    pub(crate) argv: Vec<String>,
    /// The run's length, to bound the wait.
    pub(crate) duration: Duration,
}

/// The shape of one h2load run: its clients, streams and threads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct H2Load {
    /// Pin h2load to CPU 1 (`--pin`), as wrk.
    pub(crate) pin: bool,
    /// Threads (`-t`), at most `clients`.
    pub(crate) threads: usize,
    /// Connections (`-c`).
    pub(crate) clients: usize,
    /// Concurrent streams per connection (`-m`).
    pub(crate) streams: usize,
}

impl H2Load {
    /// The h2load shape that keeps `connections` requests in flight, as wrk's
    /// `connections` do: `connections / streams` connections (rounded up) of `streams`
    /// streams each; `threads` as wrk's.
    pub(crate) fn for_concurrency(
        pin: bool,
        threads: usize,
        connections: usize,
        streams: usize,
    ) -> Self {
        let clients = connections.div_ceil(streams.max(1)).max(1);
        Self {
            pin,
            threads: threads.clamp(1, clients),
            clients,
            streams: streams.max(1),
        }
    }
}

impl H2loadCommand {
    /// A run of `duration` against `url` (its path the scenario's), each request's line
    /// in `request_log`. Only the scenarios that send one kind of request can run
    /// (see [`unsupported`]).
    pub(crate) fn new(
        shape: H2Load,
        duration: Duration,
        scenario: Scenario,
        url: &str,
        request_log: &str,
    ) -> Self {
        let mut argv = crate::process::pinned(shape.pin, 1);
        argv.push("h2load".into());
        argv.push(format!("-t{}", shape.threads));
        argv.push(format!("-c{}", shape.clients));
        argv.push(format!("-m{}", shape.streams));
        argv.push(format!("-D{}", duration.as_secs()));
        argv.push(format!("--log-file={request_log}"));
        if let Some(body) = scenario.body_file() {
            argv.extend(["-d".into(), body.into()]);
            argv.extend(["-H".into(), "content-type: application/json".into()]);
        }
        argv.push(url.into());
        Self { argv, duration }
    }

    /// Runs it from `cwd`, its output to `log`, and reads its summary and
    /// `request_log` (the file named in the command).
    pub(crate) fn run(
        &self,
        cwd: &Path,
        log: &Path,
        request_log: &Path,
    ) -> Result<H2loadResult, String> {
        // h2load appends to its --log-file: a log left by the warm-up (or an earlier
        // run in the same folder) would count its requests, and its 201s as inserts
        // acknowledged, in this run.
        match std::fs::remove_file(request_log) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", request_log.display())),
        }
        // h2load stops itself after -D; the margin covers its TLS handshakes.
        let limit = self.duration + Duration::from_secs(20);
        let output = run_logged("h2load", &self.argv, cwd, log, limit)?;
        let summary = parse_summary(&output)?;
        let file = std::fs::File::open(request_log)
            .map_err(|e| format!("opening {}: {e}", request_log.display()))?;
        let requests = parse_request_log(std::io::BufReader::new(file))?;
        Ok(H2loadResult { summary, requests })
    }
}

/// Why h2load cannot run `scenario`, if it cannot: it sends one request, the same each
/// time, so the mixed scenario's pattern is out of its reach.
pub(crate) fn unsupported(scenario: Scenario) -> Option<&'static str> {
    (scenario == Scenario::Mixed)
        .then_some("h2load sends one kind of request, so it cannot send the mixed pattern")
}

/// What h2load's summary says.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Summary {
    /// `finished in`: the measured duration, seconds.
    pub(crate) seconds: f64,
    /// `done`: requests completed, with or without an answer.
    pub(crate) done: u64,
    /// `errored`: requests that failed short of an HTTP answer (a reset stream, a lost
    /// connection), `timeout` among them.
    pub(crate) errored: u64,
    /// `timeout`: requests whose connection timed out.
    pub(crate) timeout: u64,
    /// `status codes`: answers by class, 2xx, 3xx, 4xx, 5xx.
    pub(crate) status: [u64; 4],
    /// `TLS Protocol`, e.g. `TLSv1.3`; `None` over cleartext.
    pub(crate) tls: Option<String>,
    /// `Cipher`.
    pub(crate) cipher: Option<String>,
    /// `Application protocol`: `h2` when ALPN chose HTTP/2.
    pub(crate) protocol: Option<String>,
}

impl Summary {
    /// TLS version, cipher and protocol in words, for the report's notes.
    pub(crate) fn negotiated(&self) -> String {
        let parts: Vec<&str> = [&self.tls, &self.cipher, &self.protocol]
            .into_iter()
            .filter_map(Option::as_deref)
            .collect();
        parts.join(", ")
    }
}

/// What the per-request log says: the latency of every answered request, and the 201s.
#[derive(Debug, Clone)]
pub(crate) struct RequestLog {
    /// Microseconds from each request's send to the end of its answer.
    pub(crate) latency_us: Histogram<u64>,
    /// Answers with status 201 (acknowledged inserts).
    pub(crate) created: u64,
}

/// One h2load run: its summary and its per-request log.
#[derive(Debug, Clone)]
pub(crate) struct H2loadResult {
    pub(crate) summary: Summary,
    pub(crate) requests: RequestLog,
}

/// Parses h2load's standard output.
pub(crate) fn parse_summary(output: &str) -> Result<Summary, String> {
    let mut s = Summary::default();
    let mut finished = false;
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("finished in ") {
            let first = rest.split(',').next().unwrap_or_default();
            s.seconds = seconds(first).ok_or_else(|| format!("bad duration in `{line}`"))?;
            finished = true;
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            s.done = count_of(rest, "done", line)?;
            s.errored = count_of(rest, "errored", line)?;
            s.timeout = count_of(rest, "timeout", line)?;
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            for (i, class) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                s.status[i] = count_of(rest, class, line)?;
            }
        } else if let Some(v) = line.strip_prefix("TLS Protocol: ") {
            s.tls = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("Cipher: ") {
            s.cipher = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("Application protocol: ") {
            s.protocol = Some(v.to_owned());
        }
    }
    if !finished {
        return Err(format!(
            "h2load printed no `finished in` line: {}",
            crate::process::shorten(output, 300)
        ));
    }
    Ok(s)
}

/// `11248` from `11248 done` in `11248 total, ..., 11248 done, ...`.
fn count_of(list: &str, name: &str, line: &str) -> Result<u64, String> {
    list.split(',')
        .find_map(|item| {
            let (n, what) = item.trim().split_once(' ')?;
            (what == name).then(|| n.parse().ok())?
        })
        .ok_or_else(|| format!("no `{name}` count in `{line}`"))
}

/// Seconds from h2load's durations: `1.00s`, `750.12ms`, `310us`.
fn seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else {
        (text.strip_suffix('s')?, 1.0)
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// Reads h2load's `--log-file`: `start<TAB>status<TAB>microseconds` per request; a status
/// of -1 is a request that got no answer, left out of the latencies.
pub(crate) fn parse_request_log(reader: impl std::io::BufRead) -> Result<RequestLog, String> {
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, HIGHEST_US, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let mut created = 0;
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("reading h2load's request log: {e}"))?;
        let mut fields = line.split('\t');
        let (Some(_start), Some(status), Some(elapsed), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "h2load's request log, line {}: expected 3 tab-separated fields, got `{line}`",
                number + 1
            ));
        };
        let bad = || format!("h2load's request log, line {}: `{line}`", number + 1);
        let status: i64 = status.parse().map_err(|_| bad())?;
        let elapsed: u64 = elapsed.parse().map_err(|_| bad())?;
        if status < 0 {
            continue;
        }
        created += u64::from(status == 201);
        latency_us.saturating_record(elapsed.clamp(1, HIGHEST_US));
    }
    Ok(RequestLog {
        latency_us,
        created,
    })
}

impl Measurement {
    /// Converts h2load's figures: every answer counts as a response (as wrk counts
    /// them), requests that got none as socket errors (`read`: a reset stream or a lost
    /// connection; `timeout`), 201s as acknowledged inserts when `inserts`.
    pub(crate) fn from_h2load(r: &H2loadResult, inserts: bool) -> Self {
        let s = &r.summary;
        let h = &r.requests.latency_us;
        let ms = |quantile: f64| h.value_at_quantile(quantile) as f64 / 1e3;
        let answered: u64 = s.status.iter().sum();
        Self {
            rps: if s.seconds > 0.0 {
                answered as f64 / s.seconds
            } else {
                0.0
            },
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1e3,
            answers: Answers {
                requests: answered,
                seconds: s.seconds,
                errors: SocketErrors {
                    read: s.errored.saturating_sub(s.timeout),
                    timeout: s.timeout,
                    ..SocketErrors::default()
                },
                non_2xx: s.status[1..].iter().sum(),
                rows: RowCheck {
                    inserts_acked: inserts.then_some(r.requests.created),
                    ..RowCheck::default()
                },
            },
            negotiated: Some(s.negotiated()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_request_log(text: &str) -> Result<RequestLog, String> {
        parse_request_log(std::io::BufReader::new(text.as_bytes()))
    }

    /// h2load 1.52's output for `-c 4 -m 8 -D 1` over TLS (nginx, `return 200`),
    /// captured on this machine.
    const SAMPLE: &str = "starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 0s of warm-up time and 1s \
of main duration for measurements.
Warm-up started for thread #0.
progress: 25% of clients started
progress: 100% of clients started
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_256_GCM_SHA384
Server Temp Key: X25519 253 bits
Application protocol: h2
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 1.00s, 11248.00 req/s, 747.13KB/s
requests: 11248 total, 11280 started, 11248 done, 11240 succeeded, 8 failed, 3 errored, 1 timeout
status codes: 11240 2xx, 0 3xx, 5 4xx, 0 5xx
traffic: 747.13KB (765060) total, 527.25KB (539904) headers (space savings 51.02%), \
21.97KB (22496) data
                     min         max         mean         sd        +/- sd
time for request:       55us     39.98ms      1.96ms      4.16ms    94.35%
time for connect:    63.69ms     85.23ms     79.79ms     10.73ms    75.00%
time to 1st byte:    84.79ms     86.18ms     85.77ms       657us    75.00%
req/s           :    2701.93     2978.20     2810.84      119.94    75.00%
";

    #[test]
    fn the_summary_of_a_captured_run_parses() {
        let s = parse_summary(SAMPLE).expect("parses");
        assert_eq!(s.seconds, 1.0);
        assert_eq!((s.done, s.errored, s.timeout), (11248, 3, 1));
        assert_eq!(s.status, [11240, 0, 5, 0]);
        assert_eq!(s.negotiated(), "TLSv1.3, TLS_AES_256_GCM_SHA384, h2");
    }

    #[test]
    fn durations_in_every_unit_parse() {
        assert_eq!(seconds("4.00s"), Some(4.0));
        assert_eq!(seconds("750ms"), Some(0.75));
        assert_eq!(seconds("310us"), Some(0.000_31));
        assert_eq!(seconds("fast"), None);
    }

    #[test]
    fn output_without_a_result_is_an_error_that_quotes_it() {
        let e = parse_summary("client could not connect to host\n").expect_err("no result");
        assert!(e.contains("could not connect"), "{e}");
        let e = parse_summary("finished in 1.00s, 1 req/s\nrequests: 1 total\n")
            .expect_err("no counts");
        assert!(e.contains("no `done` count"), "{e}");
    }

    #[test]
    fn the_request_log_gives_percentiles_and_created_rows() {
        // 100 answers of 1..=100 ms, one 201, one request without an answer.
        let mut log = String::new();
        for i in 1..=100u64 {
            let status = if i == 7 { 201 } else { 200 };
            log.push_str(&format!("1796169778280995\t{status}\t{}\n", i * 1000));
        }
        log.push_str("1796169778280999\t-1\t5\n");
        let r = read_request_log(&log).expect("parses");
        assert_eq!(r.latency_us.len(), 100);
        assert_eq!(r.created, 1);
        let p50 = r.latency_us.value_at_quantile(0.5);
        assert!((49_900..=50_100).contains(&p50), "p50 {p50}");
        assert!(read_request_log("1\t200\n").is_err());
        assert!(read_request_log("1\tok\t3\n").is_err());
    }

    #[test]
    fn a_result_becomes_the_reports_measurement() {
        let summary = parse_summary(SAMPLE).expect("parses");
        let log = "1\t201\t1000\n2\t201\t3000\n3\t500\t2000\n";
        let requests = read_request_log(log).expect("parses");
        let m = Measurement::from_h2load(&H2loadResult { summary, requests }, true);
        assert_eq!(m.answers.requests, 11245);
        assert_eq!(m.rps, 11245.0);
        assert_eq!(m.answers.non_2xx, 5);
        assert_eq!(
            (
                m.answers.errors.read,
                m.answers.errors.timeout,
                m.answers.errors.total()
            ),
            (2, 1, 3)
        );
        assert_eq!(m.answers.rows.inserts_acked, Some(2));
        assert!((m.max_ms - 3.0).abs() < 0.01, "{m:?}");
    }

    #[test]
    fn a_stale_request_log_is_not_counted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("requests.tsv");
        // What a warm-up run left: a 201 that is not this run's.
        std::fs::write(&log, "1\t201\t5\n").expect("written");
        // A stand-in for h2load: appends one request to the log, prints a summary.
        let script = format!(
            "printf '2\\t201\\t7\\n' >> {}; printf '%s\\n' 'finished in 1.00s, 1 req/s' \
             'requests: 1 total, 1 started, 1 done, 1 succeeded, 0 failed, 0 errored, 0 timeout' \
             'status codes: 1 2xx, 0 3xx, 0 4xx, 0 5xx'",
            log.display()
        );
        let command = H2loadCommand {
            argv: vec!["sh".into(), "-c".into(), script],
            duration: Duration::from_secs(1),
        };
        let result = command
            .run(dir.path(), &dir.path().join("out.txt"), &log)
            .expect("runs");
        assert_eq!(result.requests.created, 1);
        assert_eq!(result.requests.latency_us.len(), 1);
    }

    #[test]
    fn the_shape_keeps_the_concurrency_of_wrks_connections() {
        let shape = H2Load::for_concurrency(false, 1, 64, 8);
        assert_eq!((shape.clients, shape.streams, shape.threads), (8, 8, 1));
        let shape = H2Load::for_concurrency(false, 4, 10, 8);
        assert_eq!((shape.clients, shape.threads), (2, 2));
        let cmd = H2loadCommand::new(
            shape,
            Duration::from_secs(3),
            Scenario::Insert,
            "https://127.0.0.1:1/app/insert",
            "{run_dir}/requests.tsv",
        );
        let line = cmd.argv.join(" ");
        assert!(
            line.starts_with("h2load -t2 -c2 -m8 -D3 --log-file="),
            "{line}"
        );
        assert!(line.contains("-d benches/h2load/ticket.json"), "{line}");
    }
}
