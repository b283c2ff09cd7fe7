//! Parsing a draw count (`cant`): a non-negative integer in decimal or scientific
//! notation.
//!
//! The ancestor used `parseInt`, so `cant=1e8` silently counted *one* number. Here the
//! grammar is explicit and the arithmetic exact (no floating point): `digits[.digits]
//! [(e|E)[+|-]digits]`, accepted only when the value is a whole number. `1e8`, `2.5e6`,
//! `1E3` and `1000e-3` are counts; `1.5`, `-5`, `1e400`, `NaN`, `0x10` and `` are not.

/// Why a string is not a count. The messages are shown to clients as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CountError {
    /// Nothing was given.
    #[error("is empty: give a whole number such as 1000 or 1e8")]
    Empty,
    /// Not of the grammar (a sign, letters, several dots...).
    #[error("`{0}` is not a number: give a non-negative whole number such as 1000, 1e8 or 2.5e6")]
    Malformed(String),
    /// A number, but with a fractional part.
    #[error("`{0}` is not a whole number")]
    Fractional(String),
    /// A whole number larger than the limit.
    #[error("`{value}` is over the maximum of {max}")]
    TooLarge {
        /// The input as given.
        value: String,
        /// The largest accepted.
        max: u64,
    },
}

/// Parses `s` as a count no larger than `max`.
pub fn parse_count(s: &str, max: u64) -> Result<u64, CountError> {
    if s.is_empty() {
        return Err(CountError::Empty);
    }
    let malformed = || CountError::Malformed(truncate(s));
    let too_large = || CountError::TooLarge {
        value: truncate(s),
        max,
    };
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (mantissa, ""),
    };
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return Err(malformed());
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !all_digits(digits) {
                return Err(malformed());
            }
            // Anything beyond 4 digits is either 0 or huge; clamp to keep the arithmetic small.
            let magnitude: i64 = digits
                .trim_start_matches('0')
                .get(..5)
                .map_or_else(|| digits.parse().unwrap_or(0), |_| 99_999);
            if e.starts_with('-') {
                -magnitude
            } else {
                magnitude
            }
        }
    };
    // value = int_part.frac_part * 10^exponent = digits * 10^(exponent - frac_len), with
    // the fraction's trailing zeros dropped first (they do not make 1.50e1 fractional).
    let frac_part = frac_part.trim_end_matches('0');
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let scale = exponent - frac_part.len() as i64;
    if digits.is_empty() {
        return Ok(0);
    }
    let (significant, scale) = if scale < 0 {
        // Dividing: the dropped digits must all be zeros.
        let drop = usize::try_from(-scale).unwrap_or(usize::MAX);
        if drop >= digits.len() || !digits[digits.len() - drop..].bytes().all(|b| b == b'0') {
            return Err(CountError::Fractional(truncate(s)));
        }
        (&digits[..digits.len() - drop], 0)
    } else {
        (digits, scale)
    };
    // Any value with more than 20 significant digits, or a scale past 19, exceeds u64.
    if significant.len() > 20 || scale > 19 {
        return Err(too_large());
    }
    let base: u64 = significant.parse().map_err(|_| too_large())?;
    let value = 10u64
        .checked_pow(scale as u32)
        .and_then(|p| base.checked_mul(p))
        .ok_or_else(too_large)?;
    if value > max {
        return Err(too_large());
    }
    Ok(value)
}

/// Inputs are echoed in errors; keep a hostile 1 MB query string out of the reply.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u64 = 10_000_000_000;

    #[test]
    fn accepts_decimal_and_scientific_notation() {
        for (input, want) in [
            ("0", 0),
            ("1", 1),
            ("100000000", 100_000_000),
            ("1e8", 100_000_000),
            ("2.5e6", 2_500_000),
            ("1E3", 1000),
            ("1e+3", 1000),
            ("1000e-3", 1),
            ("1.50e1", 15),
            ("007", 7),
            ("1e10", MAX),
            ("0e400", 0),
            ("10.", 10),
            (".5e1", 5),
        ] {
            assert_eq!(parse_count(input, MAX), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        assert_eq!(parse_count("", MAX), Err(CountError::Empty));
        for input in [
            "abc", "-5", "+5", "NaN", "inf", "0x10", "1e", "1e-", "1..2", ".", "e5", " 5", "1,000",
        ] {
            assert!(
                matches!(parse_count(input, MAX), Err(CountError::Malformed(_))),
                "{input}"
            );
        }
        for input in ["1.5", "1e-1", "15e-1"] {
            assert!(
                matches!(parse_count(input, MAX), Err(CountError::Fractional(_))),
                "{input}"
            );
        }
        for input in ["1e400", "10000000001", "1.1e10", "99999999999999999999999"] {
            assert!(
                matches!(parse_count(input, MAX), Err(CountError::TooLarge { .. })),
                "{input}"
            );
        }
    }

    #[test]
    fn long_inputs_are_truncated_in_messages() {
        let input = "9".repeat(10_000);
        let message = parse_count(&input, MAX).expect_err("too large").to_string();
        assert!(message.len() < 200, "{message}");
    }

    proptest! {
        #[test]
        fn any_integer_round_trips(n in 0u64..=MAX) {
            prop_assert_eq!(parse_count(&n.to_string(), MAX), Ok(n));
        }

        #[test]
        fn scientific_matches_integer_arithmetic(m in 0u64..100_000, e in 0u32..6) {
            let want = m * 10u64.pow(e);
            prop_assert_eq!(parse_count(&format!("{m}e{e}"), MAX), Ok(want));
        }

        #[test]
        fn never_panics(s in "\\PC{0,30}") {
            let _ = parse_count(&s, MAX);
        }
    }
}
