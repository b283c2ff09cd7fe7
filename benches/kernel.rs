//! The compute kernels alone, outside HTTP:
//! - `draw_kernel`: the two draw kernels (wyrand, the service's, and xoshiro256++, the
//!   previous one) on one compute thread and on all of them; criterion's throughput is
//!   draws per second, so ns/draw = 1e9 / that;
//! - `method`: time per call of `method=multinomial` beside `method=draw` at the same N,
//!   on all compute threads, which locates the crossover; `method_one_thread`: the same
//!   on one thread, the CPU time a call costs. Draw runs only up to 1e8 (1e12 would
//!   take minutes a call).
//!
//! `cargo bench --bench kernel` (add `-- --quick` for a faster, rougher run, or a filter
//! such as `-- method`).

use std::hint::black_box;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use loadlab_workers::method::Method;
use loadlab_workers::randoms::{DrawKernel, count_randoms_with};

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool")
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn draw_kernel(c: &mut Criterion) {
    let mut group = c.benchmark_group("draw_kernel");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    let mut thread_counts = vec![1, cores()];
    thread_counts.dedup();
    for threads in thread_counts {
        let pool = pool(threads);
        for (name, kernel) in [
            ("wyrand", DrawKernel::Wyrand),
            ("xoshiro", DrawKernel::Xoshiro),
        ] {
            for n in [10_000_000u64, 100_000_000] {
                group.throughput(Throughput::Elements(n));
                group.bench_with_input(
                    BenchmarkId::new(format!("{name}/threads={threads}"), n),
                    &n,
                    |b, &n| {
                        let cancel = AtomicBool::new(false);
                        b.iter(|| {
                            pool.install(|| {
                                count_randoms_with(kernel, black_box(n), black_box(42), &cancel)
                            })
                        })
                    },
                );
            }
        }
    }
    group.finish();
}

fn method(c: &mut Criterion) {
    method_on(c, "method", cores());
    method_on(c, "method_one_thread", 1);
}

/// Both methods at sizes around the crossover and up to 2^53, on `threads` threads.
fn method_on(c: &mut Criterion, group_name: &str, threads: usize) {
    let mut group = c.benchmark_group(group_name);
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(2));
    let pool = pool(threads);
    let sizes: [u64; 9] = [
        1_000,
        10_000,
        30_000,
        100_000,
        1_000_000,
        100_000_000,
        1_000_000_000_000,
        1_000_000_000_000_000,
        1 << 53,
    ];
    for method in Method::ALL {
        for &n in &sizes {
            if method == Method::Draw && n > 100_000_000 {
                continue;
            }
            group.bench_with_input(BenchmarkId::new(method.as_str(), n), &n, |b, &n| {
                let cancel = AtomicBool::new(false);
                let mut seed = 0u64;
                b.iter(|| {
                    // A new seed each call: the tree's cost depends on the counts drawn.
                    seed += 1;
                    pool.install(|| method.histogram(black_box(n), seed, &cancel))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, draw_kernel, method);
criterion_main!(benches);
