//! The exact multinomial sampler: the histogram of N uniform draws in 1..=1000 sampled
//! directly from its law, Multinomial(N; 1/1000, ..., 1/1000), in time that does not
//! grow with N. [`crate::method::Method::Multinomial`] runs it; the compute threads calls
//! it like the draw kernel.
//!
//! # Method: a binary split tree
//! Of N draws spread uniformly over k bins, the number that land in the first `a` bins
//! is Binomial(N, a/k); given that number L, the L draws are uniform over those `a`
//! bins and the other N - L uniform over the remaining k - a, independently. So the
//! sampler splits the 1000 bins in halves (`a = k / 2`), draws the left count from
//! that binomial, gives the right what is left, and recurses: 999 binomials in all,
//! and the counts sum to N exactly by construction. Any node may instead draw its n
//! numbers one by one among its k bins, which is the same law; it does when that is
//! cheaper ([`DIRECT_PER_BIN`]), so small N costs what the draw kernel costs.
//!
//! The binomials come from `rand_distr::Binomial` (BTPE, with inversion when n·p < 10),
//! which is exact up to n = 2^53: it computes in `f64`, and above 2^53 the low bits of
//! its result are no longer random. Hence [`MAX_EXACT`]. A hand-written BTRS would be
//! faster per binomial, but the whole tree already costs far less than the HTTP round
//! trip around it (docs/PERFORMANCE.md, "Choosing `method`").
//!
//! # Determinism and parallelism
//! Each tree node has its own generator, seeded from `(seed, node index)` with the
//! node indices of a binary heap (root 1, children 2i and 2i + 1). The answer depends
//! only on `(n, seed)`, not on which thread sampled which subtree, so the top levels
//! split over the rayon pool with `rayon::join`.

use std::sync::atomic::{AtomicBool, Ordering};

use rand_core::SeedableRng;
use rand_distr::{Binomial, Distribution};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::randoms::{BINS, Histogram, KernelError, chunk_seed};

/// The largest N sampled exactly: 2^53, where `f64` stops holding every integer.
pub const MAX_EXACT: u64 = 1 << 53;

/// A node draws its numbers one by one when it holds at most this many per bin.
///
/// Splitting a node of k bins down to single bins costs k - 1 binomials; drawing its
/// n numbers costs n draws through this module's simple loop. Measured on one thread
/// (`cargo bench --bench kernel -- method_one_thread`), the whole tree costs about as
/// much as 1e5 such draws, so drawing wins below about 100 numbers per bin. A node's
/// numbers per bin stay about N / 1000 all the way down the tree, so this makes N up
/// to ~1e5 pure draws and larger N a pure tree.
pub const DIRECT_PER_BIN: u64 = 100;

/// Nodes with at least this many bins hand their two halves to `rayon::join`: the top
/// two levels, four subtrees of about 250 binomials each. Smaller tasks would cost more
/// in hand-offs than they save.
const PARALLEL_MIN_BINS: usize = 500;

/// Keeps the tree's generator streams apart from the draw kernel's for the same seed.
const TREE_STREAM: u64 = 0x6D75_6C74_696E_6F6D;

/// Samples the histogram of `n` uniform draws in 1..=1000 from `seed`, exactly (for
/// `n` up to [`MAX_EXACT`]; larger `n` still sum exactly but their low bits are not
/// random). Runs on the current rayon pool; returns [`KernelError::Cancelled`] if
/// `cancel` rises before it is done (it is read at every tree node).
pub fn sample_multinomial(
    n: u64,
    seed: u64,
    cancel: &AtomicBool,
) -> Result<Histogram, KernelError> {
    sample_with(DIRECT_PER_BIN, n, seed, cancel)
}

/// The sampler with a chosen [`DIRECT_PER_BIN`]; 0 gives the pure tree (tests).
fn sample_with(
    direct_per_bin: u64,
    n: u64,
    seed: u64,
    cancel: &AtomicBool,
) -> Result<Histogram, KernelError> {
    let mut counts = Box::new([0u64; BINS]);
    let tree = Tree {
        direct_per_bin,
        seed: seed ^ TREE_STREAM,
        cancel,
    };
    tree.fill(&mut counts[..], n, 1)?;
    Ok(Histogram::from_counts(counts))
}

/// What every node of one sampling shares.
#[derive(Clone, Copy)]
struct Tree<'a> {
    direct_per_bin: u64,
    seed: u64,
    cancel: &'a AtomicBool,
}

impl Tree<'_> {
    /// Spreads `n` draws over `counts` (all zero), as tree node `node`.
    fn fill(self, counts: &mut [u64], n: u64, node: u64) -> Result<(), KernelError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(KernelError::Cancelled);
        }
        let bins = counts.len();
        if n == 0 {
            return Ok(());
        }
        if let [only] = counts {
            *only = n;
            return Ok(());
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(chunk_seed(self.seed, node));
        if n <= self.direct_per_bin.saturating_mul(bins as u64) {
            draw_into(&mut rng, n, counts);
            return Ok(());
        }
        let left_bins = bins / 2;
        let left = binomial(n, left_bins as f64 / bins as f64, &mut rng);
        let (left_counts, right_counts) = counts.split_at_mut(left_bins);
        let right = n - left;
        if bins >= PARALLEL_MIN_BINS {
            let (a, b) = rayon::join(
                || self.fill(left_counts, left, 2 * node),
                || self.fill(right_counts, right, 2 * node + 1),
            );
            a.and(b)
        } else {
            self.fill(left_counts, left, 2 * node)?;
            self.fill(right_counts, right, 2 * node + 1)
        }
    }
}

/// One Binomial(n, p) variate, for `0 < p < 1`.
fn binomial(n: u64, p: f64, rng: &mut Xoshiro256PlusPlus) -> u64 {
    // `Binomial::new` fails only for p outside [0, 1] or NaN; p is a/k with 0 < a < k.
    let law = Binomial::new(n, p).expect("p = a/k lies strictly between 0 and 1");
    // rand_distr never returns more than n; the min keeps `n - left` safe regardless.
    law.sample(rng).min(n)
}

/// Adds `n` uniform draws over `counts`' bins (fewer than 2^32) to `counts`: two draws
/// per 64-bit output, Lemire's multiply-shift with rejection, as the draw kernel.
fn draw_into(rng: &mut Xoshiro256PlusPlus, n: u64, counts: &mut [u64]) {
    use rand_core::Rng;
    let bins = counts.len() as u64;
    let reject_below = ((1u64 << 32) % bins) as u32;
    let mut remaining = n;
    while remaining > 0 {
        let draw = rng.next_u64();
        for half in [draw as u32, (draw >> 32) as u32] {
            let scaled = u64::from(half) * bins;
            if remaining > 0 && scaled as u32 >= reject_below {
                counts[(scaled >> 32) as usize] += 1;
                remaining -= 1;
            }
        }
    }
}

#[cfg(test)]
#[path = "multinomial_tests.rs"]
mod tests;
