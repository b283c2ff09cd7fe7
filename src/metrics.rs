//! Metrics: the Prometheus exporter, the request-metrics middleware, and `/metrics`.
//!
//! Everything is recorded through the `metrics` facade (the workers crate records its
//! own); only this module installs a recorder, once per process. Every histogram gets
//! explicit buckets: without them the exporter renders summaries, which Prometheus
//! cannot aggregate across shards or instances and Grafana's `histogram_quantile`
//! cannot read. Labels stay bounded: route templates (`/app/mega/{id}`), never paths.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets (seconds) for request and upstream durations: 100 us to 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Buckets for randoms job durations (seconds): a multinomial job or a 1e3 draw takes
/// microseconds, a 1e10 draw seconds.
pub const JOB_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for SQLite commit durations (seconds): an fsync is ~150 us here.
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
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
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
        "http_requests_total",
        "HTTP requests answered, by method, route template, status and shard"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time from request to response headers, by method, route, status and shard"
    );
    describe_gauge!(
        "http_requests_in_flight",
        "Requests being handled now, by shard"
    );
    describe_counter!(
        "http_internal_errors_total",
        "Requests answered 500 (bugs or I/O failures)"
    );
    describe_counter!(
        "http_request_timeouts_total",
        "Requests answered 503 because they outlived --request-timeout"
    );
    describe_counter!(
        "http_accept_errors_total",
        "Failed accepts on any listener (out of file descriptors and the like)"
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
        "Numbers in the histograms of completed randoms jobs, by method (drawn one by one, or sampled as a whole)"
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
    describe_counter!("mega_inserts_total", "Mega rows committed");
    describe_counter!(
        "mega_insert_errors_total",
        "Mega rows whose transaction failed"
    );
    describe_counter!(
        "mega_rejected_total",
        "Insert requests refused because the write queue was full (503)"
    );
    describe_gauge!(
        "mega_writer_queue_depth",
        "Insert requests waiting for the writer"
    );
    describe_gauge!(
        "mega_writer_queue_capacity",
        "Insert requests the write queue holds before the next gets 503 (--writer-queue)"
    );
    describe_histogram!("mega_batch_rows", "Rows per committed transaction");
    describe_histogram!(
        "mega_commit_duration_seconds",
        Unit::Seconds,
        "Time to insert and commit one batch"
    );
    describe_gauge!("mega_rows", "Rows in the Mega table");
    describe_counter!(
        "mega_writer_panics_total",
        "Times the writer thread ended by panicking"
    );
    describe_counter!(
        "mega_checkpoint_errors_total",
        "Failed final WAL checkpoints at writer shutdown"
    );
    describe_counter!(
        "mega_read_connections_opened_total",
        "Read connections opened beyond the pool because every pooled one was busy"
    );
    describe_counter!(
        "front_requests_total",
        "Requests the front answered, by pool, upstream and status"
    );
    describe_histogram!(
        "front_upstream_duration_seconds",
        Unit::Seconds,
        "Time from forwarding a request to the upstream's response headers, by pool and upstream"
    );
    describe_gauge!(
        "front_upstream_up",
        "1 while the front considers the upstream healthy, 0 while it is out of rotation"
    );
    describe_counter!(
        "front_retries_total",
        "Requests the front re-sent to another upstream"
    );
    describe_counter!(
        "front_upstream_errors_total",
        "Failed attempts to reach an upstream, by upstream and kind of failure"
    );
    describe_counter!(
        "front_upstream_queued_total",
        "Requests that found their upstream at max_conns and waited for a slot"
    );

    metrics::gauge!("loadlab_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for name in [
        "http_internal_errors_total",
        "http_request_timeouts_total",
        "http_accept_errors_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// Records `http_requests_total`, `http_request_duration_seconds` and
/// `http_requests_in_flight` for every request, labelled by route template and shard.
pub async fn track_requests(State(shard): State<ShardLabel>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let in_flight = metrics::gauge!("http_requests_in_flight", "shard" => shard.0);
    in_flight.increment(1.0);
    let started = Instant::now();
    let response = next.run(req).await;
    in_flight.decrement(1.0);
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method),
        ("route", route),
        ("status", status),
        ("shard", shard.0.to_owned()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The `shard` label value of a listener: its index, or `front`.
#[derive(Debug, Clone, Copy)]
pub struct ShardLabel(pub &'static str);

impl ShardLabel {
    /// The label for shard `index`. Leaks one short string per shard, once, so labels
    /// are `&'static` and cost nothing per request.
    pub fn shard(index: usize) -> Self {
        ShardLabel(Box::leak(index.to_string().into_boxed_str()))
    }
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
