//! What the report says about where it ran: the machine, the versions of everything
//! measured, and the UTC date. Read once at the start of a run.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::process::{find_program, first_line};

/// The machine.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// Logical CPUs available to the harness.
    pub(crate) cores: usize,
    /// The CPU model, from /proc/cpuinfo.
    pub(crate) cpu_model: String,
    /// Total memory, GiB.
    pub(crate) memory_gib: f64,
    /// Kernel release.
    pub(crate) kernel: String,
    /// 1, 5 and 15 minute load averages at the start: a busy machine shows here.
    pub(crate) load_average: String,
    /// The share of the machine's CPU time the hypervisor took for others while the
    /// runs went (0-1; `steal` in /proc/stat), filled in after them: a virtual
    /// machine's figures swing with it, and nothing else on the machine shows it.
    /// `None` where /proc/stat is not readable.
    pub(crate) steal_during_runs: Option<f64>,
}

impl Machine {
    /// Reads /proc (fields it cannot read say "unknown").
    pub(crate) fn read() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0);
        let load = read("/proc/loadavg");
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: field("model name").unwrap_or_else(|| "unknown".into()),
            memory_gib: (memory_kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            kernel: non_empty(read("/proc/sys/kernel/osrelease").trim(), "unknown"),
            load_average: non_empty(
                &load
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" "),
                "unknown",
            ),
            steal_during_runs: None,
        }
    }
}

/// The machine's CPU time, all CPUs together, from the first line of /proc/stat (clock
/// ticks): the total and what the hypervisor took (`steal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    total: u64,
    steal: u64,
}

impl CpuTimes {
    /// Now; `None` where /proc/stat is not readable (not Linux).
    pub(crate) fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// From /proc/stat's text: `cpu  user nice system idle iowait irq softirq steal ...`
    /// (the guest columns after `steal` are already inside `user` and `nice`).
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().next()?.strip_prefix("cpu ")?;
        let fields = line
            .split_whitespace()
            .take(8)
            .map(|f| f.parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()?;
        Some(Self {
            total: fields.iter().sum(),
            steal: *fields.get(7)?,
        })
    }

    /// The share of the CPU time since `earlier` that the hypervisor took (0-1).
    pub(crate) fn steal_since(&self, earlier: &Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total).filter(|&t| t > 0)?;
        Some(self.steal.saturating_sub(earlier.steal) as f64 / total as f64)
    }
}

fn non_empty(s: &str, fallback: &str) -> String {
    if s.is_empty() {
        fallback.to_owned()
    } else {
        s.to_owned()
    }
}

/// The programs a run uses, where they were found.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    /// The loadlab binary cargo built for this bench.
    pub(crate) loadlab: PathBuf,
    /// wrk; `None`: nothing can be measured.
    pub(crate) wrk: Option<PathBuf>,
    /// nginx; `None`: the nginx rows are skipped.
    pub(crate) nginx: Option<PathBuf>,
    /// HAProxy; `None`: the haproxy rows are skipped.
    pub(crate) haproxy: Option<PathBuf>,
    /// h2load (nghttp2-client); `None`: the h2 rows are skipped.
    pub(crate) h2load: Option<PathBuf>,
    /// taskset; `None`: `--pin` cannot be honoured.
    pub(crate) taskset: Option<PathBuf>,
}

impl Tools {
    /// Looks the programs up.
    pub(crate) fn find(loadlab: &Path) -> Self {
        Self {
            loadlab: loadlab.to_owned(),
            wrk: find_program("wrk"),
            nginx: find_program("nginx"),
            haproxy: find_program("haproxy"),
            h2load: find_program("h2load"),
            taskset: find_program("taskset"),
        }
    }
}

/// Versions of what was measured and of what measured it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Versions {
    /// `loadlab --version`.
    pub(crate) loadlab: String,
    /// The git commit of the checkout, `+dirty` with uncommitted changes.
    pub(crate) commit: String,
    /// `rustc -V`: the compiler on `PATH`, which under `cargo bench` is the toolchain
    /// cargo built the harness and loadlab with (rustup sets it for child processes).
    pub(crate) rustc: String,
    /// `wrk -v`, up to its copyright.
    pub(crate) wrk: String,
    /// `nginx -v`, or "not installed".
    pub(crate) nginx: String,
    /// `haproxy -v`'s version, or "not installed".
    pub(crate) haproxy: String,
    /// `h2load --version` (`nghttp2/1.52.0`), or "not installed".
    pub(crate) h2load: String,
}

impl Versions {
    /// Asks each program.
    pub(crate) fn read(tools: &Tools, package_root: &Path) -> Self {
        let unknown = || "unknown".to_owned();
        let wrk = tools
            .wrk
            .as_deref()
            .and_then(|p| first_line(p, &["-v"]))
            .map(|l| l.split(" Copyright").next().unwrap_or_default().to_owned());
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .arg("-C")
                .arg(package_root)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let commit = match (
            git(&["rev-parse", "--short", "HEAD"]),
            git(&["status", "--porcelain"]),
        ) {
            (Some(head), Some(changes)) if !changes.is_empty() => format!("{head}+dirty"),
            (Some(head), _) => head,
            _ => unknown(),
        };
        Self {
            loadlab: first_line(&tools.loadlab, &["--version"]).unwrap_or_else(unknown),
            commit,
            rustc: crate::process::find_program("rustc")
                .and_then(|p| first_line(&p, &["-V"]))
                .unwrap_or_else(unknown),
            wrk: wrk.unwrap_or_else(|| "not installed".into()),
            nginx: tools
                .nginx
                .as_deref()
                .and_then(|p| first_line(p, &["-v"]))
                .map(|l| l.trim_start_matches("nginx version:").trim().to_owned())
                .unwrap_or_else(|| "not installed".into()),
            // "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/"
            haproxy: tools
                .haproxy
                .as_deref()
                .and_then(|p| first_line(p, &["-v"]))
                .map(|l| {
                    let l = l.trim_start_matches("HAProxy version").trim();
                    l.split(" - ").next().unwrap_or(l).to_owned()
                })
                .unwrap_or_else(|| "not installed".into()),
            // "h2load nghttp2/1.52.0"
            h2load: tools
                .h2load
                .as_deref()
                .and_then(|p| first_line(p, &["--version"]))
                .map(|l| l.trim_start_matches("h2load").trim().to_owned())
                .unwrap_or_else(|| "not installed".into()),
        }
    }
}

/// The current UTC time as (`2026-11-23 09:41:15 UTC`, `2026-11-23T094115Z`): the first
/// for the report, the second for folder names (no colons).
pub(crate) fn utc_now() -> (String, String) {
    utc_at(SystemTime::now())
}

/// [`utc_now`] for a given time (RFC 3339 from `humantime`, then reshaped).
pub(crate) fn utc_at(time: SystemTime) -> (String, String) {
    // `2026-11-23T09:41:15Z`
    let rfc3339 = humantime::format_rfc3339_seconds(time).to_string();
    let (date, clock) = rfc3339
        .trim_end_matches('Z')
        .split_once('T')
        .unwrap_or((&rfc3339, ""));
    (
        format!("{date} {clock} UTC"),
        format!("{date}T{}Z", clock.replace(':', "")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_its_share_of_the_cpu_time_between_two_readings() {
        let before = CpuTimes::parse(
            "cpu  1000 0 500 8000 0 0 100 400 0 0\ncpu0 500 0 250 4000 0 0 50 200 0 0\n",
        )
        .expect("parsed");
        let after = CpuTimes::parse("cpu  1600 0 800 8800 0 0 200 600 50 0\n").expect("parsed");

        // 2,000 ticks went by (600 + 300 + 800 + 100 + 200), 200 of them stolen.
        let steal = after.steal_since(&before).expect("a share");
        assert!((steal - 0.1).abs() < 1e-9, "{steal}");
        assert_eq!(before.steal_since(&before), None, "no time went by");
    }

    #[test]
    fn a_stat_without_a_steal_column_or_cpu_line_is_not_read() {
        assert_eq!(CpuTimes::parse("cpu  1 2 3 4\n"), None);
        assert_eq!(CpuTimes::parse("intr 5\n"), None);
        assert_eq!(CpuTimes::parse(""), None);
    }
}
