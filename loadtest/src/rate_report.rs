//! The rate-mode part of `report.md` (and so of `report.html`): the SLO headline, the
//! latency-vs-rate charts and one table per scenario. Called by [`crate::report`].

use std::fmt::Write as _;

use crate::cli::{Ladder, Settings};
use crate::rate::{RATE_KEPT, RateCell, slo_rows};
use crate::run_info::RunInfo;
use crate::scenario::Scenario;
use crate::text::{ms, thousands};
use crate::wrk::{REQUEST_TIMEOUT, errors};

/// The SLO as people write it: `10 ms`, `0.5 ms`, `1 s`.
pub(crate) fn slo_words(slo: std::time::Duration) -> String {
    let ms_value = slo.as_secs_f64() * 1e3;
    if ms_value >= 1000.0 {
        format!("{} s", trim(slo.as_secs_f64()))
    } else {
        format!("{} ms", trim(ms_value))
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Microseconds as the report's milliseconds.
fn us(x: u64) -> String {
    ms(x as f64 / 1e3)
}

/// The rate-mode sections of report.md.
pub(crate) fn sections(info: &RunInfo<'_>) -> String {
    let s = info.settings;
    let slo = slo_words(s.slo);
    let mut md = String::from("## Latency at fixed rates (open loop)\n\n");
    let _ = writeln!(
        md,
        "Each configuration is held at fixed request rates ({}) for {} s each, after a {} s \
         warm-up at the same rate, by the harness's open-loop driver over keep-alive \
         connections. Latency is measured from the instant each request was *meant* to be \
         sent, so a stall counts against every request scheduled during it (corrected for \
         coordinated omission). Latencies in milliseconds; *achieved*: answered requests/s. \
         Each row is the median of {} run(s) by p99.\n",
        ladder_words(&s.ladder),
        s.duration.as_secs(),
        s.warmup.as_secs(),
        s.repeat
    );
    let _ = writeln!(md, "### Highest rate with p99 under {slo}\n");
    let _ = writeln!(
        md,
        "Per configuration, the highest rate held (achieved at least {:.0}% of it) with p99 \
         under {slo}, no errors, only 2xx answers and the driver not the limit. Only the \
         rates measured count: the true limit lies between that rate and the next.\n",
        RATE_KEPT * 100.0
    );
    md.push_str(&slo_table(info));
    md.push_str("\n### Latency against rate\n\n");
    md.push_str(
        "p50 (dotted), p99 (solid) and p99.9 (dashed) against the intended rate, one panel \
         per scenario, latency on a log scale; the grey line is the SLO. A hollow marker is \
         a driver-bound point.\n\n",
    );
    for &connections in &s.connections {
        let _ = writeln!(
            md,
            "![Latency against rate, {connections} connections]({})\n",
            crate::curve::file_name(connections)
        );
    }
    for &scenario in &s.scenarios {
        let _ = writeln!(
            md,
            "### {} at fixed rates\n\n{}.\n",
            scenario.name(),
            scenario.describe()
        );
        md.push_str(&rate_table(info, scenario));
        md.push('\n');
    }
    md
}

fn ladder_words(ladder: &Ladder) -> String {
    let list = |v: &[f64], f: &dyn Fn(f64) -> String| {
        v.iter().map(|&x| f(x)).collect::<Vec<_>>().join(", ")
    };
    match ladder {
        Ladder::Rates(rates) => format!("`--rates` {} requests/s", list(rates, &thousands)),
        Ladder::Steps(steps) => format!(
            "`--rate-steps` {} of each row's peak",
            list(steps, &|x| format!("{x}×"))
        ),
    }
}

fn slo_table(info: &RunInfo<'_>) -> String {
    let s = info.settings;
    let names: Vec<String> = info.configs.iter().map(|c| c.name.clone()).collect();
    let rows = slo_rows(info.rates, &names, &s.scenarios, &s.connections, s.slo);
    let columns: Vec<(Scenario, usize)> = s
        .scenarios
        .iter()
        .flat_map(|&sc| s.connections.iter().map(move |&c| (sc, c)))
        .collect();
    let mut t = String::from("| configuration |");
    for (scenario, c) in &columns {
        let _ = write!(t, " {} (c={c}) |", scenario.name());
    }
    t.push_str("\n|---|");
    t.push_str(&"---:|".repeat(columns.len()));
    t.push('\n');
    for name in &names {
        let _ = write!(t, "| {name} |");
        for (scenario, c) in &columns {
            let row = rows
                .iter()
                .find(|r| r.config == name && r.scenario == scenario.name() && r.connections == *c);
            let text = match row {
                Some(r) if r.points == 0 => "not run".to_owned(),
                Some(r) => match (r.rate, r.p99_us) {
                    (Some(rate), Some(p99)) => {
                        format!("{} req/s (p99 {})", thousands(rate), us(p99))
                    }
                    _ => format!("none of {} rates", r.points),
                },
                None => "not run".to_owned(),
            };
            let _ = write!(t, " {text} |");
        }
        t.push('\n');
    }
    t
}

fn rate_table(info: &RunInfo<'_>, scenario: Scenario) -> String {
    let s = info.settings;
    let inserts = scenario.inserts();
    let mut t = String::from(
        "| configuration | conns | step | target req/s | achieved | p50 | p90 | p99 | p99.9 | \
         max | errors | non-2xx |",
    );
    t.push_str(if inserts {
        " rows found / acked | note |\n"
    } else {
        " note |\n"
    });
    t.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    t.push_str(if inserts { "---|---|\n" } else { "---|\n" });
    let mut cells: Vec<&RateCell> = info
        .rates
        .iter()
        .filter(|c| c.scenario == scenario)
        .collect();
    // Grouped by connections, then configuration, rates ascending: each block is a curve.
    let order = |name: &str| info.configs.iter().position(|c| c.name == name);
    cells.sort_by(|a, b| {
        (a.connections, order(&a.config))
            .cmp(&(b.connections, order(&b.config)))
            .then(a.target_rate.total_cmp(&b.target_rate))
    });
    for cell in cells {
        let step = cell
            .step
            .map_or_else(|| "—".to_owned(), |x| format!("{x}×"));
        let Some(m) = cell.median() else {
            let blank = if inserts { " | |" } else { " |" };
            let _ = writeln!(
                t,
                "| {} | {} | {step} | {} | failed (see below) | | | | | | | |{blank}",
                cell.config,
                cell.connections,
                thousands(cell.target_rate)
            );
            continue;
        };
        let note = if m.driver_bound {
            "**driver-bound**".to_owned()
        } else if m.meets(s.slo) {
            format!("p99 under {}", slo_words(s.slo))
        } else if m.achieved_rate < RATE_KEPT * m.target_rate {
            "rate not held".to_owned()
        } else {
            String::new()
        };
        let rows = if inserts {
            format!(" {} |", m.answers.rows.cell(cell.rows_missing()))
        } else {
            String::new()
        };
        let _ = writeln!(
            t,
            "| {} | {} | {step} | {} | {} | {} | {} | {} | {} | {} | {} | {} |{rows} {note} |",
            cell.config,
            cell.connections,
            thousands(m.target_rate),
            thousands(m.achieved_rate),
            us(m.p50_us),
            us(m.p90_us),
            us(m.p99_us),
            us(m.p999_us),
            us(m.max_us),
            errors(m.answers.errors),
            thousands(m.answers.non_2xx as f64),
        );
    }
    t
}

/// The rate-mode bullets of the report's method section.
pub(crate) fn method(s: &Settings) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "- Rate mode: the harness's own open-loop driver (one thread, a current-thread tokio \
         runtime with hyper's HTTP/1.1 client, one request in flight per keep-alive \
         connection). Request *i* is intended at start + *i* / rate and goes to connection \
         *i* mod connections; a connection still waiting for an answer sends its overdue \
         requests as soon as it is free. Latency runs from the intended send to the end of \
         the answer, into an HDR histogram (3 significant digits). Sends are timed by a \
         kernel timer (`timerfd`) rather than tokio's millisecond timer, whose rounding \
         would add up to a millisecond to every latency. A request not answered within \
         {} s counts as a timeout error, as one still unsent {} s after the schedule ended.",
        REQUEST_TIMEOUT.as_secs(),
        REQUEST_TIMEOUT.as_secs()
    );
    let _ = writeln!(
        md,
        "- *driver-bound*: the achieved rate was under {:.0}% of the target, every request was \
         answered, and the driver was the side short of time (its thread on a CPU, or ready \
         and waiting for one, at least 90% of the run, or its median lateness in sending to \
         a free connection 1 ms or more). Such a row measures the driver as much as the \
         server and is left out of the SLO table.",
        RATE_KEPT * 100.0
    );
    if matches!(s.ladder, Ladder::Steps(_)) {
        md.push_str(
            "- `--rate-steps`: each row's rates are fractions of its own peak, the median \
             wrk run of the peak tables below, measured first in the same harness run.\n",
        );
    }
    md
}
