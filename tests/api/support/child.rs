//! [`ChildProcess`]: the one way tests run a program (a `loadlab` binary, Prometheus)
//! as a child process: started with its output kept in a log file, waited on until an
//! HTTP readiness URL answers 2xx (bounded, failing with the child's log), stopped
//! with SIGTERM or SIGKILL, and killed on drop so a failed test leaves nothing behind.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// How long a child gets to become ready or to exit after a signal.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running child process and its log.
pub struct ChildProcess {
    /// What it is, for failure messages.
    name: String,
    child: Child,
    /// Where its stdout and stderr go (a file in `log_dir`).
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

/// A free loopback port: bound, read, released. The race with another process taking
/// it before the child binds is harmless: the child would fail to start, loudly.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The `loadlab` binary under test.
pub fn loadlab() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadlab"));
    command.env("RUST_LOG", "warn");
    command
}

impl ChildProcess {
    /// Starts `command`, its output going to a log file.
    pub fn start(name: &str, mut command: Command) -> Self {
        let log_dir = tempfile::tempdir().expect("tempdir");
        let log = log_dir.path().join("output.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
        Self {
            name: name.to_owned(),
            child,
            log,
            _log_dir: log_dir,
        }
    }

    /// Starts `command`, then waits until `ready_url` answers 2xx.
    pub async fn start_ready(name: &str, command: Command, ready_url: &str) -> Self {
        let mut process = Self::start(name, command);
        process.wait_ready(ready_url).await;
        process
    }

    /// Waits (bounded) until `url` answers 2xx; fails with the log if the child exits
    /// first or the time runs out.
    pub async fn wait_ready(&mut self, url: &str) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}):\n{}", self.name, self.log());
            }
            let ready = client.get(url).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not ready at {url} in {PATIENCE:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM (a graceful stop: std's `Child::kill` only sends SIGKILL).
    pub fn sigterm(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Sends SIGHUP (reload).
    pub fn sighup(&self) {
        self.signal(nix::sys::signal::Signal::SIGHUP);
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = i32::try_from(self.child.id()).expect("a pid fits an i32");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .unwrap_or_else(|e| panic!("{signal} not sent: {e}"));
    }

    /// SIGKILL, then reaps it: no shutdown path runs.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }

    /// Waits (bounded, off the runtime's threads) for the child to exit.
    pub async fn wait_exit(self) -> ExitStatus {
        self.wait_exit_with_log().await.0
    }

    /// Waits (bounded, off the runtime's threads) for the child to exit; its status and
    /// everything it wrote.
    pub async fn wait_exit_with_log(mut self) -> (ExitStatus, String) {
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + PATIENCE;
            loop {
                if let Some(status) = self.child.try_wait().expect("wait") {
                    return (
                        status,
                        std::fs::read_to_string(&self.log).unwrap_or_default(),
                    );
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} did not exit in {PATIENCE:?}:\n{}",
                    self.name,
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .expect("waiting task")
    }

    /// The last lines the child wrote, for failure messages.
    pub fn log(&self) -> String {
        log_tail(&self.log)
    }

    /// Everything the child wrote so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The graceful-stop check, for any `loadlab serve` child answering at `base`: a
/// `cant=5e8` randoms request (seconds of work, well inside the 30 s shutdown grace
/// even on a loaded 2-core machine, where `2e9` outlived it) is started, and once its
/// job is admitted (read from the process's own `/metrics`) the process gets SIGTERM.
/// The request must be answered in full and the process exit 0.
pub async fn assert_sigterm_lets_a_slow_job_finish(process: ChildProcess, base: &str) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let slow = {
        let (client, url) = (
            client.clone(),
            format!("{base}/api/randoms?cant=5e8&seed=1"),
        );
        tokio::spawn(async move {
            client
                .get(url)
                .send()
                .await?
                .json::<serde_json::Map<String, serde_json::Value>>()
                .await
        })
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metrics = client.get(format!("{base}/metrics")).send().await;
        let metrics = metrics.expect("metrics").text().await.expect("text");
        if metrics.lines().any(|l| l == "randoms_jobs_in_flight 1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job was never admitted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    process.sigterm();
    let counts = slow
        .await
        .expect("task")
        .expect("the in-flight request was answered in full");
    let total: u64 = counts.values().map(|v| v.as_u64().expect("count")).sum();
    assert_eq!(total, 500_000_000);
    let exit = process.wait_exit().await;
    assert!(exit.success(), "loadlab exits 0 after SIGTERM");
}
