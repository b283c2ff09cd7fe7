//! The random-histogram kernel: draw N integers uniformly in 1..=1000 and count them,
//! and [`Method`](crate::method::Method), the choice between that and the exact sampler in
//! [`crate::multinomial`].
//!
//! Design of the draw kernel (the measurements behind it are in `docs/PERFORMANCE.md`):
//! - a small fast PRNG (wyrand: one add and one 64x64->128 multiply per output), using
//!   *both* 32-bit halves of each 64-bit output. It was measured against xoshiro256++
//!   (from `rand_xoshiro`), the previous kernel, kept as [`DrawKernel::Xoshiro`] for
//!   that comparison in `benches/kernel.rs`: wyrand wins (see `docs/PERFORMANCE.md`,
//!   "The service's own figures");
//! - Lemire's multiply-shift reduction to 0..1000, with its (rare: p = 296 / 2^32)
//!   rejection step so that every number is exactly equally likely;
//! - the work split into fixed chunks of [`CHUNK_LEN`] draws, each with its own
//!   generator seeded from `(seed, chunk index)`, counted locally and merged at the end.
//!
//! Because a chunk's draws depend only on the seed and its index, and merging is a sum,
//! the same `(n, seed)` gives the same [`Histogram`] whatever the number of threads.
//! Between chunks the kernel checks a cancel flag, so a job whose client went away stops
//! within one chunk.

use std::sync::atomic::{AtomicBool, Ordering};

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

/// The smallest number drawn.
pub const RANDOM_MIN: u32 = 1;
/// The largest number drawn.
pub const RANDOM_MAX: u32 = 1000;
/// How many distinct numbers can come up: the histogram's bins.
pub const BINS: usize = (RANDOM_MAX - RANDOM_MIN + 1) as usize;
/// Draws per chunk: the unit of parallel work, of determinism and of cancellation.
///
/// Small enough that 1e6 draws already spread over 8 chunks (every core of a small
/// machine) and a cancel is seen within a fraction of a millisecond; large enough that
/// per-chunk set-up (seeding, zeroing and merging a 4 KiB local count) is lost in the
/// chunk's draws. Counts within a chunk fit in `u32`.
pub const CHUNK_LEN: u64 = 1 << 17;

/// Lemire's rejection threshold for a range of [`BINS`]: `2^32 mod BINS`.
///
/// A 32-bit draw `x` maps to `(x * BINS) >> 32`; it is rejected when the low 32 bits of
/// the product fall below this, which makes every bin exactly equally likely.
const REJECT_BELOW: u32 = ((1u64 << 32) % BINS as u64) as u32;

/// Why a count did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// The cancel flag was raised before the last chunk was counted.
    #[error("the job was cancelled before it finished")]
    Cancelled,
}

/// How many times each number in [`RANDOM_MIN`]..=[`RANDOM_MAX`] came up.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    /// `counts[i]` is how often `RANDOM_MIN + i` came up. Boxed: 8 KiB moves around.
    counts: Box<[u64; BINS]>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total())
            .field("distinct", &self.iter().count())
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BINS]),
        }
    }
}

impl Histogram {
    /// The raw counts: index `i` holds the count of number `RANDOM_MIN + i`.
    pub fn counts(&self) -> &[u64; BINS] {
        &self.counts
    }

    /// The number of draws counted: the sum of all counts.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(number, count)` for every number that came up, in ascending order of number.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.counts
            .iter()
            .zip(RANDOM_MIN..)
            .filter(|(count, _)| **count > 0)
            .map(|(count, number)| (number, *count))
    }

    /// A histogram of the given counts (index `i`: number `RANDOM_MIN + i`).
    pub(crate) fn from_counts(counts: Box<[u64; BINS]>) -> Self {
        Self { counts }
    }

    fn merge(mut self, other: &Histogram) -> Self {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self
    }
}

/// The draw kernels: two independent generators behind the same counting loop,
/// measured against each other in `benches/kernel.rs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DrawKernel {
    /// wyrand (Wang Yi's 64-bit generator: a Weyl sequence, one 64x64->128 multiply).
    /// The service's kernel: faster per draw than xoshiro256++ (docs/PERFORMANCE.md).
    #[default]
    Wyrand,
    /// xoshiro256++ from `rand_xoshiro`, the previous kernel, kept for the comparison.
    Xoshiro,
}

/// Counts `n` draws from `seed` on the current rayon pool (call it inside
/// [`rayon::ThreadPool::install`] or from a pool thread to choose the pool), with the
/// service's kernel ([`DrawKernel::default`]).
///
/// Returns [`KernelError::Cancelled`] soon after `cancel` is raised: the flag is read
/// before each chunk, so at most one chunk per thread is counted after it.
pub fn count_randoms(n: u64, seed: u64, cancel: &AtomicBool) -> Result<Histogram, KernelError> {
    count_randoms_with(DrawKernel::default(), n, seed, cancel)
}

/// [`count_randoms`] with a chosen kernel: for the benchmarks' comparison.
pub fn count_randoms_with(
    kernel: DrawKernel,
    n: u64,
    seed: u64,
    cancel: &AtomicBool,
) -> Result<Histogram, KernelError> {
    let chunks = n.div_ceil(CHUNK_LEN);
    (0..chunks)
        .into_par_iter()
        .try_fold(
            || (Histogram::default(), Box::new([0u32; BINS])),
            |(mut total, mut local), chunk| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(KernelError::Cancelled);
                }
                let len = CHUNK_LEN.min(n - chunk * CHUNK_LEN);
                local.fill(0);
                count_chunk_with(kernel, seed, chunk, len, &mut local);
                for (sum, part) in total.counts.iter_mut().zip(local.iter()) {
                    *sum += u64::from(*part);
                }
                Ok((total, local))
            },
        )
        .map(|folded| folded.map(|(total, _)| total))
        .try_reduce(Histogram::default, |a, b| Ok(a.merge(&b)))
}

/// Counts `len` draws (at most [`CHUNK_LEN`]) of chunk `chunk` of the stream for `seed`
/// into `counts`, adding to what is there, with `kernel`'s generator.
///
/// This is the single-threaded hot loop, public for the benchmarks.
pub fn count_chunk_with(
    kernel: DrawKernel,
    seed: u64,
    chunk: u64,
    len: u64,
    counts: &mut [u32; BINS],
) {
    debug_assert!(len <= CHUNK_LEN, "a chunk holds at most CHUNK_LEN draws");
    let seed = chunk_seed(seed, chunk);
    // One monomorphised loop per generator: the generator call must inline into it.
    match kernel {
        DrawKernel::Wyrand => {
            let mut rng = WyRand(seed);
            count_draws(|| rng.next_u64(), len, counts);
        }
        DrawKernel::Xoshiro => {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            count_draws(|| rng.next_u64(), len, counts);
        }
    }
}

/// The counting loop: `len` numbers from the 64-bit outputs of `next`, two per output
/// (one per 32-bit half), reduced to 0..1000 by Lemire's multiply-shift with rejection.
#[inline(always)]
fn count_draws(mut next: impl FnMut() -> u64, len: u64, counts: &mut [u32; BINS]) {
    // Two count arrays, one per 32-bit half, so consecutive increments rarely hit the
    // same memory location back to back (a store-to-load dependency that halves speed).
    let mut low = [0u32; BINS];
    let mut high = [0u32; BINS];
    let mut remaining = len;
    while remaining >= 2 {
        let draw = next();
        let a = u64::from(draw as u32) * BINS as u64;
        let b = (draw >> 32) * BINS as u64;
        let a_ok = a as u32 >= REJECT_BELOW;
        let b_ok = b as u32 >= REJECT_BELOW;
        if a_ok & b_ok {
            low[(a >> 32) as usize] += 1;
            high[(b >> 32) as usize] += 1;
            remaining -= 2;
        } else {
            // Rare (about 1 in 7 million halves): keep whichever half is acceptable.
            if a_ok {
                low[(a >> 32) as usize] += 1;
                remaining -= 1;
            }
            if b_ok {
                high[(b >> 32) as usize] += 1;
                remaining -= 1;
            }
        }
    }
    while remaining > 0 {
        let b = (next() >> 32) * BINS as u64;
        if b as u32 >= REJECT_BELOW {
            high[(b >> 32) as usize] += 1;
            remaining -= 1;
        }
    }
    for ((out, l), h) in counts.iter_mut().zip(low).zip(high) {
        *out += l + h;
    }
}

/// wyrand (Wang Yi, the generator of wyhash): a Weyl sequence (`state += constant`)
/// finalised by one 64x64->128 multiply whose halves are xored. Passes BigCrush and
/// PractRand; one add and one `mul` per 64 bits is why it beats xoshiro256++ here.
/// Every state is valid, so any chunk seed works as it is.
struct WyRand(u64);

impl WyRand {
    #[inline(always)]
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xA076_1D64_78BD_642F);
        let product = u128::from(self.0) * u128::from(self.0 ^ 0xE703_7ED1_A0B4_28DB);
        ((product >> 64) as u64) ^ (product as u64)
    }
}

/// A random seed for callers that did not ask for one.
///
/// Not cryptographic, and need not be: it comes from the standard library's per-process
/// random hasher keys (seeded by the OS) mixed with a counter, so concurrent jobs differ.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// The generator seed of one chunk: a strong mix of the job seed and the chunk index,
/// so that neighbouring chunks (and neighbouring job seeds) get unrelated streams.
pub(crate) fn chunk_seed(seed: u64, chunk: u64) -> u64 {
    splitmix64(seed ^ splitmix64(chunk.wrapping_add(0x632B_E59B_D9B4_E019)))
}

/// The SplitMix64 finaliser: a bijective 64-bit mix.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
#[path = "randoms_tests.rs"]
mod tests;
