//! `loadlab front`: the front alone, over the pools of a config file (loadlab
//! instances on other hosts), until SIGINT or SIGTERM; then it drains and returns.
//! SIGHUP reloads the config file, the TLS certificate and the admin tokens, and
//! reopens the access log ([`crate::reload`]).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use loadlab_front::listen::server::{self, Serving};
use loadlab_front::listen::tls::TlsAcceptor;
use loadlab_front::{DEFAULT_LISTEN, Front, FrontListeners};

use crate::access_log::AccessLogConfig;
use crate::cli::FrontArgs;
use crate::config::{
    default_max_connections, edge_limits, front_tls, operations, reserved_fds, upstream_limits,
};

/// Runs `loadlab front` on the current runtime (which accepts, checks health and
/// serves `--metrics-bind`; the front's threads bring their own runtimes). Returns
/// `Ok` after a clean drain (exit status 0).
pub async fn run(args: &FrontArgs) -> anyhow::Result<()> {
    let limits = upstream_limits(&args.serving.upstream);
    let operations = operations(&args.serving)?;
    crate::metrics::handle();
    let mut front = Front::load(&args.config, limits)?
        .with_metrics(axum::routing::get(crate::metrics::metrics_render));
    if let Some(tokens) = &operations.admin_tokens {
        front = front.with_admin(Arc::clone(tokens));
    }
    let config = front.config();
    let (tls, plain_bind) = front_tls(&args.serving.tls, Some(&config))?;
    let edge = edge_limits(&args.serving.edge, || {
        let upstreams = config.pools.iter().map(|p| p.upstreams.len()).sum();
        // Each client connection may hold a socket to an upstream too, and each
        // listener (TLS and --plain-bind) has its own cap.
        let listeners = if plain_bind.is_some() { 2 } else { 1 };
        default_max_connections(
            reserved_fds(limits.front_threads + 1, 0, upstreams),
            2 * listeners,
        )
    })?;
    let bind = match args.bind.or(config.listen) {
        Some(addr) => addr,
        None => DEFAULT_LISTEN
            .parse()
            .context("the default listen address")?,
    };
    let access_log = AccessLogConfig::from_args(&args.serving.logs)?
        .map(|c| c.open())
        .transpose()?;
    if let Some(log) = &access_log {
        front = front.with_access_log(log.logger());
    }
    let listener = listen(bind, "").await?;
    let plain = match plain_bind {
        Some(addr) => Some(listen(addr, "--plain-bind: ").await?),
        None => None,
    };
    let tls = tls.as_ref().map(TlsAcceptor::new).transpose()?;
    let metrics_listener = match args.serving.metrics_bind {
        Some(addr) => Some(listen(addr, "--metrics-bind: ").await?),
        None => None,
    };
    let shutdown = server::cancel_on_signal();
    // The SIGHUP handler before the front answers: a signal must never find the
    // default action (exit).
    let reloadable = crate::reload::Reloadable {
        tokens: operations.admin_tokens.iter().cloned().collect(),
        certificates: tls.as_ref().map(|tls| Arc::clone(tls.certificates())),
        front: Some(front.clone()),
        access_log: access_log.as_ref().map(|log| log.logger()),
    };
    crate::reload::spawn_on_hangup(reloadable, shutdown.clone())?;
    let mut serving = Serving::new();
    let started = std::time::Instant::now();
    tracing::info!(
        version = crate::telemetry::VERSION,
        commit = crate::telemetry::COMMIT,
        addr = %listener.local_addr()?,
        plain = plain.as_ref().map(|l| l.local_addr()).transpose()?.map(|a| a.to_string()),
        tls = tls.is_some(),
        pools = front.pool_count(),
        front_threads = limits.front_threads,
        metrics = args.serving.metrics_bind.map(|a| a.to_string()),
        "loadlab front is serving"
    );
    if let Some(every) = operations.resolve_interval {
        front.spawn_resolver(every, shutdown.clone());
    }
    let listeners = FrontListeners {
        bind: listener,
        tls,
        plain,
    };
    front.serve(listeners, &edge, &shutdown, &mut serving)?;
    if let Some(listener) = metrics_listener {
        let connections = edge.connections.clone();
        serving.spawn(crate::metrics::serve_metrics(
            listener,
            connections,
            shutdown.clone(),
        ));
    }
    let result = server::run_until_stopped(serving, shutdown).await;
    crate::access_log::stop(access_log).await;
    let uptime = started.elapsed();
    tracing::info!(
        version = crate::telemetry::VERSION,
        uptime = %humantime::format_duration(std::time::Duration::from_secs(uptime.as_secs())),
        uptime_seconds = uptime.as_secs_f64(),
        requests = front.requests_taken(),
        "loadlab front stopped"
    );
    result
}

/// A listener on `addr`; `flag` (e.g. `"--plain-bind: "`) starts the error message.
async fn listen(addr: SocketAddr, flag: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{flag}could not listen on {addr}"))
}
