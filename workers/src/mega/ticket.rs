//! [`MegaTicket`]: the one validated form of a Mega-Sena ticket.
//!
//! Parsing the wire format (JSON) is the HTTP layer's job; this module owns the domain
//! rules, so every path into the store (single insert, batch, benchmarks) shares them.

/// The smallest number on a ticket.
pub const MEGA_MIN: i64 = 1;
/// The largest number on a ticket.
pub const MEGA_MAX: i64 = 60;
/// How many numbers a ticket holds: columns `num1`..`num6`.
pub const NUMBERS: usize = 6;

/// Why six numbers are not a ticket. Fields are named `num1`..`num6`, as in the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// A number outside 1..=60.
    #[error("num{field} must be an integer from 1 to 60, got {value}")]
    OutOfRange {
        /// 1-based position: `num{field}`.
        field: usize,
        /// The value given.
        value: i64,
    },
    /// The same number twice.
    #[error("num{second} repeats num{first} ({value}): the six numbers must be distinct")]
    Repeated {
        /// 1-based position of the first occurrence.
        first: usize,
        /// 1-based position of the repeat.
        second: usize,
        /// The repeated number.
        value: i64,
    },
}

/// Six distinct numbers in 1..=60, in the order given (`num1` first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MegaTicket([u8; NUMBERS]);

impl MegaTicket {
    /// Validates six numbers, reporting the first rule broken (ranges first, then repeats).
    pub fn new(numbers: [i64; NUMBERS]) -> Result<Self, TicketError> {
        let mut out = [0u8; NUMBERS];
        for (i, &value) in numbers.iter().enumerate() {
            if !(MEGA_MIN..=MEGA_MAX).contains(&value) {
                return Err(TicketError::OutOfRange {
                    field: i + 1,
                    value,
                });
            }
            // In range 1..=60, so it fits a u8.
            out[i] = value as u8;
        }
        for second in 1..NUMBERS {
            if let Some(first) = out[..second].iter().position(|&n| n == out[second]) {
                return Err(TicketError::Repeated {
                    first: first + 1,
                    second: second + 1,
                    value: numbers[second],
                });
            }
        }
        Ok(Self(out))
    }

    /// The numbers in the order given.
    pub fn numbers(&self) -> [u8; NUMBERS] {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_six_distinct_numbers_in_range() {
        let ticket = MegaTicket::new([1, 60, 7, 13, 42, 30]).expect("valid");
        assert_eq!(ticket.numbers(), [1, 60, 7, 13, 42, 30]);
    }

    #[test]
    fn names_the_field_out_of_range() {
        assert_eq!(
            MegaTicket::new([1, 2, 3, 61, 5, 6]),
            Err(TicketError::OutOfRange {
                field: 4,
                value: 61
            })
        );
        assert_eq!(
            MegaTicket::new([0, 2, 3, 4, 5, 6]),
            Err(TicketError::OutOfRange { field: 1, value: 0 })
        );
        assert!(MegaTicket::new([1, 2, 3, 4, 5, -6]).is_err());
    }

    #[test]
    fn names_both_fields_of_a_repeat() {
        let err = MegaTicket::new([5, 2, 3, 4, 5, 6]).expect_err("repeat");
        assert_eq!(
            err,
            TicketError::Repeated {
                first: 1,
                second: 5,
                value: 5
            }
        );
        assert!(err.to_string().contains("num5 repeats num1"));
    }
}
