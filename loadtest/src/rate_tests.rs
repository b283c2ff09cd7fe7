//! Tests of rate mode: the coordinated-omission correction against a real stalling
//! server (loopback, port 0), the rate flags, the SLO headline, and the report files.

use std::path::Path;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::cli::{Flags, Ladder, Mode, Settings};
use crate::driver::{RatePlan, drive};
use crate::rate::{RateAttempt, RateCell, RateMeasurement, slo_rows};
use crate::requests::{RequestMaker, Target};
use crate::scenario::Scenario;
use crate::stall::{Stall, StallServer};
use crate::wrk::{Answers, SocketErrors};

fn settings(args: &[&str]) -> Result<Settings, String> {
    let flags = Flags::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    Settings::from_flags(flags, Path::new("/repo"), "STAMP").map_err(|e| format!("{e:#}"))
}

/// The server holds every request arriving in the first 200 ms of each second. Driven at
/// 400 req/s over 2 connections (far under what it serves), about 20% of the intended
/// sends fall in a stall: measured from the intended send, p99 is most of the 200 ms.
/// Measured from the actual send, only the one request per connection caught in each
/// stall is slow (2 a second, 0.5%), so p99 stays small. Both are asserted: losing the
/// correction fails the first, measuring the uncorrected figure from the schedule the
/// second.
#[test]
fn a_stall_counts_against_every_request_scheduled_during_it() {
    let server = StallServer::start(0, Stall::default()).expect("binding 127.0.0.1:0");
    let plan = RatePlan {
        base: server.url(),
        scenario: Scenario::Healthz,
        connections: 2,
        rate: 400.0,
        duration: Duration::from_secs(3),
    };
    let run = drive(&plan).expect("the driver runs");
    let m = RateMeasurement::from_drive(plan.rate, &run, false);
    assert_eq!(m.answers.errors, SocketErrors::default(), "{m:?}");
    assert!(
        m.answers.requests >= 1100,
        "most of 1200 requests answered: {m:?}"
    );
    assert!(
        m.p99_us >= 100_000,
        "corrected p99 {} us: the stall must count against the requests it delayed",
        m.p99_us
    );
    let uncorrected = run.uncorrected.value_at_quantile(0.99);
    // A few ms on a quiet machine; the bound is half the stall so that a machine loaded
    // by other work (scheduling delays of tens of ms) does not fail the test, while a
    // driver that measured from the schedule would.
    assert!(
        uncorrected < 100_000,
        "uncorrected p99 {uncorrected} us: only 2 requests a second wait in a stall"
    );
    // The same split by counts: over 100 ms, about 10% of the samples from the intended
    // send, and only the 0.5% caught in a stall from the actual send.
    let slow = |h: &hdrhistogram::Histogram<u64>| 1.0 - h.quantile_below(100_000);
    assert!(
        slow(&run.corrected) >= 0.05,
        "corrected: {}",
        slow(&run.corrected)
    );
    assert!(
        slow(&run.uncorrected) < 0.01,
        "uncorrected: {}",
        slow(&run.uncorrected)
    );
    assert_eq!(m.uncorrected_p99_us, uncorrected);
}

#[test]
fn a_server_that_is_not_there_is_counted_as_connect_errors() {
    // Bound then dropped: nothing listens on that port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let plan = RatePlan {
        base: format!("http://127.0.0.1:{port}"),
        scenario: Scenario::Healthz,
        connections: 2,
        rate: 100.0,
        duration: Duration::from_millis(200),
    };
    let run = drive(&plan).expect("the driver runs");
    assert_eq!(run.answered, 0);
    assert!(run.errors.connect >= 2, "{:?}", run.errors);
    assert!(
        drive(&RatePlan { rate: 0.0, ..plan }).is_err(),
        "rate 0 is refused"
    );
}

#[test]
fn rate_flags_are_validated() {
    let s = settings(&["--mode", "rate"]).expect("defaults");
    assert_eq!(s.mode, Mode::Rate);
    assert_eq!(s.ladder, Ladder::Steps(Ladder::DEFAULT_STEPS.to_vec()));
    assert_eq!((s.connections.as_slice(), s.repeat), (&[64][..], 1));
    assert_eq!(s.slo, Duration::from_millis(10));
    assert!(s.measures_peaks());
    let s =
        settings(&["--mode", "rate", "--rates", "5000,400,400", "--slo", "2ms"]).expect("rates");
    assert_eq!(s.ladder, Ladder::Rates(vec![400.0, 5000.0]));
    assert!(!s.measures_peaks());
    // Two rates per row, no peak (counted per configuration by `run::planned_runs`).
    assert_eq!(s.rates_per_row(), 2);
    let steps = settings(&["--mode", "rate", "--rate-steps", "0.5,1"]).expect("steps");
    // A peak and two rates per row.
    assert!(steps.measures_peaks());
    assert_eq!(steps.rates_per_row(), 2);
    for bad in [
        &["--rates", "100"][..],
        &["--slo", "5ms"],
        &["--mode", "rate", "--rates", "0"],
        &["--mode", "rate", "--rates", "100", "--rate-steps", "0.5"],
        &["--mode", "rate", "--rate-steps", "-1"],
        &["--mode", "rate", "--slo", "0s"],
        &["--mode", "fast"],
    ] {
        assert!(settings(bad).is_err(), "{bad:?} must be refused");
    }
}

#[test]
fn help_has_the_description() {
    let about = Flags::command()
        .get_about()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(about.contains("Load-test comparisons"), "{about:?}");
}

fn measured(target_rate: f64, achieved_rate: f64, p99_us: u64) -> RateMeasurement {
    RateMeasurement {
        target_rate,
        achieved_rate,
        p50_us: p99_us / 4,
        p90_us: p99_us / 2,
        p99_us,
        p999_us: p99_us * 2,
        max_us: p99_us * 3,
        uncorrected_p99_us: p99_us,
        answers: Answers {
            requests: achieved_rate as u64,
            seconds: 1.0,
            ..Answers::default()
        },
        send_lag_p50_us: 5,
        send_lag_p99_us: 50,
        driver_busy: Some(0.3),
        driver_waiting: Some(0.1),
        driver_bound: false,
    }
}

fn cell(config: &str, m: RateMeasurement) -> RateCell {
    RateCell {
        scenario: Scenario::Healthz,
        connections: 64,
        config: config.into(),
        step: None,
        target_rate: m.target_rate,
        attempts: vec![RateAttempt {
            rep: 0,
            measurement: Some(m),
            error: None,
        }],
    }
}

#[test]
fn the_slo_row_is_the_highest_rate_held_within_the_target() {
    let mut bound = measured(40_000.0, 30_000.0, 900);
    bound.driver_bound = true;
    let mut refused = measured(20_000.0, 20_000.0, 800);
    refused.answers.non_2xx = 3;
    let cells = [
        cell("a", measured(1_000.0, 1_000.0, 500)),
        cell("a", measured(10_000.0, 9_990.0, 9_000)),
        cell("a", measured(20_000.0, 19_000.0, 2_000)), // rate not held
        cell("a", measured(30_000.0, 30_000.0, 50_000)), // p99 over 10 ms
        cell("a", bound),
        cell("b", refused),
    ];
    let configs = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
    let rows = slo_rows(
        &cells,
        &configs,
        &[Scenario::Healthz],
        &[64],
        Duration::from_millis(10),
    );
    let got: Vec<(Option<f64>, usize)> = rows.iter().map(|r| (r.rate, r.points)).collect();
    assert_eq!(got, [(Some(10_000.0), 5), (None, 1), (None, 0)]);
}

#[test]
fn driver_requests_match_the_wrk_scripts() {
    let target = Target::parse("http://127.0.0.1:8080/").expect("a URL");
    assert_eq!(
        (target.authority.as_str(), target.prefix.as_str()),
        ("127.0.0.1:8080", "")
    );
    let mut maker = RequestMaker::new(Scenario::Mixed, target, 7);
    let mut kinds = String::new();
    for _ in 0..20 {
        let request = maker.next_request().expect("a request");
        kinds.push(match request.uri().path() {
            "/healthz" => 'H',
            "/app/insert" => 'I',
            "/api/randoms" => 'R',
            other => panic!("unexpected path {other}"),
        });
    }
    assert_eq!(kinds, "HIHRHIHHIHRHIHHIHRHH");
    let mut maker = RequestMaker::new(
        Scenario::Insert,
        Target::parse("http://localhost").expect("a URL"),
        1,
    );
    for _ in 0..200 {
        let request = maker.next_request().expect("a request");
        assert_eq!(request.headers()["host"], "localhost:80");
        let body = format!("{:?}", request.body());
        let numbers: Vec<u32> = body
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .filter(|&n| n != 1) // "num1".."num6" keys carry digits too
            .collect();
        assert!(!numbers.is_empty(), "{body}");
    }
}

#[test]
fn the_stall_holds_only_inside_its_window() {
    let stall = Stall::default();
    assert_eq!(
        stall.hold(Duration::from_millis(50)),
        Duration::from_millis(150)
    );
    assert_eq!(
        stall.hold(Duration::from_millis(1_199)),
        Duration::from_millis(1)
    );
    assert_eq!(stall.hold(Duration::from_millis(700)), Duration::ZERO);
}

#[test]
fn the_html_report_is_self_contained() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(
        folder.path().join("a.svg"),
        "<?xml version=\"1.0\"?>\n<svg viewBox=\"0 0 1 1\"><rect/></svg>",
    )
    .expect("writing a.svg");
    let markdown =
        "# Title\n\n| x | y |\n|---|---:|\n| a | 1 |\n\n![chart](a.svg)\n\n![gone](b.svg)\n";
    let page = crate::html::render(markdown, folder.path(), "2026-12-01 <now>");
    assert!(
        page.contains("<table>") && page.contains("<td>a</td>"),
        "{page}"
    );
    assert!(
        page.contains("<svg viewBox=\"0 0 1 1\"><rect/></svg>"),
        "{page}"
    );
    assert!(!page.contains("<?xml"), "{page}");
    assert!(page.contains("(chart missing)"), "{page}");
    assert!(page.contains("2026-12-01 &lt;now&gt;"), "{page}");
    assert!(
        !page.contains("<script") && !page.contains("http"),
        "{page}"
    );
}

#[test]
fn a_driver_that_waits_for_a_cpu_is_short_of_time_as_one_on_it() {
    use crate::rate::driver_short;
    // On a CPU most of the run, or late: short, as before.
    assert!(driver_short(Some(0.95), None, 10));
    assert!(driver_short(Some(0.2), Some(0.0), 1_500));
    // On a CPU only 55% of the run, but ready and waiting for one another 40%: the
    // servers held the cores, the driver could not keep up either.
    assert!(driver_short(Some(0.55), Some(0.4), 10));
    // Time to spare: on a CPU 55%, waiting 10%, sends on time.
    assert!(!driver_short(Some(0.55), Some(0.1), 10));
    // Nothing measured (off Linux): only the lag says.
    assert!(!driver_short(None, None, 10));
}

#[test]
fn the_run_queue_wait_is_the_second_schedstat_field() {
    use crate::driver::run_queue_wait;
    let waited = run_queue_wait("123456789 2500000000 4321\n");
    assert_eq!(waited, Some(Duration::from_millis(2_500)));
    assert_eq!(run_queue_wait("123456789"), None);
    assert_eq!(run_queue_wait("x y z"), None);
    // This thread's own line parses where the kernel has one.
    if let Ok(own) = std::fs::read_to_string("/proc/thread-self/schedstat") {
        assert!(run_queue_wait(&own).is_some(), "{own}");
    }
}
