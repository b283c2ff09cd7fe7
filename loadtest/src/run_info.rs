//! What a run's report is written from, in its own module so the max-mode and rate
//! reports can both read it without importing each other.

use std::path::Path;

use crate::cli::Settings;
use crate::machine::{Machine, Versions};
use crate::rate::RateCell;
use crate::run::Cell;
use crate::target::Config;

/// Everything a report is written from.
#[derive(Debug)]
pub(crate) struct RunInfo<'a> {
    /// When the run started, `YYYY-MM-DD HH:MM:SS UTC`.
    pub(crate) date: String,
    /// The harness command as typed (`cargo bench --bench loadtest -- ...`).
    pub(crate) command: String,
    /// The validated flags.
    pub(crate) settings: &'a Settings,
    /// The machine.
    pub(crate) machine: Machine,
    /// Versions of what ran.
    pub(crate) versions: Versions,
    /// Whether servers and wrk were actually pinned.
    pub(crate) pinned: bool,
    /// Why `--pin` was not honoured, when it was asked for and could not be.
    pub(crate) pin_note: Option<String>,
    /// The configurations, with their notes and unavailable reasons.
    pub(crate) configs: &'a [Config],
    /// The peak (wrk) rows.
    pub(crate) cells: &'a [Cell],
    /// The fixed-rate rows (rate mode).
    pub(crate) rates: &'a [RateCell],
    /// The package root, to show paths relative to it.
    pub(crate) root: &'a Path,
}
