//! The peak charts: one SVG per metric (throughput, p99 latency), one panel per scenario,
//! bars grouped by connection count, one colour per configuration, whiskers from the
//! lowest to the highest of the repeats. Panels have their own scale because scenarios
//! differ by orders of magnitude (healthz against randoms-1e6). Rate mode's curves are in
//! [`crate::curve`].

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
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

/// What a drawing step returns: plotters' errors, named with the file once in [`draw`].
pub(crate) type Drawn = Result<(), Box<dyn std::error::Error>>;

/// A panel's plotting area: x in thousandths of a group of bars, y in the metric's unit.
type PanelChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<WithKeyPoints<RangedCoordi32>, RangedCoordf64>>;

/// Draws `metric` for `cells` into `path`. `configs` gives the bar order and colours.
pub(crate) fn draw(
    path: &Path,
    metric: &Metric,
    scenarios: &[Scenario],
    connections: &[usize],
    configs: &[String],
    cells: &[Cell],
) -> Result<(), String> {
    let render = || -> Drawn {
        let cols = scenarios.len().clamp(1, 3);
        let rows = scenarios.len().div_ceil(cols).max(1);
        let height = HEADER + PANEL_HEIGHT * rows as u32;
        let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER);
        draw_header(&header, metric, configs)?;
        let panels = body.split_evenly((rows, cols));
        for (area, &scenario) in panels.iter().zip(scenarios) {
            let panel = Panel {
                scenario,
                metric,
                cells,
            };
            panel.draw(area, connections, configs)?;
        }
        root.present()?;
        Ok(())
    };
    render().map_err(|e| format!("{}: {e}", path.display()))
}

/// The title, the subtitle and the legend, once for all panels.
fn draw_header(
    header: &DrawingArea<SVGBackend<'_>, Shift>,
    metric: &Metric,
    configs: &[String],
) -> Drawn {
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
    draw_legend(header, configs, 62)
}

/// The legend, in a chart's header: one colour swatch and name per configuration, left
/// to right at `top` pixels.
pub(crate) fn draw_legend(
    header: &DrawingArea<SVGBackend<'_>, Shift>,
    configs: &[String],
    top: i32,
) -> Drawn {
    let mut x = 20;
    for (i, name) in configs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        header.draw(&Rectangle::new(
            [(x, top), (x + 16, top + 16)],
            colour.filled(),
        ))?;
        header.draw(&Text::new(
            name.as_str(),
            (x + 22, top),
            ("sans-serif", 16).into_font(),
        ))?;
        x += 22 + 9 * name.len() as i32 + 30;
    }
    Ok(())
}

/// One scenario's panel: its cells, read through one metric.
struct Panel<'a> {
    scenario: Scenario,
    metric: &'a Metric,
    cells: &'a [Cell],
}

impl Panel<'_> {
    /// The cell of `config` at `conns` connections, if it ran.
    fn cell(&self, config: &str, conns: usize) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.scenario == self.scenario && c.connections == conns && c.config == config)
    }

    /// The bar: the metric of the median run.
    fn value(&self, config: &str, conns: usize) -> Option<f64> {
        self.cell(config, conns)
            .and_then(Cell::median)
            .map(self.metric.value)
    }

    /// The whisker: the lowest and highest over the repeats, when there are several.
    fn whisker(&self, config: &str, conns: usize) -> Option<(f64, f64)> {
        let runs: Vec<f64> = self
            .cell(config, conns)?
            .attempts
            .iter()
            .filter_map(|a| a.measurement.as_ref())
            .map(self.metric.value)
            .collect();
        let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (runs.len() > 1).then_some((lo, hi))
    }

    /// The top of the y axis: room above the highest bar or whisker for its label.
    fn y_max(&self, connections: &[usize], configs: &[String]) -> f64 {
        let top = configs
            .iter()
            .flat_map(|c| {
                connections
                    .iter()
                    .filter_map(move |&n| self.whisker(c, n).map(|w| w.1).or(self.value(c, n)))
            })
            .fold(0.0f64, f64::max);
        if top > 0.0 { top * 1.18 } else { 1.0 }
    }

    /// Draws the axes, then one bar per configuration in each group of connections.
    fn draw(
        &self,
        area: &DrawingArea<SVGBackend<'_>, Shift>,
        connections: &[usize],
        configs: &[String],
    ) -> Drawn {
        let groups = connections.len();
        // X in thousandths of a group, group g centred on g * SCALE: integer coordinates
        // take exact key points (one label per group) with plotters' default formatting.
        let key_points: Vec<i32> = (0..groups as i32).map(|g| g * SCALE).collect();
        let mut chart = ChartBuilder::on(area)
            .caption(self.scenario.name(), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (-SCALE / 2..groups as i32 * SCALE - SCALE / 2).with_key_points(key_points),
                0f64..self.y_max(connections, configs),
            )?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| {
                connections
                    .get(usize::try_from((x + SCALE / 2) / SCALE).unwrap_or(usize::MAX))
                    .map_or_else(String::new, |c| format!("{c} connections"))
            })
            .y_desc(self.metric.unit)
            .y_label_formatter(&|y| axis_label(*y))
            .y_labels(8)
            .light_line_style(WHITE)
            .label_style(("sans-serif", 13))
            .draw()?;
        let width = SCALE * 4 / 5 / configs.len().max(1) as i32;
        for (i, config) in configs.iter().enumerate() {
            for (g, &conns) in connections.iter().enumerate() {
                let left = g as i32 * SCALE - SCALE * 2 / 5 + i as i32 * width;
                let bar = Bar {
                    left,
                    width,
                    colour: COLOURS[i % COLOURS.len()],
                };
                bar.draw(
                    &mut chart,
                    self.value(config, conns),
                    self.whisker(config, conns),
                )?;
            }
        }
        Ok(())
    }
}

/// Where one bar goes in its panel, and its colour.
struct Bar {
    left: i32,
    width: i32,
    colour: RGBColor,
}

impl Bar {
    /// Draws the bar for `value` with its `whisker` and its label; "n/a" where no run
    /// measured it, rather than a silent gap.
    fn draw(
        &self,
        chart: &mut PanelChart<'_, '_>,
        value: Option<f64>,
        whisker: Option<(f64, f64)>,
    ) -> Drawn {
        let (left, width) = (self.left, self.width);
        let mid = left + width / 2;
        let Some(v) = value else {
            let style = ("sans-serif", 11)
                .into_font()
                .color(&RGBColor(150, 0, 0))
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            chart.draw_series([Text::new("n/a", (mid, 0.0), style)])?;
            return Ok(());
        };
        chart.draw_series([Rectangle::new(
            [(left + width / 12, 0.0), (left + width * 11 / 12, v)],
            self.colour.filled(),
        )])?;
        let mut label_at = v;
        if let Some((lo, hi)) = whisker {
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
        Ok(())
    }
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
