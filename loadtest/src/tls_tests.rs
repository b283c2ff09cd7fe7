//! Tests of the TLS rows' planning: their commands, drivers, readiness and generated
//! proxy configurations (checked by nginx's and HAProxy's own parsers when installed,
//! with a real certificate). No server is started and no load is sent.

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::cert::SelfSigned;
use crate::cli::{Flags, Settings};
use crate::machine::Tools;
use crate::peers::{Site, haproxy_cfg, nginx_conf};
use crate::process::{RUN_DIR, find_program};
use crate::scenario::Scenario;
use crate::target::{Config, LoadTool};

fn settings(args: &[&str]) -> Settings {
    let flags = Flags::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))
        .expect("flags parse");
    Settings::from_flags(flags, Path::new("/repo"), "STAMP").expect("flags are valid")
}

fn tools(installed: bool) -> Tools {
    let found = |name: &str| installed.then(|| PathBuf::from(format!("/usr/bin/{name}")));
    Tools {
        loadlab: PathBuf::from("/repo/target/release/loadlab"),
        wrk: found("wrk"),
        nginx: found("nginx"),
        haproxy: found("haproxy"),
        h2load: found("h2load"),
        taskset: None,
    }
}

fn planned(args: &[&str], installed: bool) -> Vec<Config> {
    crate::target::plan::configs(&settings(args), &tools(installed), false).expect("planned")
}

#[test]
fn the_tls_rows_run_only_when_named() {
    let all = settings(&[]);
    assert!(
        all.configs
            .iter()
            .all(|c| !c.contains("-h2") && c != "front-tls")
    );
    let named = settings(&["--configs", "haproxy-h2,front,front-h2"]);
    assert_eq!(named.configs, ["front", "front-h2", "haproxy-h2"]);
    assert!(Flags::try_parse_from(["loadtest", "--h2-streams", "0"]).is_ok());
    let flags = Flags::try_parse_from(["loadtest", "--h2-streams", "129"]).expect("parses");
    assert!(Settings::from_flags(flags, Path::new("/repo"), "STAMP").is_err());
}

#[test]
fn the_front_tls_rows_serve_tls_and_answer_readyz_in_cleartext() {
    let configs = planned(
        &[
            "--configs",
            "front-tls,front-h2",
            "--serve-arg=--db-sync=normal",
        ],
        true,
    );
    for (config, tool) in configs.iter().zip([LoadTool::Wrk, LoadTool::H2load]) {
        assert_eq!(config.tool, tool, "{}", config.name);
        assert!(
            config.target.starts_with("https://127.0.0.1:"),
            "{config:?}"
        );
        assert!(!config.rate_reachable());
        assert!(config.unavailable.is_none(), "{config:?}");
        let command = config.commands(Path::new("/repo")).join(" ");
        for flag in [
            "--tls-cert $RUN_DIR/cert.pem",
            "--tls-key $RUN_DIR/key.pem",
            "--plain-bind 127.0.0.1:",
            "--front-threads 1",
        ] {
            assert!(command.contains(flag), "{flag} missing: {command}");
        }
        // The user's flags stay last, so they win.
        assert!(command.ends_with("--db-sync=normal"), "{command}");
    }
    assert!(configs[1].unsupported(Scenario::Mixed).is_some());
    assert_eq!(configs[0].unsupported(Scenario::Mixed), None);
}

#[test]
fn the_h2_proxy_rows_need_h2load_and_the_proxy() {
    let configs = planned(&["--configs", "nginx-h2,haproxy-h2"], true);
    let files: Vec<_> = configs.iter().filter_map(Config::proxy_conf).collect();
    assert_eq!(files[0].0, "nginx-h2.conf");
    assert_eq!(files[1].0, "haproxy-h2.cfg");
    assert!(files[0].1.contains("listen 127.0.0.1:"), "{}", files[0].1);
    assert!(files[1].1.contains("alpn h2,http/1.1"), "{}", files[1].1);
    let commands = configs[0].commands(Path::new("/repo")).join("\n");
    assert!(commands.contains("-c $RUN_DIR/nginx-h2.conf"), "{commands}");
    assert!(configs.iter().all(|c| c.tool == LoadTool::H2load));
    let missing = planned(&["--configs", "front-h2,nginx-h2"], false);
    let why = missing[0].unavailable.as_deref().unwrap_or_default();
    assert!(why.contains("nghttp2-client"), "{why}");
    let why = missing[1].unavailable.as_deref().unwrap_or_default();
    assert!(why.contains("nginx"), "{why}");
}

#[test]
fn a_run_counts_only_the_runs_its_drivers_can_make() {
    let s = settings(&[
        "--configs",
        "front,front-h2",
        "--scenarios",
        "healthz,mixed",
    ]);
    let configs = crate::target::plan::configs(&s, &tools(true), false).expect("planned");
    // front: 2 scenarios x 2 connection counts x 3 repeats; front-h2: healthz only.
    assert_eq!(crate::run::planned_runs(&s, &configs), 12 + 6);
    let rate = settings(&[
        "--configs",
        "front,front-tls",
        "--scenarios",
        "healthz",
        "--mode",
        "rate",
        "--rate-steps",
        "0.5,1",
    ]);
    let configs = crate::target::plan::configs(&rate, &tools(true), false).expect("planned");
    // front: a peak and 2 rates; front-tls: its peak only.
    assert_eq!(crate::run::planned_runs(&rate, &configs), 3 + 1);
}

/// The TLS configurations as nginx and HAProxy would read them, in `dir` with the
/// certificate written there.
fn tls_site_files(dir: &Path) -> (PathBuf, PathBuf) {
    let site = Site {
        threads: 1,
        base: 21_000,
        shards: 2,
        listen: 21_010,
        max_conns: 64,
        tls: true,
    };
    let at = dir.to_string_lossy();
    SelfSigned::generate()
        .expect("certificate")
        .write_into(dir)
        .expect("written");
    let nginx = dir.join("nginx-h2.conf");
    let haproxy = dir.join("haproxy-h2.cfg");
    std::fs::write(&nginx, nginx_conf(site).replace(RUN_DIR, &at)).expect("written");
    std::fs::write(&haproxy, haproxy_cfg(site).replace(RUN_DIR, &at)).expect("written");
    (nginx, haproxy)
}

#[test]
fn the_generated_tls_configs_pass_the_proxies_own_checks() {
    let dir = tempfile::tempdir().expect("temp dir");
    crate::run::open_permissions(dir.path()).expect("permissions");
    let (nginx, haproxy) = tls_site_files(dir.path());
    let text = std::fs::read_to_string(&nginx).expect("read");
    for line in [
        "listen 127.0.0.1:21010 ssl http2;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "keepalive_requests 1000000;",
    ] {
        assert!(text.contains(line), "nginx-h2.conf lacks `{line}`: {text}");
    }
    let text = std::fs::read_to_string(&haproxy).expect("read");
    assert!(text.contains("ssl crt "), "{text}");
    let check = |program: &str, args: &[&str]| {
        let Some(path) = find_program(program) else {
            return;
        };
        let out = std::process::Command::new(path)
            .args(args)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{program} refused its TLS config: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (n, h, d) = (
        nginx.to_string_lossy(),
        haproxy.to_string_lossy(),
        dir.path().to_string_lossy(),
    );
    let log = format!("{d}/nginx-error.log");
    check("nginx", &["-t", "-q", "-p", &d, "-c", &n, "-e", &log]);
    check("haproxy", &["-c", "-f", &h]);
}
