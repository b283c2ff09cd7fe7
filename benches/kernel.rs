//! The random-histogram kernel alone: numbers per second for N = 1e6, 1e7 and 1e8, on
//! one compute thread and on all of them.
//!
//! `cargo bench --bench kernel` (add `-- --quick` for a faster, rougher run).

use std::hint::black_box;
use std::sync::atomic::AtomicBool;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use loadlab_workers::randoms::count_randoms;

fn kernel(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("randoms_kernel");
    group.sample_size(10);
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("rayon pool");
        for n in [1_000_000u64, 10_000_000, 100_000_000] {
            group.throughput(Throughput::Elements(n));
            group.bench_with_input(
                BenchmarkId::new(format!("threads={threads}"), n),
                &n,
                |b, &n| {
                    let cancel = AtomicBool::new(false);
                    b.iter(|| pool.install(|| count_randoms(black_box(n), black_box(42), &cancel)))
                },
            );
        }
        if threads == cores && cores == 1 {
            break;
        }
    }
    group.finish();
}

criterion_group!(benches, kernel);
criterion_main!(benches);
