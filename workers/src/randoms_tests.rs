//! Tests of the draw kernel and of [`crate::method::Method`]'s names.

use super::*;
use crate::method::Method;

fn count(n: u64, seed: u64) -> Histogram {
    count_randoms(n, seed, &AtomicBool::new(false)).expect("not cancelled")
}

#[test]
fn counts_sum_to_n_for_awkward_sizes() {
    for n in [
        0,
        1,
        2,
        3,
        999,
        CHUNK_LEN - 1,
        CHUNK_LEN,
        CHUNK_LEN + 1,
        2 * CHUNK_LEN + 7,
    ] {
        assert_eq!(count(n, 7).total(), n, "n = {n}");
    }
}

#[test]
fn zero_draws_give_an_empty_histogram() {
    assert_eq!(count(0, 1).iter().count(), 0);
}

#[test]
fn numbers_stay_in_range_and_ascend() {
    let histogram = count(100_000, 3);
    let numbers: Vec<u32> = histogram.iter().map(|(number, _)| number).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]));
    assert!(
        numbers
            .iter()
            .all(|n| (RANDOM_MIN..=RANDOM_MAX).contains(n))
    );
    // 100 draws per bin on average: every number comes up.
    assert_eq!(numbers.len(), BINS);
}

#[test]
fn same_seed_same_answer_whatever_the_thread_count() {
    let n = 3 * CHUNK_LEN + 12_345;
    let on = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(|| count(n, 42))
    };
    let one = on(1);
    assert_eq!(one, on(2));
    assert_eq!(one, on(5));
    assert_ne!(one, count(n, 43), "another seed gives another answer");
}

#[test]
fn chi_square_of_a_fixed_seed_is_plausible() {
    // 10 million draws over 1000 bins: 999 degrees of freedom, mean 999, sd ~44.7.
    // The bounds sit ~6 sd out: a correct kernel fails this with p < 1e-8, while a
    // biased one (e.g. plain `x % 1000` on 16 bits) lands far outside.
    let n = 10_000_000u64;
    let expected = n as f64 / BINS as f64;
    let histogram = count(n, 2024);
    let chi2: f64 = histogram
        .counts()
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    assert!((730.0..1270.0).contains(&chi2), "chi-square {chi2}");
}

#[test]
fn a_raised_cancel_flag_stops_the_count() {
    let cancel = AtomicBool::new(true);
    assert_eq!(
        count_randoms(10 * CHUNK_LEN, 1, &cancel),
        Err(KernelError::Cancelled)
    );
}

#[test]
fn methods_parse_from_their_names_and_nothing_else() {
    for method in Method::ALL {
        assert_eq!(method.as_str().parse::<Method>(), Ok(method));
    }
    assert_eq!(Method::default(), Method::Draw);
    for bad in ["", "Draw", "MULTINOMIAL", " draw", "binomial"] {
        let message = bad.parse::<Method>().expect_err(bad).to_string();
        for method in Method::ALL {
            assert!(message.contains(method.as_str()), "{bad}: {message}");
        }
    }
    let long = "x".repeat(10_000);
    assert!(long.parse::<Method>().expect_err("long").to_string().len() < 200);
}

#[test]
fn both_kernels_count_exactly_and_differ() {
    let cancel = AtomicBool::new(false);
    let n = 2 * CHUNK_LEN + 5;
    let wy = count_randoms_with(DrawKernel::Wyrand, n, 8, &cancel).expect("counted");
    let xo = count_randoms_with(DrawKernel::Xoshiro, n, 8, &cancel).expect("counted");
    assert_eq!((wy.total(), xo.total()), (n, n));
    assert_ne!(wy, xo, "independent generators");
    assert_eq!(wy, count(n, 8), "wyrand is the service's kernel");
}

#[test]
fn the_rejection_threshold_is_two_to_the_32_mod_1000() {
    assert_eq!(REJECT_BELOW, 296);
}
