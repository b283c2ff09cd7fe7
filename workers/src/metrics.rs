//! The metrics this crate records (`randoms_*` in [`crate::compute`], `mega_*` in
//! [`crate::mega`]'s writer and readers), described in one place so the binary that
//! installs the exporter can publish their `# HELP` lines ([`describe`]), with the
//! buckets its histograms need ([`HISTOGRAMS`]). The workers register their counters at
//! zero themselves when they start.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Buckets for randoms job durations (seconds): a multinomial job or a 1e3 draw takes
/// microseconds, a 1e10 draw seconds.
pub const JOB_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for Mega commit durations (seconds): from a SQLite fsync on a fast disk (a
/// fraction of a millisecond) to a PostgreSQL batch, a few round trips plus the
/// server's WAL flush.
pub const COMMIT_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Every histogram this crate records, with its buckets: without explicit buckets the
/// Prometheus exporter renders summaries, which cannot be aggregated across instances.
pub const HISTOGRAMS: &[(&str, &[f64])] = &[
    ("randoms_job_duration_seconds", JOB_BUCKETS),
    ("mega_commit_duration_seconds", COMMIT_BUCKETS),
    ("mega_batch_rows", crate::mega::writer::BATCH_ROWS_BUCKETS),
];

/// Describes this crate's metrics to the installed recorder. Call once, after
/// installing it.
pub fn describe() {
    describe_gauge!(
        "randoms_jobs_in_flight",
        "Randoms jobs admitted and not finished (running or waiting)"
    );
    describe_gauge!(
        "randoms_jobs_max",
        "Randoms jobs admitted at once before the next gets 503 (--randoms-queue)"
    );
    describe_counter!(
        "randoms_numbers_total",
        "Numbers in the histograms of completed randoms jobs, by method (drawn one by one, or \
            sampled as a whole)"
    );
    describe_counter!(
        "randoms_rejected_total",
        "Randoms jobs refused because the pool was full (503), by method"
    );
    describe_counter!(
        "randoms_cancelled_total",
        "Randoms jobs stopped early because their client left, by method"
    );
    describe_histogram!(
        "randoms_job_duration_seconds",
        Unit::Seconds,
        "Time a randoms job spent on the pool, by outcome and method"
    );
    // Every mega_* metric has a `store` label: sqlite or postgres.
    describe_counter!("mega_inserts_total", "Mega rows committed, by store");
    describe_counter!(
        "mega_insert_errors_total",
        "Mega rows whose transaction failed or whose database was unreachable, by store"
    );
    describe_counter!(
        "mega_rejected_total",
        "Insert requests refused because the write queue was full (503), by store"
    );
    describe_gauge!(
        "mega_writer_queue_depth",
        "Insert requests waiting for the writer, by store"
    );
    describe_gauge!(
        "mega_writer_queue_capacity",
        "Insert requests the write queue holds before the next gets 503 (--writer-queue)"
    );
    describe_gauge!(
        "mega_writer_connected",
        "1 while the writer's connection to its database is up (always, for sqlite), \
         0 while it reconnects"
    );
    describe_counter!(
        "mega_reconnects_total",
        "Times the writer re-established a lost database connection (postgres)"
    );
    describe_counter!(
        "mega_idempotent_replays_total",
        "Insert retries under a committed Idempotency-Key, answered from it and stored nothing"
    );
    describe_histogram!(
        "mega_batch_rows",
        "Rows per committed transaction, by store"
    );
    describe_histogram!(
        "mega_commit_duration_seconds",
        Unit::Seconds,
        "Time to write and commit one batch, by store"
    );
    describe_gauge!(
        "mega_rows",
        "Rows in the Mega table when the writer started, plus those this process committed since"
    );
    describe_counter!(
        "mega_writer_panics_total",
        "Times the writer thread ended by panicking"
    );
    describe_counter!(
        "mega_checkpoint_errors_total",
        "Failed final WAL checkpoints at writer shutdown (sqlite)"
    );
    describe_counter!(
        "mega_store_faults_total",
        "Failed commits and reads caused by the store itself, by kind: full, read_only, \
         io, busy, connection_lost"
    );
    describe_counter!(
        "mega_read_retries_total",
        "Reads retried once on a fresh connection because their pooled one was dead \
         (postgres)"
    );
    describe_counter!(
        "mega_read_connections_opened_total",
        "Read connections opened beyond the pool: every pooled one was busy (sqlite), \
         or a lost one was replaced (postgres)"
    );
}
