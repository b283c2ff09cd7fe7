//! The peak charts: one SVG per metric (throughput, p99 latency), one panel per scenario,
//! bars grouped by connection count, one colour per configuration, whiskers from the
//! lowest to the highest of the repeats. Panels have their own scale because scenarios
//! differ by orders of magnitude (healthz against randoms-1e6). Rate mode's curves are in
//! [`crate::curve`].

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::run::Cell;
use crate::scenario::Scenario;
use crate::wrk::Measurement;

/// One chart: which figure of a run it plots, and how it is labelled.
pub(crate) struct Metric {
    /// File name in the run folder.
    pub(crate) file: &'static str,
    /// Chart title.
    pub(crate) title: &'static str,
    /// Y-axis label, with its unit.
    pub(crate) unit: &'static str,
    /// The figure.
    pub(crate) value: fn(&Measurement) -> f64,
}

/// The charts the report embeds.
pub(crate) const METRICS: [Metric; 2] = [
    Metric {
        file: "throughput.svg",
        title: "Throughput (median run; higher is better)",
        unit: "requests/s",
        value: |m| m.rps,
    },
    Metric {
        file: "p99.svg",
        title: "p99 latency (median run; lower is better)",
        unit: "p99 latency, ms",
        value: |m| m.p99_ms,
    },
];

/// Distinct colours, in configuration order (colour-blind friendly: Okabe-Ito).
pub(crate) const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

const WIDTH: u32 = 1200;
const HEADER: u32 = 90;
const PANEL_HEIGHT: u32 = 340;
/// X units per group of bars.
const SCALE: i32 = 1000;

/// Draws `metric` for `cells` into `path`. `configs` gives the bar order and colours.
pub(crate) fn draw(
    path: &Path,
    metric: &Metric,
    scenarios: &[Scenario],
    connections: &[usize],
    configs: &[String],
    cells: &[Cell],
) -> Result<(), String> {
    // One closure for the drawing, so every plotters error gets the file's name once.
    let render = || -> Result<(), Box<dyn std::error::Error>> {
        let cols = scenarios.len().clamp(1, 3);
        let rows = scenarios.len().div_ceil(cols).max(1);
        let height = HEADER + PANEL_HEIGHT * rows as u32;
        let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER);
        header.draw(&Text::new(
            metric.title,
            (20, 10),
            ("sans-serif", 24).into_font(),
        ))?;
        let subtitle = "one panel per scenario, each with its own scale; \
            bars grouped by wrk connections; \
             whiskers: lowest and highest of the repeats";
        header.draw(&Text::new(
            subtitle,
            (20, 38),
            ("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90)),
        ))?;
        // The legend, once for all panels.
        let mut x = 20;
        for (i, name) in configs.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            header.draw(&Rectangle::new([(x, 62), (x + 16, 78)], colour.filled()))?;
            header.draw(&Text::new(
                name.as_str(),
                (x + 22, 62),
                ("sans-serif", 16).into_font(),
            ))?;
            x += 22 + 9 * name.len() as i32 + 30;
        }
        let panels = body.split_evenly((rows, cols));
        let groups = connections.len();
        for (panel, &scenario) in panels.iter().zip(scenarios) {
            let value = |config: &str, conns: usize| {
                cells
                    .iter()
                    .find(|c| {
                        c.scenario == scenario && c.connections == conns && c.config == config
                    })
                    .and_then(Cell::median)
                    .map(metric.value)
            };
            // The lowest and highest over the repeats, when there are several.
            let whisker = |config: &str, conns: usize| {
                let cell = cells.iter().find(|c| {
                    c.scenario == scenario && c.connections == conns && c.config == config
                })?;
                let runs: Vec<f64> = cell
                    .attempts
                    .iter()
                    .filter_map(|a| a.measurement.as_ref())
                    .map(metric.value)
                    .collect();
                let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (runs.len() > 1).then_some((lo, hi))
            };
            let top = configs
                .iter()
                .flat_map(|c| {
                    connections
                        .iter()
                        .filter_map(move |&n| whisker(c, n).map(|w| w.1).or(value(c, n)))
                })
                .fold(0.0f64, f64::max);
            let y_max = if top > 0.0 { top * 1.18 } else { 1.0 };
            // X in thousandths of a group, group g centred on g * SCALE: integer coordinates
            // take exact key points (one label per group) with plotters' default formatting.
            let key_points: Vec<i32> = (0..groups as i32).map(|g| g * SCALE).collect();
            let mut chart = ChartBuilder::on(panel)
                .caption(scenario.name(), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(30)
                .y_label_area_size(70)
                .build_cartesian_2d(
                    (-SCALE / 2..groups as i32 * SCALE - SCALE / 2).with_key_points(key_points),
                    0f64..y_max,
                )?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_label_formatter(&|x| {
                    connections
                        .get(usize::try_from((x + SCALE / 2) / SCALE).unwrap_or(usize::MAX))
                        .map_or_else(String::new, |c| format!("{c} connections"))
                })
                .y_desc(metric.unit)
                .y_label_formatter(&|y| axis_label(*y))
                .y_labels(8)
                .light_line_style(WHITE)
                .label_style(("sans-serif", 13))
                .draw()?;
            let width = SCALE * 4 / 5 / configs.len().max(1) as i32;
            for (i, config) in configs.iter().enumerate() {
                let colour = COLOURS[i % COLOURS.len()];
                for (g, &conns) in connections.iter().enumerate() {
                    let left = g as i32 * SCALE - SCALE * 2 / 5 + i as i32 * width;
                    let Some(v) = value(config, conns) else {
                        // Say so where the bar would be, rather than leave a silent gap.
                        let style = ("sans-serif", 11)
                            .into_font()
                            .color(&RGBColor(150, 0, 0))
                            .pos(Pos::new(HPos::Center, VPos::Bottom));
                        chart.draw_series([Text::new("n/a", (left + width / 2, 0.0), style)])?;
                        continue;
                    };
                    chart.draw_series([Rectangle::new(
                        [(left + width / 12, 0.0), (left + width * 11 / 12, v)],
                        colour.filled(),
                    )])?;
                    let mid = left + width / 2;
                    let mut label_at = v;
                    if let Some((lo, hi)) = whisker(config, conns) {
                        let cap = width / 6;
                        let ink = RGBColor(60, 60, 60).stroke_width(1);
                        for segment in [
                            [(mid, lo), (mid, hi)],
                            [(mid - cap, lo), (mid + cap, lo)],
                            [(mid - cap, hi), (mid + cap, hi)],
                        ] {
                            chart.draw_series([PathElement::new(segment, ink)])?;
                        }
                        label_at = hi.max(v);
                    }
                    let style = TextStyle::from(("sans-serif", 11).into_font())
                        .pos(Pos::new(HPos::Center, VPos::Bottom));
                    chart.draw_series([Text::new(compact(v), (mid, label_at), style)])?;
                }
            }
        }
        root.present()?;
        Ok(())
    };
    render().map_err(|e| format!("{}: {e}", path.display()))
}

/// A bar's label, three significant digits: `81.2k`, `8.40k`, `152`, `1.52`.
fn compact(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{:.2}M", v / 1e6),
        a if a >= 1e5 => format!("{:.0}k", v / 1e3),
        a if a >= 1e4 => format!("{:.1}k", v / 1e3),
        a if a >= 1e3 => format!("{:.2}k", v / 1e3),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        0.0 => "0".to_owned(),
        _ => format!("{v:.2}"),
    }
}

/// An axis label, no trailing zeros: `20k`, `12.5k`, `500`, `0.5`.
pub(crate) fn axis_label(v: f64) -> String {
    let trim = |s: String| s.trim_end_matches('0').trim_end_matches('.').to_owned();
    if v.abs() >= 1e3 {
        format!("{}k", trim(format!("{:.2}", v / 1e3)))
    } else {
        trim(format!("{v:.2}"))
    }
}
