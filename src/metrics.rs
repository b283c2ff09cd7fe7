//! Metrics: the Prometheus exporter, `/metrics`, and the `--metrics-bind` listener.
//!
//! Everything is recorded through the `metrics` facade, and each crate describes what it
//! records (`loadlab_front::metrics`, `loadlab_workers::metrics`, [`crate::shard`]);
//! only this module installs a recorder, once per process. Every histogram gets
//! explicit buckets: without them the exporter renders summaries, which Prometheus
//! cannot aggregate across shards or instances and Grafana's `histogram_quantile`
//! cannot read. Labels stay bounded: route templates (`/app/mega/{id}`), never paths.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use loadlab_front::ConnectionLimits;
use loadlab_front::listen::server;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide exporter handle, installing the recorder on first use.
///
/// The first caller also spawns the upkeep thread: without periodic `run_upkeep` the
/// exporter's histogram storage grows without bound (gigabytes have been reported).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let histograms = crate::shard::HISTOGRAMS
            .iter()
            .chain(loadlab_front::metrics::HISTOGRAMS)
            .chain(loadlab_workers::metrics::HISTOGRAMS);
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in histograms {
            // Bucket lists are non-empty constants, so this cannot fail.
            builder = builder
                .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
                .expect("bucket lists are non-empty");
        }
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

/// Publishes the descriptions (the `# HELP` lines) every crate gives of the metrics it
/// records: this crate's (`shard`, `error`, the process's), the front's and the workers'.
///
/// Also sets `loadlab_build_info`.
fn describe() {
    metrics::describe_gauge!(
        "loadlab_build_info",
        "Always 1; the `version` label is the running loadlab's version"
    );
    metrics::gauge!("loadlab_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    crate::error::describe();
    crate::auth::describe();
    crate::shard::describe();
    loadlab_front::metrics::describe();
    loadlab_workers::metrics::describe();
    loadlab_logs::access::describe();
    crate::process_metrics::describe();
}

/// `GET /metrics`: the Prometheus text exposition, with process metrics refreshed.
pub async fn metrics_render() -> Response {
    let handle = handle();
    let cpu = crate::process_metrics::collect();
    let mut body = handle.render();
    body.push_str(&cpu);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
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
