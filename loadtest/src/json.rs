//! `results.json`: the report's facts for machines (schema 2: schema 1 plus `mode`, the
//! rate-mode settings, `rate_results` and `slo`). Every measured run is kept, not only the
//! medians, so a reader can recompute anything.

use serde::Serialize;

use crate::cli::{Ladder, Mode};
use crate::machine::{Machine, Versions};
use crate::rate::{RateAttempt, RateCell, RateMeasurement, SloRow, slo_rows};
use crate::report::NotRun;
use crate::run::Cell;
use crate::run_info::RunInfo;
use crate::target::{LoadTool, randoms_queue};
use crate::wrk::{Measurement, REQUEST_TIMEOUT};

#[derive(Serialize)]
struct Results<'a> {
    schema: u32,
    date: &'a str,
    command: &'a str,
    shares_machine: String,
    machine: &'a Machine,
    versions: &'a Versions,
    settings: SettingsJson<'a>,
    baseline: Option<&'a str>,
    scenarios: Vec<ScenarioJson>,
    configs: Vec<ConfigJson<'a>>,
    results: Vec<RowJson<'a>>,
    /// Rate mode: one row per configuration, scenario, connections and rate, its figures
    /// from the median run (by p99) at the top level.
    rate_results: Vec<RateRowJson<'a>>,
    /// Rate mode: the highest rate within the SLO per configuration, scenario and
    /// connections.
    slo: Vec<SloRow<'a>>,
    not_run: Vec<NotRun>,
}

#[derive(Serialize)]
struct RateRowJson<'a> {
    scenario: &'static str,
    connections: usize,
    config: &'a str,
    /// The fraction of the row's peak, for `--rate-steps`.
    step: Option<f64>,
    target_rate: f64,
    achieved_rate: Option<f64>,
    p50_us: Option<u64>,
    p90_us: Option<u64>,
    p99_us: Option<u64>,
    p999_us: Option<u64>,
    max_us: Option<u64>,
    errors: Option<u64>,
    non_2xx: Option<u64>,
    driver_bound: Option<bool>,
    meets_slo: bool,
    rows_missing: bool,
    median: Option<&'a RateMeasurement>,
    runs: &'a [RateAttempt],
}

impl<'a> RateRowJson<'a> {
    fn new(cell: &'a RateCell, slo: std::time::Duration) -> Self {
        let m = cell.median();
        Self {
            scenario: cell.scenario.name(),
            connections: cell.connections,
            config: &cell.config,
            step: cell.step,
            target_rate: cell.target_rate,
            achieved_rate: m.map(|m| m.achieved_rate),
            p50_us: m.map(|m| m.p50_us),
            p90_us: m.map(|m| m.p90_us),
            p99_us: m.map(|m| m.p99_us),
            p999_us: m.map(|m| m.p999_us),
            max_us: m.map(|m| m.max_us),
            errors: m.map(|m| m.answers.errors.total()),
            non_2xx: m.map(|m| m.answers.non_2xx),
            driver_bound: m.map(|m| m.driver_bound),
            meets_slo: m.is_some_and(|m| m.meets(slo)),
            rows_missing: cell.rows_missing(),
            median: m,
            runs: &cell.attempts,
        }
    }
}

#[derive(Serialize)]
struct SettingsJson<'a> {
    mode: Mode,
    /// Rate mode: `--rates` (requests/s) or `--rate-steps` (fractions of the peak).
    rates: Option<&'a [f64]>,
    rate_steps: Option<&'a [f64]>,
    slo_ms: f64,
    duration_s: u64,
    warmup_s: u64,
    connections: &'a [usize],
    repeat: usize,
    quick: bool,
    pin_requested: bool,
    pinned: bool,
    shards: usize,
    wrk_threads: usize,
    wrk_timeout_s: u64,
    h2_streams: usize,
    proxy_threads: usize,
    randoms_queue: usize,
    /// Passwords masked.
    serve_args: Vec<String>,
    /// `sqlite`, or the PostgreSQL URL (password masked).
    store: String,
    /// `--postgres` (password masked): the database of `pg1` and `hosts2`.
    postgres: Option<String>,
}

#[derive(Serialize)]
struct ScenarioJson {
    name: &'static str,
    description: &'static str,
    path: &'static str,
    script: &'static str,
    wrk: Vec<String>,
    /// The h2 rows' commands; empty when none ran or h2load cannot send the scenario.
    h2load: Vec<String>,
}

#[derive(Serialize)]
struct ConfigJson<'a> {
    name: &'a str,
    description: &'a str,
    /// What drives its peak runs: `wrk` or `h2load`.
    driver: &'static str,
    target: &'a str,
    commands: Vec<String>,
    unavailable: Option<&'a str>,
    notes: &'a [String],
}

#[derive(Serialize)]
struct RowJson<'a> {
    scenario: &'static str,
    connections: usize,
    config: &'a str,
    /// What measured it: `wrk` or `h2load`.
    driver: &'static str,
    /// The run with the median throughput; `null` if no run completed.
    median: Option<&'a Measurement>,
    rps_min: Option<f64>,
    rps_max: Option<f64>,
    ratio_to_baseline: Option<f64>,
    rows_missing: bool,
    runs: &'a [crate::run::Attempt],
}

/// Renders results.json.
pub(crate) fn render(info: &RunInfo<'_>) -> Result<String, serde_json::Error> {
    let s = info.settings;
    let names: Vec<String> = info.configs.iter().map(|c| c.name.clone()).collect();
    let results = Results {
        schema: 2,
        date: &info.date,
        command: &info.command,
        shares_machine: info.shares_machine(),
        machine: &info.machine,
        versions: &info.versions,
        settings: SettingsJson::new(info),
        baseline: info.baseline(),
        scenarios: s
            .scenarios
            .iter()
            .map(|&sc| ScenarioJson {
                name: sc.name(),
                description: sc.describe(),
                path: sc.path(),
                script: sc.script(),
                wrk: info.load_commands(LoadTool::Wrk, sc),
                h2load: if info.uses(LoadTool::H2load) {
                    info.load_commands(LoadTool::H2load, sc)
                } else {
                    Vec::new()
                },
            })
            .collect(),
        configs: info
            .configs
            .iter()
            .map(|c| ConfigJson {
                name: &c.name,
                description: &c.description,
                driver: c.tool.name(),
                target: &c.target,
                commands: c.commands(info.root),
                unavailable: c.unavailable.as_deref(),
                notes: &c.notes,
            })
            .collect(),
        results: info
            .cells
            .iter()
            .map(|cell| RowJson::new(info, cell))
            .collect(),
        rate_results: info
            .rates
            .iter()
            .map(|cell| RateRowJson::new(cell, s.slo))
            .collect(),
        slo: slo_rows(info.rates, &names, &s.scenarios, &s.connections, s.slo),
        not_run: info.not_run(),
    };
    serde_json::to_string_pretty(&results)
}

impl<'a> SettingsJson<'a> {
    fn new(info: &RunInfo<'a>) -> Self {
        let s = info.settings;
        Self {
            mode: s.mode,
            rates: match (&s.mode, &s.ladder) {
                (Mode::Rate, Ladder::Rates(r)) => Some(r),
                _ => None,
            },
            rate_steps: match (&s.mode, &s.ladder) {
                (Mode::Rate, Ladder::Steps(r)) => Some(r),
                _ => None,
            },
            slo_ms: s.slo.as_secs_f64() * 1e3,
            duration_s: s.duration.as_secs(),
            warmup_s: s.warmup.as_secs(),
            connections: &s.connections,
            repeat: s.repeat,
            quick: s.quick,
            pin_requested: s.pin,
            pinned: info.pinned,
            shards: s.shards,
            wrk_threads: s.wrk_threads,
            wrk_timeout_s: REQUEST_TIMEOUT.as_secs(),
            h2_streams: s.h2_streams,
            proxy_threads: s.proxy_threads,
            randoms_queue: randoms_queue(s.max_connections()),
            serve_args: s
                .serve_args
                .iter()
                .map(|a| loadlab_workers::mega::mask_password(a))
                .collect(),
            postgres: s
                .postgres
                .as_deref()
                .map(loadlab_workers::mega::mask_password),
            store: match s.store() {
                crate::cli::StoreUsed::Sqlite => "sqlite".to_owned(),
                crate::cli::StoreUsed::Postgres(url) => url,
            },
        }
    }
}

impl<'a> RowJson<'a> {
    fn new(info: &RunInfo<'_>, cell: &'a Cell) -> Self {
        Self {
            scenario: cell.scenario.name(),
            connections: cell.connections,
            config: &cell.config,
            driver: cell.tool.name(),
            median: cell.median(),
            rps_min: cell.spread().map(|(lo, _)| lo),
            rps_max: cell.spread().map(|(_, hi)| hi),
            ratio_to_baseline: info.ratio(cell),
            rows_missing: cell.rows_missing(),
            runs: &cell.attempts,
        }
    }
}
