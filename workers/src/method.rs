//! [`Method`]: how a histogram of N numbers is produced, and the one place that
//! dispatches to the draw kernel ([`crate::randoms`]) or the exact sampler
//! ([`crate::multinomial`]). Its own module so neither of those imports the other.

use std::sync::atomic::AtomicBool;

use crate::multinomial::sample_multinomial;
use crate::randoms::{Histogram, KernelError, count_randoms};

/// How a histogram is produced. Both give the same law, Multinomial(N; 1/1000, ...):
/// one by doing the work, the other by sampling the answer directly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Method {
    /// Draw N numbers one by one and count them: time grows with N. The default: the
    /// service exists to do real offloaded work.
    #[default]
    Draw,
    /// Sample the counts exactly from their multinomial law ([`crate::multinomial`]):
    /// time independent of N, N up to 2^53.
    Multinomial,
}

impl Method {
    /// Every method, in the order they are listed to clients.
    pub const ALL: [Method; 2] = [Method::Draw, Method::Multinomial];

    /// The name used in query strings and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Draw => "draw",
            Method::Multinomial => "multinomial",
        }
    }

    /// Produces the histogram of `n` numbers from `seed` with this method, on the
    /// current rayon pool. Returns [`KernelError::Cancelled`] soon after `cancel` rises.
    pub fn histogram(
        self,
        n: u64,
        seed: u64,
        cancel: &AtomicBool,
    ) -> Result<Histogram, KernelError> {
        match self {
            Method::Draw => count_randoms(n, seed, cancel),
            Method::Multinomial => sample_multinomial(n, seed, cancel),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A method name that is not one of [`Method::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("method `{0}` is unknown: use draw or multinomial")]
pub struct UnknownMethod(pub String);

impl std::str::FromStr for Method {
    type Err = UnknownMethod;

    fn from_str(s: &str) -> Result<Self, UnknownMethod> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                // Echoed to clients: keep a hostile value short.
                let shown: String = s.chars().take(40).collect();
                UnknownMethod(shown)
            })
    }
}
