//! Shards: the port-sharded listeners of `loadlab serve`.
//!
//! A *shard* is one listener serving the whole API on its own thread with its own
//! single-threaded tokio runtime: the ancestors' "one server per port", without a
//! process per port. All shards share one set of compute threads, one Mega writer and
//! one set of read connections (`AppState`): they split the accept and HTTP work
//! across threads, not the data.
//!
//! This module owns what makes a shard: its address ([`addr`]), its `shard` label on
//! the HTTP metrics ([`ShardLabel`], recorded by [`track_requests`], described by
//! [`describe`]), its own count of what it served ([`ShardStats`]) and its thread
//! ([`Shard::spawn`]).

use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use loadlab_front::listen::access::AccessLayer;
use loadlab_front::listen::edge;
use loadlab_front::listen::server::{self, ServingThread};
use loadlab_front::listen::window::LiveWindow;
use loadlab_front::{EdgeLimits, ShardRuntime};
use loadlab_logs::access::AccessLogger;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use tokio_util::sync::CancellationToken;

/// The address of shard `index`: `base_port + index` on `host`, or an ephemeral port
/// on `host` for every shard when `base_port` is 0. The caller has checked that the
/// last shard's port fits in a `u16` (see [`crate::config::Config`]).
pub fn addr(host: IpAddr, base_port: u16, index: usize) -> SocketAddr {
    let port = if base_port == 0 {
        0
    } else {
        base_port.saturating_add(u16::try_from(index).unwrap_or(u16::MAX))
    };
    SocketAddr::new(host, port)
}

/// One shard, built and not yet serving: its listener, its router and its own stop
/// switch.
#[derive(Debug)]
pub struct Shard {
    index: usize,
    listener: StdListener,
    /// The shard's routes. The shard's thread holds this `Arc` while it serves; the
    /// front's in-process members hold only a `Weak` to it, so they see the shard stop.
    router: Arc<Router>,
    /// Stops this shard alone (a test hook: see `App::shard_stopper`); the app's
    /// shutdown stops it too.
    stop: CancellationToken,
    /// The access log's layer, outermost on the shard's listener; `None`: no access
    /// log. The front's in-process path does not pass it: the front logs those.
    access: Option<AccessLayer>,
    /// The shard's runtime once its thread runs, for the front's health checks.
    runtime: ShardRuntime,
}

impl Shard {
    /// Shard `index`, to serve `router` (the shard's API, [`crate::routes::app`]) on
    /// `listener`.
    pub fn new(index: usize, listener: StdListener, router: Router) -> Self {
        Self {
            index,
            listener,
            router: Arc::new(router),
            stop: CancellationToken::new(),
            access: None,
            runtime: ShardRuntime::new(),
        }
    }

    /// The shard logs each request that comes to its listener to `logger`.
    pub fn with_access_log(mut self, logger: AccessLogger) -> Self {
        // Once per shard: a `&'static` name costs nothing per request.
        let name: &'static str = Box::leak(format!("shard {}", self.index).into_boxed_str());
        self.access = Some(AccessLayer::new(logger, name));
        self
    }

    /// The shard's router, for the front's in-process path (which keeps a `Weak`).
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The shard's runtime, for the front's in-process health checks.
    pub fn runtime(&self) -> &ShardRuntime {
        &self.runtime
    }

    /// A switch that stops this shard alone.
    pub fn stopper(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Starts the shard: a thread with its own runtime serving its router until
    /// `shutdown` (or its own stop switch) is cancelled and its connections drained.
    pub fn spawn(
        self,
        edge: &EdgeLimits,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<ServingThread> {
        let (limits, listener_router) = (
            edge.connections.clone(),
            edge::guard(Router::clone(&self.router), edge),
        );
        let Self {
            index,
            listener,
            router,
            stop,
            access,
            runtime,
        } = self;
        let listener_router = match access {
            Some(access) => listener_router.layer(access),
            None => listener_router,
        };
        let app_stop = shutdown.clone();
        server::spawn_runtime_thread(
            format!("loadlab-shard-{index}"),
            shutdown.clone(),
            async move {
                runtime.set_current();
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let own_stop = stop.clone();
                tokio::spawn(async move {
                    app_stop.cancelled().await;
                    own_stop.cancel();
                });
                server::serve(listener, listener_router, limits, stop).await;
                // The last strong reference to the router: in-process members now see
                // the shard gone.
                drop(router);
                Ok(())
            },
        )
    }
}

/// The `shard` label value of a listener: its index.
#[derive(Debug, Clone, Copy)]
pub struct ShardLabel(pub &'static str);

impl ShardLabel {
    /// The label for shard `index`. Leaks one short string per shard, once, so labels
    /// are `&'static` and cost nothing per request.
    pub fn shard(index: usize) -> Self {
        ShardLabel(Box::leak(index.to_string().into_boxed_str()))
    }
}

/// What one shard counts of the requests it answers, read by the process itself (the
/// stop line, the live page), not by Prometheus: the metrics exporter renders text for
/// scrapers.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Requests answered (over its socket or the front's in-process path): the last few
    /// seconds, and totals.
    window: LiveWindow,
}

impl ShardStats {
    /// Requests this shard has answered.
    pub fn requests(&self) -> u64 {
        self.window.snapshot().requests
    }

    /// The shard's last few seconds.
    pub fn window(&self) -> &LiveWindow {
        &self.window
    }
}

/// What [`track_requests`] records into for one shard.
#[derive(Debug, Clone)]
pub struct ShardTracking {
    /// The `shard` label of its metrics.
    pub label: ShardLabel,
    /// Its own counts.
    pub stats: Arc<ShardStats>,
}

/// Records `http_requests_total`, `http_request_duration_seconds` and
/// `http_requests_in_flight` for every request, labelled by route template and shard,
/// and counts it in the shard's [`ShardStats`]. Logs each request at `debug` (target
/// `loadlab::shard`): off by default, and then cheap (a level check per request).
pub async fn track_requests(
    State(tracking): State<ShardTracking>,
    req: Request,
    next: Next,
) -> Response {
    let shard = tracking.label;
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let in_flight = InFlight::enter(metrics::gauge!("http_requests_in_flight", "shard" => shard.0));
    let live_in_flight = tracking.stats.window.enter();
    let started = Instant::now();
    let response = next.run(req).await;
    drop((in_flight, live_in_flight));
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method),
        ("route", route),
        ("status", status),
        ("shard", shard.0.to_owned()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    let elapsed = started.elapsed();
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    tracking
        .stats
        .window
        .record(elapsed, response.status().is_server_error());
    let [(_, method), (_, route), (_, status), (_, shard)] = &labels;
    tracing::debug!(
        %method,
        %route,
        %status,
        %shard,
        seconds = elapsed.as_secs_f64(),
        "request answered"
    );
    response
}

/// The histogram [`track_requests`] records, with its buckets (the front's latency
/// buckets: 100 us to 60 s).
pub const HISTOGRAMS: &[(&str, &[f64])] = &[(
    "http_request_duration_seconds",
    loadlab_front::metrics::LATENCY_BUCKETS,
)];

/// One request counted in `http_requests_in_flight` until dropped: also when the
/// request's future is dropped half-way (a timeout around it, a client gone).
struct InFlight(metrics::Gauge);

impl InFlight {
    fn enter(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Describes the request metrics [`track_requests`] records.
pub fn describe() {
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
}
