//! The front: an HTTP/1.1 reverse proxy balancing requests over pools of upstreams
//! (the shards of `loadlab serve`, or loadlab instances on other hosts with
//! `loadlab front`).
//!
//! Who calls it: [`crate::app`] builds a [`Front`] over the shards (or from
//! `--front-config`) and serves [`Front::router`] on `--bind`; `loadlab front` runs
//! [`run_standalone`]; `/info` shows [`Front::status`].
//!
//! # Layout
//! - [`config`]: [`FrontConfig`], the TOML file of pools, routes and health checks.
//! - `balance`: picking a pool (longest route prefix) and a member (round robin, or
//!   smooth weighted round robin).
//! - `upstream`: one upstream address and its health (active verdict, passive holds).
//! - `health`: the active check tasks.
//! - `pool`: keep-alive connections to one upstream; `body`: request and response
//!   bodies streamed through (a request body kept for a retry, a response body that
//!   gives its connection back).
//! - `proxy`: forwarding one request, failover, hop-by-hop headers, 502/504.
//! - `inproc`: the in-process path to a member that is one of this process's shards
//!   (its router called directly, no socket); every other member goes over TCP.
//!
//! The front answers `/metrics` (this process's) and `GET /front/status` itself;
//! every other request is proxied, `/healthz` included (load tests measure the hop).

pub mod config;

mod balance;
mod body;
mod health;
mod inproc;
mod pool;
mod proxy;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{any, get};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use self::balance::{Member, Pool, Routes};
pub use self::config::{FrontConfig, HealthConfig, PoolConfig, RouteConfig, UpstreamConfig};
use self::proxy::Proxy;
use self::upstream::Upstream;
use crate::config::{EdgeLimits, UpstreamLimits};
use crate::server::{self, ServingThread, WorkerSet};

/// Where `loadlab front` listens without `--bind` or `listen`.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The running front: pools, routes, health state and the upstream connections. Cheap
/// to clone (one `Arc`); every clone shares the same state.
///
/// A handle belongs to one front worker thread (see [`Front::spawn_workers`]) and uses
/// that worker's upstream connections; [`Front::new`] gives worker 0's.
#[derive(Debug, Clone)]
pub struct Front {
    inner: Arc<Inner>,
    worker: usize,
}

#[derive(Debug)]
struct Inner {
    pools: Vec<Pool>,
    routes: Routes,
    /// Each distinct upstream address once, for the health checks.
    upstreams: Vec<Arc<Upstream>>,
    proxy: Proxy,
    health: HealthConfig,
    /// Worker threads, each with its own upstream connections.
    threads: usize,
}

impl Front {
    /// Builds the front: validates `config`, creates each upstream's state and
    /// metrics, and the pooled upstream client. Needs no runtime; nothing connects
    /// until the first request or health check.
    pub fn new(config: FrontConfig, limits: UpstreamLimits) -> anyhow::Result<Self> {
        config.validate()?;
        // Metric handles made before the recorder exists would be no-ops forever.
        crate::metrics::handle();
        // Who lists each address, so shared addresses get one state and one checker:
        // address -> (its label, its max_conns if the file sets one, the (pool, label)
        // pairs that list it).
        type Listed<'a> = (&'a str, Option<u32>, Vec<(&'a str, &'a str)>);
        let mut memberships: HashMap<SocketAddr, Listed<'_>> = HashMap::new();
        let mut order = Vec::new();
        for pool in &config.pools {
            for member in &pool.upstreams {
                let entry = memberships.entry(member.addr).or_insert_with(|| {
                    order.push(member.addr);
                    (member.label.as_str(), None, Vec::new())
                });
                entry.1 = entry.1.or(member.max_conns);
                entry.2.push((pool.name.as_str(), member.label.as_str()));
            }
        }
        let mut by_addr = HashMap::new();
        let mut upstreams = Vec::with_capacity(order.len());
        for addr in order {
            let (label, max_conns, pools) = &memberships[&addr];
            let max_conns = max_conns.map_or(limits.max_conns_per_upstream, |m| m as usize);
            let upstream = Arc::new(
                Upstream::new(label, addr, pools, max_conns, &config.health, &limits)
                    .with_context(|| format!("upstream `{label}` is not a valid Host header"))?,
            );
            by_addr.insert(addr, Arc::clone(&upstream));
            upstreams.push(upstream);
        }
        let pools: Vec<Pool> = config
            .pools
            .iter()
            .map(|pool| {
                let members = pool
                    .upstreams
                    .iter()
                    .map(|u| {
                        Member::new(
                            &pool.name,
                            &u.label,
                            u.weight,
                            Arc::clone(&by_addr[&u.addr]),
                        )
                    })
                    .collect();
                Pool::new(&pool.name, members)
            })
            .collect();
        let index_of = |name: &str| pools.iter().position(|p| p.name() == name);
        let routes = config
            .routes
            .iter()
            .map(|r| index_of(&r.pool).map(|i| (r.prefix.clone(), i)))
            .collect::<Option<Vec<_>>>()
            .context("a route names an unknown pool")?;
        let fallback = config
            .fallback_pool()
            .and_then(index_of)
            .context("no pool for the paths no route matches")?;
        Ok(Self {
            inner: Arc::new(Inner {
                routes: Routes::new(routes, fallback),
                pools,
                upstreams,
                proxy: Proxy::new(limits),
                health: config.health,
                threads: limits.front_threads.max(1),
            }),
            worker: 0,
        })
    }

    /// The front's router: `/metrics`, `GET /front/status`, and the proxy for every
    /// other path and method, inside the edge layers (CORS, request timeout).
    pub fn router(&self, edge: &EdgeLimits) -> Router {
        // Catch-all routes rather than a fallback: the edge installs its own JSON 404
        // fallback, and the proxy must see every path.
        let routes = Router::new()
            .route("/metrics", get(crate::metrics::metrics_render))
            .route("/front/status", get(front_status))
            .route("/", any(front_proxy))
            .route("/{*path}", any(front_proxy))
            .with_state(self.clone());
        crate::edge::wrap(routes, edge)
    }

    /// Pools, routes, each upstream's address, weight, health and `max_conns` use, and
    /// the front's worker threads, as JSON (for `/info` and `GET /front/status`). `up`
    /// is whether requests may go there now.
    pub fn status(&self) -> serde_json::Value {
        let inner = &self.inner;
        let pools: Vec<_> = inner
            .pools
            .iter()
            .map(|pool| {
                let upstreams: Vec<_> = pool
                    .members()
                    .iter()
                    .map(|m| {
                        let u = &m.upstream;
                        let up = m.is_available();
                        let state = match (up, m.weight) {
                            (false, _) => "down",
                            (true, 0) => "draining",
                            (true, _) => "up",
                        };
                        json!({
                            "addr": m.label,
                            "resolved": u.addr().to_string(),
                            "weight": m.weight,
                            "path": m.path(),
                            "up": up && m.weight > 0,
                            "state": state,
                            "active_check": if u.is_active_up() { "up" } else { "down" },
                            "passive_failed": u.passive_failed(),
                            "max_conns": u.max_conns(),
                            "in_flight": u.in_flight(),
                        })
                    })
                    .collect();
                json!({ "name": pool.name(), "upstreams": upstreams })
            })
            .collect();
        let routes: Vec<_> = inner
            .routes
            .entries()
            .iter()
            .map(|(prefix, pool)| json!({ "prefix": prefix, "pool": inner.pools[*pool].name() }))
            .collect();
        json!({
            "pools": pools,
            "routes": routes,
            "default_pool": inner.pools[inner.routes.fallback()].name(),
            "threads": inner.threads,
        })
    }

    /// Reaches the members listening on `addr` in-process, through `router` (one of
    /// this process's shards, which keeps `router` alive while it serves; see
    /// `inproc`); returns how many members that is. Call before serving: a member's
    /// path is set once.
    pub fn attach_shard(&self, addr: SocketAddr, router: &Arc<Router>) -> usize {
        let mut attached = 0;
        for member in self.inner.pools.iter().flat_map(|p| p.members()) {
            if member.upstream.addr() == addr
                && member.local.set(inproc::LocalShard::new(router)).is_ok()
            {
                attached += 1;
            }
        }
        attached
    }

    /// Starts the active health checks (one task per upstream address) on the current
    /// tokio runtime; they stop when `shutdown` is cancelled.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn_health_checks(&self, shutdown: CancellationToken) {
        health::spawn_checks(&self.inner.upstreams, &self.inner.health, &shutdown);
    }

    /// Starts the front's worker threads (`--front-threads`), each with its own
    /// single-threaded runtime, its own upstream connections and the front's router.
    /// Feed them with [`crate::server::serve_on_workers`]; each thread returns once that
    /// accept loop has stopped and its connections have drained. A thread that fails
    /// cancels `shutdown`, so the whole front stops rather than serving short-handed.
    pub fn spawn_workers(
        &self,
        edge: &EdgeLimits,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<(WorkerSet, Vec<ServingThread>)> {
        let (set, workers) = server::workers(self.inner.threads);
        let threads = workers
            .into_iter()
            .enumerate()
            .map(|(index, worker)| {
                let handle = Front {
                    inner: Arc::clone(&self.inner),
                    worker: index,
                };
                let router = handle.router(edge);
                let limits = edge.connections.clone();
                server::spawn_runtime_thread(
                    format!("loadlab-front-{index}"),
                    shutdown.clone(),
                    async move {
                        worker.run(router, limits).await;
                        Ok(())
                    },
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((set, threads))
    }
}

/// Every request the front does not answer itself.
async fn front_proxy(State(front): State<Front>, req: Request) -> Response {
    let inner = &front.inner;
    let pool = &inner.pools[inner.routes.pool_for(req.uri().path())];
    inner.proxy.forward(pool, front.worker, req).await
}

/// `GET /front/status`: [`Front::status`].
async fn front_status(State(front): State<Front>) -> axum::Json<serde_json::Value> {
    axum::Json(front.status())
}

/// `loadlab front`: the front alone, over the pools of `--config`, until SIGINT or
/// SIGTERM; then it drains and returns `Ok` (exit status 0).
pub fn run_standalone(args: &crate::cli::FrontArgs) -> anyhow::Result<()> {
    let config = FrontConfig::load(&args.config)?;
    let edge = EdgeLimits::from_args(&args.edge)?;
    let limits = UpstreamLimits::from_args(&args.upstream);
    let bind = match args.bind.or(config.listen) {
        Some(addr) => addr,
        None => DEFAULT_LISTEN
            .parse()
            .context("the default listen address")?,
    };
    // This runtime only accepts, checks health and serves --metrics-bind; the
    // front's worker threads bring their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async move {
        let front = Front::new(config, limits)?;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("could not listen on {bind}"))?;
        let metrics_listener = match args.metrics_bind {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--metrics-bind: could not listen on {addr}"))?,
            ),
            None => None,
        };
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            crate::app::shutdown_signal().await;
            tracing::info!("shutdown signal received: draining");
            trigger.cancel();
        });
        front.spawn_health_checks(shutdown.clone());
        tracing::info!(addr = %listener.local_addr()?, pools = front.inner.pools.len(), "loadlab front is serving");
        let (workers, threads) = front.spawn_workers(&edge, &shutdown)?;
        let mut tasks = tokio::task::JoinSet::new();
        let connections = edge.connections.clone();
        tasks.spawn(server::serve_on_workers(listener, workers, connections.clone(), shutdown.clone()));
        if let Some(listener) = metrics_listener {
            let router = Router::new().route("/metrics", get(crate::metrics::metrics_render));
            tasks.spawn(server::serve(listener, router, connections, shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
        // The workers drain their connections after the accept loop stops; joining
        // blocks, so off this runtime's thread.
        tokio::task::spawn_blocking(move || server::join_all(threads))
        .await
        .context("joining the front threads")??;
        tracing::info!("loadlab front stopped");
        Ok(())
    })
}
