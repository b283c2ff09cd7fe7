//! loadlab's load-test harness, run as `cargo bench --bench loadtest` (the bench target
//! `benches/loadtest.rs` builds loadlab in release and calls [`main`]): load-test
//! comparisons of loadlab set-ups in one command. Starts each configuration on loopback
//! ports, drives it (wrk for the peak, `--mode max`; its own open-loop driver for latency
//! at fixed rates, `--mode rate`), stops it, and writes `report.md`, `report.html`,
//! `results.json`, `results.csv` and SVG charts to a dated folder under
//! `benches/results/`. The user's guide is `docs/LOADTEST.md`.
//!
//! Its own crate so its logic has ordinary `#[test]`s (`cargo test -p
//! loadlab-loadtest`): a bench target with `harness = false` gets no libtest.
//!
//! # Layout
//! - `cli`: the flags, validated into `cli::Settings`;
//! - `scenario`: the loads (healthz, insert, randoms, mixed) and their Lua scripts;
//! - `target`: the configurations (one process, sharded, front, nginx, HAProxy, their
//!   TLS and h2 rows, extras), their ports and commands (`target::plan`), starting and
//!   stopping them;
//! - `process`: child processes with a kill-on-drop guard, readiness polling;
//! - `wrk`: one wrk run and its parsed result;
//! - `h2load`, `cert`: one h2load run (the h2 rows) and its parsed result; the TLS rows'
//!   self-signed certificate;
//! - `driver`, `pacer`, `requests`: the open-loop driver of rate mode, its precise
//!   timer and the requests it sends;
//! - `rate`: rate mode's rows and the SLO headline;
//! - `run`: the interleaved, repeated measuring loop;
//! - `run_info`, `text`: what a report is written from, numbers in words;
//! - `report`, `json`, `csv`, `html`, `chart`, `curve`: the run folder;
//! - `stall`: a server that stalls on purpose (the coordinated-omission test, and the
//!   `stall-server` example);
//! - `machine`: the machine, versions and date;
//! - `http`: the few HTTP calls the harness makes itself (readiness, row counts).

mod cert;
mod chart;
mod cli;
mod csv;
mod curve;
mod driver;
mod h2load;
mod html;
mod http;
mod json;
mod machine;
mod pacer;
mod peers;
mod process;
mod rate;
mod rate_report;
mod report;
mod requests;
mod rows;
mod run;
mod run_info;
mod scenario;
pub mod stall;
mod target;
mod text;
mod wrk;

#[cfg(test)]
mod rate_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use crate::cli::Settings;
use crate::machine::{CpuTimes, Machine, Tools, Versions};
use crate::report::RunInfo;

/// What a measured run costs beyond its warm-up and duration: starting and stopping the
/// configuration, the row counts, wrk's start. For the start-up estimate only.
const RUN_OVERHEAD: Duration = Duration::from_secs(1);

/// Runs the harness with the process's arguments: `loadlab` is the release binary to
/// measure, `root` the workspace (where `benches/wrk/` scripts are and
/// `benches/results/` goes).
pub fn main(loadlab: &Path, root: &Path) -> ExitCode {
    let flags = cli::parse();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs the bench target
    // without it, where a load test of many minutes would be a surprise.
    if !flags.bench {
        eprintln!(
            "loadtest: no --bench argument: nothing to do (the load test runs under `cargo bench`, \
             its tests under `cargo test -p loadlab-loadtest`)"
        );
        return ExitCode::SUCCESS;
    }
    if !cli::selected(&flags.filters) {
        eprintln!("loadtest: skipped (not selected by the bench filter)");
        return ExitCode::SUCCESS;
    }
    match run(flags, loadlab, root) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(flags: cli::Flags, loadlab: &Path, root: &Path) -> anyhow::Result<ExitCode> {
    let (date, stamp) = machine::utc_now();
    let settings = Settings::from_flags(flags, root, &stamp)?;
    let tools = Tools::find(loadlab);
    let (pinned, pin_note) = match (settings.pin, &tools.taskset) {
        (false, _) => (false, None),
        (true, None) => (
            false,
            Some("taskset is not installed (Debian package util-linux)".to_owned()),
        ),
        (true, Some(_)) if settings.cores < 2 => (
            false,
            Some("this machine has fewer than 2 cores".to_owned()),
        ),
        (true, Some(_)) => (true, None),
    };
    let mut configs = target::plan::configs(&settings, &tools, pinned).map_err(|e| anyhow!(e))?;
    wrk_found_if_needed(&tools, &settings, &configs)?;
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("creating {}", settings.out.display()))?;
    let available = configs.iter().filter(|c| c.unavailable.is_none()).count();
    let runs = run::planned_runs(&settings, &configs);
    let per_run = settings.warmup + settings.duration + RUN_OVERHEAD;
    eprintln!(
        "loadtest: {runs} runs ({available} of {} configurations can run), about {} min; \
         results in {}",
        configs.len(),
        (per_run.as_secs_f64() * runs as f64 / 60.0).ceil(),
        settings.out.display()
    );
    if let Some(note) = &pin_note {
        eprintln!("loadtest: --pin not applied: {note}");
    }
    // Before the run: the load average is meant to show how busy the machine was.
    let mut machine = Machine::read();
    let cpu_before = CpuTimes::read();
    let versions = Versions::read(&tools, root);
    let scratch = tempfile::Builder::new()
        .prefix("loadlab-loadtest-")
        .tempdir()
        .context("creating a temporary folder")?;
    run::open_permissions(scratch.path()).map_err(|e| anyhow!(e))?;
    let measured = run::run_all(&settings, &mut configs, root, scratch.path(), pinned);
    machine.steal_during_runs = cpu_before
        .zip(CpuTimes::read())
        .and_then(|(before, after)| after.steal_since(&before));

    let info = RunInfo {
        date,
        command: harness_command(),
        settings: &settings,
        machine,
        versions,
        pinned,
        pin_note,
        configs: &configs,
        cells: &measured.cells,
        rates: &measured.rates,
        root,
    };
    write_folder(&info)?;
    eprintln!(
        "loadtest: wrote {}",
        settings.out.join("report.md").display()
    );

    let rows = measured
        .cells
        .iter()
        .filter(|c| c.median().is_some())
        .count()
        + measured
            .rates
            .iter()
            .filter(|c| c.median().is_some())
            .count();
    if rows == 0 {
        eprintln!("loadtest: no row could be measured; see \"Rows not run\" in the report");
        return Ok(ExitCode::FAILURE);
    }
    if measured.cells.iter().any(run::Cell::rows_missing)
        || measured.rates.iter().any(rate::RateCell::rows_missing)
    {
        eprintln!(
            "loadtest: acknowledged inserts are missing from the table; see the insert tables"
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// Fails when the run needs wrk (peak runs of a row wrk drives) and it is not installed.
fn wrk_found_if_needed(
    tools: &Tools,
    settings: &Settings,
    configs: &[target::Config],
) -> anyhow::Result<()> {
    let wrk_rows = configs
        .iter()
        .any(|c| c.unavailable.is_none() && c.tool == target::LoadTool::Wrk);
    if tools.wrk.is_none() && settings.measures_peaks() && wrk_rows {
        bail!(
            "wrk is not installed (it measures the peaks): install it with `sudo apt-get \
             install -y wrk` (Debian, Ubuntu) or `brew install wrk` (macOS), then run again; \
             `--mode rate --rates LIST` runs without it"
        );
    }
    Ok(())
}

/// Writes the charts, report.md, report.html, results.json, results.csv and the proxies'
/// configurations (nginx.conf, haproxy.cfg) into the run folder.
fn write_folder(info: &RunInfo<'_>) -> anyhow::Result<()> {
    let out = &info.settings.out;
    let write = |name: &str, text: &str| {
        std::fs::write(out.join(name), text)
            .with_context(|| format!("writing {}", out.join(name).display()))
    };
    let names: Vec<String> = info.configs.iter().map(|c| c.name.clone()).collect();
    let s = info.settings;
    if !info.cells.is_empty() {
        for metric in &chart::METRICS {
            chart::draw(
                &out.join(metric.file),
                metric,
                &s.scenarios,
                &s.connections,
                &names,
                info.cells,
            )
            .map_err(|e| anyhow!(e))?;
        }
    }
    if s.mode == cli::Mode::Rate {
        for &connections in &s.connections {
            let file = curve::file_name(connections);
            let plot = curve::Curves {
                scenarios: &s.scenarios,
                connections,
                configs: &names,
                cells: info.rates,
                slo: s.slo,
            };
            plot.draw(&out.join(&file)).map_err(|e| anyhow!(e))?;
        }
    }
    let markdown = report::markdown(info);
    write("report.md", &markdown)?;
    write("report.html", &html::render(&markdown, out, &info.date))?;
    write(
        "results.json",
        &json::render(info).context("rendering results.json")?,
    )?;
    write("results.csv", &csv::render(info))?;
    for (file, conf) in info.configs.iter().filter_map(target::Config::proxy_conf) {
        write(file, &conf)?;
    }
    Ok(())
}

/// The command that started this run, as typed (cargo's own `--bench` left out).
fn harness_command() -> String {
    // A `--db` URL's password stays out of the report.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .map(|a| loadlab_workers::mega::mask_password(&a))
        .collect();
    let mut command = "cargo bench --bench loadtest".to_owned();
    if !args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&target::shell_join(&args));
    }
    command
}
