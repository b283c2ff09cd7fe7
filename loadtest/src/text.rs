//! Numbers in words, for every report format: shared by the tables, the
//! rows check and the rate report, so none of them imports another to format a number.

/// `81234.6` -> `81,235`.
pub(crate) fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds with three significant digits (`0.412`, `1.52`, `15.2`, `152`).
pub(crate) fn ms(x: f64) -> String {
    match x {
        x if x < 1.0 => format!("{x:.3}"),
        x if x < 10.0 => format!("{x:.2}"),
        x if x < 100.0 => format!("{x:.1}"),
        x => format!("{x:.0}"),
    }
}
