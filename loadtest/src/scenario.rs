//! The scenarios: what load wrk sends, and with which committed Lua script
//! (`benches/wrk/`). Used by [`crate::cli`] to parse `--scenarios` and by the run loop to
//! build each wrk command.

use clap::ValueEnum;
use serde::Serialize;

/// One kind of load, the same for every configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Scenario {
    /// `GET /healthz`: the trivial request, so the cost of each hop shows.
    Healthz,
    /// `POST /app/insert` with random valid tickets.
    Insert,
    /// `GET /api/randoms?cant=1000`.
    #[value(name = "randoms-1e3")]
    #[serde(rename = "randoms-1e3")]
    Randoms1e3,
    /// `GET /api/randoms?cant=1e6`.
    #[value(name = "randoms-1e6")]
    #[serde(rename = "randoms-1e6")]
    Randoms1e6,
    /// 60% healthz, 25% inserts, 15% randoms of 1000, in a fixed pattern.
    Mixed,
}

impl Scenario {
    /// Every scenario, in report order (also the default `--scenarios`).
    pub(crate) const ALL: [Scenario; 5] = [
        Scenario::Healthz,
        Scenario::Insert,
        Scenario::Randoms1e3,
        Scenario::Randoms1e6,
        Scenario::Mixed,
    ];

    /// The name used by `--scenarios`, the report and the JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Healthz => "healthz",
            Scenario::Insert => "insert",
            Scenario::Randoms1e3 => "randoms-1e3",
            Scenario::Randoms1e6 => "randoms-1e6",
            Scenario::Mixed => "mixed",
        }
    }

    /// One line for the report.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Scenario::Healthz => "`GET /healthz`: the trivial request; shows what each hop costs",
            Scenario::Insert => {
                "`POST /app/insert`, a random valid ticket per request (`benches/wrk/insert.lua`); \
                 afterwards the rows found in the table are compared with the inserts acknowledged"
            }
            Scenario::Randoms1e3 => "`GET /api/randoms?cant=1000`: a small compute job per request",
            Scenario::Randoms1e6 => "`GET /api/randoms?cant=1e6`: a heavy compute job per request",
            Scenario::Mixed => {
                "fixed pattern of 60% `GET /healthz`, 25% `POST /app/insert`, 15% \
                 `GET /api/randoms?cant=1000` (`benches/wrk/mixed.lua`)"
            }
        }
    }

    /// What wrk is pointed at, appended to the configuration's base URL.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Scenario::Healthz => "/healthz",
            Scenario::Insert => "/app/insert",
            Scenario::Randoms1e3 => "/api/randoms?cant=1000",
            Scenario::Randoms1e6 => "/api/randoms?cant=1e6",
            // mixed.lua builds its own paths from the base URL.
            Scenario::Mixed => "/",
        }
    }

    /// The Lua script, relative to the package root (wrk runs from there).
    pub(crate) fn script(self) -> &'static str {
        match self {
            Scenario::Insert => "benches/wrk/insert.lua",
            Scenario::Mixed => "benches/wrk/mixed.lua",
            // No request() or response() callback: wrk keeps its fast static request.
            Scenario::Healthz | Scenario::Randoms1e3 | Scenario::Randoms1e6 => {
                "benches/wrk/report.lua"
            }
        }
    }

    /// The request body h2load posts (`-d`), relative to the package root: the same
    /// valid ticket every time, since h2load cannot vary it (wrk's script draws a random
    /// one per request). `None`: a GET.
    pub(crate) fn body_file(self) -> Option<&'static str> {
        (self == Scenario::Insert).then_some("benches/h2load/ticket.json")
    }

    /// Whether the scenario inserts rows, so the table is counted before and after.
    pub(crate) fn inserts(self) -> bool {
        matches!(self, Scenario::Insert | Scenario::Mixed)
    }
}
