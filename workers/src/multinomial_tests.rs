//! Tests of the multinomial sampler: exact sums, determinism, and that it has the law
//! of counted draws. Every statistical test uses fixed seeds, so it passes or fails
//! the same way on every run; its bounds sit about 6 standard deviations (or at a
//! p-value near 1e-8) from the expected value, so a correct sampler passes them while
//! a biased one, such as a split that rounds n·a/k instead of sampling it, fails by
//! far.

use super::*;
use crate::randoms::{RANDOM_MIN, count_randoms};

/// Seeds 0..count: fixed, so the statistics below are the same on every run.
fn seeds(count: u64) -> std::ops::Range<u64> {
    0..count
}

fn tree(direct_per_bin: u64, n: u64, seed: u64) -> Histogram {
    sample_with(direct_per_bin, n, seed, &AtomicBool::new(false)).expect("not cancelled")
}

fn draws(n: u64, seed: u64) -> Histogram {
    count_randoms(n, seed, &AtomicBool::new(false)).expect("not cancelled")
}

#[test]
fn edge_counts_sum_exactly() {
    for n in [
        0,
        1,
        2,
        999,
        1000,
        1001,
        31_999,
        32_001,
        1_000_000_000_000_000,
        MAX_EXACT,
    ] {
        for direct_per_bin in [0, DIRECT_PER_BIN] {
            let histogram = tree(direct_per_bin, n, 11);
            assert_eq!(
                histogram.total(),
                n,
                "n = {n}, direct_per_bin = {direct_per_bin}"
            );
        }
    }
    assert_eq!(
        tree(DIRECT_PER_BIN, 0, 1).iter().count(),
        0,
        "0 gives no keys"
    );
    assert_eq!(tree(0, 1, 1).iter().count(), 1, "1 gives one key");
}

#[test]
fn large_n_fills_every_bin_in_range_and_ascending() {
    let histogram = tree(DIRECT_PER_BIN, 1_000_000_000_000_000, 5);
    let numbers: Vec<u32> = histogram.iter().map(|(number, _)| number).collect();
    assert_eq!(numbers.len(), BINS);
    assert_eq!(numbers.first(), Some(&RANDOM_MIN));
    assert!(numbers.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn same_seed_same_answer_whatever_the_thread_count() {
    let on = |threads: usize, n: u64, seed: u64| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(|| sample_multinomial(n, seed, &AtomicBool::new(false)))
            .expect("not cancelled")
    };
    for n in [1000, 10_000_000, 1_000_000_000_000_000] {
        let one = on(1, n, 42);
        assert_eq!(one, on(2, n, 42), "n = {n}");
        assert_eq!(one, on(5, n, 42), "n = {n}");
        assert_ne!(
            one,
            on(2, n, 43),
            "another seed gives another answer, n = {n}"
        );
    }
}

#[test]
fn a_raised_cancel_flag_stops_the_sampler() {
    let cancel = AtomicBool::new(true);
    assert_eq!(
        sample_multinomial(1_000_000_000, 1, &cancel),
        Err(KernelError::Cancelled)
    );
}

/// Checks each count's mean against N/1000 and their variance against
/// N·(1/1000)·(999/1000) over `samples` seeds, for a sampler with `direct_per_bin`.
fn assert_moments(n: u64, samples: u64, direct_per_bin: u64) {
    let p = 1.0 / BINS as f64;
    let mean = n as f64 * p;
    let variance = mean * (1.0 - p);
    let mut sums = vec![0.0f64; BINS];
    let mut squares = 0.0f64;
    for seed in seeds(samples) {
        let histogram = tree(direct_per_bin, n, seed);
        for (sum, &count) in sums.iter_mut().zip(histogram.counts().iter()) {
            let deviation = count as f64 - mean;
            *sum += deviation;
            squares += deviation * deviation;
        }
    }
    let context = format!("n = {n}, direct_per_bin = {direct_per_bin}");
    // Each bin's mean: z-scores, each ~N(0, 1). With 1000 of them, |z| > 6 has p ~ 2e-6;
    // their squares sum to about 999 (sd 45).
    let z: Vec<f64> = sums
        .iter()
        .map(|sum| sum / samples as f64 / (variance / samples as f64).sqrt())
        .collect();
    let worst = z.iter().fold(0.0f64, |m, z| m.max(z.abs()));
    assert!(worst < 6.0, "{context}: a bin's mean is {worst:.1} sd off");
    let chi2: f64 = z.iter().map(|z| z * z).sum();
    assert!(
        (730.0..1270.0).contains(&chi2),
        "{context}: sum of squared mean z-scores {chi2:.0}, expected ~999"
    );
    // The variance, pooled over bins and seeds: relative sd sqrt((2 + kurtosis) / m).
    let observations = (samples * BINS as u64) as f64;
    let pooled = squares / observations;
    let kurtosis = (1.0 - 6.0 * p * (1.0 - p)) / variance;
    let bound = 6.0 * ((2.0 + kurtosis) / observations).sqrt();
    let ratio = pooled / variance;
    assert!(
        (ratio - 1.0).abs() < bound,
        "{context}: variance {pooled:.4e} is {ratio:.4}x N·p·q = {variance:.4e} (bound ±{bound:.4})"
    );
}

#[test]
fn each_count_has_the_binomial_mean_and_variance_for_1e3() {
    assert_moments(1000, 1000, DIRECT_PER_BIN);
    assert_moments(1000, 1000, 0);
}

#[test]
fn each_count_has_the_binomial_mean_and_variance_for_1e6() {
    assert_moments(1_000_000, 1000, DIRECT_PER_BIN);
}

#[test]
fn each_count_has_the_binomial_mean_and_variance_for_1e12() {
    assert_moments(1_000_000_000_000, 1000, DIRECT_PER_BIN);
}

/// P(X = x) for X ~ Binomial(n, p), x in 0..len, by the ratio recurrence.
fn binomial_pmf(n: u64, p: f64, len: usize) -> Vec<f64> {
    let mut pmf = Vec::with_capacity(len);
    let mut term = (n as f64 * (1.0 - p).ln()).exp();
    for x in 0..len as u64 {
        pmf.push(term);
        term *= (n - x.min(n)) as f64 / (x + 1) as f64 * p / (1.0 - p);
    }
    pmf
}

/// Cells of values (ranges of x) each with an expected count of at least 5 under
/// `expected`, the last one open-ended.
fn cells(expected: &[f64]) -> Vec<std::ops::Range<usize>> {
    let mut cells = Vec::new();
    let mut start = 0;
    let mut mass = 0.0;
    for (x, e) in expected.iter().enumerate() {
        mass += e;
        if mass >= 5.0 && expected[x + 1..].iter().sum::<f64>() >= 5.0 {
            cells.push(start..x + 1);
            start = x + 1;
            mass = 0.0;
        }
    }
    cells.push(start..usize::MAX);
    cells
}

/// The chi-square statistic of `observed` (counts by value) against `pmf` (by value),
/// and its degrees of freedom.
fn chi_square(observed: &[u64], pmf: &[f64]) -> (f64, usize) {
    let total: u64 = observed.iter().sum();
    let expected: Vec<f64> = pmf.iter().map(|p| p * total as f64).collect();
    let cells = cells(&expected);
    let chi2 = cells
        .iter()
        .map(|cell| {
            let o: u64 = observed.iter().take(cell.end).skip(cell.start).sum();
            let e: f64 = if cell.end == usize::MAX {
                total as f64 - expected[..cell.start].iter().sum::<f64>()
            } else {
                expected[cell.clone()].iter().sum()
            };
            (o as f64 - e).powi(2) / e
        })
        .sum();
    (chi2, cells.len() - 1)
}

/// The chi-square bound with p-value about 1e-8 or less for `df` degrees of freedom.
fn chi_square_bound(df: usize) -> f64 {
    df as f64 + 10.0 * (2.0 * df as f64).sqrt()
}

/// The numbers whose total is tested: 1..=100 and 498..=547, across tree boundaries.
fn in_fixed_set(index: usize) -> bool {
    index < 100 || (497..547).contains(&index)
}

/// For a sampler: how often each count value came up (any bin), and how often each
/// total of the fixed set did.
fn marginals(n: u64, samples: u64, sample: impl Fn(u64) -> Histogram) -> (Vec<u64>, Vec<u64>) {
    let mut by_count = vec![0u64; n as usize + 1];
    let mut by_total = vec![0u64; n as usize + 1];
    for seed in seeds(samples) {
        let histogram = sample(seed);
        let mut total = 0;
        for (index, &count) in histogram.counts().iter().enumerate() {
            by_count[count as usize] += 1;
            if in_fixed_set(index) {
                total += count;
            }
        }
        by_total[total as usize] += 1;
    }
    (by_count, by_total)
}

#[test]
fn draws_and_the_tree_have_the_binomial_marginals_for_small_n() {
    // N = 2000: each count ~ Binomial(2000, 1/1000), the fixed set's total ~
    // Binomial(2000, 150/1000). Draws, the pure tree, and the service's sampler.
    let n = 2000;
    let samples = 2000;
    let set_size = (0..BINS).filter(|&i| in_fixed_set(i)).count();
    assert_eq!(set_size, 150);
    let count_pmf = binomial_pmf(n, 1.0 / BINS as f64, n as usize + 1);
    let total_pmf = binomial_pmf(n, set_size as f64 / BINS as f64, n as usize + 1);
    /// A sampler: `(n, seed)` to a histogram.
    type Sampler = fn(u64, u64) -> Histogram;
    let samplers: [(&str, Sampler); 3] = [
        ("draw", draws),
        ("pure tree", |n, seed| tree(0, n, seed)),
        ("multinomial", |n, seed| tree(DIRECT_PER_BIN, n, seed)),
    ];
    let mut per_sampler = Vec::new();
    for (name, sample) in samplers {
        let (by_count, by_total) = marginals(n, samples, |seed| sample(n, seed));
        let (chi2, df) = chi_square(&by_count, &count_pmf);
        assert!(
            chi2 < chi_square_bound(df),
            "{name}: a count's marginal, chi-square {chi2:.1} on {df} df"
        );
        let (chi2, df) = chi_square(&by_total, &total_pmf);
        assert!(
            chi2 < chi_square_bound(df),
            "{name}: the fixed set's total, chi-square {chi2:.1} on {df} df"
        );
        per_sampler.push(by_count);
    }
    // And draws against the pure tree directly: a two-sample (homogeneity) test.
    let (draw, pure) = (&per_sampler[0], &per_sampler[1]);
    let pooled: Vec<f64> = draw
        .iter()
        .zip(pure)
        .map(|(a, b)| (a + b) as f64 / 2.0)
        .collect();
    let mut chi2 = 0.0;
    let mut df = 0;
    for cell in cells(&pooled) {
        let end = cell.end.min(draw.len());
        let a: u64 = draw[cell.start..end].iter().sum();
        let b: u64 = pure[cell.start..end].iter().sum();
        let e = (a + b) as f64 / 2.0;
        chi2 += ((a as f64 - e).powi(2) + (b as f64 - e).powi(2)) / e;
        df += 1;
    }
    let df = df - 1;
    assert!(
        chi2 < chi_square_bound(df),
        "draw vs pure tree: chi-square {chi2:.1} on {df} df"
    );
}

#[test]
fn the_statistics_catch_a_sampler_that_rounds_the_split() {
    // The counts a biased sampler gives: every bin exactly N/1000 (what rounding
    // n·a/k at every node yields for N = 2000). Its marginal is a single value.
    let n = 2000u64;
    let samples = 2000u64;
    let mut by_count = vec![0u64; n as usize + 1];
    by_count[2] = samples * BINS as u64;
    let (chi2, df) = chi_square(&by_count, &binomial_pmf(n, 1.0 / BINS as f64, 2001));
    assert!(
        chi2 > chi_square_bound(df),
        "chi-square {chi2:.1} on {df} df"
    );
}
