//! The plan of a harness run: the selected configurations with their ports, their
//! commands and what drives them, built once before anything starts (so the report can
//! print every command exactly).

use std::path::Path;

use super::{Config, LoadTool, Ports, RUN_DIR, Setup, randoms_queue};
use crate::cert::{CERT_FILE, KEY_FILE, SelfSigned};
use crate::cli::Settings;
use crate::machine::Tools;
use crate::peers::{Site, haproxy_cfg, nginx_conf};
use crate::process::pinned;

/// Plans the selected configurations: picks their ports and writes their commands.
/// A program that is not installed (`tools.nginx`, `tools.haproxy`, `tools.h2load` are
/// `None`) makes its rows unavailable; `pin` runs the servers under `taskset -c 0`.
pub(crate) fn configs(
    settings: &Settings,
    tools: &Tools,
    pin: bool,
) -> Result<Vec<Config>, String> {
    let loadlab = tools.loadlab.as_path();
    let mut ports = Ports::new();
    // One certificate for every TLS row of the run, made only when one is selected.
    let mut cert: Option<Result<SelfSigned, String>> = None;
    let mut cert = || cert.get_or_insert_with(SelfSigned::generate).clone();
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
            "front-tls" | "front-h2" => {
                let base = ports.block(n)?;
                let [front, plain] = [ports.block(1)?, ports.block(1)?];
                let config = front_config("front", settings, loadlab, pin, base, front);
                with_tls(tls_front(name, settings, config, plain), cert(), tools)
            }
            "nginx" | "haproxy" | "nginx-h2" | "haproxy-h2" => {
                let base = ports.block(n)?;
                let listen = ports.block(1)?;
                let config = proxy_config(name, settings, tools, pin, base, listen);
                if name.ends_with("-h2") {
                    with_tls(config, cert(), tools)
                } else {
                    config
                }
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
        tool: LoadTool::Wrk,
        tls: None,
        setup: Setup::External,
        unavailable: None,
        notes: Vec::new(),
    })
}

/// The generated proxy of a proxy row: its program, the label of its process and log,
/// its configuration file's name, whether it terminates TLS and h2.
struct Proxy {
    label: &'static str,
    file: &'static str,
    tls: bool,
}

impl Proxy {
    /// The proxy of the row `name` (`nginx`, `haproxy`, `nginx-h2`, `haproxy-h2`).
    fn of(name: &str) -> Self {
        let (label, file) = match name {
            "nginx" => ("nginx", "nginx.conf"),
            "nginx-h2" => ("nginx", "nginx-h2.conf"),
            "haproxy-h2" => ("haproxy", "haproxy-h2.cfg"),
            _ => ("haproxy", "haproxy.cfg"),
        };
        Self {
            label,
            file,
            tls: name.ends_with("-h2"),
        }
    }

    /// Its command line (`pin`: under `taskset -c 0`), the program as `tools` found it.
    fn argv(&self, tools: &Tools, pin: bool) -> Vec<String> {
        let mut argv = pinned(pin, 0);
        let found = if self.label == "nginx" {
            &tools.nginx
        } else {
            &tools.haproxy
        };
        argv.push(
            found
                .as_ref()
                .map_or_else(|| self.label.to_owned(), |p| p.display().to_string()),
        );
        let conf = format!("{RUN_DIR}/{}", self.file);
        if self.label == "nginx" {
            argv.extend(["-p".into(), RUN_DIR.into(), "-c".into(), conf]);
            argv.extend(["-e".into(), format!("{RUN_DIR}/nginx-error.log")]);
        } else {
            // -db: stay in the foreground, so the stop signal reaches HAProxy itself.
            argv.extend(["-db".into(), "-f".into(), conf]);
        }
        argv
    }
}

/// A proxy row (`nginx`, `haproxy`, `nginx-h2`, `haproxy-h2`): `loadlab serve
/// --no-front` on shard ports from `base`, the proxy on `listen`.
fn proxy_config(
    name: &str,
    settings: &Settings,
    tools: &Tools,
    pin: bool,
    base: u16,
    listen: u16,
) -> Config {
    let (n, workers) = (settings.shards, settings.proxy_threads);
    let loadlab = serve(settings, &tools.loadlab, pin, n, base, None);
    let mut config = loadlab_config(name, "", loadlab.clone(), base);
    let proxy = Proxy::of(name);
    let scheme = if proxy.tls { "https" } else { "http" };
    config.target = format!("{scheme}://127.0.0.1:{listen}");
    // A TLS listener's `/readyz` is out of the harness's plain HTTP client's reach:
    // `wait_ready` takes an https URL as ready once it accepts a connection.
    config.ready_urls = (0..n)
        .map(|i| format!("http://127.0.0.1:{}/readyz", usize::from(base) + i))
        .chain([format!("{}/readyz", config.target)])
        .collect();
    let site = Site {
        threads: workers,
        base,
        shards: n,
        listen,
        max_conns: settings.max_connections(),
        tls: proxy.tls,
    };
    let (conf, found, package) = if proxy.label == "nginx" {
        (nginx_conf(site), tools.nginx.is_some(), "nginx-light")
    } else {
        (haproxy_cfg(site), tools.haproxy.is_some(), "haproxy")
    };
    let (what, unit) = match proxy.label {
        "nginx" => ("nginx", "worker"),
        _ => ("HAProxy", "thread"),
    };
    let (how, tool) = if proxy.tls {
        (" terminating TLS and h2", "h2load")
    } else {
        ("", "wrk")
    };
    config.description = format!(
        "`--shards {n}`, no front, {what} ({workers} {unit}){how} before the shards: \
         {tool} on {what}"
    );
    if !found {
        let label = proxy.label;
        config.unavailable = Some(format!(
            "{label} is not installed (`apt-get install -y {package}`): {label} rows skipped"
        ));
    }
    config.setup = Setup::Proxy {
        loadlab,
        proxy: proxy.argv(tools, pin),
        label: proxy.label,
        file: proxy.file,
        conf,
    };
    config
}

/// `front-tls` and `front-h2` from the `front` row: its front serves TLS on its port
/// with the run's certificate, and cleartext on `plain` (`--plain-bind`), where the
/// harness asks `/readyz`.
fn tls_front(name: &str, settings: &Settings, mut config: Config, plain: u16) -> Config {
    let Setup::Loadlab { loadlab } = &mut config.setup else {
        return config;
    };
    // Before the user's --serve-arg flags, so they still win.
    let at = loadlab.len() - settings.serve_args.len();
    let tls = [
        "--tls-cert".into(),
        format!("{RUN_DIR}/{CERT_FILE}"),
        "--tls-key".into(),
        format!("{RUN_DIR}/{KEY_FILE}"),
        "--plain-bind".into(),
        format!("127.0.0.1:{plain}"),
    ];
    loadlab.splice(at..at, tls);
    let (n, threads) = (settings.shards, settings.proxy_threads);
    let load = if name == "front-tls" {
        "wrk's HTTP/1.1 over TLS"
    } else {
        "h2load's h2 over TLS"
    };
    config.name = name.to_owned();
    config.description = format!(
        "`--shards {n}` behind loadlab's front ({threads} thread, in-process path) \
         terminating TLS: {load} on the front"
    );
    config.ready_urls = vec![format!("http://127.0.0.1:{plain}/readyz")];
    config.target = config.target.replace("http://", "https://");
    config
}

/// A TLS row: `cert` written into each run folder, h2load for the `-h2` rows (the row
/// unavailable without it or without a certificate).
fn with_tls(mut config: Config, cert: Result<SelfSigned, String>, tools: &Tools) -> Config {
    if config.name.ends_with("-h2") {
        config.tool = LoadTool::H2load;
        if tools.h2load.is_none() && config.unavailable.is_none() {
            config.unavailable = Some(
                "h2load is not installed (`apt-get install -y nghttp2-client`): h2 rows skipped"
                    .into(),
            );
        }
    }
    match cert {
        Ok(cert) => config.tls = Some(cert),
        Err(why) => config.unavailable = Some(format!("no certificate: {why}")),
    }
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
        tool: LoadTool::Wrk,
        tls: None,
        setup: Setup::Loadlab { loadlab },
        unavailable: None,
        notes: Vec::new(),
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
