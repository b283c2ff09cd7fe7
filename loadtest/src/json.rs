//! `results.json`: the report's facts for machines (schema 1). Every measured run is
//! kept, not only the medians, so a reader can recompute anything.

use serde::Serialize;

use crate::machine::{Machine, Versions};
use crate::report::{NotRun, RunInfo};
use crate::target::randoms_queue;
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
    not_run: Vec<NotRun>,
}

#[derive(Serialize)]
struct SettingsJson<'a> {
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
}

#[derive(Serialize)]
struct ConfigJson<'a> {
    name: &'a str,
    description: &'a str,
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
    let results = Results {
        schema: 1,
        date: &info.date,
        command: &info.command,
        shares_machine: info.shares_machine(),
        machine: &info.machine,
        versions: &info.versions,
        settings: SettingsJson {
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
        },
        baseline: info.baseline(),
        scenarios: s
            .scenarios
            .iter()
            .map(|&sc| ScenarioJson {
                name: sc.name(),
                description: sc.describe(),
                path: sc.path(),
                script: sc.script(),
                wrk: s
                    .connections
                    .iter()
                    .map(|&c| info.wrk_command(sc, c, s.duration))
                    .collect(),
            })
            .collect(),
        configs: info
            .configs
            .iter()
            .map(|c| ConfigJson {
                name: &c.name,
                description: &c.description,
                target: &c.target,
                commands: c.commands(info.root),
                unavailable: c.unavailable.as_deref(),
                notes: &c.notes,
            })
            .collect(),
        results: info
            .cells
            .iter()
            .map(|cell| RowJson {
                scenario: cell.scenario.name(),
                connections: cell.connections,
                config: &cell.config,
                median: cell.median(),
                rps_min: cell.spread().map(|(lo, _)| lo),
                rps_max: cell.spread().map(|(_, hi)| hi),
                ratio_to_baseline: info.ratio(cell),
                rows_missing: cell.rows_missing(),
                runs: &cell.attempts,
            })
            .collect(),
        not_run: info.not_run(),
    };
    serde_json::to_string_pretty(&results)
}
