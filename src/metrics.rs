//! Metrics: the Prometheus exporter, `/metrics`, and the `--metrics-bind` listener.
//!
//! Everything is recorded through the `metrics` facade (the workers crate records its
//! own); only this module installs a recorder, once per process. Every histogram gets
//! explicit buckets: without them the exporter renders summaries, which Prometheus
//! cannot aggregate across shards or instances and Grafana's `histogram_quantile`
//! cannot read. Labels stay bounded: route templates (`/app/mega/{id}`), never paths.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use loadlab_front::ConnectionLimits;
use loadlab_front::server;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Buckets for randoms job durations (seconds): a multinomial job or a 1e3 draw takes
/// microseconds, a 1e10 draw seconds.
pub const JOB_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for Mega commit durations (seconds): a SQLite fsync is ~150 us here; a
/// PostgreSQL batch is a few round trips plus the server's WAL flush.
pub const COMMIT_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide exporter handle, installing the recorder on first use.
///
/// The first caller also spawns the upkeep thread: without periodic `run_upkeep` the
/// exporter's histogram storage grows without bound (gigabytes have been reported).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".into()),
                loadlab_front::metrics::LATENCY_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("randoms_job_duration_seconds".into()),
                    JOB_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("mega_commit_duration_seconds".into()),
                    COMMIT_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("mega_batch_rows".into()),
                    loadlab_workers::mega::writer::BATCH_ROWS_BUCKETS,
                )
            })
            // Bucket lists are non-empty constants, so this cannot fail.
            .expect("bucket lists are non-empty");
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (only possible in tests embedding loadlab):
            // keep a detached handle so /metrics still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("loadlab-metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
        describe();
        handle
    })
}

/// Descriptions (the `# HELP` lines) of every metric loadlab records, this crate's, the
/// workers' and the front's: one list to check against the README's metric table.
///
/// Also sets `loadlab_build_info` and registers the HTTP error counters at zero: the
/// `metrics` crate emits a counter only once it is touched, and a counter that appears
/// only after the first error makes `rate()` and dashboards show "no data" instead of 0.
/// The workers register their own counters the same way when they start.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "loadlab_build_info",
        "Always 1; the `version` label is the running loadlab's version"
    );
    describe_counter!(
        "http_internal_errors_total",
        "Requests answered 500 (bugs or I/O failures)"
    );
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
        "mega_read_connections_opened_total",
        "Read connections opened beyond the pool: every pooled one was busy (sqlite), \
         or a lost one was replaced (postgres)"
    );
    metrics::gauge!("loadlab_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::counter!("http_internal_errors_total").increment(0);
    crate::shard::describe();
    loadlab_front::metrics::describe();
}

/// `GET /metrics`: the Prometheus text exposition, with process metrics refreshed.
pub async fn metrics_render() -> Response {
    static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();
    let collector = PROCESS.get_or_init(|| {
        let collector = metrics_process::Collector::default();
        collector.describe();
        collector
    });
    collector.collect();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle().render(),
    )
        .into_response()
}

/// Serves only `GET /metrics` on `listener` (`--metrics-bind`), until `shutdown`.
pub async fn serve_metrics(
    listener: TcpListener,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let router = Router::new().route("/metrics", axum::routing::get(metrics_render));
    server::serve(listener, router, limits, shutdown).await;
}
