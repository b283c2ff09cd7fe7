//! [`Config`]: the validated configuration of `loadlab serve`, built once from the raw
//! command line ([`crate::cli::ServeArgs`]), as ripgrep turns `LowArgs` into `HiArgs`.
//!
//! Everything a user can get wrong is checked here, before anything is bound or opened,
//! so `loadlab check-config` can report it without side effects.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use loadlab_workers::mega::{Database, SyncMode, WriterConfig};

use crate::access_log::AccessLogConfig;
use crate::cli::{DbSync, EdgeArgs, FrontPath, ServeArgs, ServingArgs, TlsArgs, UpstreamArgs};
use crate::count::parse_count;
use loadlab_front::ConnectionLimits;
use loadlab_front::config::{DEFAULT_HANDSHAKE_TIMEOUT, TlsConfig};
use loadlab_front::tokens::TokenFile;
use loadlab_front::{EdgeLimits, FrontConfig, UpstreamLimits};

/// The validated configuration of `loadlab serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the front listens (unused with `front: false`).
    pub bind: SocketAddr,
    /// Whether to run the front before the shards.
    pub front: bool,
    /// Front config file; `None`: one round-robin pool of all shards.
    pub front_config: Option<PathBuf>,
    /// TLS on the front's `bind`; `None`: cleartext.
    pub tls: Option<TlsConfig>,
    /// A cleartext front listener beside the TLS one; `None`: none.
    pub plain_bind: Option<SocketAddr>,
    /// How the front reaches members that are this process's shards.
    pub front_path: FrontPath,
    /// Number of port-sharded listeners.
    pub shards: usize,
    /// Host the shards listen on.
    pub shard_host: IpAddr,
    /// First shard port; 0: every shard on an ephemeral port.
    pub shard_base_port: u16,
    /// Compute threads; `None`: one per core.
    pub threads: Option<usize>,
    /// Limits of `/api/randoms`.
    pub randoms: RandomsLimits,
    /// The Mega writer.
    pub writer: WriterConfig,
    /// Read connections (SQLite: kept open; PostgreSQL: the pool's size).
    pub read_connections: usize,
    /// Most tickets in one batch request.
    pub batch_request_max: usize,
    /// Largest body, except the batch insert.
    pub body_limit_bytes: usize,
    /// Largest batch insert body.
    pub batch_body_limit_bytes: usize,
    /// Limits at every listener.
    pub edge: EdgeLimits,
    /// Front-to-upstream limits.
    pub upstream: UpstreamLimits,
    /// Extra address serving only `/metrics`; `None`: none.
    pub metrics_bind: Option<SocketAddr>,
    /// The access log; `None`: none.
    pub access_log: Option<AccessLogConfig>,
    /// Tokens every POST route requires (`--write-token-file`); `None`: writes are open.
    pub write_tokens: Option<Arc<TokenFile>>,
    /// Admin tokens and config reloads.
    pub operations: Operations,
}

/// What `serve` and `front` share for running without downtime.
#[derive(Debug, Clone)]
pub struct Operations {
    /// Tokens of the front's admin actions (`--admin-token-file`); `None`: admin off.
    pub admin_tokens: Option<Arc<TokenFile>>,
    /// How often the front config's host names are resolved again; `None`: only on
    /// reloads.
    pub resolve_interval: Option<Duration>,
}

/// Limits of `/api/randoms`.
#[derive(Debug, Clone, Copy)]
pub struct RandomsLimits {
    /// Draws when `cant` is absent.
    pub default_count: u64,
    /// Largest `cant` accepted with `method=draw`.
    pub max_count: u64,
    /// Largest `cant` accepted with `method=multinomial` (at most 2^53).
    pub multinomial_max_count: u64,
    /// Jobs admitted at once.
    pub max_jobs: usize,
}

impl Config {
    /// Validates the raw `serve` arguments.
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = args.shards.unwrap_or(cores);
        if shards == 0 || shards > 256 {
            bail!("--shards must be between 1 and 256, got {shards}");
        }
        if args.shard_base_port != 0
            && usize::from(args.shard_base_port) + shards - 1 > usize::from(u16::MAX)
        {
            bail!(
                "--shard-base-port {} + {shards} shards runs past port 65535",
                args.shard_base_port
            );
        }
        if args.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        let randoms = randoms_limits(args)?;
        if args.batch_max == 0 || args.writer_queue == 0 || args.batch_request_max == 0 {
            bail!("--batch-max, --writer-queue and --batch-request-max must be at least 1");
        }
        if args.idempotency_ttl < Duration::from_secs(1) {
            bail!(
                "--idempotency-ttl must be at least 1s, got {}",
                humantime::format_duration(args.idempotency_ttl)
            );
        }
        if args.read_connections == 0 {
            bail!("--read-connections must be at least 1");
        }
        let db: Database = args.db.parse().context("--db")?;
        if args.db_max_size.is_some() && matches!(db, Database::Postgres(_)) {
            bail!("--db-max-size caps a SQLite file: it has no effect on PostgreSQL");
        }
        let front_file = match &args.front_config {
            Some(_) if args.no_front => bail!("--front-config has no effect with --no-front"),
            // Parsed and validated here so `check-config` reports a bad file; `App::build`
            // loads it again (cheap) so the addresses are resolved at start-up.
            Some(path) => Some(
                FrontConfig::load(path)
                    .with_context(|| format!("--front-config {}", path.display()))?,
            ),
            None => None,
        };
        let (tls, plain_bind) = front_tls(&args.serving.tls, front_file.as_ref())?;
        if args.no_front && tls.is_some() {
            bail!("--tls-cert serves TLS on the front: it has no effect with --no-front");
        }
        Ok(Self {
            bind: args.bind,
            front: !args.no_front,
            front_config: args.front_config.clone(),
            tls,
            plain_bind,
            front_path: args.front_path,
            shards,
            shard_host: args.shard_host,
            shard_base_port: args.shard_base_port,
            threads: args.threads,
            randoms,
            writer: WriterConfig {
                db,
                sync: match args.db_sync {
                    DbSync::Full => SyncMode::Full,
                    DbSync::Normal => SyncMode::Normal,
                },
                batch_max_rows: args.batch_max,
                batch_linger: args.batch_linger,
                queue_capacity: args.writer_queue,
                max_size_bytes: args.db_max_size.map(|bytes| bytes as u64),
                idempotency_ttl: args.idempotency_ttl,
            },
            read_connections: args.read_connections,
            batch_request_max: args.batch_request_max,
            body_limit_bytes: args.body_limit,
            batch_body_limit_bytes: args.batch_body_limit,
            edge: edge_limits(&args.serving.edge, || {
                serve_max_connections(args, shards, front_file.as_ref(), plain_bind)
            })?,
            upstream: upstream_limits(&args.serving.upstream),
            metrics_bind: args.serving.metrics_bind,
            access_log: AccessLogConfig::from_args(&args.serving.logs)?,
            write_tokens: token_file(args.write_token_file.as_deref(), "--write-token-file")?,
            operations: operations(&args.serving)?,
        })
    }
}

/// The default `--max-connections` of `loadlab serve` with `shards` shards, the front
/// config `front_file` (if any) and a `--plain-bind` listener (if any): what one client
/// connection costs depends on how the front reaches its upstreams.
fn serve_max_connections(
    args: &ServeArgs,
    shards: usize,
    front_file: Option<&FrontConfig>,
    plain_bind: Option<SocketAddr>,
) -> usize {
    let tcp_upstreams = match front_file {
        _ if args.no_front => 0,
        Some(front) => front.pools.iter().map(|p| p.upstreams.len()).sum(),
        None => shards,
    };
    let front_threads = upstream_limits(&args.serving.upstream).front_threads;
    let (runtimes, fds_per_connection) = match (args.no_front, args.front_path) {
        (true, _) => (shards + 1, 1),
        // Every member is one of our shards, reached in-process.
        (false, FrontPath::Inproc) if front_file.is_none() => (shards + front_threads + 1, 1),
        (false, _) => (shards + front_threads + 1, 3),
    };
    // The front's --plain-bind listener has its own cap.
    let listeners = if plain_bind.is_some() { 2 } else { 1 };
    default_max_connections(
        reserved_fds(runtimes, args.read_connections + 1, tcp_upstreams),
        fds_per_connection * listeners,
    )
}

/// The `--randoms-*` flags, validated: counts may be written `1e8`.
fn randoms_limits(args: &ServeArgs) -> anyhow::Result<RandomsLimits> {
    let max_count = parse_count(&args.randoms_max, u64::MAX)
        .map_err(|e| anyhow::anyhow!("--randoms-max {e}"))?;
    let default_count = parse_count(&args.randoms_default, max_count)
        .map_err(|e| anyhow::anyhow!("--randoms-default {e}"))?;
    let multinomial_max_count = parse_count(
        &args.randoms_multinomial_max,
        loadlab_workers::multinomial::MAX_EXACT,
    )
    .map_err(|e| anyhow::anyhow!("--randoms-multinomial-max {e} (2^53)"))?;
    if args.randoms_queue == 0 {
        bail!("--randoms-queue must be at least 1");
    }
    Ok(RandomsLimits {
        default_count,
        max_count,
        multinomial_max_count,
        max_jobs: args.randoms_queue,
    })
}

/// Validates the operations flags (shared by `serve` and `front`): token files are
/// read now, so a missing or empty one stops the start.
pub fn operations(args: &ServingArgs) -> anyhow::Result<Operations> {
    Ok(Operations {
        admin_tokens: token_file(args.admin_token_file.as_deref(), "--admin-token-file")?,
        resolve_interval: args.resolve_interval,
    })
}

fn token_file(path: Option<&Path>, flag: &str) -> anyhow::Result<Option<Arc<TokenFile>>> {
    path.map(|path| TokenFile::load(path).map(Arc::new).context(flag.to_owned()))
        .transpose()
}

/// Descriptors a process keeps for itself, outside the client connections: standard
/// streams, logs and listeners (a fixed share), each tokio runtime's epoll and wake-up
/// descriptors, the database connections (SQLite: the file, its WAL and shared memory;
/// PostgreSQL: a socket), and one health-check socket per upstream.
pub fn reserved_fds(runtimes: usize, db_connections: usize, tcp_upstreams: usize) -> u64 {
    let reserved = 64 + 4 * runtimes + 3 * db_connections + tcp_upstreams;
    u64::try_from(reserved).unwrap_or(u64::MAX)
}

/// The default `--max-connections`: the soft fd limit, less `reserved`, divided by what
/// one client connection costs (see [`loadlab_front::listen::fds::connection_cap`]); the old
/// fixed default (10,000) where the limit cannot be read.
pub fn default_max_connections(reserved: u64, fds_per_connection: u64) -> usize {
    match loadlab_front::listen::fds::current() {
        Ok(limit) => {
            loadlab_front::listen::fds::connection_cap(limit.soft, reserved, fds_per_connection)
        }
        Err(_) => 10_000,
    }
}

/// Validates the edge flags (shared by `serve` and `front`); `default_max_connections`
/// gives `--max-connections` when it is not set.
pub fn edge_limits(
    args: &EdgeArgs,
    default_max_connections: impl FnOnce() -> usize,
) -> anyhow::Result<EdgeLimits> {
    for origin in &args.cors_origins {
        if origin != "*" && axum::http::HeaderValue::from_str(origin).is_err() {
            bail!("--cors-origin `{origin}` is not a valid origin");
        }
        if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
            bail!("--cors-origin `{origin}` must look like https://example.com (or be *)");
        }
    }
    let max_connections = args.max_connections.unwrap_or_else(default_max_connections);
    if max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    Ok(EdgeLimits {
        cors_origins: args.cors_origins.clone(),
        request_timeout: args.request_timeout,
        connections: ConnectionLimits {
            header_read_timeout: args.header_read_timeout,
            max_connections,
            shutdown_grace: Duration::from_secs(30),
        },
    })
}

/// The front's TLS and its extra cleartext listener: the flags, else the keys of the
/// front config `file` (shared by `serve` and `front`). The certificate is loaded once
/// here, so a bad file is reported before anything is bound (and by `check-config`).
pub fn front_tls(
    args: &TlsArgs,
    file: Option<&FrontConfig>,
) -> anyhow::Result<(Option<TlsConfig>, Option<SocketAddr>)> {
    let mut tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert_file), Some(key_file)) => Some(TlsConfig {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }),
        (None, None) => file.and_then(|f| f.tls.clone()),
        _ => bail!("--tls-cert and --tls-key go together: give both or neither"),
    };
    match (&mut tls, args.tls_handshake_timeout) {
        (Some(tls), Some(timeout)) if !timeout.is_zero() => tls.handshake_timeout = timeout,
        (_, Some(_)) => bail!("--tls-handshake-timeout needs TLS and a time longer than 0"),
        _ => {}
    }
    let plain_bind = args.plain_bind.or(file.and_then(|f| f.plain_listen));
    if plain_bind.is_some() && tls.is_none() {
        bail!(
            "--plain-bind is a cleartext listener beside a TLS one: give --tls-cert and --tls-key"
        );
    }
    if let Some(tls) = &tls {
        loadlab_front::listen::tls::check(tls).context("--tls-cert/--tls-key")?;
    }
    Ok((tls, plain_bind))
}

/// Converts the upstream flags (shared by `serve` and `front`).
pub fn upstream_limits(args: &UpstreamArgs) -> UpstreamLimits {
    UpstreamLimits {
        response_timeout: args.upstream_timeout,
        connect_timeout: args.connect_timeout,
        idle_per_upstream: args.upstream_idle,
        max_conns_per_upstream: args.upstream_max_conns,
        front_threads: args
            .front_threads
            .map(usize::from)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn check(extra: &[&str]) -> anyhow::Result<Config> {
        let argv = ["loadlab", "check-config"].iter().chain(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::CheckConfig(args) => Config::from_args(&args),
            other => panic!("expected check-config, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        let config = check(&[]).expect("defaults");
        assert_eq!(config.randoms.default_count, 100_000_000);
        assert_eq!(config.randoms.max_count, 10_000_000_000);
        assert_eq!(config.randoms.multinomial_max_count, 1_000_000_000_000_000);
        assert!(config.front);
        assert_eq!(config.front_path, FrontPath::Inproc);
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for (flags, flag) in [
            (&["--shards", "0"][..], "--shards"),
            (&["--randoms-default", "1e11"][..], "--randoms-default"),
            (&["--randoms-max", "lots"][..], "--randoms-max"),
            (
                &["--randoms-multinomial-max", "1e16"][..],
                "--randoms-multinomial-max",
            ),
            (&["--threads", "0"][..], "--threads"),
            (&["--cors-origin", "example.com"][..], "--cors-origin"),
        ] {
            let message = format!("{:#}", check(flags).expect_err("refused"));
            assert!(message.contains(flag), "{flags:?}: {message}");
        }
    }

    #[test]
    fn the_multinomial_limit_takes_scientific_notation_up_to_2_pow_53() {
        let config = check(&["--randoms-multinomial-max", "2.5e6"]).expect("valid");
        assert_eq!(config.randoms.multinomial_max_count, 2_500_000);
        let config = check(&["--randoms-multinomial-max", "9007199254740992"]).expect("2^53");
        assert_eq!(config.randoms.multinomial_max_count, 1 << 53);
        assert!(check(&["--randoms-multinomial-max", "9007199254740993"]).is_err());
    }

    #[test]
    fn a_broken_front_config_is_reported_before_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("front.toml");
        std::fs::write(&path, "pools = [ { name = \"a\", upstreams = [] } ]\n").expect("write");
        let path = path.display().to_string();
        let message = format!(
            "{:#}",
            check(&["--front-config", &path]).expect_err("refused")
        );
        assert!(message.contains("no upstreams"), "{message}");
    }
}
