//! The rows of `--mode rate`: one configuration, scenario and connection count held at
//! one fixed rate, its figures from the open-loop driver ([`crate::driver`]), and the
//! headline of the report: the highest rate each configuration serves within the p99
//! target (`--slo`).

use serde::Serialize;

use crate::driver::Drive;
use crate::rows::{HasRows, RowCheck};
use crate::scenario::Scenario;
use crate::wrk::Answers;

/// Below this share of the target rate, a run missed its rate.
pub(crate) const RATE_KEPT: f64 = 0.99;
/// A driver thread on a CPU, or ready and waiting for one, this share of the run had
/// no time to spare.
const DRIVER_SATURATED: f64 = 0.9;
/// A median send lag this long means the driver was not scheduled in time.
const DRIVER_LATE_US: u64 = 1_000;

/// One fixed-rate run, in the report's units (latencies in microseconds).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct RateMeasurement {
    /// Intended requests/s.
    pub(crate) target_rate: f64,
    /// Answered requests/s.
    pub(crate) achieved_rate: f64,
    /// Latencies from the intended send (corrected for coordinated omission).
    pub(crate) p50_us: u64,
    /// 90th percentile.
    pub(crate) p90_us: u64,
    /// 99th percentile.
    pub(crate) p99_us: u64,
    /// 99.9th percentile.
    pub(crate) p999_us: u64,
    /// Slowest.
    pub(crate) max_us: u64,
    /// p99 from the actual send (not corrected): what a closed-loop tool would report.
    pub(crate) uncorrected_p99_us: u64,
    /// What its requests came to (flattened: results.json keeps one level).
    #[serde(flatten)]
    pub(crate) answers: Answers,
    /// Median and 99th percentile of the driver's own send lag, microseconds.
    pub(crate) send_lag_p50_us: u64,
    /// See `send_lag_p50_us`.
    pub(crate) send_lag_p99_us: u64,
    /// Share of the run the driver's thread was on a CPU (0-1), where measured.
    pub(crate) driver_busy: Option<f64>,
    /// Share of the run the driver's thread was ready but waiting for a CPU (0-1),
    /// where measured.
    pub(crate) driver_waiting: Option<f64>,
    /// The rate was missed while the server answered and the driver was the one short of
    /// time: the latencies are the driver's as much as the server's.
    pub(crate) driver_bound: bool,
}

impl RateMeasurement {
    /// The report's figures of a run at `target_rate`; `inserts` when the scenario's 201s
    /// are acknowledged inserts.
    pub(crate) fn from_drive(target_rate: f64, drive: &Drive, inserts: bool) -> Self {
        let q = |h: &hdrhistogram::Histogram<u64>, quantile: f64| h.value_at_quantile(quantile);
        let c = &drive.corrected;
        let achieved_rate = drive.achieved_rate();
        let send_lag_p50_us = q(&drive.send_lag, 0.5);
        let missed = achieved_rate < RATE_KEPT * target_rate;
        let answered = drive.errors.total() == 0;
        let driver_short = driver_short(drive.busy, drive.waiting, send_lag_p50_us);
        Self {
            target_rate,
            achieved_rate,
            p50_us: q(c, 0.5),
            p90_us: q(c, 0.9),
            p99_us: q(c, 0.99),
            p999_us: q(c, 0.999),
            max_us: c.max(),
            uncorrected_p99_us: q(&drive.uncorrected, 0.99),
            answers: Answers {
                requests: drive.answered,
                seconds: drive.seconds,
                errors: drive.errors,
                non_2xx: drive.non_2xx,
                rows: RowCheck {
                    inserts_acked: inserts.then_some(drive.created),
                    ..RowCheck::default()
                },
            },
            send_lag_p50_us,
            send_lag_p99_us: q(&drive.send_lag, 0.99),
            driver_busy: drive.busy,
            driver_waiting: drive.waiting,
            driver_bound: missed && answered && driver_short,
        }
    }

    /// Whether the run counts toward the SLO table: the rate kept, p99 within `slo`, every
    /// request answered 2xx, and the driver not the limit.
    pub(crate) fn meets(&self, slo: std::time::Duration) -> bool {
        self.achieved_rate >= RATE_KEPT * self.target_rate
            && u128::from(self.p99_us) <= slo.as_micros()
            && self.answers.errors.total() == 0
            && self.answers.non_2xx == 0
            && !self.driver_bound
    }
}

/// Whether the driver was the side short of time: its thread wanted a CPU (on one, or
/// ready and waiting for one) at least [`DRIVER_SATURATED`] of the run, or its median
/// send lag was [`DRIVER_LATE_US`] or more.
pub(crate) fn driver_short(busy: Option<f64>, waiting: Option<f64>, lag_p50_us: u64) -> bool {
    let wanted = busy.unwrap_or(0.0) + waiting.unwrap_or(0.0);
    wanted >= DRIVER_SATURATED || lag_p50_us >= DRIVER_LATE_US
}

impl HasRows for RateMeasurement {
    fn rows_mut(&mut self) -> &mut RowCheck {
        &mut self.answers.rows
    }
}

/// One measured run of a rate row: its figures or why it failed.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RateAttempt {
    /// Which repeat (0-based).
    pub(crate) rep: usize,
    /// The figures, if the run completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) measurement: Option<RateMeasurement>,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// All runs of one configuration on one scenario, connection count and rate: a point of
/// the latency-vs-rate curve and a row of the rate tables.
#[derive(Debug, Clone)]
pub(crate) struct RateCell {
    /// The scenario.
    pub(crate) scenario: Scenario,
    /// The driver's connections.
    pub(crate) connections: usize,
    /// The configuration's name.
    pub(crate) config: String,
    /// The fraction of the row's peak (`--rate-steps`), or `None` for `--rates`.
    pub(crate) step: Option<f64>,
    /// Intended requests/s.
    pub(crate) target_rate: f64,
    /// Its runs, in the order they ran.
    pub(crate) attempts: Vec<RateAttempt>,
}

impl RateCell {
    /// The run with the median p99 (the lower middle one for an even count), so that a
    /// row's figures all come from one real run.
    pub(crate) fn median(&self) -> Option<&RateMeasurement> {
        let mut runs: Vec<&RateMeasurement> = self
            .attempts
            .iter()
            .filter_map(|a| a.measurement.as_ref())
            .collect();
        runs.sort_by_key(|m| m.p99_us);
        runs.get(runs.len().saturating_sub(1) / 2).copied()
    }

    /// Whether any run lost an acknowledged insert.
    pub(crate) fn rows_missing(&self) -> bool {
        self.attempts
            .iter()
            .filter_map(|a| a.measurement.as_ref())
            .any(|m| m.answers.rows.missing())
    }
}

/// The headline for one configuration, scenario and connection count: the highest
/// target rate whose median run met the SLO.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SloRow<'a> {
    /// The configuration.
    pub(crate) config: &'a str,
    /// The scenario.
    pub(crate) scenario: &'static str,
    /// The connections.
    pub(crate) connections: usize,
    /// The highest rate held within the SLO, requests/s; `None`: not even the lowest.
    pub(crate) rate: Option<f64>,
    /// That run's p99, microseconds.
    pub(crate) p99_us: Option<u64>,
    /// Rates measured for this row.
    pub(crate) points: usize,
}

/// The SLO rows, in the order of `configs`, `scenarios` and `connections`.
pub(crate) fn slo_rows<'a>(
    cells: &'a [RateCell],
    configs: &'a [String],
    scenarios: &[Scenario],
    connections: &[usize],
    slo: std::time::Duration,
) -> Vec<SloRow<'a>> {
    let mut rows = Vec::new();
    for config in configs {
        for &scenario in scenarios {
            for &conns in connections {
                let points: Vec<&RateMeasurement> = cells
                    .iter()
                    .filter(|c| {
                        &c.config == config && c.scenario == scenario && c.connections == conns
                    })
                    .filter_map(RateCell::median)
                    .collect();
                let best = points
                    .iter()
                    .filter(|m| m.meets(slo))
                    .max_by(|a, b| a.target_rate.total_cmp(&b.target_rate));
                rows.push(SloRow {
                    config,
                    scenario: scenario.name(),
                    connections: conns,
                    rate: best.map(|m| m.target_rate),
                    p99_us: best.map(|m| m.p99_us),
                    points: points.len(),
                });
            }
        }
    }
    rows
}
