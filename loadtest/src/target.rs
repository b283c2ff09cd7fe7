//! The configurations being compared: how each is started on loopback ports, where wrk
//! points, and how it is stopped. Planned once per harness run (fixed ports, fixed
//! commands, so the report can print them exactly), started fresh for every measured run
//! with a new temporary database.
//!
//! Built-in configurations (the names of `--configs`):
//! - `shards1`: `loadlab serve --shards 1 --no-front`, wrk on the shard (the baseline);
//! - `sharded`: `loadlab serve --shards N --no-front`, wrk on shard 0 only;
//! - `front`: `loadlab serve --shards N`, wrk on loadlab's front (which reaches its
//!   shards in-process);
//! - `front-tcp`: the same with `--front-path tcp` (the front reaches them over loopback);
//! - `nginx`: `loadlab serve --shards N --no-front` with nginx before its shards;
//! - `haproxy`: the same with HAProxy before its shards;
//! - `pg1`: `shards1` on the PostgreSQL database of `--postgres`;
//! - `hosts2`: two `loadlab serve --shards N --no-front` processes sharing one
//!   PostgreSQL database behind `loadlab front`, as two hosts would be (only with a
//!   `--postgres URL` or `--serve-arg=--db=postgres://...`: SQLite files cannot be
//!   shared).
//!
//! The proxy rows (`front`, `front-tcp`, `nginx`, `haproxy`) each run `--proxy-threads`
//! threads (one by default), as `sharded` serves wrk on one shard thread. The proxies'
//! generated configurations are in [`crate::peers`].
//!
//! Extras (`--extra NAME=URL`) are servers the user runs; the harness only points wrk at
//! them.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use crate::cli::Settings;
use crate::machine::Tools;
use crate::peers::{Site, haproxy_cfg, nginx_conf};
use crate::process::{Process, RUN_DIR, wait_ready};

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
    /// Base URL wrk is pointed at (scenario paths are appended).
    pub(crate) target: String,
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

/// Plans the selected configurations: picks their ports and writes their commands.
/// A proxy that is not installed (`tools.nginx`, `tools.haproxy` are `None`) makes its
/// row unavailable; `pin` runs the servers under `taskset -c 0`.
pub(crate) fn plan(settings: &Settings, tools: &Tools, pin: bool) -> Result<Vec<Config>, String> {
    let loadlab = tools.loadlab.as_path();
    let mut ports = Ports::new();
    let n = settings.shards;
    let mut configs = Vec::new();
    for name in &settings.configs {
        let config = match name.as_str() {
            "shards1" => {
                let base = ports.block(1)?;
                let argv = serve(settings, loadlab, pin, 1, base, None);
                loadlab_config(
                    name,
                    "`--shards 1`, no front: wrk on the only shard (baseline)",
                    argv,
                    base,
                )
            }
            "sharded" => {
                let base = ports.block(n)?;
                let argv = serve(settings, loadlab, pin, n, base, None);
                let what = format!("`--shards {n}`, no front: wrk on shard 0 only");
                loadlab_config(name, &what, argv, base)
            }
            "front" | "front-tcp" => {
                let base = ports.block(n)?;
                let front = ports.block(1)?;
                front_config(name, settings, loadlab, pin, base, front)
            }
            "nginx" | "haproxy" => {
                let base = ports.block(n)?;
                let listen = ports.block(1)?;
                proxy_config(name, settings, tools, pin, base, listen)
            }
            "pg1" => {
                let base = ports.block(1)?;
                pg1_config(name, settings, loadlab, pin, base)
            }
            "hosts2" => {
                let bases = [ports.block(n)?, ports.block(n)?];
                let listen = ports.block(1)?;
                hosts2_config(name, settings, loadlab, pin, bases, listen)
            }
            extra => extra_config(settings, extra)?,
        };
        configs.push(config);
    }
    Ok(configs)
}

/// The `front` and `front-tcp` rows: `loadlab serve` on shard ports from `base`, its
/// front on `front` (in-process path, or `--front-path tcp`).
fn front_config(
    name: &str,
    settings: &Settings,
    loadlab: &Path,
    pin: bool,
    base: u16,
    front: u16,
) -> Config {
    let n = settings.shards;
    let mut argv = serve(settings, loadlab, pin, n, base, Some(front));
    let threads = settings.proxy_threads;
    let what = if name == "front" {
        format!(
            "`--shards {n}` behind loadlab's front ({threads} thread, in-process \
                 path): wrk on the front"
        )
    } else {
        // Before the user's --serve-arg flags, so they still win.
        let at = argv.len() - settings.serve_args.len();
        argv.splice(at..at, ["--front-path".to_owned(), "tcp".to_owned()]);
        format!(
            "`--shards {n}` behind loadlab's front ({threads} thread) over loopback \
                 TCP (`--front-path tcp`): wrk on the front"
        )
    };
    let mut config = loadlab_config(name, &what, argv, base);
    config.target = format!("http://127.0.0.1:{front}");
    config.ready_urls = vec![format!("{}/readyz", config.target)];
    config
}

/// The `pg1` row: one shard on `base`, on the PostgreSQL database of `--postgres`
/// (unavailable without one).
fn pg1_config(name: &str, settings: &Settings, loadlab: &Path, pin: bool, base: u16) -> Config {
    let mut argv = serve(settings, loadlab, pin, 1, base, None);
    let url = settings.postgres.clone();
    // Last: a flag given twice takes the last value.
    argv.extend(["--db".into(), url.clone().unwrap_or_default()]);
    let mut config = loadlab_config(
        name,
        "`--shards 1`, no front, on PostgreSQL (`--postgres`): wrk on the only shard",
        argv,
        base,
    );
    if url.is_none() {
        config.unavailable = Some("pg1 needs a PostgreSQL database: --postgres URL".into());
    }
    config
}

/// The `hosts2` row: two `loadlab serve --no-front` processes on shard ports from
/// `bases`, sharing one PostgreSQL database, behind `loadlab front` on `listen`.
fn hosts2_config(
    name: &str,
    settings: &Settings,
    loadlab: &Path,
    pin: bool,
    bases: [u16; 2],
    listen: u16,
) -> Config {
    let n = settings.shards;
    let url = settings.postgres_url();
    let apps = bases.map(|base| {
        let mut argv = serve(settings, loadlab, pin, n, base, None);
        argv.extend(["--db".into(), url.clone().unwrap_or_default()]);
        argv
    });
    let what = format!(
        "two `loadlab serve --shards {n} --no-front` processes on one PostgreSQL, \
             behind `loadlab front`: wrk on the front"
    );
    let mut config = loadlab_config(name, &what, apps[0].clone(), bases[0]);
    config.target = format!("http://127.0.0.1:{listen}");
    config.ready_urls = bases
        .iter()
        .map(|base| format!("http://127.0.0.1:{base}/readyz"))
        .chain([format!("{}/readyz", config.target)])
        .collect();
    let upstreams: Vec<String> = bases
        .iter()
        .flat_map(|&base| (0..n).map(move |i| usize::from(base) + i))
        .map(|port| format!("{{ addr = \"127.0.0.1:{port}\" }}"))
        .collect();
    let conf = format!(
        "listen = \"127.0.0.1:{listen}\"\n\
             [[pools]]\nname = \"app\"\nupstreams = [{}]\n",
        upstreams.join(", ")
    );
    let mut front = pinned(pin, 0);
    front.extend([
        loadlab.display().to_string(),
        "front".into(),
        "--config".into(),
        format!("{RUN_DIR}/front.toml"),
        "--upstream-idle".into(),
        settings.max_connections().to_string(),
    ]);
    config.setup = Setup::Hosts { apps, front, conf };
    if url.is_none() {
        config.unavailable = Some(
            "hosts2 needs a store both processes share: --postgres URL \
                 (or --serve-arg=--db=postgres://...)"
                .into(),
        );
    }
    config
}

/// A row the user runs (`--extra name=url`): only measured, never started or stopped.
fn extra_config(settings: &Settings, extra: &str) -> Result<Config, String> {
    let extra = settings
        .extras
        .iter()
        .find(|e| e.name == extra)
        .ok_or_else(|| format!("unknown configuration {extra}"))?;
    Ok(Config {
        name: extra.name.clone(),
        description: format!(
            "run by the user at {} (not started, stopped or pinned by the harness)",
            extra.url
        ),
        target: extra.url.clone(),
        direct: extra.url.clone(),
        ready_urls: Vec::new(),
        setup: Setup::External,
        unavailable: None,
        notes: Vec::new(),
    })
}

/// The `nginx` or `haproxy` row: `loadlab serve --no-front` on shard ports from `base`,
/// the proxy on `listen`.
fn proxy_config(
    name: &str,
    settings: &Settings,
    tools: &Tools,
    pin: bool,
    base: u16,
    listen: u16,
) -> Config {
    let (n, max_conns) = (settings.shards, settings.max_connections());
    let loadlab = serve(settings, &tools.loadlab, pin, n, base, None);
    let mut config = loadlab_config(name, "", loadlab.clone(), base);
    config.target = format!("http://127.0.0.1:{listen}");
    config.ready_urls = (0..n)
        .map(|i| format!("http://127.0.0.1:{}/readyz", usize::from(base) + i))
        .chain([format!("{}/readyz", config.target)])
        .collect();
    let mut argv = pinned(pin, 0);
    let workers = settings.proxy_threads;
    let site = Site {
        threads: workers,
        base,
        shards: n,
        listen,
        max_conns,
    };
    let program = |found: &Option<std::path::PathBuf>, name: &str| {
        found
            .as_ref()
            .map_or_else(|| name.to_owned(), |p| p.display().to_string())
    };
    let (label, file, found, conf) = if name == "nginx" {
        config.description = format!(
            "`--shards {n}`, no front, nginx ({workers} worker) before the shards: wrk on nginx"
        );
        argv.extend([program(&tools.nginx, "nginx"), "-p".into(), RUN_DIR.into()]);
        argv.extend(["-c".into(), format!("{RUN_DIR}/nginx.conf")]);
        argv.extend(["-e".into(), format!("{RUN_DIR}/nginx-error.log")]);
        let conf = nginx_conf(site);
        ("nginx", "nginx.conf", tools.nginx.is_some(), conf)
    } else {
        // As many threads as nginx has workers: one by default, the fair peer of nginx.
        config.description = format!(
            "`--shards {n}`, no front, HAProxy ({workers} thread) before the shards: wrk on HAProxy"
        );
        // -db: stay in the foreground, so SIGTERM reaches HAProxy itself.
        argv.extend([
            program(&tools.haproxy, "haproxy"),
            "-db".into(),
            "-f".into(),
            format!("{RUN_DIR}/haproxy.cfg"),
        ]);
        let conf = haproxy_cfg(site);
        ("haproxy", "haproxy.cfg", tools.haproxy.is_some(), conf)
    };
    if !found {
        let package = if label == "nginx" {
            "nginx-light"
        } else {
            "haproxy"
        };
        config.unavailable = Some(format!(
            "{label} is not installed (`apt-get install -y {package}`): {label} rows skipped"
        ));
    }
    config.setup = Setup::Proxy {
        loadlab,
        proxy: argv,
        label,
        file,
        conf,
    };
    config
}

fn loadlab_config(name: &str, description: &str, loadlab: Vec<String>, base: u16) -> Config {
    let direct = format!("http://127.0.0.1:{base}");
    Config {
        name: name.to_owned(),
        description: description.to_owned(),
        target: direct.clone(),
        ready_urls: vec![format!("{direct}/readyz")],
        direct,
        setup: Setup::Loadlab { loadlab },
        unavailable: None,
        notes: Vec::new(),
    }
}

/// `taskset -c CPU` when pinning, else nothing.
pub(crate) fn pinned(pin: bool, cpu: usize) -> Vec<String> {
    if pin {
        vec!["taskset".into(), "-c".into(), cpu.to_string()]
    } else {
        Vec::new()
    }
}

/// The `loadlab serve` command line; `front`: the front's port, `None` for `--no-front`.
fn serve(
    settings: &Settings,
    loadlab: &Path,
    pin: bool,
    shards: usize,
    base: u16,
    front: Option<u16>,
) -> Vec<String> {
    let max_conns = settings.max_connections();
    let mut argv = pinned(pin, 0);
    argv.push(loadlab.display().to_string());
    argv.extend(["serve", "--shards"].map(String::from));
    argv.push(shards.to_string());
    argv.extend(["--shard-base-port".into(), base.to_string()]);
    argv.extend(["--db".into(), format!("{RUN_DIR}/mega.db")]);
    // Admission sized to the load: with the default 64, randoms-1e6 at 256 connections
    // would measure 503s rather than throughput. The report says so.
    argv.extend([
        "--randoms-queue".into(),
        randoms_queue(max_conns).to_string(),
    ]);
    match front {
        Some(port) => {
            argv.extend(["--bind".into(), format!("127.0.0.1:{port}")]);
            // The same sizing rule as nginx's `keepalive` below: no upstream churn.
            argv.extend(["--upstream-idle".into(), max_conns.to_string()]);
            // As many threads as nginx has workers (see `--proxy-threads`).
            argv.extend(["--front-threads".into(), settings.proxy_threads.to_string()]);
        }
        None => argv.push("--no-front".into()),
    }
    argv.extend(settings.serve_args.iter().cloned());
    argv
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
