//! The processes the harness starts (loadlab, nginx, wrk): spawning with output to a log
//! file, waiting with a deadline, stopping with SIGTERM then SIGKILL, and a drop guard so
//! that nothing the harness started outlives it, even on an early return.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Stands for the fresh temporary folder of one measured run in command templates.
pub(crate) const RUN_DIR: &str = "{run_dir}";

/// How long a server gets to drain and exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Between two polls of a child's status or readiness: short against start-up times of
/// tens of milliseconds, long enough not to load the machine being measured.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A server process the harness started.
///
/// Dropping it without [`Process::stop`] kills it: a failed start or a panic must not
/// leave a server holding a port and a core for the next run.
#[derive(Debug)]
pub(crate) struct Process {
    /// Its name in messages (`loadlab`, `nginx`).
    label: String,
    /// `None` once it has been stopped and reaped.
    child: Option<Child>,
    /// Where its stdout and stderr go; its tail explains a failure.
    log: PathBuf,
    /// The signal that asks it to stop gracefully: SIGTERM, or what the program wants
    /// instead (HAProxy exits 143 on SIGTERM, which is its hard stop; SIGUSR1 is its
    /// soft stop, exit status 0).
    stop_signal: nix::sys::signal::Signal,
}

impl Process {
    /// Starts `argv` with stdout and stderr to `log`. `LOADLAB_*` variables are removed
    /// from its environment, so that the command in the report is the whole truth.
    pub(crate) fn spawn(
        label: &str,
        argv: &[String],
        cwd: &Path,
        log: &Path,
    ) -> Result<Self, String> {
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let out = File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LOADLAB_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .map_err(|e| format!("starting {program}: {e}"))?;
        Ok(Self {
            label: label.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            stop_signal: nix::sys::signal::Signal::SIGTERM,
        })
    }

    /// Stops it with `signal` instead of SIGTERM.
    pub(crate) fn with_stop_signal(mut self, signal: nix::sys::signal::Signal) -> Self {
        self.stop_signal = signal;
        self
    }

    /// `Some(why)` if the process has already exited.
    pub(crate) fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited early ({status}): {}",
                self.label,
                log_tail(&self.log)
            )),
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.label)),
        }
    }

    /// Sends SIGTERM (or its stop signal), waits up to [`STOP_GRACE`], then SIGKILL.
    /// Returns a note when the stop was not clean (non-zero exit, or killed), for the report.
    pub(crate) fn stop(mut self) -> Option<String> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(format!("{} had already exited ({status})", self.label));
        }
        // SIGTERM through `nix` (safe, no shell): std's Child::kill only sends SIGKILL,
        // which skips the graceful drain.
        let sent = i32::try_from(child.id()).is_ok_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), self.stop_signal).is_ok()
        });
        let status = if sent {
            wait_for(&mut child, STOP_GRACE)
        } else {
            None
        };
        match status {
            Some(status) if status.success() => None,
            Some(status) => Some(format!(
                "{} exited with {status} after {}",
                self.label,
                self.stop_signal.as_str()
            )),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Some(if sent {
                    format!(
                        "{} did not exit within {}s of SIGTERM: killed",
                        self.label,
                        STOP_GRACE.as_secs()
                    )
                } else {
                    format!(
                        "{}: SIGTERM could not be sent: killed with SIGKILL",
                        self.label
                    )
                })
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits up to `limit` for `child` to exit; `None` if it is still running.
pub(crate) fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_EVERY),
            _ => return None,
        }
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

/// Runs a load generator (wrk, h2load) to completion from `cwd`, its output to `log`,
/// and returns that output. Killed past `limit`; a non-zero exit is an error quoting the
/// log's tail.
pub(crate) fn run_logged(
    label: &str,
    argv: &[String],
    cwd: &Path,
    log: &Path,
    limit: Duration,
) -> Result<String, String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let out = File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    // Output to a file rather than a pipe: nothing to drain while waiting.
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("starting {label}: {e}"))?;
    let Some(status) = wait_for(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "{label} did not finish within {}s: killed",
            limit.as_secs()
        ));
    };
    let text =
        std::fs::read_to_string(log).map_err(|e| format!("reading {}: {e}", log.display()))?;
    if !status.success() {
        return Err(format!("{label} failed ({status}): {}", log_tail(log)));
    }
    Ok(text)
}

/// Polls `url` until it answers 200, while checking that `processes` are still alive.
/// An `https://` URL (a proxy's TLS listener: the harness has no TLS client) is ready
/// once it accepts a connection; callers check the servers behind it over HTTP first.
///
/// Polling is the only way to learn that another process is ready; it is bounded by
/// `limit` and fails fast if a process exits.
pub(crate) fn wait_ready(
    url: &str,
    limit: Duration,
    processes: &mut [Process],
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        for process in processes.iter_mut() {
            if let Some(why) = process.exited() {
                return Err(why);
            }
        }
        let last = if let Some(rest) = url.strip_prefix("https://") {
            let addr = rest.split('/').next().unwrap_or(rest);
            match std::net::TcpStream::connect(addr) {
                Ok(_) => return Ok(()),
                Err(e) => format!("connecting to {addr}: {e}"),
            }
        } else {
            match crate::http::get(url, Duration::from_secs(1)) {
                Ok(reply) if reply.status == 200 => return Ok(()),
                Ok(reply) => format!("{} {}", reply.status, shorten(&reply.body, 160)),
                Err(e) => e,
            }
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{url} did not answer 200 within {}s (last: {last})",
                limit.as_secs()
            ));
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// The last lines of a log file, on one line, for an error message.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        "no output".to_owned()
    } else {
        shorten(&tail, 400)
    }
}

/// At most `max` characters of `s`.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// Finds an executable on `PATH`, or in the sbin folders where Debian installs nginx
/// (not on a normal user's `PATH`).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs a short command (a version query) and returns its first output line.
pub(crate) fn first_line(program: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    // Both streams: `nginx -v` writes to stderr, `wrk -v` to stdout.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}
