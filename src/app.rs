//! The app: build everything (bind listeners, open the database, start the pools),
//! then run until a shutdown signal, then stop in order.
//!
//! Two phases so tests can learn the real ports before serving (bind to port 0, read
//! the addresses, spawn `run_until_stopped`): no sleeps, no polling for readiness.
//!
//! Threads at run time:
//! - one per shard, each with its own single-threaded tokio runtime and listener (the
//!   ancestors' "one server per port", without a process per port);
//! - `--front-threads` front workers, each with its own single-threaded runtime
//!   (see [`crate::server::serve_on_workers`]);
//! - the caller's runtime, which accepts the front's connections and runs the health
//!   checks and the extra metrics listener;
//! - the rayon compute pool and the Mega writer thread, shared by all shards (with
//!   PostgreSQL, also the client library's own runtime threads: the `postgres` crate
//!   drives each connection on a small tokio runtime of its own).
//!
//! Shutdown order: stop accepting everywhere, let in-flight requests finish, then stop
//! the writer (which commits what is queued and checkpoints), then return.

use std::net::{SocketAddr, TcpListener as StdListener};

use anyhow::Context;
use loadlab_workers::mega::{MegaReader, MegaWriter};
use loadlab_workers::pool::ComputePool;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::front::{Front, FrontConfig};
use crate::metrics::ShardLabel;
use crate::server;
use crate::state::{AppState, Listeners};

/// A built, not yet running, service.
#[derive(Debug)]
pub struct App {
    state: AppState,
    /// The writer thread's owner, stopped last on shutdown; `None` once
    /// [`App::stop_writer`] stopped it early.
    writer: Option<MegaWriter>,
    shards: Vec<StdListener>,
    front: Option<(StdListener, Front)>,
    metrics: Option<StdListener>,
}

impl App {
    /// Binds every listener, opens the database and starts the writer and the pool.
    pub fn build(config: Config) -> anyhow::Result<Self> {
        crate::metrics::handle();
        let shards = (0..config.shards)
            .map(|i| bind(config.shard_addr(i)).with_context(|| format!("shard {i}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let shard_addrs = shards
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<Vec<_>, _>>()?;
        let front = if config.front {
            let front_config = match &config.front_config {
                Some(path) => FrontConfig::load(path)?,
                None => FrontConfig::round_robin(&shard_addrs),
            };
            let listener = bind(config.bind).context("front")?;
            Some((listener, Front::new(front_config, config.upstream)?))
        } else {
            None
        };
        let metrics = config
            .metrics_bind
            .map(|addr| bind(addr).context("--metrics-bind"))
            .transpose()?;
        let writer = MegaWriter::start(config.writer.clone())
            .with_context(|| format!("opening the database {}", config.writer.db))?;
        let reader = MegaReader::open(&config.writer.db, config.read_connections)
            .context("opening read connections")?;
        let pool = ComputePool::new(config.threads, config.randoms.max_jobs)
            .context("starting the compute pool")?;
        let listeners = Listeners {
            front: front.as_ref().map(|(l, _)| l.local_addr()).transpose()?,
            shards: shard_addrs,
        };
        let front_handle = front.as_ref().map(|(_, f)| f.clone());
        let state = AppState::new(
            config,
            pool,
            writer.handle(),
            reader,
            listeners,
            front_handle,
        );
        Ok(Self {
            state,
            writer: Some(writer),
            shards,
            front,
            metrics,
        })
    }

    /// Where the front listens, if it runs.
    pub fn front_addr(&self) -> Option<SocketAddr> {
        self.state.listeners().front
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

    /// Serves until `shutdown` is cancelled, then drains and stops everything.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            state,
            writer,
            shards,
            front,
            metrics,
        } = self;
        let limits = state.config().edge.connections.clone();
        let mut threads = Vec::with_capacity(shards.len() + state.config().upstream.front_threads);
        for (index, listener) in shards.into_iter().enumerate() {
            let router = crate::routes::app(state.clone(), ShardLabel::shard(index));
            let (limits, stop) = (limits.clone(), shutdown.clone());
            threads.push(server::spawn_runtime_thread(
                format!("loadlab-shard-{index}"),
                shutdown.clone(),
                async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    server::serve(listener, router, limits, stop).await;
                    Ok(())
                },
            )?);
        }
        // This runtime accepts for the front and deals the connections out to the
        // front's own threads; it also runs the health checks and the metrics listener.
        let mut tasks = tokio::task::JoinSet::new();
        if let Some((listener, front)) = front {
            let (workers, front_threads) = front.spawn_workers(&state.config().edge, &shutdown)?;
            threads.extend(front_threads);
            front.spawn_health_checks(shutdown.clone());
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tasks.spawn(server::serve_on_workers(
                listener,
                workers,
                limits.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(listener) = metrics {
            let route = axum::routing::get(crate::metrics::metrics_render);
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tasks.spawn(server::serve(
                listener,
                axum::Router::new().route("/metrics", route),
                limits.clone(),
                shutdown.clone(),
            ));
        }
        tracing::info!(
            front = ?state.listeners().front,
            shards = ?state.listeners().shards,
            "loadlab is serving"
        );
        shutdown.cancelled().await;
        while tasks.join_next().await.is_some() {}
        // Listener threads return once their connections drained; joining blocks, so
        // do it (and the writer's final commit) off the runtime's workers.
        tokio::task::spawn_blocking(move || {
            let result = server::join_all(threads);
            drop(state);
            if let Some(writer) = writer {
                writer.shutdown();
            }
            result
        })
        .await
        .context("joining the listener threads")?
    }
}

/// Binds a non-blocking std listener (tokio adopts it inside a shard's runtime).
fn bind(addr: SocketAddr) -> anyhow::Result<StdListener> {
    let listener =
        StdListener::bind(addr).with_context(|| format!("could not listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Resolves when SIGINT (Ctrl-C) or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
