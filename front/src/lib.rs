//! loadlab's front: a reverse proxy (HTTP/1.1 and HTTP/2 to clients, over TLS or
//! cleartext; HTTP/1.1 to upstreams) balancing requests over pools of
//! upstreams (the shards of `loadlab serve`, or loadlab instances on other hosts with
//! `loadlab front`), and the listener kit that it and the shards serve on.
//!
//! This crate knows nothing of loadlab's routes, database or compute threads: the service
//! crate builds a [`Front`] over its shards (or from a config file) and serves it, and
//! runs its shards with the listener kit ([`listen`]). Dependencies point one way:
//! service -> front.
//!
//! # Layout
//! Two houses under one roof, one folder each for the kit and the proxy, and one for
//! the pools the proxy picks from:
//! - [`listen`]: the listener kit, used by every listener (the front's and each
//!   shard's) and knowing nothing of proxying: [`server`] (accept loops, connection
//!   limits, the front's threads, graceful shutdown, [`server::run_until_stopped`]),
//!   [`edge`] (the layers every listener puts around its routes), `leftover` (draining
//!   what a handler left of a request body), [`listen::access`] (the access log's
//!   layer and `X-Request-Id`), [`error`] (the JSON error shape),
//!   [`protocol`] (HTTP/1.1, h2 by ALPN, h2c by preface, and the HTTP/2 limits), [`tls`]
//!   (the certificate, the handshake, reload on SIGHUP), [`listen::limits`]
//!   ([`EdgeLimits`], [`ConnectionLimits`]), `accept` (the connection cap, closing idle
//!   connections at it, the pause and throttled log after failed accepts) and [`fds`]
//!   (the fd limit, raised at start, and the default cap derived from it).
//! - `proxy`: forwarding one request in named phases: the retry policy, one try per
//!   member, the header policy, the front's own 502/504 answers (`proxy::answers`);
//!   over one of two transports, `proxy::inproc` (a member that is one of this
//!   process's shards: its router called directly, no socket) or `proxy::tcp` (every
//!   other member, over `conns`: keep-alive connections to one upstream). With it:
//!   `headers` (hop-by-hop out, `X-Forwarded-*` in), `body` (request and response
//!   bodies streamed through: a request body kept for a retry, a response body that
//!   gives its connection back) and `failure` (whose fault a failed forward is: a
//!   client's bad body is not the upstream's).
//! - `pools`: `balance` (picking a pool by longest route prefix and a member by round
//!   robin or smooth weighted round robin; panic mode when every member is held out),
//!   `upstream` (one upstream address and its health: active verdict, passive holds)
//!   and `health` (the active check tasks).
//! - [`config`]: [`FrontConfig`], the TOML file of pools, routes and health checks, and
//!   the front's own limits ([`UpstreamLimits`]); [`metrics`]: what this crate records.
//! - Here: [`Front`], which builds the pools from the config, serves on the kit and
//!   hands each request to the proxy.
//!
//! Arrows: `listen` imports nothing from `proxy` or `pools`; `proxy` uses `pools` (the
//! member it tries) and `listen` (the JSON error shape, the edge's timeout answer).
//! The old paths `loadlab_front::{server, edge, error, protocol, tls}` are the kit's
//! modules, re-exported here for the service; inside the crate, modules are named by
//! their folder (`crate::pools::upstream`, `crate::proxy::headers`).
//!
//! The front answers `/metrics` (when given a handler: [`Front::with_metrics`]) and
//! `GET /front/status` itself; every other request is proxied, `/healthz` included
//! (load tests measure the hop).
//!
//! # Glossary
//! The front's words (the service's `lib.rs` names the other crates' glossaries):
//! - **front**: the reverse proxy before the shards (or before other hosts).
//! - **pool**: a named set of upstreams the front balances over (`[[pools]]` in the
//!   front config). Nothing else is called a pool.
//! - **upstream**: an address the front forwards to; a **member** is an upstream's
//!   place in one pool, with its weight.
//! - **keep-alive connections**: the front's idle connections to one upstream
//!   (`--upstream-idle`).
//! - **front threads**: the threads the front serves connections on
//!   (`--front-threads`); `thread` in code.

pub mod config;
pub mod listen;
pub mod metrics;

mod pools;
mod proxy;

use self::listen::access::AccessLayer;
pub use self::listen::{edge, error, fds, protocol, server, tls};

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use loadlab_logs::access::AccessLogger;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

pub use self::config::{
    FrontConfig, HealthConfig, PoolConfig, RouteConfig, UpstreamConfig, UpstreamLimits,
};
pub use self::error::json_error;
pub use self::listen::limits::{ConnectionLimits, EdgeLimits};
use self::pools::balance::{Member, Pool, Routes};
pub use self::pools::upstream::ShardRuntime;
use self::pools::upstream::Upstream;
use self::proxy::Proxy;
use self::server::{Serving, ServingThread, ThreadSet};
use self::tls::{Certificates, TlsAcceptor};

/// Where `loadlab front` listens without `--bind` or `listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The running front: pools, routes, health state and the upstream connections. Cheap
/// to clone (one `Arc`); every clone shares the same state.
///
/// A handle belongs to one front thread (see [`Front::spawn_threads`]) and uses
/// that thread's upstream connections; [`Front::new`] gives thread 0's.
#[derive(Debug, Clone)]
pub struct Front {
    inner: Arc<Inner>,
    thread: usize,
    /// The `/metrics` handler (the binary owns the exporter); `None`: the front has no
    /// `/metrics` of its own and proxies that path like any other.
    metrics: Option<MethodRouter>,
    /// The access log's layer, outermost on the front's service; `None`: no access log.
    access: Option<AccessLayer>,
}

#[derive(Debug)]
struct Inner {
    pools: Vec<Pool>,
    routes: Routes,
    /// Each distinct upstream address once, for the health checks.
    upstreams: Vec<Arc<Upstream>>,
    proxy: Proxy,
    health: HealthConfig,
    /// Front threads, each with its own upstream connections.
    threads: usize,
    /// Where the front listens, set once it serves ([`Front::serve`]).
    listening: OnceLock<Listening>,
    /// Requests the front has taken (its own paths and proxied ones), for the stop line.
    requests: AtomicU64,
}

/// The listeners the front serves on.
#[derive(Debug)]
pub struct FrontListeners {
    /// `--bind`: TLS when `tls` is given, else cleartext (HTTP/1.1 and h2c).
    pub bind: tokio::net::TcpListener,
    /// TLS on `bind`; `None`: cleartext.
    pub tls: Option<TlsAcceptor>,
    /// `--plain-bind`: a cleartext listener beside a TLS `bind`; `None`: none.
    pub plain: Option<tokio::net::TcpListener>,
}

impl FrontListeners {
    /// One cleartext listener.
    pub fn plain(bind: tokio::net::TcpListener) -> Self {
        Self {
            bind,
            tls: None,
            plain: None,
        }
    }
}

/// What the status pages show of the front's listeners.
#[derive(Debug)]
struct Listening {
    /// Each address, and whether it serves TLS.
    addrs: Vec<(SocketAddr, bool)>,
    /// The certificate the TLS listener presents.
    certificates: Option<Arc<Certificates>>,
}

impl Listening {
    fn to_json(&self) -> serde_json::Value {
        let listeners: Vec<_> = self
            .addrs
            .iter()
            .map(|(addr, tls)| {
                let (scheme, protocols) = if *tls {
                    ("https", ["h2", "http/1.1"])
                } else {
                    ("http", ["http/1.1", "h2c"])
                };
                json!({ "addr": addr.to_string(), "scheme": scheme, "protocols": protocols })
            })
            .collect();
        let certificate = self.certificates.as_ref().map(|c| c.info().to_json());
        json!({ "listeners": listeners, "certificate": certificate })
    }
}

impl Front {
    /// Builds the front: validates `config`, creates each upstream's state and
    /// metrics, and the pooled upstream client. Needs no runtime; nothing connects
    /// until the first request or health check.
    ///
    /// Install the metrics recorder first: handles made before it exists would be
    /// no-ops forever.
    pub fn new(config: FrontConfig, limits: UpstreamLimits) -> anyhow::Result<Self> {
        config.validate()?;
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
                listening: OnceLock::new(),
                requests: AtomicU64::new(0),
            }),
            thread: 0,
            metrics: None,
            access: None,
        })
    }

    /// The front answers `GET /metrics` itself with `handler` (this process's metrics).
    pub fn with_metrics(mut self, handler: MethodRouter) -> Self {
        self.metrics = Some(handler);
        self
    }

    /// The front logs every request it takes to `logger`, with the upstream it went
    /// to, and gives each an `X-Request-Id` (see [`listen::access`]).
    pub fn with_access_log(mut self, logger: AccessLogger) -> Self {
        self.access = Some(AccessLayer::new(logger, "front").with_upstreams());
        self
    }

    /// The front's service on front thread `thread`'s connections: `/metrics` and
    /// `GET /front/status` answered here, the proxy for every other path and method,
    /// inside the edge layers (refusals, request timeout, CORS) and the access log's.
    pub fn service(&self, edge: &EdgeLimits) -> impl edge::HttpService {
        let mut own = Router::new()
            .route("/front/status", get(front_status))
            .with_state(self.clone());
        if let Some(handler) = &self.metrics {
            own = own.route("/metrics", handler.clone());
        }
        let dispatch = Dispatch {
            inner: Arc::clone(&self.inner),
            thread: self.thread,
            own: edge::time_limit(edge::fallbacks(own), edge.request_timeout),
            metrics: self.metrics.is_some(),
            request_limit: edge.request_timeout,
        };
        tower::ServiceBuilder::new()
            .option_layer(self.access.clone())
            .service(edge::guard_proxy(dispatch, edge))
    }

    /// Pools, routes, each upstream's address, weight, health and `max_conns` use, the
    /// front's threads, its listeners (address, scheme, protocols) and the TLS
    /// certificate's subject and expiry (`null` without TLS), as JSON (for `/info` and
    /// `GET /front/status`). `up`
    /// is whether requests may go there now; a pool's `panic` is whether it is trying
    /// members held out by passive checks because none is up.
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
                        let state = member_state(m);
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
                json!({ "name": pool.name(), "panic": pool.in_panic(), "upstreams": upstreams })
            })
            .collect();
        let routes: Vec<_> = inner
            .routes
            .entries()
            .iter()
            .map(|(prefix, pool)| json!({ "prefix": prefix, "pool": inner.pools[*pool].name() }))
            .collect();
        let (listeners, certificate) = match inner.listening.get().map(Listening::to_json) {
            Some(mut listening) => (
                listening["listeners"].take(),
                listening["certificate"].take(),
            ),
            None => (json!([]), serde_json::Value::Null),
        };
        json!({
            "pools": pools,
            "routes": routes,
            "default_pool": inner.pools[inner.routes.fallback()].name(),
            "threads": inner.threads,
            "listeners": listeners,
            "certificate": certificate,
        })
    }

    /// Each member of each pool, its state (`up`, `down`, `draining`) and its
    /// upstream's last few seconds ([`listen::window::LiveSnapshot`]), as a JSON array
    /// for the live page.
    pub fn live(&self) -> serde_json::Value {
        let members = self.inner.pools.iter().flat_map(|pool| {
            pool.members().iter().map(move |m| {
                let mut member = json!({
                    "pool": pool.name(),
                    "addr": m.label,
                    "state": member_state(m),
                });
                if let (Some(fields), Ok(serde_json::Value::Object(window))) = (
                    member.as_object_mut(),
                    serde_json::to_value(m.upstream.live().snapshot()),
                ) {
                    fields.extend(window);
                }
                member
            })
        });
        serde_json::Value::Array(members.collect())
    }

    /// Reaches the members listening on `addr` in-process, through `router` (one of
    /// this process's shards, which keeps `router` alive while it serves, on `runtime`;
    /// see `proxy::inproc`); returns how many members that is. Their active health
    /// checks then ask the shard itself, with no socket. Call before serving: a
    /// member's path is set once.
    pub fn attach_shard(
        &self,
        addr: SocketAddr,
        router: &Arc<Router>,
        runtime: &ShardRuntime,
    ) -> usize {
        let Some(upstream) = self.inner.upstreams.iter().find(|u| u.addr() == addr) else {
            return 0;
        };
        if !upstream.attach_local(pools::upstream::LocalShard::new(router, runtime)) {
            return 0;
        }
        self.inner
            .pools
            .iter()
            .flat_map(|p| p.members())
            .filter(|m| m.upstream.addr() == addr)
            .count()
    }

    /// Starts the active health checks (one task per upstream address) on the current
    /// tokio runtime; they stop when `shutdown` is cancelled.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn_health_checks(&self, shutdown: CancellationToken) {
        pools::health::spawn_checks(&self.inner.upstreams, &self.inner.health, &shutdown);
    }

    /// Starts the front's threads (`--front-threads`), each with its own
    /// single-threaded runtime, its own upstream connections and the front's router.
    /// Feed them with [`server::serve_on_threads`]; each thread returns once that
    /// accept loop has stopped and its connections have drained. A thread that fails
    /// cancels `shutdown`, so the whole front stops rather than serving short-handed.
    pub fn spawn_threads(
        &self,
        edge: &EdgeLimits,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<(ThreadSet, Vec<ServingThread>)> {
        let (set, ends) = server::front_threads(self.inner.threads);
        let threads = ends
            .into_iter()
            .enumerate()
            .map(|(index, end)| {
                let handle = Front {
                    inner: Arc::clone(&self.inner),
                    thread: index,
                    metrics: self.metrics.clone(),
                    access: self.access.clone(),
                };
                let service = handle.service(edge);
                let limits = edge.connections.clone();
                server::spawn_runtime_thread(
                    format!("loadlab-front-{index}"),
                    shutdown.clone(),
                    async move {
                        end.run(service, limits).await;
                        Ok(())
                    },
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((set, threads))
    }
}

impl Front {
    /// Serves the front on `listeners`: its threads, its health checks, the
    /// certificate's reload on SIGHUP, and on the current runtime the accept loops that
    /// deal connections to the threads. All of it joins `serving` and stops when
    /// `shutdown` is cancelled.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn serve(
        &self,
        listeners: FrontListeners,
        edge: &EdgeLimits,
        shutdown: &CancellationToken,
        serving: &mut Serving,
    ) -> anyhow::Result<()> {
        let FrontListeners { bind, tls, plain } = listeners;
        let mut addrs = vec![(bind.local_addr()?, tls.is_some())];
        if let Some(plain) = &plain {
            addrs.push((plain.local_addr()?, false));
        }
        let certificates = tls.as_ref().map(|t| Arc::clone(t.certificates()));
        // Set once: a front serves once.
        let _ = self.inner.listening.set(Listening {
            addrs,
            certificates,
        });
        let (threads, front_threads) = self.spawn_threads(edge, shutdown)?;
        serving.add_threads(front_threads);
        self.spawn_health_checks(shutdown.clone());
        if let Some(tls) = &tls {
            tls.spawn_reloads(shutdown.clone());
        }
        let connections: ConnectionLimits = edge.connections.clone();
        if let Some(plain) = plain {
            serving.spawn(server::serve_on_threads(
                plain,
                threads.clone(),
                None,
                connections.clone(),
                shutdown.clone(),
            ));
        }
        serving.spawn(server::serve_on_threads(
            bind,
            threads,
            tls,
            connections,
            shutdown.clone(),
        ));
        Ok(())
    }

    /// Pools in the configuration.
    pub fn pool_count(&self) -> usize {
        self.inner.pools.len()
    }

    /// Requests the front has taken since it started, its own paths included.
    pub fn requests_taken(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }
}

/// The front's own service, before the edge layers: its own paths go to `own` (a
/// router), every other request to the proxy, with no routing.
///
/// Not a catch-all route on a router: routing a request there (matching the path,
/// storing the captured path in the request, the matched route's handler with its
/// state cloned and its future boxed) made a proxied `/healthz` cost markedly more
/// instructions (counted with callgrind: docs/PERFORMANCE.md, "Instructions per
/// request"), and the front has only one decision to make.
#[derive(Clone)]
struct Dispatch {
    inner: Arc<Inner>,
    /// The front thread whose upstream connections this service uses.
    thread: usize,
    /// `GET /front/status` and `/metrics`, with the edge's JSON 404 and 405.
    own: Router,
    /// Whether `/metrics` is the front's own (else it is proxied).
    metrics: bool,
    /// The edge's request time limit, which the proxy applies (see
    /// [`edge::guard_proxy`]).
    request_limit: Duration,
}

impl Dispatch {
    /// Whether the front answers `path` itself.
    fn is_own(&self, path: &str) -> bool {
        path == "/front/status" || (self.metrics && path == "/metrics")
    }
}

impl tower::Service<Request> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        if self.is_own(req.uri().path()) {
            return Box::pin(Router::clone(&self.own).oneshot(req));
        }
        let (inner, thread, limit) = (Arc::clone(&self.inner), self.thread, self.request_limit);
        Box::pin(async move {
            let pool = &inner.pools[inner.routes.pool_for(req.uri().path())];
            Ok(inner.proxy.forward(pool, thread, req, limit).await)
        })
    }
}

/// A member's state on the status and live pages: `down` (out of rotation), `draining`
/// (weight 0: no new requests) or `up`.
fn member_state(member: &Member) -> &'static str {
    match (member.is_available(), member.weight) {
        (false, _) => "down",
        (true, 0) => "draining",
        (true, _) => "up",
    }
}

/// `GET /front/status`: [`Front::status`].
async fn front_status(State(front): State<Front>) -> axum::Json<serde_json::Value> {
    axum::Json(front.status())
}
