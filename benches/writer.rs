//! The Mega writer alone: committed rows per second by rows per transaction, with
//! `synchronous=FULL` and `NORMAL`, on a real file in a temp dir.
//!
//! Each iteration submits 4,096 rows as requests of `rows_per_tx` rows, one after the
//! other, waiting for each commit: so every transaction holds exactly `rows_per_tx`
//! rows, and `rows_per_tx = 1` is the ancestor's one-transaction-per-row pattern.
//!
//! `cargo bench --bench writer`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use loadlab_workers::mega::{MegaTicket, MegaWriter, SyncMode, WriterConfig};

const ROWS: usize = 4096;

fn writer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let ticket = MegaTicket::new([4, 8, 15, 16, 23, 42]).expect("valid ticket");
    let mut group = c.benchmark_group("mega_writer");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    for (label, sync) in [("full", SyncMode::Full), ("normal", SyncMode::Normal)] {
        for rows_per_tx in [1usize, 16, 256, 1024, 4096] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut config = WriterConfig::new(dir.path().join("bench.db"));
            config.sync = sync;
            let writer = MegaWriter::start(config).expect("writer");
            let handle = writer.handle();
            group.bench_with_input(
                BenchmarkId::new(format!("sync={label}"), rows_per_tx),
                &rows_per_tx,
                |b, &rows_per_tx| {
                    b.iter(|| {
                        runtime.block_on(async {
                            for _ in 0..ROWS / rows_per_tx {
                                let pending = handle
                                    .try_insert_many(vec![ticket; rows_per_tx])
                                    .expect("queued");
                                black_box(pending.committed().await.expect("committed"));
                            }
                        })
                    })
                },
            );
            writer.shutdown();
        }
    }
    group.finish();
}

criterion_group!(benches, writer);
criterion_main!(benches);
