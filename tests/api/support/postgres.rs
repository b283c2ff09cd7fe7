//! Test support: a private PostgreSQL server for the tests that need one.
//!
//! One server per test binary, started on first use ([`OnceLock`]): `initdb` and
//! `pg_ctl` from Debian's `postgresql` package in a temp dir, on a free port of
//! 127.0.0.1, its socket in the same temp dir, `synchronous_commit=on`. Never the
//! system's cluster. Each test gets a database of its own ([`fresh_database`]), so tests
//! stay independent while sharing the server.
//!
//! `initdb` refuses to run as root: as root, the server runs as the `postgres` user
//! (`runuser`), in a temp dir handed over to it.
//!
//! Stopping: a static is never dropped, so a watchdog shell started with the server
//! stops it (`pg_ctl stop -m immediate`) and removes the temp dir once this test
//! process has exited, however it ended.
//!
//! A test that restarts its server gets one of its own ([`private_server`]), so the
//! tests sharing the other never see the restart.
//!
//! Without the binaries the PostgreSQL tests are skipped with a message, unless `CI` is
//! set: then they fail, so CI cannot pass without running them.
//!
//! A test that restarts the server gets a private one ([`private_server`]), so the
//! others sharing the first never see it go away.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running private server.
#[derive(Debug)]
pub(crate) struct PgServer {
    port: u16,
    /// Where `pg_ctl` is.
    bin: PathBuf,
    /// The cluster's data folder.
    data: PathBuf,
    /// The `pg_ctl -o` options it was started with (a restart must repeat them).
    options: String,
    /// Whether `pg_ctl` runs as the `postgres` user (this process is root).
    as_postgres: bool,
    /// The server's log file (a restart must name it again, or the server would
    /// inherit `pg_ctl`'s output pipe and `pg_ctl` never be done).
    log: PathBuf,
}

static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();

/// The folder holding `initdb` and `pg_ctl`: `$PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian), else whatever `PATH` holds.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let on_path = Command::new("initdb")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    on_path.then(PathBuf::new)
}

/// Whether this process runs as root (`id -u`; `unsafe` is forbidden, so no geteuid).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `program` from `bin`, run as the server's owner.
fn command(bin: &Path, program: &str, as_postgres: bool) -> Command {
    let program = bin.join(program);
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgServer {
    fn start(bin: &Path) -> Self {
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("loadlab-pg-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let data = dir.join("data");
        if as_postgres {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:"]).arg(&dir);
                    c
                },
                "chown the temp dir to postgres",
            );
        }
        let mut initdb = command(bin, "initdb", as_postgres);
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        run(initdb, "initdb");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // A dozen app processes with their pools may connect at once.
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c synchronous_commit=on \
             -c max_connections=200",
            dir.display()
        );
        let log = dir.join("server.log");
        let mut pg_ctl = command(bin, "pg_ctl", as_postgres);
        pg_ctl
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(&log)
            .args(["-w", "-t", "60", "start"]);
        run(pg_ctl, "pg_ctl start");
        let server = Self {
            port,
            bin: bin.to_path_buf(),
            data: data.clone(),
            options,
            as_postgres,
            log: dir.join("server.log"),
        };
        // The watchdog: waits for this process to end, then stops the server.
        let stop = {
            let runas = if as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            };
            format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
                 {runas}'{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; \
                 rm -rf '{dir}'",
                pid = std::process::id(),
                pg_ctl = bin.join("pg_ctl").display(),
                data = data.display(),
                dir = dir.display(),
            )
        };
        // Never waited for: it must outlive this process to stop the server after it.
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the watchdog");
        server
    }

    /// `pg_ctl restart -m fast`: every session is terminated, the server stops and
    /// starts again; returns once it accepts connections. Blocks.
    pub(crate) fn restart_fast(&self) {
        let mut pg_ctl = command(&self.bin, "pg_ctl", self.as_postgres);
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &self.options, "-l"])
            .arg(&self.log)
            .args(["-m", "fast", "-w", "-t", "60", "restart"]);
        run(pg_ctl, "pg_ctl restart -m fast");
    }

    /// A URL for `database` on this server.
    pub(crate) fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// The shared server, started on first use; `None` when PostgreSQL is not installed
/// and `CI` is unset (the caller skips, after this printed why).
pub(crate) fn server() -> Option<&'static PgServer> {
    SERVER
        .get_or_init(|| match bin_dir() {
            Some(bin) => Some(PgServer::start(&bin)),
            None if std::env::var_os("CI").is_some() => panic!(
                "CI is set but PostgreSQL's initdb/pg_ctl were not found \
                 (install Debian's postgresql package, or set PG_BIN)"
            ),
            None => None,
        })
        .as_ref()
}

/// A server of its own, for a test that restarts it; stopped when this test process
/// exits. `None` (after printing a message) when PostgreSQL is not installed and `CI`
/// is unset. Blocks: call it off the runtime's workers.
pub(crate) fn private_server(test: &str) -> Option<PgServer> {
    match bin_dir() {
        Some(bin) => Some(PgServer::start(&bin)),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI is set but PostgreSQL's initdb/pg_ctl were not found")
        }
        None => {
            eprintln!("skipping {test}: PostgreSQL (initdb, pg_ctl) is not installed");
            None
        }
    }
}

/// A new, empty database on the shared server: its URL. `None` (after printing a
/// message) when PostgreSQL is not installed and `CI` is unset.
///
/// Blocks (the `postgres` client drives its own runtime): call it outside async code
/// or through [`fresh_database_async`].
pub(crate) fn fresh_database(test: &str) -> Option<String> {
    let Some(server) = server() else {
        eprintln!("skipping {test}: PostgreSQL (initdb, pg_ctl) is not installed");
        return None;
    };
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("t{}_{}", NEXT.fetch_add(1, Ordering::Relaxed), test);
    let name: String = name.chars().take(60).collect();
    let mut admin =
        postgres::Client::connect(&server.url("postgres"), postgres::NoTls).expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .expect("create database");
    Some(server.url(&name))
}

/// [`fresh_database`] from async code (off the runtime's workers).
pub(crate) async fn fresh_database_async(test: &'static str) -> Option<String> {
    tokio::task::spawn_blocking(move || fresh_database(test))
        .await
        .expect("create database")
}

/// Runs `sql` on `url` and returns the first column of every row (blocking client, on a
/// blocking thread).
pub(crate) async fn query_i64(url: &str, sql: &'static str) -> Vec<i64> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client
            .query(sql, &[])
            .expect("query")
            .iter()
            .map(|row| row.get::<_, i64>(0))
            .collect()
    })
    .await
    .expect("query task")
}
