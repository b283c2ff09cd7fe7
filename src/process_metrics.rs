//! The `process_*` metrics (memory, file descriptors, threads, start time, CPU time) of
//! this process, read at each scrape by [`crate::metrics::metrics_render`].
//!
//! The gauges are recorded through the `metrics` facade like every other metric. CPU
//! time is not: the facade's counters hold whole numbers, so as a counter it would move
//! in whole seconds, and as a gauge Prometheus tooling rejects it (`promtool check
//! metrics`: a `_total` name must be a counter). So [`collect`] renders
//! `process_cpu_seconds_total` itself, a counter with fractional seconds, and the
//! exposition appends it.

use std::fmt::Write;

/// The name of the CPU-time counter, rendered by hand.
const CPU_SECONDS_TOTAL: &str = "process_cpu_seconds_total";

/// Publishes the `# HELP` lines of the process gauges.
pub(crate) fn describe() {
    use metrics::{Unit, describe_gauge};
    describe_gauge!(
        "process_open_fds",
        Unit::Count,
        "Number of open file descriptors."
    );
    describe_gauge!(
        "process_max_fds",
        Unit::Count,
        "Maximum number of open file descriptors."
    );
    describe_gauge!(
        "process_virtual_memory_bytes",
        Unit::Bytes,
        "Virtual memory size in bytes."
    );
    describe_gauge!(
        "process_virtual_memory_max_bytes",
        Unit::Bytes,
        "Maximum amount of virtual memory available in bytes."
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory size in bytes."
    );
    describe_gauge!(
        "process_start_time_seconds",
        Unit::Seconds,
        "Start time of the process since unix epoch in seconds."
    );
    describe_gauge!(
        "process_threads",
        Unit::Count,
        "Number of OS threads in the process."
    );
}

/// Reads the process's figures, sets the gauges, and returns the exposition text of
/// `process_cpu_seconds_total` (empty where the platform gives no CPU time).
pub(crate) fn collect() -> String {
    let m = metrics_process::collector::collect();
    let gauges = [
        ("process_open_fds", m.open_fds),
        ("process_max_fds", m.max_fds),
        ("process_virtual_memory_bytes", m.virtual_memory_bytes),
        (
            "process_virtual_memory_max_bytes",
            m.virtual_memory_max_bytes,
        ),
        ("process_resident_memory_bytes", m.resident_memory_bytes),
        ("process_start_time_seconds", m.start_time_seconds),
        ("process_threads", m.threads),
    ];
    for (name, value) in gauges {
        if let Some(v) = value {
            metrics::gauge!(name).set(v as f64);
        }
    }
    m.cpu_seconds_total.map(cpu_family).unwrap_or_default()
}

/// The text exposition of the CPU-time counter holding `seconds`.
fn cpu_family(seconds: f64) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        "# HELP {CPU_SECONDS_TOTAL} Total user and system CPU time spent in seconds.\n\
         # TYPE {CPU_SECONDS_TOTAL} counter\n\
         {CPU_SECONDS_TOTAL} {seconds}\n"
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_a_counter_with_fractional_seconds() {
        let text = cpu_family(1.25);

        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(text.ends_with("\nprocess_cpu_seconds_total 1.25\n"));
    }
}
