//! The latency-vs-rate charts of rate mode: one SVG per connection count, one panel per
//! scenario, p50, p99 and p99.9 per configuration against the intended rate, latency on a
//! log axis (it spans sub-millisecond to seconds once a set-up is past its peak), and the
//! SLO as a horizontal line.

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use crate::chart::{COLOURS, draw_legend};
use crate::rate::{RateCell, RateMeasurement};
use crate::scenario::Scenario;

const WIDTH: u32 = 1200;
const HEADER: u32 = 96;
const PANEL_HEIGHT: u32 = 380;

/// The chart's file name for a connection count.
pub(crate) fn file_name(connections: usize) -> String {
    format!("latency-vs-rate-c{connections}.svg")
}

/// What one chart shows.
pub(crate) struct Curves<'a> {
    /// One panel each.
    pub(crate) scenarios: &'a [Scenario],
    /// The connection count of this chart.
    pub(crate) connections: usize,
    /// Colour order.
    pub(crate) configs: &'a [String],
    /// Every rate row of the run (this chart picks its own).
    pub(crate) cells: &'a [RateCell],
    /// Drawn as a horizontal line.
    pub(crate) slo: Duration,
}

/// A curve's points: intended rate and the median run.
type Points<'a> = Vec<(f64, &'a RateMeasurement)>;

impl Curves<'_> {
    fn points(&self, scenario: Scenario, config: &str) -> Points<'_> {
        let mut points: Points<'_> = self
            .cells
            .iter()
            .filter(|c| {
                c.scenario == scenario && c.connections == self.connections && c.config == config
            })
            .filter_map(|c| c.median().map(|m| (c.target_rate, m)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points
    }

    /// Draws the chart into `path`.
    pub(crate) fn draw(&self, path: &Path) -> Result<(), String> {
        let render = || -> Result<(), Box<dyn std::error::Error>> {
            let cols = self.scenarios.len().clamp(1, 2);
            let rows = self.scenarios.len().div_ceil(cols).max(1);
            let height = HEADER + PANEL_HEIGHT * rows as u32;
            let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
            root.fill(&WHITE)?;
            let (header, body) = root.split_vertically(HEADER);
            let title = format!(
                "Latency against rate, {} connections (open loop, from intended send)",
                self.connections
            );
            header.draw(&Text::new(title, (20, 10), ("sans-serif", 22).into_font()))?;
            let key = "dotted: p50   solid: p99   dashed: p99.9   grey: SLO   hollow marker: \
                       driver-bound; lower is better";
            let grey = RGBColor(90, 90, 90);
            header.draw(&Text::new(
                key,
                (20, 40),
                ("sans-serif", 13).into_font().color(&grey),
            ))?;
            draw_legend(&header, self.configs, 66)?;
            let panels = body.split_evenly((rows, cols));
            for (panel, &scenario) in panels.iter().zip(self.scenarios) {
                self.panel(panel, scenario)?;
            }
            root.present()?;
            Ok(())
        };
        render().map_err(|e| format!("{}: {e}", path.display()))
    }

    fn panel(
        &self,
        panel: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
        scenario: Scenario,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let curves: Vec<Points<'_>> = self
            .configs
            .iter()
            .map(|c| self.points(scenario, c))
            .collect();
        let slo_ms = self.slo.as_secs_f64() * 1e3;
        let ms = |us: u64| (us.max(1)) as f64 / 1e3;
        let all = curves.iter().flatten();
        let x_max = all.clone().map(|(r, _)| *r).fold(0.0, f64::max).max(1.0) * 1.05;
        let y_top = all
            .clone()
            .map(|(_, m)| ms(m.p999_us))
            .fold(slo_ms, f64::max)
            * 2.0;
        let y_bottom = all.map(|(_, m)| ms(m.p50_us)).fold(slo_ms, f64::min) / 2.0;
        let mut chart = ChartBuilder::on(panel)
            .caption(scenario.name(), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (y_bottom.max(0.001)..y_top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("intended requests/s")
            .y_desc("latency, ms (log)")
            .x_label_formatter(&|x| crate::chart::axis_label(*x))
            .y_label_formatter(&|y| crate::chart::axis_label(*y))
            .label_style(("sans-serif", 13))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()?;
        let grey = RGBColor(150, 150, 150);
        chart.draw_series(LineSeries::new(
            [(0.0, slo_ms), (x_max, slo_ms)],
            grey.stroke_width(1),
        ))?;
        for (i, points) in curves.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let line = |f: fn(&RateMeasurement) -> u64| -> Vec<(f64, f64)> {
                points.iter().map(|(r, m)| (*r, ms(f(m)))).collect()
            };
            chart.draw_series(DashedLineSeries::new(
                line(|m| m.p50_us),
                2,
                4,
                colour.stroke_width(1),
            ))?;
            chart.draw_series(LineSeries::new(line(|m| m.p99_us), colour.stroke_width(2)))?;
            chart.draw_series(DashedLineSeries::new(
                line(|m| m.p999_us),
                8,
                5,
                colour.stroke_width(1),
            ))?;
            chart.draw_series(points.iter().map(|(r, m)| {
                let style = if m.driver_bound {
                    colour.stroke_width(2)
                } else {
                    colour.filled()
                };
                Circle::new((*r, ms(m.p99_us)), 4, style)
            }))?;
        }
        Ok(())
    }
}
