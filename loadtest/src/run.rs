//! The measuring loop: for each scenario and connection count, `--repeat` rounds in
//! which every configuration runs once (interleaved, so slow drift of the machine spreads
//! over all of them), each run on a freshly started configuration with a warm-up first.
//! Max mode measures each row's peak with wrk ([`Cell`]s); rate mode then holds each rate
//! of the ladder with the open-loop driver, every configuration at one rate before the
//! next rate ([`RateCell`]s).

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::cli::{Ladder, Mode, Settings};
use crate::driver::{self, RatePlan};
use crate::h2load::{H2Load, H2loadCommand};
use crate::rate::{RateAttempt, RateCell, RateMeasurement};
use crate::rows::HasRows;
use crate::scenario::Scenario;
use crate::target::{Config, LoadTool};
use crate::wrk::{Measurement, WrkCommand};

/// One measured run of a cell: its figures or why it failed.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Attempt {
    /// Which repeat (0-based).
    pub(crate) rep: usize,
    /// The figures, if the run completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) measurement: Option<Measurement>,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// All runs of one configuration on one scenario at one connection count: a row of the
/// report.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    /// The scenario.
    pub(crate) scenario: Scenario,
    /// wrk's connections.
    pub(crate) connections: usize,
    /// The configuration's name.
    pub(crate) config: String,
    /// What drove its runs.
    pub(crate) tool: LoadTool,
    /// Its runs, in the order they ran.
    pub(crate) attempts: Vec<Attempt>,
}

impl Cell {
    fn measured(&self) -> impl Iterator<Item = &Measurement> {
        self.attempts.iter().filter_map(|a| a.measurement.as_ref())
    }

    /// The run with the median throughput (the lower middle one for an even count), so
    /// that a row's figures all come from one real run.
    pub(crate) fn median(&self) -> Option<&Measurement> {
        let mut runs: Vec<&Measurement> = self.measured().collect();
        runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        runs.get(runs.len().saturating_sub(1) / 2).copied()
    }

    /// The slowest and fastest throughput over its runs.
    pub(crate) fn spread(&self) -> Option<(f64, f64)> {
        let rps = self.measured().map(|m| m.rps);
        let (min, max) = rps.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(r), hi.max(r))
        });
        (min <= max).then_some((min, max))
    }

    /// Whether any run lost an acknowledged insert.
    pub(crate) fn rows_missing(&self) -> bool {
        self.measured().any(|m| m.answers.rows.missing())
    }
}

/// How a run failed.
enum Failure {
    /// The configuration did not start: skip its remaining runs.
    Start(String),
    /// This run failed; later ones may still work.
    Run(String),
}

/// Everything the measuring loop produced.
#[derive(Debug, Default)]
pub(crate) struct Measured {
    /// Peak (wrk) rows: every row in max mode, the peaks behind `--rate-steps` in rate mode.
    pub(crate) cells: Vec<Cell>,
    /// Fixed-rate rows (rate mode only).
    pub(crate) rates: Vec<RateCell>,
}

/// The running count of measured runs, for the progress lines.
struct Progress {
    index: usize,
    total: usize,
    started: Instant,
}

impl Progress {
    fn eta(&self) -> String {
        let left = self.total.saturating_sub(self.index);
        if self.index == 0 || left == 0 {
            return String::new();
        }
        let per_run = self.started.elapsed().as_secs_f64() / self.index as f64;
        format!(
            " (about {:.0} min left)",
            (per_run * left as f64 / 60.0).ceil()
        )
    }
}

/// The fixed parts of every run: settings, folders, pinning.
struct Bench<'a> {
    settings: &'a Settings,
    root: &'a Path,
    scratch: &'a Path,
    pin: bool,
}

/// Runs the whole plan; `configs` gain their notes and unavailable reasons.
///
/// `scratch` holds one fresh folder per run (database, logs), removed after the run;
/// `root` is the package root, the working folder of wrk and the servers.
pub(crate) fn run_all(
    settings: &Settings,
    configs: &mut [Config],
    root: &Path,
    scratch: &Path,
    pin: bool,
) -> Measured {
    let mut progress = Progress {
        index: 0,
        total: planned_runs(settings, configs),
        started: Instant::now(),
    };
    let bench = Bench {
        settings,
        root,
        scratch,
        pin,
    };
    let mut measured = Measured::default();
    for &scenario in &settings.scenarios {
        for &connections in &settings.connections {
            let first = measured.cells.len();
            if settings.measures_peaks() {
                let peaks = bench.peaks(configs, scenario, connections, &mut progress);
                measured.cells.extend(peaks);
            }
            if settings.mode == Mode::Rate {
                let peaks = &measured.cells[first..];
                let ladder = ladder(settings, configs, peaks, scenario, connections);
                let rates = bench.rates(configs, ladder, &mut progress);
                measured.rates.extend(rates);
            }
        }
    }
    measured
}

/// Measured runs in the whole plan: per configuration that can run, one peak run per
/// scenario its load generator can send, and in rate mode one run per rate where the
/// open-loop driver reaches it; each for every connection count and repeat. The
/// configurations that cannot run cost nothing.
pub(crate) fn planned_runs(settings: &Settings, configs: &[Config]) -> usize {
    let rates = settings.rates_per_row() * settings.scenarios.len();
    configs
        .iter()
        .filter(|c| c.unavailable.is_none())
        .map(|c| {
            let scenarios = settings.scenarios.iter();
            let sendable = scenarios.filter(|&&s| c.unsupported(s).is_none()).count();
            let peaks = if settings.measures_peaks() {
                sendable
            } else {
                0
            };
            let rates = if c.rate_reachable() { rates } else { 0 };
            (peaks + rates) * settings.connections.len() * settings.repeat
        })
        .sum()
}

/// The rate cells of one scenario and connection count, in run order (rate, then
/// configuration): each available configuration's rates, from `--rates` or its peak.
fn ladder(
    settings: &Settings,
    configs: &[Config],
    peaks: &[Cell],
    scenario: Scenario,
    connections: usize,
) -> Vec<RateCell> {
    let cell = |config: &Config, step: Option<f64>, target_rate: f64| RateCell {
        scenario,
        connections,
        config: config.name.clone(),
        step,
        target_rate,
        attempts: Vec::new(),
    };
    let mut cells = Vec::new();
    // The TLS rows are out of the driver's reach: their peaks are all they get.
    let available = || {
        configs
            .iter()
            .filter(|c| c.unavailable.is_none() && c.rate_reachable())
    };
    match &settings.ladder {
        Ladder::Rates(rates) => {
            for &rate in rates {
                cells.extend(available().map(|c| cell(c, None, rate)));
            }
        }
        Ladder::Steps(steps) => {
            for &step in steps {
                for config in available() {
                    let peak = peaks
                        .iter()
                        .find(|p| p.config == config.name)
                        .and_then(Cell::median)
                        .map(|m| m.rps);
                    if let Some(peak) = peak.filter(|p| *p >= 1.0) {
                        cells.push(cell(config, Some(step), (step * peak).round().max(1.0)));
                    }
                }
            }
        }
    }
    cells
}

impl Bench<'_> {
    /// The peak runs (wrk) of one scenario and connection count.
    fn peaks(
        &self,
        configs: &mut [Config],
        scenario: Scenario,
        connections: usize,
        progress: &mut Progress,
    ) -> Vec<Cell> {
        let s = self.settings;
        let mut cells: Vec<Cell> = configs
            .iter()
            .map(|c| Cell {
                scenario,
                connections,
                config: c.name.clone(),
                tool: c.tool,
                attempts: Vec::new(),
            })
            .collect();
        for rep in 0..s.repeat {
            // Rotate the starting configuration each round: no configuration always runs
            // right after the same neighbour.
            for k in 0..configs.len() {
                let i = (k + rep) % configs.len();
                if configs[i].unsupported(scenario).is_some() {
                    // Listed under "Rows not run" by the report; no run to count.
                    continue;
                }
                let what = format!(
                    "{} c={connections} peak rep {}/{}",
                    scenario.name(),
                    rep + 1,
                    s.repeat
                );
                let load = Load {
                    warm_up: |config: &Config, run_dir: &Path| {
                        self.peak_run(config, scenario, connections, run_dir, None)
                            .map(drop)
                    },
                    measure: |config: &Config, run_dir: &Path| {
                        self.peak_run(config, scenario, connections, run_dir, Some(s.duration))
                    },
                };
                let Some(outcome) = self.one_run(&mut configs[i], scenario, &what, progress, load)
                else {
                    continue;
                };
                let (measurement, error) = match outcome {
                    Ok(m) => {
                        eprintln!(
                            "{:.0} req/s, p99 {:.2} ms{}",
                            m.rps,
                            m.p99_ms,
                            progress.eta()
                        );
                        if let Some(what) = &m.negotiated {
                            configs[i]
                                .note(format!("{} negotiated {what}", configs[i].tool.name()));
                        }
                        (Some(m), None)
                    }
                    Err(why) => (None, Some(why)),
                };
                cells[i].attempts.push(Attempt {
                    rep,
                    measurement,
                    error,
                });
            }
        }
        cells
    }

    /// The fixed-rate runs of `cells` (one scenario and connection count), rate by rate.
    fn rates(
        &self,
        configs: &mut [Config],
        mut cells: Vec<RateCell>,
        progress: &mut Progress,
    ) -> Vec<RateCell> {
        let s = self.settings;
        for rep in 0..s.repeat {
            for cell in &mut cells {
                let Some(config) = configs.iter_mut().find(|c| c.name == cell.config) else {
                    continue;
                };
                let what = format!(
                    "{} c={} {:.0} req/s rep {}/{}",
                    cell.scenario.name(),
                    cell.connections,
                    cell.target_rate,
                    rep + 1,
                    s.repeat
                );
                let plan = |config: &Config, duration| RatePlan {
                    base: config.target.clone(),
                    scenario: cell.scenario,
                    connections: cell.connections,
                    rate: cell.target_rate,
                    duration,
                };
                let inserts = cell.scenario.inserts();
                let target_rate = cell.target_rate;
                let load = Load {
                    warm_up: |config: &Config, _: &Path| {
                        if s.warmup.is_zero() {
                            return Ok(());
                        }
                        driver::drive(&plan(config, s.warmup)).map(drop)
                    },
                    measure: |config: &Config, _: &Path| {
                        let drive = driver::drive(&plan(config, s.duration))?;
                        Ok(RateMeasurement::from_drive(target_rate, &drive, inserts))
                    },
                };
                let Some(outcome) = self.one_run(config, cell.scenario, &what, progress, load)
                else {
                    continue;
                };
                let (measurement, error) = match outcome {
                    Ok(m) => {
                        let bound = if m.driver_bound { ", driver-bound" } else { "" };
                        eprintln!(
                            "{:.0} req/s, p99 {:.2} ms{bound}{}",
                            m.achieved_rate,
                            m.p99_us as f64 / 1e3,
                            progress.eta()
                        );
                        (Some(m), None)
                    }
                    Err(why) => (None, Some(why)),
                };
                cell.attempts.push(RateAttempt {
                    rep,
                    measurement,
                    error,
                });
            }
        }
        cells
    }

    /// One measured run of `config` with `load`: prints its progress label, skips an
    /// unavailable configuration (`None`), marks one that fails to start unavailable,
    /// and counts the table's rows around an insert run. `Some(Err)` is a failed run.
    fn one_run<M: HasRows>(
        &self,
        config: &mut Config,
        scenario: Scenario,
        what: &str,
        progress: &mut Progress,
        load: Load<
            impl FnOnce(&Config, &Path) -> Result<(), String>,
            impl FnOnce(&Config, &Path) -> Result<M, String>,
        >,
    ) -> Option<Result<M, String>> {
        if let Some(why) = &config.unavailable {
            eprintln!(
                "{what} {}: skipped ({})",
                config.name,
                crate::process::shorten(why, 120)
            );
            return None;
        }
        progress.index += 1;
        eprint!(
            "[{:>3}/{}] {what} {}: ",
            progress.index, progress.total, config.name
        );
        let run_dir = self
            .scratch
            .join(format!("{:04}-{}", progress.index, config.name));
        let outcome = match make_run_dir(&run_dir) {
            Ok(()) => measure(config, scenario, self.root, &run_dir, load),
            Err(e) => Err(Failure::Run(e)),
        };
        // The database of an insert run can be large: free it now.
        let _ = std::fs::remove_dir_all(&run_dir);
        match outcome {
            Ok(m) => Some(Ok(m)),
            Err(Failure::Start(why)) => {
                eprintln!("could not start: {why}");
                config.unavailable = Some(format!("could not start: {why}"));
                None
            }
            Err(Failure::Run(why)) => {
                eprintln!("failed: {why}");
                Some(Err(why))
            }
        }
    }

    /// A peak run with the configuration's load generator (wrk or h2load): the measured
    /// one for `Some(duration)`, else the warm-up (nothing when `--warmup 0s`).
    fn peak_run(
        &self,
        config: &Config,
        scenario: Scenario,
        connections: usize,
        run_dir: &Path,
        measured: Option<std::time::Duration>,
    ) -> Result<Measurement, String> {
        let s = self.settings;
        let url = format!("{}{}", config.target, scenario.path());
        let (duration, log) = match measured {
            Some(duration) => (duration, "load.txt"),
            None if s.warmup.is_zero() => return Ok(Measurement::default()),
            // A separate short run: h2load's own --warm-up-time measured nothing here.
            None => (s.warmup, "warmup.txt"),
        };
        let log = run_dir.join(log);
        match config.tool {
            LoadTool::Wrk => {
                let wrk = WrkCommand::new(
                    self.pin,
                    s.wrk_threads,
                    connections,
                    duration,
                    scenario.script(),
                    &url,
                );
                Ok(Measurement::from_wrk(&wrk.run(self.root, &log)?))
            }
            LoadTool::H2load => {
                let shape =
                    H2Load::for_concurrency(self.pin, s.wrk_threads, connections, s.h2_streams);
                // Apart from the warm-up's, so each run reads only its own requests.
                let requests = run_dir.join(if measured.is_some() {
                    "requests.tsv"
                } else {
                    "warmup-requests.tsv"
                });
                let h2load = H2loadCommand::new(
                    shape,
                    duration,
                    scenario,
                    &url,
                    &requests.to_string_lossy(),
                );
                let result = h2load.run(self.root, &log, &requests)?;
                if result.summary.protocol.as_deref() != Some("h2") {
                    return Err(format!(
                        "h2load did not negotiate h2 ({})",
                        result.summary.negotiated()
                    ));
                }
                Ok(Measurement::from_h2load(&result, scenario.inserts()))
            }
        }
    }
}

/// The two halves of a run: the warm-up (not counted) and the measured load.
struct Load<W, L> {
    warm_up: W,
    measure: L,
}

/// Starts the configuration, warms it up, measures, stops it; around an insert run,
/// counts the rows the table gained.
fn measure<M: HasRows>(
    config: &mut Config,
    scenario: Scenario,
    root: &Path,
    run_dir: &Path,
    load: Load<
        impl FnOnce(&Config, &Path) -> Result<(), String>,
        impl FnOnce(&Config, &Path) -> Result<M, String>,
    >,
) -> Result<M, Failure> {
    let running = config.start(run_dir, root).map_err(Failure::Start)?;
    let drive = || -> Result<M, String> {
        let config = &*config;
        (load.warm_up)(config, run_dir).map_err(|e| format!("warm-up: {e}"))?;
        // Counted after the warm-up, so only the measured run's inserts (plus any of the
        // warm-up's still in flight) are compared with its acknowledgements.
        let before = scenario
            .inserts()
            .then(|| crate::http::mega_rows(&config.direct));
        let mut m = (load.measure)(config, run_dir)?;
        if let Some(before) = before {
            let after = crate::http::mega_rows(&config.direct);
            m.rows_mut()
                .record(before.and_then(|b| after.map(|a| a.saturating_sub(b))));
        }
        Ok(m)
    };
    let result = drive();
    for note in running.stop() {
        config.note(note);
    }
    result.map_err(Failure::Run)
}

/// Creates a run folder readable by nginx's workers, which drop root for `nobody`.
fn make_run_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    open_permissions(dir)
}

/// `rwxr-xr-x` on a folder (tempfile creates them private).
#[cfg(unix)]
pub(crate) fn open_permissions(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("setting permissions on {}: {e}", dir.display()))
}

/// Nothing to open elsewhere: nginx only drops privileges on Unix.
#[cfg(not(unix))]
pub(crate) fn open_permissions(_dir: &Path) -> Result<(), String> {
    Ok(())
}
