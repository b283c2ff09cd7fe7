//! The command line: what a user types, parsed by clap, before validation.
//!
//! Every flag has a `LOADLAB_*` environment fallback; precedence is command line, then
//! environment, then default. Nothing else in the crate reads `std::env`: [`crate::config`]
//! turns these raw arguments into a validated [`crate::config::Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use humantime::parse_duration as duration;

/// loadlab: an HTTP service that stays responsive while it does heavy work, with a
/// built-in load-balancing front and Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "loadlab", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: port-sharded listeners, the front before them, the Mega writer.
    // A flag given twice takes the last value, so scripts can append overrides.
    #[command(args_override_self = true)]
    Serve(ServeArgs),
    /// Run only the front, balancing loadlab instances (or any HTTP upstreams) named in a
    /// config file: how loadlab grows past one machine.
    Front(FrontArgs),
    /// Validate the `serve` flags (and the front config, if any), print the resulting
    /// configuration, and exit without binding anything.
    #[command(args_override_self = true)]
    CheckConfig(ServeArgs),
}

impl Command {
    /// The log format the subcommand asks for (every subcommand has `--log-format`).
    pub fn log_format(&self) -> LogFormat {
        match self {
            Command::Serve(args) | Command::CheckConfig(args) => args.serving.logs.log_format,
            Command::Front(args) => args.serving.logs.log_format,
        }
    }
}

/// Flags of `loadlab serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where the front listens: the service's public address.
    #[arg(
        long,
        alias = "front-bind",
        env = "LOADLAB_BIND",
        default_value = "127.0.0.1:8080"
    )]
    pub bind: SocketAddr,

    /// Number of port-sharded listeners, each with its own thread and single-threaded
    /// runtime [default: number of cores].
    #[arg(long, env = "LOADLAB_SHARDS")]
    pub shards: Option<usize>,

    /// First shard port; shard i listens on base + i (0: every shard on a free port).
    #[arg(long, env = "LOADLAB_SHARD_BASE_PORT", default_value_t = 3000)]
    pub shard_base_port: u16,

    /// Host the shards listen on.
    #[arg(long, env = "LOADLAB_SHARD_HOST", default_value = "127.0.0.1")]
    pub shard_host: std::net::IpAddr,

    /// Run without the front: clients talk to the shard ports directly.
    #[arg(long, env = "LOADLAB_NO_FRONT")]
    pub no_front: bool,

    /// Front config (TOML: pools, weights, routes, health checks). Without it the front
    /// balances round robin over all shards.
    #[arg(long, env = "LOADLAB_FRONT_CONFIG")]
    pub front_config: Option<PathBuf>,

    /// How the front reaches this process's own shards: inproc (calls the shard's
    /// router on the front's thread: no socket, no second parse) or tcp (over loopback,
    /// like any upstream). Upstreams that are not our shards always use tcp.
    #[arg(long, env = "LOADLAB_FRONT_PATH", value_enum, default_value_t = FrontPath::Inproc)]
    pub front_path: FrontPath,

    /// Compute threads for /api/randoms [default: number of cores].
    #[arg(long, env = "LOADLAB_THREADS")]
    pub threads: Option<usize>,

    /// Draws when `cant` is absent (scientific notation accepted).
    #[arg(long, env = "LOADLAB_RANDOMS_DEFAULT", default_value = "1e8")]
    pub randoms_default: String,

    /// Largest `cant` accepted.
    #[arg(long, env = "LOADLAB_RANDOMS_MAX", default_value = "1e10")]
    pub randoms_max: String,

    /// Largest `cant` accepted with `method=multinomial` (at most 2^53, where the
    /// sampler stops being exact; scientific notation accepted).
    #[arg(long, env = "LOADLAB_RANDOMS_MULTINOMIAL_MAX", default_value = "1e15")]
    pub randoms_multinomial_max: String,

    /// Randoms jobs admitted at once (running or waiting); the next gets 503.
    #[arg(long, env = "LOADLAB_RANDOMS_QUEUE", default_value_t = 64)]
    pub randoms_queue: usize,

    /// Where the Mega tickets live: a SQLite file (its folder is created; one process
    /// writes it), or a PostgreSQL URL `postgres://user[:password]@host[:port]/database`
    /// (`postgresql://` too), which several loadlab processes can share.
    #[arg(long, env = "LOADLAB_DB", default_value = "data/loadlab.db")]
    pub db: String,

    /// How hard commits are synced: full (every commit reaches the disk before it is
    /// acknowledged) or normal (survives a crash of loadlab, not of the machine).
    /// PostgreSQL: full is `synchronous_commit=on`, normal is `off`.
    #[arg(long, env = "LOADLAB_DB_SYNC", value_enum, default_value_t = DbSync::Full)]
    pub db_sync: DbSync,

    /// SQLite only: the largest the database file may grow (KiB, MiB or GiB suffixes).
    /// Past it inserts are answered 507 as on a full disk, so the rest of the disk stays
    /// free (for the WAL and the logs). Default: as large as the disk allows.
    #[arg(long, env = "LOADLAB_DB_MAX_SIZE", value_parser = bytes)]
    pub db_max_size: Option<usize>,

    /// Rows the writer aims to commit per transaction.
    #[arg(long, env = "LOADLAB_BATCH_MAX", default_value_t = 1024)]
    pub batch_max: usize,

    /// How long the writer waits for more inserts before committing (e.g. 0, 500us, 2ms).
    #[arg(long, env = "LOADLAB_BATCH_LINGER", default_value = "0ms", value_parser = duration)]
    pub batch_linger: Duration,

    /// Insert requests that may wait for the writer; beyond this, 503.
    #[arg(long, env = "LOADLAB_WRITER_QUEUE", default_value_t = 16_384)]
    pub writer_queue: usize,

    /// How long an `Idempotency-Key` of an insert is kept: a retry under it within this
    /// time gets the first answer and stores nothing (e.g. 24h, 90min).
    #[arg(long, env = "LOADLAB_IDEMPOTENCY_TTL", default_value = "24h", value_parser = duration)]
    pub idempotency_ttl: Duration,

    /// Most tickets in one POST /app/insert/batch.
    #[arg(long, env = "LOADLAB_BATCH_REQUEST_MAX", default_value_t = 10_000)]
    pub batch_request_max: usize,

    /// Read connections: SQLite ones kept open (extras opened when all are busy);
    /// PostgreSQL ones pooled (at most this many per process).
    #[arg(long, env = "LOADLAB_READ_CONNECTIONS", default_value_t = 4)]
    pub read_connections: usize,

    /// Largest request body, except the batch insert (bytes; KiB/MiB suffixes accepted).
    #[arg(long, env = "LOADLAB_BODY_LIMIT", default_value = "64KiB", value_parser = bytes)]
    pub body_limit: usize,

    /// Largest body of POST /app/insert/batch.
    #[arg(long, env = "LOADLAB_BATCH_BODY_LIMIT", default_value = "4MiB", value_parser = bytes)]
    pub batch_body_limit: usize,

    /// Require `Authorization: Bearer TOKEN` on every POST route, with a token from this
    /// file (one a line; `#` comments; re-read on SIGHUP). Reads stay open. Off by default.
    #[arg(long, env = "LOADLAB_WRITE_TOKEN_FILE")]
    pub write_token_file: Option<PathBuf>,

    #[command(flatten)]
    pub serving: ServingArgs,
}

/// Flags of `loadlab front`.
#[derive(Debug, Clone, Args)]
pub struct FrontArgs {
    /// The front config (TOML): pools of upstreams, weights, routes, health checks.
    #[arg(long, env = "LOADLAB_FRONT_CONFIG")]
    pub config: PathBuf,

    /// Where the front listens (overrides `listen` in the config file).
    #[arg(long, env = "LOADLAB_BIND")]
    pub bind: Option<SocketAddr>,

    #[command(flatten)]
    pub serving: ServingArgs,
}

/// Flags `serve` and `front` share: the edge, the front's upstream limits, and an
/// extra metrics listener.
#[derive(Debug, Clone, Args)]
pub struct ServingArgs {
    #[command(flatten)]
    pub edge: EdgeArgs,

    #[command(flatten)]
    pub upstream: UpstreamArgs,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub logs: LogArgs,

    /// Also serve /metrics on this address (it is always on every listener too).
    #[arg(long, env = "LOADLAB_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Turn on the front's admin actions (POST /front/upstreams/{addr}/drain and
    /// /ready) for `Authorization: Bearer TOKEN` with a token from this file (one a line;
    /// re-read on SIGHUP). Without it every admin action answers 403.
    #[arg(long, env = "LOADLAB_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Resolve the front config's host names again this often (e.g. 30s), swapping in
    /// the addresses that changed; they are also resolved on every reload (SIGHUP).
    /// Off by default.
    #[arg(long, env = "LOADLAB_RESOLVE_INTERVAL", value_parser = positive_duration)]
    pub resolve_interval: Option<Duration>,
}

/// A duration longer than zero (`--resolve-interval`).
fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than 0".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Limits applied at every listener (front and shards).
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// Origins allowed by CORS (repeatable; `*` for any). None: no CORS headers at all.
    #[arg(
        long = "cors-origin",
        env = "LOADLAB_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Time a client gets to send a request's headers before the connection is closed.
    #[arg(long, env = "LOADLAB_HEADER_READ_TIMEOUT")]
    #[arg(default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,

    /// Time a request may take end to end before it is answered 503 (randoms of 1e10
    /// take a few seconds).
    #[arg(long, env = "LOADLAB_REQUEST_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub request_timeout: Duration,

    /// Open connections per listener; further clients wait in the kernel's backlog, and
    /// idle keep-alive connections are closed to make room [default: what the fd limit
    /// leaves once the process's own descriptors are set aside]
    #[arg(long, env = "LOADLAB_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
}

/// TLS on the front's listener (see docs/TLS.md). Each flag takes precedence over the
/// same key in the front config (`tls_cert`, `tls_key`, `tls_handshake_timeout`,
/// `plain_listen`).
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Serve TLS (HTTP/1.1 and h2 by ALPN) on the front's --bind with this certificate:
    /// a PEM file, the certificate first, then any intermediates. Reloaded on SIGHUP.
    #[arg(long, env = "LOADLAB_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key: a PEM file (PKCS#8, RSA or EC).
    #[arg(long, env = "LOADLAB_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Time a client gets to finish the TLS handshake [default: 10s].
    #[arg(long, env = "LOADLAB_TLS_HANDSHAKE_TIMEOUT", value_parser = duration)]
    pub tls_handshake_timeout: Option<Duration>,

    /// A cleartext listener (HTTP/1.1 and h2c) beside the TLS one, e.g. for local
    /// health checks; needs TLS. None by default.
    #[arg(long, env = "LOADLAB_PLAIN_BIND")]
    pub plain_bind: Option<SocketAddr>,
}

/// How the process logs (see docs/OPERATIONS.md, "Logs").
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// The format of the log on stderr: text (one readable line per event) or json (one
    /// JSON object per line, for log shippers). `RUST_LOG` chooses what is logged.
    #[arg(long, env = "LOADLAB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Write a line per request (front and shards) here: a file (appended to, reopened
    /// on SIGHUP for logrotate) or `-` for standard output. Default: no access log.
    #[arg(long, env = "LOADLAB_ACCESS_LOG", value_name = "-|FILE")]
    pub access_log: Option<String>,

    /// The access log's lines: json (one object per line) or combined (Apache's and
    /// nginx's format, loadlab's fields after it).
    #[arg(
        long,
        env = "LOADLAB_ACCESS_LOG_FORMAT",
        value_enum,
        default_value_t = AccessLogFormat::Json
    )]
    pub access_log_format: AccessLogFormat,
}

/// Front-to-upstream limits.
#[derive(Debug, Clone, Args)]
pub struct UpstreamArgs {
    /// Time an upstream gets to answer (headers) before the front answers 504.
    #[arg(long, env = "LOADLAB_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub upstream_timeout: Duration,

    /// Time to establish a connection to an upstream before trying the next.
    #[arg(long, env = "LOADLAB_CONNECT_TIMEOUT", default_value = "1s", value_parser = duration)]
    pub connect_timeout: Duration,

    /// Idle keep-alive connections kept per upstream and front thread. Size it to the
    /// concurrency, or connections churn: each request past the idle set opens a new
    /// connection and leaves a socket in TIME_WAIT (see docs/PERFORMANCE.md).
    #[arg(
        long,
        env = "LOADLAB_UPSTREAM_IDLE",
        default_value_t = 1024,
        alias = "upstream-pool"
    )]
    pub upstream_idle: usize,

    /// Requests in flight to one upstream at once (nginx's `max_conns`; a front config
    /// may set it per upstream); 0: no limit. Further requests go to another upstream
    /// with room, or wait for a slot (up to --upstream-timeout, then 504). Protects
    /// small upstreams; no limit by default, as in nginx: a limit lets slow requests
    /// hold every slot while quick ones wait behind them.
    #[arg(long, env = "LOADLAB_UPSTREAM_MAX_CONNS", default_value_t = 0)]
    pub upstream_max_conns: usize,

    /// Threads the front serves on, each with its own single-threaded runtime and its
    /// own connections to every upstream; accepted connections are dealt out to them
    /// [default: number of cores]
    #[arg(
        long,
        env = "LOADLAB_FRONT_THREADS",
        value_parser = clap::value_parser!(u16).range(1..=1024)
    )]
    pub front_threads: Option<u16>,
}

/// `--front-path` values: how the front reaches a member that is one of this
/// process's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FrontPath {
    /// Call the shard's router directly, on the front thread's thread.
    Inproc,
    /// Over loopback TCP, through the front's keep-alive pool.
    Tcp,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Compact text, coloured on a terminal.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the
    /// event's fields.
    Json,
}

/// `--access-log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccessLogFormat {
    /// One JSON object per line.
    Json,
    /// The combined log format, then duration, upstream, request id and listener.
    Combined,
}

/// `--db-sync` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DbSync {
    /// `PRAGMA synchronous=FULL`.
    Full,
    /// `PRAGMA synchronous=NORMAL`.
    Normal,
}

/// Parses a byte size: a plain number, or one with a `B`, `KiB`/`KB`/`K` or `MiB`/`MB`/`M`
/// suffix (binary multiples either way).
pub fn bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let value: usize = digits.parse().map_err(|_| {
        format!("`{s}` is not a size: use a whole number of bytes, KiB, MiB or GiB")
    })?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}`: use B, KiB, MiB or GiB"
            ));
        }
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(bytes("65536"), Ok(65536));
        assert_eq!(bytes("64KiB"), Ok(65536));
        assert_eq!(bytes("4MiB"), Ok(4 << 20));
        assert_eq!(bytes("2GiB"), Ok(2 << 30));
        assert!(bytes("4TiB").is_err());
        assert!(bytes("lots").is_err());
    }
}
