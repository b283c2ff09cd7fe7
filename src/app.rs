//! The app: build everything (bind listeners, open the database, start the pools),
//! then run until a shutdown signal, then stop in order.
//!
//! Two phases so tests can learn the real ports before serving (bind to port 0, read
//! the addresses, spawn `run_until_stopped`): no sleeps, no polling for readiness.
//!
//! Threads at run time:
//! - one per shard, each with its own single-threaded tokio runtime and listener
//!   ([`crate::shard`]). With the front's in-process path (`--front-path inproc`) the
//!   front calls a shard's router on its own threads, and the shard's thread serves
//!   only direct clients (Prometheus, health checks); it still owns the router, so a
//!   shard that stops leaves rotation;
//! - `--front-threads` front threads, each with its own single-threaded runtime
//!   (see [`loadlab_front::listen::server::serve_on_threads`]);
//! - the caller's runtime, which accepts the front's connections and runs the health
//!   checks and the extra metrics listener;
//! - the rayon compute threads and the Mega writer thread, shared by all shards (with
//!   PostgreSQL, also the client library's own runtime threads: the `postgres` crate
//!   drives each connection on a small tokio runtime of its own).
//!
//! Shutdown order: stop accepting everywhere, let in-flight requests finish, then stop
//! the writer (which commits what is queued and checkpoints), then return.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use loadlab_front::listen::server::{self, Serving};
use loadlab_front::listen::tls::TlsAcceptor;
use loadlab_front::{Front, FrontConfig, FrontListeners};
use loadlab_logs::access::{AccessLog, AccessLogger};
use loadlab_workers::compute::Compute;
use loadlab_workers::mega::{MegaReader, MegaWriter};
use tokio_util::sync::CancellationToken;

use crate::access_log::AccessLogConfig;
use crate::cli::FrontPath;
use crate::config::Config;
use crate::shard::Shard;
use crate::state::{AppState, Listeners};

/// A built, not yet running, service.
#[derive(Debug)]
pub struct App {
    state: AppState,
    /// The writer thread's owner, stopped last on shutdown; `None` once
    /// [`App::stop_writer`] stopped it early.
    writer: Option<MegaWriter>,
    shards: Vec<Shard>,
    front: Option<FrontParts>,
    metrics: Option<StdListener>,
    /// The access log's writer, stopped after the listeners; `None`: no access log.
    access_log: Option<AccessLog>,
}

/// The front and its listeners, built and not yet serving.
#[derive(Debug)]
struct FrontParts {
    front: Front,
    /// `--bind`: TLS with `tls`, else cleartext.
    listener: StdListener,
    tls: Option<TlsAcceptor>,
    /// `--plain-bind`.
    plain: Option<StdListener>,
}

impl FrontParts {
    /// Binds the front's listeners and builds it over `shard_addrs` (or the front
    /// config's pools), logging to `logger` when there is an access log.
    fn build(
        config: &Config,
        shard_addrs: &[SocketAddr],
        logger: Option<&AccessLogger>,
    ) -> anyhow::Result<Self> {
        // From a file, the front can be reloaded (SIGHUP: `crate::reload`).
        let front = match &config.front_config {
            Some(path) => Front::load(path, config.upstream)?,
            None => Front::new(FrontConfig::round_robin(shard_addrs), config.upstream)?,
        };
        let listener = bind(config.bind).context("front")?;
        let plain = config
            .plain_bind
            .map(|addr| bind(addr).context("--plain-bind"))
            .transpose()?;
        let tls = config.tls.as_ref().map(TlsAcceptor::new).transpose()?;
        let mut front = front.with_metrics(axum::routing::get(crate::metrics::metrics_render));
        if let Some(logger) = logger {
            front = front.with_access_log(logger.clone());
        }
        if let Some(tokens) = &config.operations.admin_tokens {
            front = front.with_admin(Arc::clone(tokens));
        }
        Ok(Self {
            front,
            listener,
            tls,
            plain,
        })
    }
}

impl App {
    /// Binds every listener, opens the database and starts the writer and the pool.
    pub fn build(config: Config) -> anyhow::Result<Self> {
        crate::metrics::handle();
        let access_log = config
            .access_log
            .as_ref()
            .map(AccessLogConfig::open)
            .transpose()?;
        let logger = access_log.as_ref().map(AccessLog::logger);
        let shard_listeners = (0..config.shards)
            .map(|i| {
                let addr = crate::shard::addr(config.shard_host, config.shard_base_port, i);
                bind(addr).with_context(|| format!("shard {i}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let shard_addrs = shard_listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<Vec<_>, _>>()?;
        let front = config
            .front
            .then(|| FrontParts::build(&config, &shard_addrs, logger.as_ref()))
            .transpose()?;
        let metrics = config
            .metrics_bind
            .map(|addr| bind(addr).context("--metrics-bind"))
            .transpose()?;
        let writer = MegaWriter::start(config.writer.clone())
            .with_context(|| format!("opening the database {}", config.writer.db))?;
        let reader = MegaReader::open(&config.writer.db, config.read_connections)
            .context("opening read connections")?;
        let compute = Compute::new(config.threads, config.randoms.max_jobs)
            .context("starting the compute threads")?;
        let listeners = Listeners {
            front: front
                .as_ref()
                .map(|f| f.listener.local_addr())
                .transpose()?,
            front_plain: front
                .as_ref()
                .and_then(|f| f.plain.as_ref())
                .map(StdListener::local_addr)
                .transpose()?,
            shards: shard_addrs,
        };
        let front_handle = front.as_ref().map(|f| f.front.clone());
        let front_path = config.front_path;
        let state = AppState::new(
            config,
            compute,
            writer.handle(),
            reader,
            listeners,
            front_handle,
        );
        let shards: Vec<Shard> = shard_listeners
            .into_iter()
            .enumerate()
            .map(|(index, listener)| {
                let router = crate::routes::app(state.clone(), index);
                let shard = Shard::new(index, listener, router);
                match &logger {
                    Some(logger) => shard.with_access_log(logger.clone()),
                    None => shard,
                }
            })
            .collect();
        if let (Some(FrontParts { front, .. }), FrontPath::Inproc) = (&front, front_path) {
            for (shard, addr) in shards.iter().zip(&state.listeners().shards) {
                front.attach_shard(*addr, shard.router(), shard.runtime());
            }
        }
        Ok(Self {
            state,
            writer: Some(writer),
            shards,
            front,
            metrics,
            access_log,
        })
    }

    /// Where the front listens, if it runs.
    pub fn front_addr(&self) -> Option<SocketAddr> {
        self.state.listeners().front
    }

    /// Where the front's cleartext listener beside its TLS one listens, if it has one.
    pub fn front_plain_addr(&self) -> Option<SocketAddr> {
        self.state.listeners().front_plain
    }

    /// Where each shard listens.
    pub fn shard_addrs(&self) -> &[SocketAddr] {
        &self.state.listeners().shards
    }

    /// The address clients should use: the front, or the first shard without one.
    pub fn public_addr(&self) -> SocketAddr {
        // `Config` guarantees at least one shard.
        self.front_addr().unwrap_or(self.shard_addrs()[0])
    }

    /// The shared state (for tests that inspect the pool or the writer).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops the Mega writer now: it commits what is queued, checkpoints, and its thread
    /// exits, while the listeners still serve once running. `/readyz` then answers 503
    /// ("the Mega writer thread has stopped") and inserts answer 503, exactly as after a
    /// writer crash, which tests cannot cause on demand: this is that path's test hook.
    ///
    /// Blocks the calling thread until the writer thread has exited (milliseconds).
    pub fn stop_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.shutdown();
        }
    }

    /// A switch that stops shard `index` alone (its listener closes, its runtime ends,
    /// the front takes it out of rotation), as a crashed shard would be. A test hook:
    /// nothing in loadlab stops one shard on purpose.
    pub fn shard_stopper(&self, index: usize) -> Option<CancellationToken> {
        self.shards.get(index).map(Shard::stopper)
    }

    /// Serves until `shutdown` is cancelled, then drains and stops everything.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            state,
            writer,
            shards,
            front,
            metrics,
            access_log,
        } = self;
        // The SIGHUP handler before anything answers: a signal must never find the
        // default action (exit).
        let reloadable = reloadable(state.config(), front.as_ref(), access_log.as_ref());
        crate::reload::spawn_on_hangup(reloadable, shutdown.clone())?;
        let limits = state.config().edge.connections.clone();
        let operations = &state.config().operations;
        let mut serving = Serving::new();
        for shard in shards {
            serving.add_threads([shard.spawn(&state.config().edge, &shutdown)?]);
        }
        // This runtime accepts for the front and deals the connections out to the
        // front's own threads; it also runs the health checks and the metrics listener.
        if let Some(parts) = front {
            let listeners = FrontListeners {
                bind: tokio::net::TcpListener::from_std(parts.listener)?,
                tls: parts.tls,
                plain: parts
                    .plain
                    .map(tokio::net::TcpListener::from_std)
                    .transpose()?,
            };
            if let Some(every) = operations.resolve_interval {
                parts.front.spawn_resolver(every, shutdown.clone());
            }
            let edge = &state.config().edge;
            parts
                .front
                .serve(listeners, edge, &shutdown, &mut serving)?;
        }
        if let Some(listener) = metrics {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            serving.spawn(crate::metrics::serve_metrics(
                listener,
                limits,
                shutdown.clone(),
            ));
        }
        log_start(&state);
        let result = server::run_until_stopped(serving, shutdown).await;
        crate::access_log::stop(access_log).await;
        log_stop(&state);
        // The writer goes last: every request that could queue a row has been
        // answered. Its final commit and checkpoint block, so off the runtime.
        drop(state);
        if let Some(writer) = writer {
            tokio::task::spawn_blocking(move || writer.shutdown())
                .await
                .context("stopping the Mega writer")?;
        }
        result
    }
}

/// The start line: what runs, where, on what (addresses plain, the database's password
/// masked by its `Display`).
fn log_start(state: &AppState) {
    let config = state.config();
    let listeners = state.listeners();
    let shard_addrs: Vec<String> = listeners.shards.iter().map(ToString::to_string).collect();
    tracing::info!(
        version = crate::telemetry::VERSION,
        commit = crate::telemetry::COMMIT,
        front = %listeners.front.map_or_else(|| "off".to_owned(), |a| a.to_string()),
        front_plain = listeners.front_plain.map(|a| a.to_string()),
        tls = config.tls.is_some(),
        front_threads = config.front.then_some(config.upstream.front_threads),
        shards = listeners.shards.len(),
        shard_addrs = %shard_addrs.join(","),
        threads = state.compute().threads(),
        database = %config.writer.db,
        metrics = config.metrics_bind.map(|a| a.to_string()),
        "loadlab is serving"
    );
}

/// The stop line: how long the process served, and how many requests.
fn log_stop(state: &AppState) {
    let uptime = state.started().elapsed();
    tracing::info!(
        version = crate::telemetry::VERSION,
        uptime = %humantime::format_duration(Duration::from_secs(uptime.as_secs())),
        uptime_seconds = uptime.as_secs_f64(),
        requests = state.requests_answered(),
        front_requests = state.front().map(Front::requests_taken),
        "loadlab stopped"
    );
}

/// What SIGHUP reloads in `loadlab serve` (see [`crate::reload`]): the token files,
/// the front's certificate, its config when it comes from a file, the access log.
fn reloadable(
    config: &Config,
    front: Option<&FrontParts>,
    access_log: Option<&AccessLog>,
) -> crate::reload::Reloadable {
    let tokens = [&config.write_tokens, &config.operations.admin_tokens];
    crate::reload::Reloadable {
        tokens: tokens.into_iter().flatten().cloned().collect(),
        certificates: front
            .and_then(|f| f.tls.as_ref())
            .map(|tls| Arc::clone(tls.certificates())),
        front: front
            .filter(|_| config.front_config.is_some())
            .map(|f| f.front.clone()),
        access_log: access_log.map(AccessLog::logger),
    }
}

/// Binds a non-blocking std listener (tokio adopts it inside a shard's runtime).
fn bind(addr: SocketAddr) -> anyhow::Result<StdListener> {
    let listener =
        StdListener::bind(addr).with_context(|| format!("could not listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
