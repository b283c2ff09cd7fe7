//! The configurations being compared: how each is started on loopback ports, where the
//! load generator points, and how it is stopped. Planned once per harness run by
//! [`plan`] (fixed ports, fixed commands, so the report can print them exactly), started
//! fresh for every measured run with a new temporary database.
//!
//! Built-in configurations (the names of `--configs`):
//! - `shards1`: `loadlab serve --shards 1 --no-front`, wrk on the shard (the baseline);
//! - `sharded`: `loadlab serve --shards N --no-front`, wrk on shard 0 only;
//! - `front`: `loadlab serve --shards N`, wrk on loadlab's front (which reaches its
//!   shards in-process);
//! - `front-tcp`: the same with `--front-path tcp` (the front reaches them over loopback);
//! - `nginx`: `loadlab serve --shards N --no-front` with nginx before its shards;
//! - `haproxy`: the same with HAProxy before its shards;
//! - `front-tls`: `front` serving TLS (`--tls-cert`), wrk's HTTP/1.1 over TLS on it;
//! - `front-h2`: the same, h2load's HTTP/2 over TLS (ALPN `h2`) on it;
//! - `nginx-h2`, `haproxy-h2`: `nginx` and `haproxy` terminating TLS and h2, h2load on
//!   them (HTTP/1.1 keep-alive to the shards, as the front's);
//! - `pg1`: `shards1` on the PostgreSQL database of `--postgres`;
//! - `hosts2`: two `loadlab serve --shards N --no-front` processes sharing one
//!   PostgreSQL database behind `loadlab front`, as two hosts would be (only with a
//!   `--postgres URL` or `--serve-arg=--db=postgres://...`: SQLite files cannot be
//!   shared).
//!
//! The proxy rows (every `front*`, `nginx*` and `haproxy*`) each run `--proxy-threads`
//! threads (one by default), as `sharded` serves wrk on one shard thread. The proxies'
//! generated configurations are in [`crate::peers`]; the TLS rows share one self-signed
//! certificate ([`crate::cert`]).
//!
//! Extras (`--extra NAME=URL`) are servers the user runs; the harness only points wrk at
//! them.

pub(crate) mod plan;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::cert::SelfSigned;
use crate::process::{Process, RUN_DIR, wait_ready};
use crate::scenario::Scenario;

/// How long a started configuration gets to answer `/readyz`.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// What runs behind a configuration.
#[derive(Debug, Clone)]
enum Setup {
    /// One `loadlab serve` command.
    Loadlab { loadlab: Vec<String> },
    /// `loadlab serve --no-front` with a proxy (nginx, HAProxy) before its shards.
    Proxy {
        loadlab: Vec<String>,
        /// The proxy's command line.
        proxy: Vec<String>,
        /// Its name in messages and its log's (`nginx`, `haproxy`).
        label: &'static str,
        /// Its configuration file's name in the run folder, and the text.
        file: &'static str,
        conf: String,
    },
    /// Two `loadlab serve --no-front` processes behind `loadlab front`.
    Hosts {
        apps: [Vec<String>; 2],
        front: Vec<String>,
        /// The front's config file, written to `$RUN_DIR/front.toml`.
        conf: String,
    },
    /// A server the user runs: nothing to start or stop.
    External,
}

/// One configuration of the comparison.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Its name in `--configs`, the report and the JSON.
    pub(crate) name: String,
    /// One line for the report.
    pub(crate) description: String,
    /// Base URL the load generator is pointed at (scenario paths are appended):
    /// `https://` for the TLS rows.
    pub(crate) target: String,
    /// What drives its peak runs.
    pub(crate) tool: LoadTool,
    /// The certificate its servers read from the run folder; `None`: no TLS.
    tls: Option<SelfSigned>,
    /// Base URL of loadlab itself (shard 0), for `/app/mega/stats`; the target for extras.
    pub(crate) direct: String,
    /// URLs that must answer 200 before a run, in order.
    ready_urls: Vec<String>,
    setup: Setup,
    /// Why it cannot run (a missing tool, a failed start); `None` while it can. Once set,
    /// its remaining runs are skipped rather than failing one by one.
    pub(crate) unavailable: Option<String>,
    /// What the report should say about it (an unclean stop...), without repeats.
    pub(crate) notes: Vec<String>,
}

/// The load generator of a configuration's peak runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LoadTool {
    /// wrk: HTTP/1.1, cleartext or TLS.
    Wrk,
    /// h2load: HTTP/2 over TLS (wrk speaks no HTTP/2).
    H2load,
}

impl LoadTool {
    /// Its name in the report, the JSON and the CSV.
    pub(crate) fn name(self) -> &'static str {
        match self {
            LoadTool::Wrk => "wrk",
            LoadTool::H2load => "h2load",
        }
    }
}

/// A started configuration.
#[derive(Debug)]
pub(crate) struct Running {
    /// In start order; stopped in reverse (nginx before the shards behind it).
    processes: Vec<Process>,
}

impl Running {
    /// Stops everything that was started; returns notes on unclean stops.
    pub(crate) fn stop(mut self) -> Vec<String> {
        let mut notes = Vec::new();
        while let Some(process) = self.processes.pop() {
            notes.extend(process.stop());
        }
        notes
    }
}

impl Config {
    /// The commands that start it, as a user would type them from the package root
    /// (`$RUN_DIR`: a fresh temporary folder per measured run).
    pub(crate) fn commands(&self, root: &Path) -> Vec<String> {
        let root = format!("{}/", root.display());
        // A `--db` URL's password stays out of the report.
        let show = |argv: &[String]| {
            let masked: Vec<String> = argv
                .iter()
                .map(|a| loadlab_workers::mega::mask_password(a))
                .collect();
            shell_join(&masked)
                .replace(RUN_DIR, "$RUN_DIR")
                .replace(&root, "")
        };
        match &self.setup {
            Setup::Loadlab { loadlab } => vec![show(loadlab)],
            Setup::Proxy { loadlab, proxy, .. } => vec![show(loadlab), show(proxy)],
            Setup::Hosts { apps, front, conf } => vec![
                show(&apps[0]),
                show(&apps[1]),
                format!("$RUN_DIR/front.toml: {}", conf.replace('\n', " ")),
                show(front),
            ],
            Setup::External => vec![format!("(run by you at {})", self.target)],
        }
    }

    /// The generated proxy configuration (file name, text with `$RUN_DIR` in its
    /// paths), if this is a proxy's row.
    pub(crate) fn proxy_conf(&self) -> Option<(&'static str, String)> {
        match &self.setup {
            Setup::Proxy { file, conf, .. } => Some((file, conf.replace(RUN_DIR, "$RUN_DIR"))),
            _ => None,
        }
    }

    /// Why `scenario` cannot be measured on it, if it cannot (its load generator
    /// cannot send that load).
    pub(crate) fn unsupported(&self, scenario: Scenario) -> Option<&'static str> {
        match self.tool {
            LoadTool::Wrk => None,
            LoadTool::H2load => crate::h2load::unsupported(scenario),
        }
    }

    /// Whether rate mode's open-loop driver can reach it: the driver speaks cleartext
    /// HTTP/1.1 only, so the TLS rows are measured at their peak only.
    pub(crate) fn rate_reachable(&self) -> bool {
        self.target.starts_with("http://")
    }

    /// Records a note once.
    pub(crate) fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// Starts it with its files under `run_dir` (which must exist), from `cwd`, and waits
    /// until it is ready. On error everything started so far has been stopped.
    pub(crate) fn start(&self, run_dir: &Path, cwd: &Path) -> Result<Running, String> {
        let dir = run_dir.to_string_lossy();
        let fill = |argv: &[String]| {
            argv.iter()
                .map(|a| a.replace(RUN_DIR, &dir))
                .collect::<Vec<_>>()
        };
        let mut processes = Vec::new();
        if let Some(cert) = &self.tls {
            cert.write_into(run_dir)?;
        }
        let spawn_loadlab =
            |argv| Process::spawn("loadlab", &fill(argv), cwd, &run_dir.join("loadlab.log"));
        match &self.setup {
            Setup::External => {
                // Only check that something answers: an extra may have no /readyz.
                crate::http::get(&format!("{}/", self.target), Duration::from_secs(2))
                    .map_err(|e| format!("nothing answers at {}: {e}", self.target))?;
                return Ok(Running { processes });
            }
            Setup::Loadlab { loadlab } => {
                processes.push(spawn_loadlab(loadlab)?);
            }
            Setup::Hosts { apps, front, conf } => {
                for (i, app) in apps.iter().enumerate() {
                    let log = run_dir.join(format!("loadlab-{i}.log"));
                    processes.push(Process::spawn("loadlab", &fill(app), cwd, &log)?);
                }
                // Apps first: the front would mark them down until they listen.
                for url in &self.ready_urls[..self.ready_urls.len() - 1] {
                    wait_ready(url, READY_WITHIN, &mut processes)?;
                }
                std::fs::write(run_dir.join("front.toml"), conf)
                    .map_err(|e| format!("writing front.toml: {e}"))?;
                processes.push(Process::spawn(
                    "loadlab front",
                    &fill(front),
                    cwd,
                    &run_dir.join("front.log"),
                )?);
            }
            Setup::Proxy {
                loadlab,
                proxy,
                label,
                file,
                conf,
            } => {
                processes.push(spawn_loadlab(loadlab)?);
                // Shards first: the proxy would answer 502 until they listen.
                for url in &self.ready_urls[..self.ready_urls.len() - 1] {
                    wait_ready(url, READY_WITHIN, &mut processes)?;
                }
                std::fs::write(run_dir.join(file), conf.replace(RUN_DIR, &dir))
                    .map_err(|e| format!("writing {file}: {e}"))?;
                let process = Process::spawn(
                    label,
                    &fill(proxy),
                    cwd,
                    &run_dir.join(format!("{label}.log")),
                )?;
                processes.push(if *label == "haproxy" {
                    // SIGTERM is HAProxy's hard stop (exit status 143); SIGUSR1 its soft one.
                    process.with_stop_signal(nix::sys::signal::Signal::SIGUSR1)
                } else {
                    process
                });
            }
        }
        for url in &self.ready_urls {
            wait_ready(url, READY_WITHIN, &mut processes)?;
        }
        Ok(Running { processes })
    }
}

/// `--randoms-queue` for a run whose largest connection count is `max_conns`.
pub(crate) fn randoms_queue(max_conns: usize) -> usize {
    max_conns.max(1024)
}

/// Hands out loopback ports below the ephemeral range (where wrk's own client sockets
/// live), starting at an offset derived from the process id so that two harness runs at
/// once are unlikely to probe the same ports.
struct Ports {
    next: u16,
}

impl Ports {
    const FIRST: u16 = 20_000;
    const END: u16 = 32_000;

    fn new() -> Self {
        let offset = (std::process::id() % 400) as u16 * 25;
        Self {
            next: Self::FIRST + offset,
        }
    }

    /// `n` consecutive ports that are free now. Another process may still take one
    /// before the server binds it: that start then fails and the report says why.
    fn block(&mut self, n: usize) -> Result<u16, String> {
        let n = u16::try_from(n).map_err(|_| "too many ports".to_owned())?;
        let mut wrapped = false;
        loop {
            if self.next.saturating_add(n) >= Self::END {
                if wrapped {
                    return Err(format!(
                        "no {n} consecutive free loopback ports in {}..{}",
                        Self::FIRST,
                        Self::END
                    ));
                }
                wrapped = true;
                self.next = Self::FIRST;
            }
            let base = self.next;
            self.next += n;
            if (base..base + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
                return Ok(base);
            }
        }
    }
}

/// Joins arguments into a command line a POSIX shell reads back the same.
pub(crate) fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+{}$".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
