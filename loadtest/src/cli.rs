//! The harness's flags (everything after `cargo bench --bench loadtest --`), parsed by
//! clap and validated once into [`Settings`], which the rest of the harness reads.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;

use crate::scenario::Scenario;

/// Names of the built-in configurations, in report order (built by
/// [`crate::target::plan`]).
pub(crate) const BUILT_IN: [&str; 12] = [
    "shards1",
    "sharded",
    "front",
    "front-tcp",
    "nginx",
    "haproxy",
    "front-tls",
    "front-h2",
    "nginx-h2",
    "haproxy-h2",
    "pg1",
    "hosts2",
];

/// The built-in configurations that run only when `--configs` names them: the TLS rows,
/// a comparison of their own (their load generator differs, and they would add most of
/// an hour to the default run).
pub(crate) const OPT_IN: [&str; 4] = ["front-tls", "front-h2", "nginx-h2", "haproxy-h2"];

/// Load-test comparisons of loadlab set-ups (and of anything else on this machine).
///
/// Starts each configuration on loopback ports, drives it, stops it, and writes report.md,
/// report.html, results.json, results.csv and SVG charts to a dated folder under
/// benches/results/. `--mode max` (the default) finds each set-up's peak throughput with
/// wrk; `--mode rate` holds fixed request rates with an open-loop driver and measures the
/// latency users would see at each rate (corrected for coordinated omission).
#[derive(Debug, Parser)]
#[command(name = "cargo bench --bench loadtest --", max_term_width = 100)]
pub(crate) struct Flags {
    /// `max`: peak throughput with wrk (closed loop); `rate`: latency at fixed request
    /// rates with the open-loop driver (see --rates, --rate-steps, --slo).
    #[arg(long, value_enum, default_value_t = Mode::Max)]
    mode: Mode,

    /// Rate mode: fixed rates to hold, requests/s, comma-separated, e.g. 1000,5000,20000.
    #[arg(long, value_delimiter = ',', conflicts_with = "rate_steps")]
    rates: Option<Vec<f64>>,

    /// Rate mode: rates as fractions of each row's peak, measured with wrk in the same run
    /// first [default: 0.25,0.5,0.75,0.9,1.0,1.1].
    #[arg(long, value_delimiter = ',')]
    rate_steps: Option<Vec<f64>>,

    /// Rate mode: the p99 latency target of the headline table (the highest rate served
    /// with p99 under it and no errors) [default: 10ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    slo: Option<Duration>,

    /// Measured time per run, whole seconds (wrk's unit) [default: 10s; --quick: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,

    /// Warm-up before each measured run, whole seconds; 0 for none [default: 2s; --quick: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,

    /// Concurrent connections, comma-separated [default: 64,256; --quick and --mode rate:
    /// 64].
    #[arg(long, value_delimiter = ',')]
    connections: Option<Vec<usize>>,

    /// Scenarios to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Option<Vec<Scenario>>,

    /// Configurations to run, comma-separated: shards1, sharded, front, front-tcp, nginx,
    /// haproxy, pg1 and hosts2 (need PostgreSQL: --postgres), the TLS rows front-tls
    /// (HTTP/1.1 over TLS, wrk), front-h2, nginx-h2 and haproxy-h2 (h2 over TLS, h2load),
    /// and the names given to --extra [default: all but the TLS rows].
    #[arg(long, value_delimiter = ',')]
    configs: Option<Vec<String>>,

    /// Measured runs per configuration, scenario and connection count (and rate); the
    /// median is reported [default: 3; --quick and --mode rate: 1].
    #[arg(long)]
    repeat: Option<usize>,

    /// A smoke run: 1s runs, 1s warm-up, 1 repeat, 64 connections (explicit flags win).
    #[arg(long)]
    quick: bool,

    /// Pin the servers to CPU 0 and wrk to CPU 1 (taskset).
    #[arg(long)]
    pin: bool,

    /// A server you run yourself, compared under the same load: NAME=URL, e.g.
    /// node=http://127.0.0.1:3000 (loopback only; repeatable).
    #[arg(long = "extra", value_name = "NAME=URL", value_parser = parse_extra)]
    extras: Vec<Extra>,

    /// Output folder [default: benches/results/<UTC date-time>].
    #[arg(long)]
    out: Option<PathBuf>,

    /// Shards of every configuration but shards1 and pg1 [default: number of cores].
    #[arg(long)]
    shards: Option<usize>,

    /// wrk threads (each drives connections/threads connections); h2load's too.
    #[arg(long, default_value_t = 1)]
    wrk_threads: usize,

    /// The h2 rows: concurrent streams per h2load connection (`-m`); h2load opens
    /// connections/streams connections (rounded up), so as many requests are in flight as
    /// wrk's connections keep.
    #[arg(long, default_value_t = 8)]
    h2_streams: usize,

    /// Threads of every proxy row: nginx's worker processes, HAProxy's `nbthread`, and
    /// the loadlab front's `--front-threads` (`front`, `front-tcp`). One by default:
    /// like `sharded`, whose one shard thread serves wrk, each row then has one thread
    /// doing the proxy's work, and the ratio to `sharded` is the cost of the hop.
    #[arg(long, alias = "nginx-workers", default_value_t = 1)]
    proxy_threads: usize,

    /// An extra flag for every `loadlab serve` (repeatable), e.g. --serve-arg=--db-sync=normal
    /// or --serve-arg=--db=postgres://user@127.0.0.1/loadlab (the report names the store).
    #[arg(long = "serve-arg", value_name = "FLAG", allow_hyphen_values = true)]
    serve_args: Vec<String>,

    /// A PostgreSQL database for the `pg1` and `hosts2` configurations, e.g.
    /// postgres://postgres@127.0.0.1:5432/loadlab; the other configurations keep their
    /// store, so one report shows both side by side.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,

    /// Passed by `cargo bench`; without it (as under `cargo test --benches`) the harness
    /// only runs its self-checks.
    #[arg(long, hide = true)]
    pub(crate) bench: bool,

    /// Bench name filters from `cargo bench FILTER`: the load test runs only when none is
    /// given or one of them matches "loadtest".
    #[arg(hide = true)]
    pub(crate) filters: Vec<String>,
}

/// A server the user runs, named for the report.
#[derive(Debug, Clone)]
pub(crate) struct Extra {
    /// Its name in `--configs` and the report.
    pub(crate) name: String,
    /// Its base URL, without a trailing slash.
    pub(crate) url: String,
}

/// The validated settings of one harness run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// What the run measures.
    pub(crate) mode: Mode,
    /// Rate mode: which rates each row is driven at.
    pub(crate) ladder: Ladder,
    /// Rate mode: the p99 target of the headline table.
    pub(crate) slo: Duration,
    /// Measured time per run.
    pub(crate) duration: Duration,
    /// Warm-up per run; zero: none.
    pub(crate) warmup: Duration,
    /// Connection counts, in the order given.
    pub(crate) connections: Vec<usize>,
    /// Scenarios, in report order.
    pub(crate) scenarios: Vec<Scenario>,
    /// Names of the configurations to run, in report order (built-ins first).
    pub(crate) configs: Vec<String>,
    /// Measured runs per cell.
    pub(crate) repeat: usize,
    /// Whether this is a `--quick` smoke run.
    pub(crate) quick: bool,
    /// Whether to pin servers and wrk to separate cores.
    pub(crate) pin: bool,
    /// User-run servers.
    pub(crate) extras: Vec<Extra>,
    /// Output folder.
    pub(crate) out: PathBuf,
    /// Shards of the multi-shard configurations.
    pub(crate) shards: usize,
    /// wrk threads (and h2load's).
    pub(crate) wrk_threads: usize,
    /// Streams per h2load connection.
    pub(crate) h2_streams: usize,
    /// nginx worker processes, HAProxy's threads, the loadlab front's threads.
    pub(crate) proxy_threads: usize,
    /// Extra flags for every `loadlab serve`.
    pub(crate) serve_args: Vec<String>,
    /// `--postgres`: the database of `pg1` and `hosts2`.
    pub(crate) postgres: Option<String>,
    /// Cores of this machine.
    pub(crate) cores: usize,
}

/// The store every `loadlab serve` of the run writes to, from `--serve-arg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreUsed {
    /// A SQLite file per measured run (the default `--db`).
    Sqlite,
    /// A PostgreSQL database shared by every run; the URL with its password masked.
    Postgres(String),
}

impl Settings {
    /// The last `--db` among the serve args (it wins, as in `loadlab serve`).
    fn serve_db(&self) -> Option<String> {
        let mut db = None;
        let mut args = self.serve_args.iter();
        while let Some(arg) = args.next() {
            if let Some(value) = arg.strip_prefix("--db=") {
                db = Some(value.to_owned());
            } else if arg == "--db" {
                db = args.next().cloned();
            }
        }
        db
    }

    /// The store every `loadlab serve` of the run uses.
    pub(crate) fn store(&self) -> StoreUsed {
        match self.serve_db() {
            Some(url) if is_postgres(&url) => {
                StoreUsed::Postgres(loadlab_workers::mega::mask_password(&url))
            }
            _ => StoreUsed::Sqlite,
        }
    }

    /// The PostgreSQL database of `pg1` and `hosts2`: `--postgres`, else the serve
    /// args' `--db` when it is one.
    pub(crate) fn postgres_url(&self) -> Option<String> {
        let serve_db = || self.serve_db().filter(|url| is_postgres(url));
        self.postgres.clone().or_else(serve_db)
    }

    /// The store in words, for the report.
    pub(crate) fn store_words(&self) -> String {
        let pg = match (&self.postgres, self.store()) {
            (Some(url), StoreUsed::Sqlite) => format!(
                "; `pg1` and `hosts2`: PostgreSQL at `{}` (`--postgres`), shared by their runs \
                 (rows accumulate; the row check counts the difference)",
                loadlab_workers::mega::mask_password(url)
            ),
            _ => String::new(),
        };
        let base = match self.store() {
            StoreUsed::Sqlite => {
                "SQLite: a new file per measured run (`--db $RUN_DIR/mega.db`)".to_owned()
            }
            StoreUsed::Postgres(url) => format!(
                "PostgreSQL at `{url}`, shared by every run and process (rows accumulate; the row \
                 check counts the difference)"
            ),
        };
        format!("{base}{pg}")
    }

    /// Validates the flags; `now_stamp` names the default output folder.
    pub(crate) fn from_flags(
        flags: Flags,
        package_root: &std::path::Path,
        now_stamp: &str,
    ) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (duration, warmup) = run_times(&flags)?;
        let (ladder, slo) = rate_settings(&flags)?;
        // Quick runs and rate mode (one run per rate) default to one connection count
        // and one repeat, so they stay short.
        let few = flags.quick || flags.mode == Mode::Rate;
        let connections = connection_counts(&flags, few)?;
        let scenarios = scenarios_in_report_order(flags.scenarios.as_deref());
        let repeat = flags.repeat.unwrap_or(if few { 1 } else { 3 });
        if repeat == 0 {
            bail!("--repeat must be at least 1");
        }
        let shards = flags.shards.unwrap_or(cores);
        if !(1..=256).contains(&shards) {
            bail!("--shards must be between 1 and 256, got {shards}");
        }
        if !(1..=crate::h2load::MAX_STREAMS).contains(&flags.h2_streams) {
            bail!(
                "--h2-streams must be between 1 and {} (the servers' stream limit)",
                crate::h2load::MAX_STREAMS
            );
        }
        if flags.proxy_threads == 0 {
            bail!("--proxy-threads must be at least 1");
        }
        let configs = selected_configs(&flags)?;
        if let Some(url) = &flags.postgres
            && !is_postgres(url)
        {
            bail!("--postgres must be a postgres:// or postgresql:// URL");
        }
        let out = flags
            .out
            .unwrap_or_else(|| package_root.join("benches").join("results").join(now_stamp));
        Ok(Self {
            mode: flags.mode,
            ladder,
            slo,
            duration,
            warmup,
            connections,
            scenarios,
            configs,
            repeat,
            quick: flags.quick,
            pin: flags.pin,
            extras: flags.extras,
            out,
            shards,
            wrk_threads: flags.wrk_threads,
            h2_streams: flags.h2_streams,
            proxy_threads: flags.proxy_threads,
            serve_args: flags.serve_args,
            postgres: flags.postgres,
            cores,
        })
    }

    /// The most connections of any run: sizes queues and pools so that no configuration
    /// is measured against its own admission limits.
    pub(crate) fn max_connections(&self) -> usize {
        self.connections.iter().copied().max().unwrap_or(64)
    }

    /// Fixed-rate runs per configuration, scenario and connection count: none in max mode.
    pub(crate) fn rates_per_row(&self) -> usize {
        match (self.mode, &self.ladder) {
            (Mode::Max, _) => 0,
            (Mode::Rate, Ladder::Rates(v) | Ladder::Steps(v)) => v.len(),
        }
    }

    /// Whether the run measures peaks, with wrk or h2load (max mode, and rate mode's
    /// `--rate-steps`).
    pub(crate) fn measures_peaks(&self) -> bool {
        !matches!((self.mode, &self.ladder), (Mode::Rate, Ladder::Rates(_)))
    }
}

/// What a harness run measures (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// Peak throughput: wrk, closed loop.
    Max,
    /// Latency at fixed rates: the open-loop driver.
    Rate,
}

/// The rates of rate mode.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ladder {
    /// `--rates`: the same requests/s for every row.
    Rates(Vec<f64>),
    /// `--rate-steps`: fractions of each row's peak.
    Steps(Vec<f64>),
}

impl Ladder {
    /// The default `--rate-steps`: from light load to past the peak, where the hockey
    /// stick shows.
    pub(crate) const DEFAULT_STEPS: [f64; 6] = [0.25, 0.5, 0.75, 0.9, 1.0, 1.1];
}

/// Validates the rate-mode flags: the ladder and the SLO.
fn rate_settings(flags: &Flags) -> anyhow::Result<(Ladder, Duration)> {
    if flags.mode == Mode::Max
        && (flags.rates.is_some() || flags.rate_steps.is_some() || flags.slo.is_some())
    {
        bail!("--rates, --rate-steps and --slo apply to --mode rate only");
    }
    let ladder = match (&flags.rates, &flags.rate_steps) {
        (Some(rates), _) => {
            if let Some(bad) = rates
                .iter()
                .find(|r| !(r.is_finite() && **r >= 1.0 && **r <= 1e7))
            {
                bail!("--rates: each rate is requests/s between 1 and 10000000, got {bad}");
            }
            Ladder::Rates(sorted(rates))
        }
        (None, Some(steps)) => {
            if let Some(bad) = steps
                .iter()
                .find(|s| !(s.is_finite() && **s > 0.0 && **s <= 10.0))
            {
                bail!(
                    "--rate-steps: each step is a fraction of the peak above 0 \
                        and at most 10, got {bad}"
                );
            }
            Ladder::Steps(sorted(steps))
        }
        (None, None) => Ladder::Steps(Ladder::DEFAULT_STEPS.to_vec()),
    };
    if matches!(&ladder, Ladder::Rates(v) | Ladder::Steps(v) if v.is_empty()) {
        bail!("--rates and --rate-steps need at least one value");
    }
    let slo = flags.slo.unwrap_or(Duration::from_millis(10));
    if slo.is_zero() {
        bail!("--slo must be above zero, e.g. 10ms");
    }
    Ok((ladder, slo))
}

/// Validates `--duration` and `--warmup`, with their defaults: the measured time and
/// the warm-up of each run.
fn run_times(flags: &Flags) -> anyhow::Result<(Duration, Duration)> {
    let duration = flags
        .duration
        .unwrap_or(Duration::from_secs(if flags.quick { 1 } else { 10 }));
    let warmup = flags
        .warmup
        .unwrap_or(Duration::from_secs(if flags.quick { 1 } else { 2 }));
    whole_seconds("--duration", duration, 1)?;
    whole_seconds("--warmup", warmup, 0)?;
    Ok((duration, warmup))
}

/// Validates `--connections` against `--wrk-threads` (wrk gives each thread at least one
/// connection); `few`: the default is one count.
fn connection_counts(flags: &Flags, few: bool) -> anyhow::Result<Vec<usize>> {
    if flags.wrk_threads == 0 {
        bail!("--wrk-threads must be at least 1");
    }
    let connections = flags
        .connections
        .clone()
        .unwrap_or_else(|| if few { vec![64] } else { vec![64, 256] });
    if let Some(&c) = connections
        .iter()
        .find(|&&c| c < flags.wrk_threads || c > 100_000)
    {
        bail!(
            "--connections {c}: each count must be at least --wrk-threads ({}) and at most \
                100000",
            flags.wrk_threads
        );
    }
    if connections.is_empty() {
        bail!("--connections needs at least one count");
    }
    Ok(connections)
}

/// The scenarios asked for (all when `None`), in report order whatever the order on
/// the command line, without repeats.
fn scenarios_in_report_order(wanted: Option<&[Scenario]>) -> Vec<Scenario> {
    let mut scenarios = wanted.map_or_else(|| Scenario::ALL.to_vec(), <[Scenario]>::to_vec);
    scenarios.sort_by_key(|s| Scenario::ALL.iter().position(|a| a == s));
    scenarios.dedup();
    scenarios
}

/// Validates `--extra` names and `--configs`: the configurations to run, in report
/// order (built-ins first, then the extras in the order given).
fn selected_configs(flags: &Flags) -> anyhow::Result<Vec<String>> {
    for (i, extra) in flags.extras.iter().enumerate() {
        if BUILT_IN.contains(&extra.name.as_str())
            || flags.extras[..i].iter().any(|e| e.name == extra.name)
        {
            bail!("--extra name `{}` is taken: pick another", extra.name);
        }
    }
    let known: Vec<&str> = BUILT_IN
        .iter()
        .copied()
        .chain(flags.extras.iter().map(|e| e.name.as_str()))
        .collect();
    let configs: Vec<String> = match &flags.configs {
        None => known
            .iter()
            .filter(|k| !OPT_IN.contains(k))
            .map(|s| s.to_string())
            .collect(),
        Some(wanted) => {
            if let Some(unknown) = wanted.iter().find(|w| !known.contains(&w.as_str())) {
                bail!(
                    "--configs: unknown configuration `{unknown}` (known: {})",
                    known.join(", ")
                );
            }
            known
                .iter()
                .filter(|k| wanted.iter().any(|w| w == *k))
                .map(|s| s.to_string())
                .collect()
        }
    };
    if configs.is_empty() {
        bail!("--configs selects nothing");
    }
    Ok(configs)
}

/// Ascending, without repeats: the curve is drawn left to right.
fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

fn whole_seconds(flag: &str, d: Duration, min: u64) -> anyhow::Result<()> {
    if d.subsec_nanos() != 0 || d.as_secs() < min {
        bail!("{flag} must be a whole number of seconds, at least {min}s (wrk counts in seconds)");
    }
    Ok(())
}

/// Parses `NAME=URL` for `--extra`: a short name, and an `http://` URL on loopback.
pub(crate) fn parse_extra(s: &str) -> Result<Extra, String> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected NAME=URL, e.g. node=http://127.0.0.1:3000"))?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!("`{name}`: a name is letters, digits, - and _"));
    }
    let url = url.trim_end_matches('/').to_owned();
    let host = crate::http::url_host(&url).map_err(|e| format!("`{url}`: {e}"))?;
    // The comparison is only fair on the machine that runs wrk, and a load generator
    // must never be aimed at someone else's host by a typo.
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!(
            "`{url}`: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed"
        ));
    }
    Ok(Extra {
        name: name.to_owned(),
        url,
    })
}

/// Whether `cargo bench FILTER...` selected this bench (criterion-style substring match).
pub(crate) fn selected(filters: &[String]) -> bool {
    filters.is_empty() || filters.iter().any(|f| "loadtest".contains(f.as_str()))
}

/// Parses the flags, with a clear message for `--help` and mistakes.
pub(crate) fn parse() -> Flags {
    Flags::parse()
}

/// Whether a `--db` value names PostgreSQL (as `loadlab serve` decides).
fn is_postgres(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}
