//! `report.md`: what a person reads. One table per scenario (median run per row, ratio to
//! the baseline), the rows that could not run and why, the method, the machine, the
//! versions and the exact commands. [`crate::json`] writes the same facts for machines.

use std::fmt::Write as _;

use crate::cli::Mode;
use crate::h2load::{H2Load, H2loadCommand};
use crate::process::RUN_DIR;
use crate::run::Cell;
use crate::scenario::Scenario;
use crate::target::{Config, LoadTool, randoms_queue, shell_join};
use crate::wrk::{REQUEST_TIMEOUT, WrkCommand, errors};

pub(crate) use crate::run_info::RunInfo;
pub(crate) use crate::text::{ms, thousands};

/// A row that did not run (or a run that failed), and why.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct NotRun {
    /// The configuration.
    pub(crate) config: String,
    /// Which runs: "all runs" or `scenario, c=N, repeat R`.
    pub(crate) which: String,
    /// Why.
    pub(crate) reason: String,
}

impl RunInfo<'_> {
    /// The configuration every ratio is relative to: the first one selected.
    pub(crate) fn baseline(&self) -> Option<&str> {
        self.configs.first().map(|c| c.name.as_str())
    }

    /// `cell`'s median throughput over the baseline's at the same scenario and
    /// connections.
    pub(crate) fn ratio(&self, cell: &Cell) -> Option<f64> {
        let base = self.baseline()?;
        let base = self.cells.iter().find(|c| {
            c.config == base && c.scenario == cell.scenario && c.connections == cell.connections
        })?;
        let (m, b) = (cell.median()?, base.median()?);
        (b.rps > 0.0).then(|| m.rps / b.rps)
    }

    /// The sentence on sharing the machine, pinning included.
    pub(crate) fn shares_machine(&self) -> String {
        let cores = self.machine.cores;
        let mut s = format!(
            "The load generator (wrk, h2load) and the servers share this machine ({cores} \
             cores): every request also costs the generator CPU time, so absolute figures are \
             lower than on separate machines, and comparisons between rows are the point. "
        );
        if self.pinned {
            s.push_str(
                "Pinned (`--pin`): the servers (loadlab, nginx) run on CPU 0 (`taskset -c 0`) \
                    and wrk on \
                 CPU 1 (`taskset -c 1`); servers you run yourself (`--extra`) are not pinned.",
            );
        } else {
            s.push_str("Not pinned: the kernel schedules wrk and the servers over all cores.");
        }
        if let Some(note) = &self.pin_note {
            let _ = write!(s, " `--pin` was asked for but not applied: {note}.");
        }
        s
    }

    /// Rows that did not run: unavailable configurations and failed runs.
    pub(crate) fn not_run(&self) -> Vec<NotRun> {
        let mut rows: Vec<NotRun> = self
            .configs
            .iter()
            .filter_map(|c| {
                let reason = c.unavailable.clone()?;
                let ran = self
                    .cells
                    .iter()
                    .any(|cell| cell.config == c.name && cell.median().is_some())
                    || self
                        .rates
                        .iter()
                        .any(|cell| cell.config == c.name && cell.median().is_some());
                let which = if ran {
                    "the runs after it failed to start"
                } else {
                    "all runs"
                };
                Some(NotRun {
                    config: c.name.clone(),
                    which: which.to_owned(),
                    reason,
                })
            })
            .collect();
        for c in self.configs.iter().filter(|c| c.unavailable.is_none()) {
            for &scenario in &self.settings.scenarios {
                if let Some(reason) = c.unsupported(scenario) {
                    rows.push(NotRun {
                        config: c.name.clone(),
                        which: format!("{}, all runs", scenario.name()),
                        reason: reason.to_owned(),
                    });
                }
            }
        }
        for cell in self.cells {
            for attempt in &cell.attempts {
                if let Some(error) = &attempt.error {
                    rows.push(NotRun {
                        config: cell.config.clone(),
                        which: format!(
                            "{}, c={}, repeat {}",
                            cell.scenario.name(),
                            cell.connections,
                            attempt.rep + 1
                        ),
                        reason: error.clone(),
                    });
                }
            }
        }
        for cell in self.rates {
            for attempt in &cell.attempts {
                if let Some(error) = &attempt.error {
                    rows.push(NotRun {
                        config: cell.config.clone(),
                        which: format!(
                            "{}, c={}, {:.0} req/s, repeat {}",
                            cell.scenario.name(),
                            cell.connections,
                            cell.target_rate,
                            attempt.rep + 1
                        ),
                        reason: error.clone(),
                    });
                }
            }
        }
        rows
    }
}

impl RunInfo<'_> {
    /// The commands `tool` runs for a scenario's measured runs, one per connection count,
    /// the target shown as `$TARGET`; none when `tool` cannot send the scenario.
    pub(crate) fn load_commands(&self, tool: LoadTool, scenario: Scenario) -> Vec<String> {
        let s = self.settings;
        s.connections
            .iter()
            .filter_map(|&connections| self.load_command(tool, scenario, connections))
            .collect()
    }

    fn load_command(
        &self,
        tool: LoadTool,
        scenario: Scenario,
        connections: usize,
    ) -> Option<String> {
        let s = self.settings;
        let argv = match tool {
            LoadTool::Wrk => {
                let wrk = WrkCommand::new(
                    self.pinned,
                    s.wrk_threads,
                    connections,
                    s.duration,
                    scenario.script(),
                    "",
                );
                wrk.argv
            }
            LoadTool::H2load => {
                crate::h2load::unsupported(scenario)
                    .is_none()
                    .then_some(())?;
                let shape =
                    H2Load::for_concurrency(self.pinned, s.wrk_threads, connections, s.h2_streams);
                let log = format!("{RUN_DIR}/requests.tsv");
                H2loadCommand::new(shape, s.duration, scenario, "", &log).argv
            }
        };
        let shown = shell_join(&argv[..argv.len() - 1]).replace(RUN_DIR, "$RUN_DIR");
        Some(format!("{shown} \"$TARGET{}\"", scenario.path()))
    }

    /// Whether any configuration of the run is driven by `tool`.
    pub(crate) fn uses(&self, tool: LoadTool) -> bool {
        self.configs.iter().any(|c| c.tool == tool)
    }
}

/// Writes the markdown report.
pub(crate) fn markdown(info: &RunInfo<'_>) -> String {
    let s = info.settings;
    let mut md = String::new();
    let _ = writeln!(md, "# loadlab load-test comparison, {}\n", info.date);
    let _ = writeln!(md, "{}\n", info.shares_machine());
    if s.quick {
        md.push_str(
            "**Smoke run (`--quick`)**: runs of a few seconds, no repeats: the figures \
            are rough.\n\n",
        );
    }
    let _ = writeln!(md, "**Store**: {}.\n", s.store_words());
    if s.mode == Mode::Rate {
        md.push_str(&crate::rate_report::sections(info));
    }
    if !info.cells.is_empty() {
        md.push_str(&peak_sections(info));
    }
    md.push_str("## Rows not run\n\n");
    let not_run = info.not_run();
    if not_run.is_empty() {
        md.push_str("Every row ran.\n\n");
    }
    for row in &not_run {
        let _ = writeln!(
            md,
            "- `{}`, {}: {}",
            row.config,
            row.which,
            one_line(&row.reason)
        );
    }
    for config in info.configs.iter().filter(|c| !c.notes.is_empty()) {
        let _ = writeln!(md, "- `{}` note: {}", config.name, config.notes.join("; "));
    }
    if !not_run.is_empty() || info.configs.iter().any(|c| !c.notes.is_empty()) {
        md.push('\n');
    }
    md.push_str(&method(info));
    md.push_str(&machine_and_commands(info));
    md
}

/// The peak (wrk) tables and their charts.
fn peak_sections(info: &RunInfo<'_>) -> String {
    let s = info.settings;
    let mut md = String::new();
    let base = info.baseline().unwrap_or("none");
    if s.mode == Mode::Rate {
        md.push_str(
            "## Peaks (wrk, closed loop)\n\nThe peak of each row, measured first: the \
             rates above are fractions of it.\n\n",
        );
    } else {
        md.push_str("## Results\n\n");
    }
    let _ = writeln!(
        md,
        "Each row is the median of {} measured run(s) of {} s by requests/s (all figures from \
         that one run), after a {} s warm-up; *spread* is the slowest and fastest run. \
         Latencies in milliseconds, as wrk measures them (from the actual send: under a \
         closed loop that is the latency of a queue wrk keeps full). *vs {base}*: requests/s \
         over the `{base}` row's at the same connections. *errors*: socket errors (connect, \
         read, write, timeouts over {} s); *non-2xx*: responses outside 2xx.\n",
        s.repeat,
        s.duration.as_secs(),
        s.warmup.as_secs(),
        REQUEST_TIMEOUT.as_secs(),
    );
    for &scenario in &s.scenarios {
        let _ = writeln!(md, "### {}\n\n{}.\n", scenario.name(), scenario.describe());
        md.push_str(&scenario_table(info, scenario));
        md.push('\n');
    }
    md.push_str(
        "### Peak charts\n\nBars: the median run; whiskers: the slowest and fastest of the \
         repeats.\n\n![Throughput per configuration and scenario](throughput.svg)\n\n",
    );
    md.push_str("![p99 latency per configuration and scenario](p99.svg)\n\n");
    md
}

fn scenario_table(info: &RunInfo<'_>, scenario: Scenario) -> String {
    let base = info.baseline().unwrap_or("baseline");
    let mut t = String::new();
    let rows_col = if scenario.inserts() {
        " rows found / acked |"
    } else {
        ""
    };
    let rows_sep = if scenario.inserts() { "---|" } else { "" };
    let _ = writeln!(
        t,
        "| configuration | driver | conns | req/s | spread | p50 | p90 | p99 | p99.9 | max \
            | errors | non-2xx |{rows_col} vs {base} |"
    );
    let _ = writeln!(
        t,
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|{rows_sep}---:|"
    );
    for &connections in &info.settings.connections {
        for config in info.configs {
            let Some(cell) = info.cells.iter().find(|c| {
                c.scenario == scenario && c.connections == connections && c.config == config.name
            }) else {
                continue;
            };
            let driver = cell.tool.name();
            let Some(m) = cell.median() else {
                let not_run =
                    config.unavailable.is_some() || config.unsupported(scenario).is_some();
                let why = if not_run { "not run" } else { "failed" };
                let rows = if scenario.inserts() { " |" } else { "" };
                let _ = writeln!(
                    t,
                    "| {} | {driver} | {connections} | {why} (see below) | | | | | | | | |{rows} |",
                    config.name
                );
                continue;
            };
            let spread = cell
                .spread()
                .filter(|_| cell.attempts.len() > 1)
                .map_or_else(String::new, |(lo, hi)| {
                    format!("{}–{}", thousands(lo), thousands(hi))
                });
            let rows = if scenario.inserts() {
                format!(" {} |", m.answers.rows.cell(cell.rows_missing()))
            } else {
                String::new()
            };
            let ratio = info
                .ratio(cell)
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"));
            let _ = writeln!(
                t,
                "| {} | {driver} | {connections} | {} | {spread} | {} | {} | {} | {} | {} | {} \
                 | {} |{rows} {ratio} |",
                config.name,
                thousands(m.rps),
                ms(m.p50_ms),
                ms(m.p90_ms),
                ms(m.p99_ms),
                ms(m.p999_ms),
                ms(m.max_ms),
                errors(m.answers.errors),
                thousands(m.answers.non_2xx as f64),
            );
        }
    }
    t
}

fn method(info: &RunInfo<'_>) -> String {
    let s = info.settings;
    let mut md = String::from("## Method\n\n");
    let _ = writeln!(
        md,
        "- For each scenario and connection count, {} round(s): each round runs every \
            configuration once, \
         the first configuration rotating from round to round, so drift of a noisy machine \
             spreads over all rows.",
        s.repeat
    );
    md.push_str(
        "- Every run starts its configuration afresh (new temporary database, new processes), \
            waits for \
         `GET /readyz` to answer 200, warms up with the same load, measures, then stops \
             everything with \
         SIGTERM (SIGKILL after 10 s).\n",
    );
    md.push_str(
        "- wrk is closed-loop: each connection sends its next request when the previous one is \
            answered, so \
         it finds capacity but does not correct coordinated omission; compare latencies between \
             rows of \
         similar throughput.\n",
    );
    if info.uses(LoadTool::H2load) || info.configs.iter().any(|c| !c.rate_reachable()) {
        md.push_str(&tls_method(info));
    }
    if s.mode == Mode::Rate {
        md.push_str(&crate::rate_report::method(s));
    }
    let _ = writeln!(
        md,
        "- Every `loadlab serve` runs with `--randoms-queue {}` (default 64): otherwise \
            randoms-1e6 at 256 \
         connections would measure admission 503s instead of throughput. The front runs with \
         `--upstream-idle {}` and nginx with `keepalive {}`, both sized to the most connections \
             of the run; \
         HAProxy reuses its upstream connections across clients (`http-reuse always`).",
        randoms_queue(s.max_connections()),
        s.max_connections(),
        s.max_connections(),
    );
    md.push_str(
        "- Inserts: the table's row count (`GET /app/mega/stats` on shard 0) is read after the \
            warm-up and \
         after the measured run; *rows found* is the difference and *acked* the 201s wrk \
             received. Found \
         must be at least acked (an insert still in flight when wrk stops may add a few more).\n",
    );
    md.push_str(
        "- *non-2xx*: counted by the Lua script for insert and mixed; for the others wrk's own \
            count of \
         4xx and 5xx.\n\n",
    );
    md
}

/// The method of the TLS rows: the certificate, what drives them, how h2load is read.
fn tls_method(info: &RunInfo<'_>) -> String {
    let s = info.settings;
    let mut md = String::from(
        "- TLS rows (`front-tls`, `front-h2`, `nginx-h2`, `haproxy-h2`): every server reads \
         one self-signed ECDSA P-256 certificate made for the run; TLS 1.2 and 1.3 offered, \
         the load generator picks (see the notes for what h2load negotiated). `front-tls` is \
         driven by wrk's HTTP/1.1 over TLS; the `-h2` rows by h2load, ALPN `h2` (a run that \
         negotiates anything else fails). Behind every front, HTTP/1.1 keep-alive to the \
         shards (`front*`: in-process).\n",
    );
    let _ = writeln!(
        md,
        "- h2load (one thread per wrk thread) opens *conns* / {streams} connections of \
         {streams} concurrent streams each (`--h2-streams`), so as many requests are in \
         flight as wrk keeps with *conns* connections. Its percentiles come from its \
         per-request log (`--log-file`), from the actual send, as wrk's; *errors* are the \
         requests it counts `errored` (no answer: a reset stream or a lost connection; \
         its `timeout`s apart). It posts the same valid ticket for every insert \
         (`benches/h2load/ticket.json`) and cannot send the mixed pattern.",
        streams = s.h2_streams
    );
    if s.mode == Mode::Rate {
        md.push_str(
            "- Rate mode's open-loop driver speaks cleartext HTTP/1.1 only: the TLS rows have \
             their peaks, no fixed-rate runs.\n",
        );
    }
    md
}

fn machine_and_commands(info: &RunInfo<'_>) -> String {
    let (m, v, s) = (&info.machine, &info.versions, info.settings);
    let mut md = String::from("## Machine and versions\n\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| CPU | {} × {} |", m.cores, m.cpu_model);
    let _ = writeln!(md, "| memory | {} GiB |", m.memory_gib);
    let _ = writeln!(md, "| kernel | {} |", m.kernel);
    let _ = writeln!(md, "| load average at start | {} |", m.load_average);
    let steal = m.steal_during_runs.map_or_else(
        || "not measured".to_owned(),
        |share| format!("{:.1}% of the CPU time (/proc/stat)", share * 100.0),
    );
    let _ = writeln!(md, "| hypervisor steal during the runs | {steal} |");
    let _ = writeln!(md, "| loadlab | {} (commit {}) |", v.loadlab, v.commit);
    let _ = writeln!(md, "| rustc | {} |", v.rustc);
    let _ = writeln!(md, "| wrk | {} |", v.wrk);
    let _ = writeln!(md, "| nginx | {} |", v.nginx);
    let _ = writeln!(md, "| HAProxy | {} |", v.haproxy);
    let _ = writeln!(md, "| h2load | {} |\n", v.h2load);
    md.push_str("## Commands\n\n");
    let _ = writeln!(
        md,
        "The harness, from the repository root:\n\n```sh\n{}\n```\n",
        info.command
    );
    md.push_str(
        "Configurations (`$RUN_DIR`: a fresh temporary folder for each run; `$TARGET`: \
        where the driver points):\n\n",
    );
    md.push_str("| configuration | what | driver | `$TARGET` |\n|---|---|---|---|\n");
    for c in info.configs {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} |",
            c.name,
            c.description,
            c.tool.name(),
            c.target
        );
    }
    md.push_str("\n```sh\n");
    for c in info.configs {
        let _ = writeln!(md, "# {}", c.name);
        for command in c.commands(info.root) {
            let _ = writeln!(md, "{command}");
        }
    }
    md.push_str("```\n\n");
    for (file, _) in info.configs.iter().filter_map(Config::proxy_conf) {
        let _ = writeln!(md, "The generated `{file}` is in this folder.\n");
    }
    if info.cells.is_empty() {
        // `--rates`: no peak runs, so no wrk command to show.
        return md;
    }
    let warmup = s.warmup.as_secs();
    let intros = [
        (
            LoadTool::Wrk,
            format!(
                "wrk, for each scenario (`-c` as in the table; warm-up: the same with \
                 `-d{warmup}s`)"
            ),
        ),
        (
            LoadTool::H2load,
            format!(
                "h2load, for the h2 rows (`-c` connections of `-m` streams: as many requests \
                 in flight as the table's *conns*; warm-up: the same with `-D{warmup}`)"
            ),
        ),
    ];
    for (tool, intro) in intros.iter().filter(|(tool, _)| info.uses(*tool)) {
        let _ = writeln!(md, "{intro}:\n\n```sh");
        for &scenario in &s.scenarios {
            for command in info.load_commands(*tool, scenario) {
                let _ = writeln!(md, "{command}");
            }
        }
        md.push_str("```\n\n");
    }
    md
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '|'], " ")
}
