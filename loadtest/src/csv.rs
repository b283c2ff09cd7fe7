//! `results.csv`: one line per measured run of either mode, for spreadsheets and
//! plotting tools. Latencies in microseconds, rates in requests/s; an empty field is a
//! figure the mode does not have (wrk has no target rate). `driver` names what measured
//! the run: `wrk` or `h2load` (peaks), `open-loop` (rate mode's driver).

use std::fmt::Write as _;

use crate::report::RunInfo;

const HEADER: &str = "mode,scenario,connections,config,rep,step,target_rate,achieved_rate,\
p50_us,p90_us,p99_us,p999_us,max_us,requests,errors,non_2xx,driver_bound,driver";

/// The `driver` of rate mode's rows: the harness's own open-loop driver.
const RATE_DRIVER: &str = "open-loop";

/// Renders results.csv.
pub(crate) fn render(info: &RunInfo<'_>) -> String {
    let mut csv = String::from(HEADER);
    csv.push('\n');
    let us = |ms: f64| format!("{:.0}", ms * 1e3);
    for cell in info.cells {
        for attempt in &cell.attempts {
            let Some(m) = &attempt.measurement else {
                continue;
            };
            let _ = writeln!(
                csv,
                "max,{},{},{},{},,,{:.1},{},{},{},{},{},{},{},{},,{}",
                cell.scenario.name(),
                cell.connections,
                field(&cell.config),
                attempt.rep + 1,
                m.rps,
                us(m.p50_ms),
                us(m.p90_ms),
                us(m.p99_ms),
                us(m.p999_ms),
                us(m.max_ms),
                m.answers.requests,
                m.answers.errors.total(),
                m.answers.non_2xx,
                cell.tool.name(),
            );
        }
    }
    for cell in info.rates {
        for attempt in &cell.attempts {
            let Some(m) = &attempt.measurement else {
                continue;
            };
            let _ = writeln!(
                csv,
                "rate,{},{},{},{},{},{:.1},{:.1},{},{},{},{},{},{},{},{},{},{RATE_DRIVER}",
                cell.scenario.name(),
                cell.connections,
                field(&cell.config),
                attempt.rep + 1,
                cell.step.map_or_else(String::new, |s| s.to_string()),
                m.target_rate,
                m.achieved_rate,
                m.p50_us,
                m.p90_us,
                m.p99_us,
                m.p999_us,
                m.max_us,
                m.answers.requests,
                m.answers.errors.total(),
                m.answers.non_2xx,
                m.driver_bound,
            );
        }
    }
    csv
}

/// A configuration name as a CSV field: names are letters, digits, `-` and `_`, but
/// quote anyway if that ever changes.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
