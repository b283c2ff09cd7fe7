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
//!   layer and `X-Request-Id`), [`listen::error`] (the JSON error shape),
//!   [`listen::protocol`] (HTTP/1.1, h2 by ALPN, h2c by preface, and the HTTP/2
//!   limits), [`listen::tls`] (the certificate, the handshake, reload on SIGHUP),
//!   [`listen::limits`] ([`EdgeLimits`], [`ConnectionLimits`]), `accept` (the
//!   connection cap, closing idle connections at it, the pause and throttled log after
//!   failed accepts) and [`listen::fds`] (the fd limit, raised at start, and the
//!   default cap derived from it).
//! - `proxy`: forwarding one request in named phases: the retry policy, one try per
//!   member, the header policy, the front's own 502/504 answers (`proxy::answers`);
//!   over one of two transports, `proxy::inproc` (a member that is one of this
//!   process's shards: its router called directly, no socket) or `proxy::tcp` (every
//!   other member, over `conns`: keep-alive connections to one upstream, each opened by
//!   `connect`: TCP, then TLS to an `https://` member). With it:
//!   `headers` (hop-by-hop out, `X-Forwarded-*` in), `body` (request and response
//!   bodies streamed through: a request body kept for a retry, a response body that
//!   gives its connection back) and `failure` (whose fault a failed forward is: a
//!   client's bad body is not the upstream's).
//! - `pools`: `balance` (picking a pool by longest route prefix and a member by round
//!   robin or smooth weighted round robin; panic mode when every member is held out),
//!   `upstream` (one upstream address and its health: active verdict, passive holds),
//!   `tls` (TLS to an `https://` member: its server name and trusted roots) and
//!   `health` (the active check tasks).
//! - [`config`]: [`FrontConfig`], the TOML file of pools, routes and health checks, and
//!   the front's own limits ([`UpstreamLimits`]); [`metrics`]: what this crate records.
//! - Here: [`Front`], which builds the pools from the config, serves on the kit and
//!   hands each request to the proxy; `table` (the pools, routes and upstreams built
//!   from one config, swapped whole by `reload` on SIGHUP and `--resolve-interval`),
//!   `status` (`GET /front/status`), `admin` (the token-guarded drain and ready
//!   actions) and [`tokens`] (bearer tokens from a file, compared in constant time).
//!
//! Arrows: `listen` imports nothing from `proxy` or `pools`; `proxy` uses `pools` (the
//! member it tries) and `listen` (the JSON error shape, the edge's timeout answer).
//! Modules are named by their folder, inside the crate and out
//! (`crate::pools::upstream`, `loadlab_front::listen::server`): no aliases at the root
//! but the front's own types and [`json_error`].
//!
//! The front answers `/metrics` (when given a handler: [`Front::with_metrics`]),
//! `GET /front/status` and the admin actions under `/front/` itself; every other
//! request is proxied, `/healthz` included (load tests measure the hop).
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
pub mod live;
pub mod metrics;

mod admin;
mod pools;
mod proxy;
mod reload;
mod status;
mod table;
pub mod tokens;

use self::listen::access::AccessLayer;
use self::listen::{edge, server};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::MethodRouter;
use loadlab_logs::access::AccessLogger;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use self::admin::AdminState;
pub use self::config::{
    FrontConfig, HealthConfig, PoolConfig, RouteConfig, UpstreamConfig, UpstreamLimits,
};
pub use self::listen::error::json_error;
pub use self::listen::limits::{ConnectionLimits, EdgeLimits};
use self::listen::server::{Serving, ServingThread, ThreadSet};
use self::listen::tls::TlsAcceptor;
use self::pools::health::HealthChecks;
pub use self::pools::upstream::ShardRuntime;
use self::proxy::Proxy;
use self::reload::{Live, Reloads};
use self::status::Listening;
use self::table::{Origin, Table};
use self::tokens::TokenFile;

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
    /// The tokens of the admin actions (`--admin-token-file`); `None`: admin is off,
    /// every admin action answers 403.
    admin: Option<Arc<TokenFile>>,
}

#[derive(Debug)]
struct Inner {
    /// The configuration as it runs, and its reloads.
    live: Arc<Live>,
    proxy: Proxy,
    /// Where the front listens, set once it serves ([`Front::serve`]); shared with
    /// the status route.
    listening: Arc<OnceLock<Listening>>,
    /// Requests the front has taken (its own paths and proxied ones), for the stop line.
    requests: AtomicU64,
    /// When the front was made: the live page's uptime.
    started: std::time::Instant,
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

impl Front {
    /// Builds the front: validates `config`, creates each upstream's state and
    /// metrics, and the pooled upstream client. Needs no runtime; nothing connects
    /// until the first request or health check. With no file behind it, the front
    /// cannot be reloaded ([`Front::load`] gives one that can).
    ///
    /// Install the metrics recorder first: handles made before it exists would be
    /// no-ops forever.
    pub fn new(config: FrontConfig, limits: UpstreamLimits) -> anyhow::Result<Self> {
        Self::build(config, limits, Reloads::new(None, None), None)
    }

    /// [`Front::new`] over the config file `path`, which [`Front::reload`] reads again.
    pub fn load(path: &Path, limits: UpstreamLimits) -> anyhow::Result<Self> {
        let (config, sha256, text) = reload::read(path)?;
        Self::build(
            config,
            limits,
            Reloads::new(Some(path), Some(text)),
            Some(sha256),
        )
    }

    fn build(
        config: FrontConfig,
        limits: UpstreamLimits,
        reloads: Reloads,
        sha256: Option<String>,
    ) -> anyhow::Result<Self> {
        let origin = Origin {
            generation: 1,
            sha256,
            loaded_at: SystemTime::now(),
        };
        let table = Table::build(config, &limits, &[], &[], origin)?;
        Ok(Self {
            inner: Arc::new(Inner {
                live: Arc::new(Live {
                    table: ArcSwap::from_pointee(table),
                    limits,
                    threads: limits.front_threads.max(1),
                    reloads,
                    shards: Mutex::new(Vec::new()),
                    checks: Mutex::new(None),
                }),
                proxy: Proxy::new(limits),
                listening: Arc::new(OnceLock::new()),
                requests: AtomicU64::new(0),
                started: std::time::Instant::now(),
            }),
            thread: 0,
            metrics: None,
            access: None,
            admin: None,
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

    /// Turns the admin actions on (`POST /front/upstreams/{addr}/drain` and
    /// `/ready`), for requests bearing one of `tokens`.
    pub fn with_admin(mut self, tokens: Arc<TokenFile>) -> Self {
        self.admin = Some(tokens);
        self
    }

    /// The front's service on front thread `thread`'s connections: `/metrics`,
    /// `GET /front/status` and the admin actions answered here, the proxy for every
    /// other path and method, inside the edge layers (refusals, request timeout, CORS) and the
    /// access log's.
    pub fn service(&self, edge: &EdgeLimits) -> impl edge::HttpService {
        let mut own = admin::routes(AdminState {
            live: Arc::clone(&self.inner.live),
            listening: Arc::clone(&self.inner.listening),
            tokens: self.admin.clone(),
            started: self.inner.started,
        });
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

    /// Where the current config says to listen (`listen`), if it does.
    pub fn listen(&self) -> Option<SocketAddr> {
        self.inner.live.table.load().config.listen
    }

    /// The config in use now (the last one a reload swapped in).
    pub fn config(&self) -> FrontConfig {
        self.inner.live.table.load().config.clone()
    }

    /// Each member of each pool, its state (`up`, `down`, `draining`) and its
    /// upstream's last few seconds ([`listen::window::LiveSnapshot`]), as a JSON array
    /// for the live page.
    pub fn live(&self) -> serde_json::Value {
        status::live(&self.inner.live)
    }

    /// Reaches the members listening on `addr` in-process, through `router` (one of
    /// this process's shards, which keeps `router` alive while it serves, on `runtime`;
    /// see `proxy::inproc`); returns how many members that is. Their active health
    /// checks then ask the shard itself, with no socket. Call before serving; members
    /// a reload adds on `addr` are attached too.
    pub fn attach_shard(
        &self,
        addr: SocketAddr,
        router: &Arc<Router>,
        runtime: &ShardRuntime,
    ) -> usize {
        let shard = (addr, Arc::downgrade(router), runtime.clone());
        let mut shards = self
            .inner
            .live
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let attached = self.inner.live.table.load().attach(&shard);
        shards.push(shard);
        attached
    }

    /// Starts the active health checks (one task per upstream address) on the current
    /// tokio runtime; they stop when `shutdown` is cancelled. A reload starts and
    /// stops checks on this runtime as its upstreams come and go.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn_health_checks(&self, shutdown: CancellationToken) {
        let table = self.inner.live.table.load();
        let checks = HealthChecks::start(&table.upstreams, &table.config.health, &shutdown);
        *self
            .inner
            .live
            .checks
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(checks);
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
        let (set, ends) = server::front_threads(self.inner.live.threads);
        let threads = ends
            .into_iter()
            .enumerate()
            .map(|(index, end)| {
                let handle = Front {
                    thread: index,
                    ..self.clone()
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

    /// Serves the front on `listeners`: its threads, its health checks, the refresh of
    /// the certificate's expiry gauge, and on the current runtime the accept loops that
    /// deal connections to the threads. All of it joins `serving` and stops when
    /// `shutdown` is cancelled. What SIGHUP reloads (this front's config file, the
    /// certificate) the caller wires: see [`Front::reload`] and
    /// [`listen::tls::Certificates::reload`].
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
            tls.spawn_expiry_refresh(shutdown.clone());
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

    /// Reads the config file again and swaps it in; returns the new generation. On
    /// any error (unreadable, invalid, a host that does not resolve) the config in
    /// use stays, and the error says why; either way the result is logged and
    /// counted (`front_config_reloads_total`). Blocks (file, DNS): call it on a blocking
    /// thread (the service's SIGHUP handler does).
    pub fn reload(&self) -> anyhow::Result<u64> {
        self.inner.live.reload()
    }

    /// Resolves the host names of the config last applied again; swaps it in if an
    /// address changed. Returns the new generation, `None` when nothing changed.
    /// Blocks (DNS).
    pub fn reresolve(&self) -> anyhow::Result<Option<u64>> {
        self.inner.live.reresolve()
    }

    /// Resolves the config's host names again every `resolve_interval`, until
    /// `shutdown`, swapping in the addresses that changed; on a task of the current
    /// runtime, each round on a blocking thread. Does nothing for a front without a
    /// config file. SIGHUP's reload ([`Front::reload`]) is wired by the caller, with
    /// the process's other reloadable parts.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn_resolver(&self, resolve_interval: Duration, shutdown: CancellationToken) {
        self.inner.live.spawn_resolver(resolve_interval, shutdown);
    }

    /// Pools, routes, each upstream's address, weight, health, drain and requests in
    /// flight, the front's threads, its listeners (address, scheme, protocols), the TLS
    /// certificate's subject and expiry (`null` without TLS), and where the
    /// configuration came from (`config`: `generation`, `sha256` of the file,
    /// `loaded_at`, reloads), as JSON (for `/info` and `GET /front/status`). `up` is
    /// whether requests may go there now; a pool's `panic` is whether it is trying
    /// members held out by passive checks because none is up.
    pub fn status(&self) -> serde_json::Value {
        status::status(
            &self.inner.live,
            self.inner.listening.get(),
            self.admin.is_some(),
        )
    }

    /// The configuration's generation: 1 at start, then +1 per applied reload.
    pub fn generation(&self) -> u64 {
        self.inner.live.table.load().origin.generation
    }

    /// Pools in the current configuration.
    pub fn pool_count(&self) -> usize {
        self.inner.live.table.load().pools.len()
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
    /// Whether the front answers `path` itself: `/front/...` and its own `/metrics`.
    fn is_own(&self, path: &str) -> bool {
        path.starts_with("/front/") || (self.metrics && path == "/metrics")
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
            // The request keeps this table until it is answered, whatever a reload
            // swaps in meanwhile.
            let table = inner.live.table.load_full();
            let pool = &table.pools[table.routes.pool_for(req.uri().path())];
            Ok(inner.proxy.forward(pool, thread, req, limit).await)
        })
    }
}
