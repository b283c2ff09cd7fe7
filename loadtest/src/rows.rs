//! The insert check every insert run carries, in either mode: the inserts the server
//! acknowledged (201s) against the rows the table gained, which the run loop counts
//! through `/app/mega/stats` before and after the measured run.

use serde::{Deserialize, Serialize};

/// Acknowledged inserts against rows found; all `None` for scenarios without inserts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct RowCheck {
    /// Inserts acknowledged with 201 (insert and mixed only).
    pub(crate) inserts_acked: Option<u64>,
    /// Rows the table gained over the measured run (insert and mixed only, when the
    /// target serves `/app/mega/stats`).
    pub(crate) rows_found: Option<u64>,
    /// Why `rows_found` is missing, when it is.
    pub(crate) rows_note: Option<String>,
}

impl RowCheck {
    /// Whether an acknowledged insert is missing from the table.
    pub(crate) fn missing(&self) -> bool {
        matches!((self.rows_found, self.inserts_acked), (Some(found), Some(acked)) if found < acked)
    }

    /// Records the count of rows gained, or why it could not be had.
    pub(crate) fn record(&mut self, rows: Result<u64, String>) {
        match rows {
            Ok(found) => self.rows_found = Some(found),
            Err(e) => self.rows_note = Some(format!("row count unavailable: {e}")),
        }
    }

    /// The report's cell: `1,000 / 990 ok`, `? / 990 (why)`; `cell_missing` when any run
    /// of the row lost a row.
    pub(crate) fn cell(&self, cell_missing: bool) -> String {
        let thousands = crate::text::thousands;
        let missing = if cell_missing {
            " **ACKNOWLEDGED ROWS MISSING**"
        } else {
            ""
        };
        match (self.rows_found, self.inserts_acked) {
            (Some(found), Some(acked)) => {
                let mark = if found >= acked { "ok" } else { "MISSING" };
                format!(
                    "{} / {} {mark}{missing}",
                    thousands(found as f64),
                    thousands(acked as f64)
                )
            }
            (None, Some(acked)) => format!(
                "? / {} ({})",
                thousands(acked as f64),
                self.rows_note.as_deref().unwrap_or("no count")
            ),
            _ => "?".to_owned(),
        }
    }
}

/// A run's figures that carry a [`RowCheck`].
pub(crate) trait HasRows {
    /// Its check, to record the count.
    fn rows_mut(&mut self) -> &mut RowCheck;
}
