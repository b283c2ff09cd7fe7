//! The measuring loop: for each scenario and connection count, `--repeat` rounds in
//! which every configuration runs once (interleaved, so slow drift of the machine spreads
//! over all of them), each run on a freshly started configuration with a warm-up first.
//! Collects [`Cell`]s for the report.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::cli::Settings;
use crate::scenario::Scenario;
use crate::target::Config;
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
        self.measured().any(Measurement::rows_missing)
    }
}

/// How a run failed.
enum Failure {
    /// The configuration did not start: skip its remaining runs.
    Start(String),
    /// This run failed; later ones may still work.
    Run(String),
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
) -> Vec<Cell> {
    let mut cells = Vec::new();
    let total = settings.cells();
    let started = Instant::now();
    let mut index = 0;
    for &scenario in &settings.scenarios {
        for &connections in &settings.connections {
            let first = cells.len();
            cells.extend(configs.iter().map(|c| Cell {
                scenario,
                connections,
                config: c.name.clone(),
                attempts: Vec::new(),
            }));
            for rep in 0..settings.repeat {
                // Rotate the starting configuration each round: no configuration always
                // runs right after the same neighbour.
                for k in 0..configs.len() {
                    let i = (k + rep) % configs.len();
                    index += 1;
                    let config = &mut configs[i];
                    let label = format!(
                        "[{index:>3}/{total}] {} c={connections} rep {}/{} {}",
                        scenario.name(),
                        rep + 1,
                        settings.repeat,
                        config.name
                    );
                    if let Some(why) = &config.unavailable {
                        eprintln!("{label}: skipped ({})", crate::process::shorten(why, 120));
                        continue;
                    }
                    let run_dir = scratch.join(format!("{index:04}-{}", config.name));
                    let outcome = match make_run_dir(&run_dir) {
                        Ok(()) => {
                            measure(config, scenario, connections, settings, root, &run_dir, pin)
                        }
                        Err(e) => Err(Failure::Run(e)),
                    };
                    // The database of an insert run can be large: free it now.
                    let _ = std::fs::remove_dir_all(&run_dir);
                    let eta = eta(started, index, total);
                    match outcome {
                        Ok(m) => {
                            eprintln!("{label}: {:.0} req/s, p99 {:.2} ms{eta}", m.rps, m.p99_ms);
                            cells[first + i].attempts.push(Attempt {
                                rep,
                                measurement: Some(m),
                                error: None,
                            });
                        }
                        Err(Failure::Start(why)) => {
                            eprintln!("{label}: could not start: {why}");
                            config.unavailable = Some(format!("could not start: {why}"));
                        }
                        Err(Failure::Run(why)) => {
                            eprintln!("{label}: failed: {why}");
                            cells[first + i].attempts.push(Attempt {
                                rep,
                                measurement: None,
                                error: Some(why),
                            });
                        }
                    }
                }
            }
        }
    }
    cells
}

/// Starts the configuration, drives it, stops it.
fn measure(
    config: &mut Config,
    scenario: Scenario,
    connections: usize,
    settings: &Settings,
    root: &Path,
    run_dir: &Path,
    pin: bool,
) -> Result<Measurement, Failure> {
    let running = config.start(run_dir, root).map_err(Failure::Start)?;
    // Warm-up, row count, measured run, row count.
    let drive = || -> Result<Measurement, String> {
        let config = &*config;
        let url = format!("{}{}", config.target, scenario.path());
        let wrk = |duration| {
            WrkCommand::new(
                pin,
                settings.wrk_threads,
                connections,
                duration,
                scenario.script(),
                &url,
            )
        };
        if !settings.warmup.is_zero() {
            wrk(settings.warmup)
                .run(root, &run_dir.join("warmup.txt"))
                .map_err(|e| format!("warm-up: {e}"))?;
        }
        // Counted after the warm-up, so only the measured run's inserts (plus any of the
        // warm-up's still in flight) are compared with its acknowledgements.
        let before = scenario
            .inserts()
            .then(|| crate::http::mega_rows(&config.direct));
        let result = wrk(settings.duration).run(root, &run_dir.join("wrk.txt"))?;
        let mut m = Measurement::from_wrk(&result);
        if let Some(before) = before {
            match before
                .and_then(|b| crate::http::mega_rows(&config.direct).map(|a| a.saturating_sub(b)))
            {
                Ok(found) => m.rows_found = Some(found),
                Err(e) => m.rows_note = Some(format!("row count unavailable: {e}")),
            }
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

fn eta(started: Instant, done: usize, total: usize) -> String {
    let left = total.saturating_sub(done);
    if done == 0 || left == 0 {
        return String::new();
    }
    let per_run = started.elapsed().as_secs_f64() / done as f64;
    format!(
        " (about {:.0} min left)",
        (per_run * left as f64 / 60.0).ceil()
    )
}
