//! [`FrontConfig`]: the front's pools, routes and health checks, from a TOML file
//! (`--front-config` of `serve`, `--config` of `loadlab front`) or built in (one
//! round-robin pool of all shards).
//!
//! The file format is documented, key by key, in `docs/OPERATIONS.md` ("The config file");
//! `examples/front.toml` is the nginx set-up it replaces, and
//! `examples/front-hosts.toml` a front over two hosts.
//!
//! Everything is checked once, at load, with messages naming the pool, route or key:
//! a front that starts has a valid configuration.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// The listener limits live with the listener kit; reachable here as before.
pub use crate::listen::limits::{
    ConnectionLimits, DEFAULT_HANDSHAKE_TIMEOUT, EdgeLimits, TlsConfig,
};
use crate::pools::tls::split_scheme;
/// An `https://` member's TLS settings live with the pools; reachable here.
pub use crate::pools::tls::{Scheme, UpstreamTls};

/// Health checks. Active checks flip an upstream only after `rise`/`fall` consecutive
/// results (pingora); passive ones follow nginx's `max_fails`/`fail_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Whether to send active checks at all (upstreams without a health endpoint).
    pub active: bool,
    /// Time between two checks of one upstream.
    pub interval: Duration,
    /// Time a check gets to answer (a 2xx status) before it counts as failed.
    pub timeout: Duration,
    /// Path checked with `GET`.
    pub path: String,
    /// Consecutive successful checks that bring a down upstream back up.
    pub rise: u32,
    /// Consecutive failed checks that take an up upstream down.
    pub fall: u32,
    /// Failed requests within `fail_timeout` after which an upstream is skipped for
    /// `fail_timeout`; 0 disables passive checks.
    pub max_fails: u32,
    /// The passive window, and how long a failed upstream is skipped.
    pub fail_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            active: true,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            path: "/healthz".to_owned(),
            rise: 2,
            fall: 2,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
        }
    }
}

/// Front-to-upstream limits.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamLimits {
    /// Time to the upstream's response headers (504 after).
    pub response_timeout: Duration,
    /// Time to connect to an upstream (next upstream after).
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per upstream and front thread.
    pub idle_per_upstream: usize,
    /// Threads the front serves on, each with its own connections to every upstream.
    pub front_threads: usize,
    /// Requests in flight to one upstream at once, unless its config says otherwise;
    /// 0: no limit.
    pub max_conns_per_upstream: usize,
}

/// Pools, routes and health-check settings of the front.
///
/// A *pool* is a named set of upstreams balanced together; a *route* sends the paths
/// under a prefix to a pool. Build it with [`FrontConfig::load`], [`FrontConfig::parse`]
/// or [`FrontConfig::round_robin`]; [`crate::Front::new`] validates it again, so
/// fields changed by hand cannot smuggle in an inconsistent config.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// Where `loadlab front` listens when `--bind` is not given; `None`: 127.0.0.1:8080.
    pub listen: Option<SocketAddr>,
    /// TLS on `listen` (`tls_cert`, `tls_key`, `tls_handshake_timeout`); `None`:
    /// cleartext. The command line's `--tls-cert`/`--tls-key` take precedence.
    pub tls: Option<TlsConfig>,
    /// A cleartext listener beside a TLS `listen` (`plain_listen`, `--plain-bind`);
    /// `None`: none.
    pub plain_listen: Option<SocketAddr>,
    /// The pool for paths no route matches; `None`: the pool of the `/` route, or the
    /// only pool.
    pub default_pool: Option<String>,
    /// Active and passive health checks.
    pub health: HealthConfig,
    /// The pools, in file order.
    pub pools: Vec<PoolConfig>,
    /// Prefix routes, in file order (matching picks the longest prefix, not the first).
    pub routes: Vec<RouteConfig>,
}

/// One named pool of upstreams.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Unique name, used by routes and as the `pool` metric label.
    pub name: String,
    /// Its members, each address at most once.
    pub upstreams: Vec<UpstreamConfig>,
}

/// One member of a pool.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The address as written, without its scheme (`host:port`): the `upstream` metric
    /// label and the `Host` header sent to it.
    pub label: String,
    /// Where to connect: resolved once, at load (the first address DNS returns).
    pub addr: SocketAddr,
    /// Share of the pool's requests (smooth weighted round robin); 0 means draining:
    /// never picked, still health-checked.
    pub weight: u32,
    /// Requests in flight to this address at once (nginx's `max_conns`); 0: no limit.
    /// `None`: `--upstream-max-conns`. An address listed by several pools has one
    /// limit, shared by them.
    pub max_conns: Option<u32>,
    /// TLS to it: `Some` for an `https://` member (verified against its `ca_file`, or
    /// the system roots); `None`: cleartext.
    pub tls: Option<UpstreamTls>,
}

impl UpstreamConfig {
    /// `https` when the front speaks TLS to it, else `http`.
    pub fn scheme(&self) -> Scheme {
        Scheme::of(self.tls.as_ref())
    }
}

/// A prefix route.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Matched against the request path as plain text, as nginx's `location /prefix`
    /// does: `/api` also matches `/apix`; end it with `/` to match only below it.
    pub prefix: String,
    /// The pool it sends to.
    pub pool: String,
}

impl FrontConfig {
    /// Loads and validates a TOML front config.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Self::load_with_text(path).map(|(config, _)| config)
    }

    /// [`FrontConfig::load`], with the file's text (what a reload hashes and keeps).
    pub fn load_with_text(path: &Path) -> anyhow::Result<(Self, String)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the front config {}", path.display()))?;
        let config =
            Self::parse(&text).with_context(|| format!("front config {}", path.display()))?;
        Ok((config, text))
    }

    /// Parses and validates the text of a front config (resolving host names).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let raw: RawConfig = toml::from_str(text)?;
        let defaults = HealthConfig::default();
        let health = raw.health.unwrap_or_default();
        let duration = |key: &str, value: Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) => humantime::parse_duration(&text).with_context(|| {
                format!("[health] {key} = \"{text}\" is not a duration (e.g. \"2s\", \"500ms\")")
            }),
        };
        let health = HealthConfig {
            active: health.active.unwrap_or(defaults.active),
            interval: duration("interval", health.interval, defaults.interval)?,
            timeout: duration("timeout", health.timeout, defaults.timeout)?,
            path: health.path.unwrap_or(defaults.path),
            rise: health.rise.unwrap_or(defaults.rise),
            fall: health.fall.unwrap_or(defaults.fall),
            max_fails: health.max_fails.unwrap_or(defaults.max_fails),
            fail_timeout: duration("fail_timeout", health.fail_timeout, defaults.fail_timeout)?,
        };
        let pools = raw
            .pools
            .into_iter()
            .map(|pool| {
                let upstreams = pool
                    .upstreams
                    .into_iter()
                    .map(|u| member(u).with_context(|| format!("pool `{}`", pool.name)))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(PoolConfig {
                    name: pool.name,
                    upstreams,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let routes = raw
            .routes
            .into_iter()
            .map(|r| RouteConfig {
                prefix: r.prefix,
                pool: r.pool,
            })
            .collect();
        let tls = match (raw.tls_cert, raw.tls_key) {
            (Some(cert_file), Some(key_file)) => Some(TlsConfig {
                cert_file,
                key_file,
                handshake_timeout: match raw.tls_handshake_timeout {
                    None => DEFAULT_HANDSHAKE_TIMEOUT,
                    Some(text) => humantime::parse_duration(&text).with_context(|| {
                        format!(
                            "tls_handshake_timeout = \"{text}\" is not a duration (e.g. \"10s\")"
                        )
                    })?,
                },
            }),
            (None, None) if raw.tls_handshake_timeout.is_some() => {
                bail!("tls_handshake_timeout needs tls_cert and tls_key")
            }
            (None, None) => None,
            _ => bail!("tls_cert and tls_key go together: set both or neither"),
        };
        if raw.plain_listen.is_some() && tls.is_none() {
            bail!(
                "plain_listen is a cleartext listener beside a TLS one: set tls_cert and tls_key"
            );
        }
        let config = Self {
            listen: raw.listen,
            tls,
            plain_listen: raw.plain_listen,
            default_pool: raw.default_pool,
            health,
            pools,
            routes,
        };
        config.validate()?;
        Ok(config)
    }

    /// One round-robin pool, named `default`, over `upstreams` (the shards of `serve`).
    pub fn round_robin(upstreams: &[SocketAddr]) -> Self {
        Self {
            listen: None,
            tls: None,
            plain_listen: None,
            default_pool: None,
            health: HealthConfig::default(),
            pools: vec![PoolConfig {
                name: "default".to_owned(),
                upstreams: upstreams
                    .iter()
                    .map(|&addr| UpstreamConfig {
                        label: addr.to_string(),
                        addr,
                        weight: 1,
                        max_conns: None,
                        tls: None,
                    })
                    .collect(),
            }],
            routes: Vec::new(),
        }
    }

    /// Checks the rules a parsed config must follow; the error names what is wrong.
    pub fn validate(&self) -> anyhow::Result<()> {
        let h = &self.health;
        if h.interval.is_zero() || h.timeout.is_zero() {
            bail!("[health] interval and timeout must be longer than 0");
        }
        if h.rise == 0 || h.fall == 0 {
            bail!("[health] rise and fall must be at least 1");
        }
        if !h.path.starts_with('/') || h.path.parse::<axum::http::uri::PathAndQuery>().is_err() {
            bail!("[health] path `{}` must be a path starting with /", h.path);
        }
        if self.pools.is_empty() {
            bail!("no pools: add at least one [[pools]] with upstreams");
        }
        let mut names = HashSet::new();
        let mut limits: HashMap<SocketAddr, (u32, &str)> = HashMap::new();
        let mut schemes: HashMap<SocketAddr, (&Option<UpstreamTls>, &str)> = HashMap::new();
        for pool in &self.pools {
            if pool.name.is_empty() {
                bail!("a pool has an empty name");
            }
            if !names.insert(pool.name.as_str()) {
                bail!("two pools are named `{}`", pool.name);
            }
            if pool.upstreams.is_empty() {
                bail!("pool `{}` has no upstreams", pool.name);
            }
            let mut addrs = HashSet::new();
            for upstream in &pool.upstreams {
                if !addrs.insert(upstream.addr) {
                    bail!(
                        "pool `{}` lists {} ({}) twice: use a weight instead",
                        pool.name,
                        upstream.label,
                        upstream.addr
                    );
                }
                if let Some(max) = upstream.max_conns
                    && let Some(&(earlier, earlier_pool)) = limits.get(&upstream.addr)
                    && earlier != max
                {
                    bail!(
                        "{} has max_conns = {earlier} in pool `{earlier_pool}` but {max} in pool \
                            `{}`: an address has one limit",
                        upstream.label,
                        pool.name
                    );
                }
                if let Some(max) = upstream.max_conns {
                    limits.insert(upstream.addr, (max, pool.name.as_str()));
                }
                let listed = schemes
                    .entry(upstream.addr)
                    .or_insert((&upstream.tls, &pool.name));
                if *listed.0 != upstream.tls {
                    bail!(
                        "{} is listed with other TLS settings (scheme or ca_file) in pool `{}` \
                            than in pool `{}`: an address is reached one way",
                        upstream.label,
                        listed.1,
                        pool.name
                    );
                }
            }
        }
        let mut prefixes = HashSet::new();
        for route in &self.routes {
            if !route.prefix.starts_with('/') {
                bail!("route prefix `{}` must start with /", route.prefix);
            }
            if !prefixes.insert(route.prefix.as_str()) {
                bail!("two routes have the prefix `{}`", route.prefix);
            }
            if !names.contains(route.pool.as_str()) {
                bail!(
                    "route `{}` names the unknown pool `{}`",
                    route.prefix,
                    route.pool
                );
            }
        }
        match &self.default_pool {
            Some(pool) if !names.contains(pool.as_str()) => {
                bail!("default_pool names the unknown pool `{pool}`")
            }
            Some(_) if prefixes.contains("/") => {
                bail!("both default_pool and a route for \"/\" say where other paths go: keep one")
            }
            _ => {}
        }
        if self.fallback_pool().is_none() {
            bail!(
                "with several pools, set default_pool or add a route with prefix \"/\" for the \
                    other paths"
            );
        }
        Ok(())
    }

    /// The pool for paths no route matches, by name: `default_pool`, else the pool of
    /// the `/` route, else the only pool (never `None` after [`Self::validate`]).
    pub fn fallback_pool(&self) -> Option<&str> {
        if let Some(pool) = &self.default_pool {
            return Some(pool);
        }
        if let Some(route) = self.routes.iter().find(|r| r.prefix == "/") {
            return Some(&route.pool);
        }
        match self.pools.as_slice() {
            [only] => Some(&only.name),
            _ => None,
        }
    }
}

/// One member as written: its scheme split off, its `ca_file` loaded (`https://` only),
/// its host name resolved.
fn member(raw: RawUpstream) -> anyhow::Result<UpstreamConfig> {
    let (scheme, authority) = split_scheme(&raw.addr)?;
    let tls = match (scheme, &raw.ca_file) {
        (Scheme::Https, ca_file) => Some(UpstreamTls::new(authority, ca_file.as_deref())?),
        (Scheme::Http, Some(file)) => bail!(
            "upstream `{}` has ca_file = \"{}\" but is cleartext: write https://{authority}",
            raw.addr,
            file.display()
        ),
        (Scheme::Http, None) => None,
    };
    Ok(UpstreamConfig {
        label: authority.to_owned(),
        addr: resolve(authority)?,
        weight: raw.weight.unwrap_or(1),
        max_conns: raw.max_conns,
        tls,
    })
}

/// Resolves `host:port` (or an `ip:port` literal) to its first address.
fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(literal) = addr.parse() {
        return Ok(literal);
    }
    // Blocking DNS, once, at start-up: acceptable there, never on the request path.
    addr.to_socket_addrs()
        .with_context(|| format!("upstream `{addr}` is not a host:port that resolves"))?
        .next()
        .with_context(|| format!("upstream `{addr}` resolves to no address"))
}

/// The file as written; [`FrontConfig::parse`] checks and converts it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_handshake_timeout: Option<String>,
    plain_listen: Option<SocketAddr>,
    default_pool: Option<String>,
    health: Option<RawHealth>,
    #[serde(default)]
    pools: Vec<RawPool>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    active: Option<bool>,
    interval: Option<String>,
    timeout: Option<String>,
    path: Option<String>,
    rise: Option<u32>,
    fall: Option<u32>,
    max_fails: Option<u32>,
    fail_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: String,
    upstreams: Vec<RawUpstream>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    addr: String,
    weight: Option<u32>,
    max_conns: Option<u32>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    pool: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        format!(
            "{:#}",
            FrontConfig::parse(text).expect_err("the config is invalid")
        )
    }

    #[test]
    fn the_nginx_example_parses_with_its_weights_and_route() {
        let config = FrontConfig::parse(include_str!("../../examples/front.toml"))
            .expect("example is valid");
        let main = &config.pools[0];
        assert_eq!(main.name, "main");
        assert_eq!(
            main.upstreams.iter().map(|u| u.weight).collect::<Vec<_>>(),
            [2, 1]
        );
        assert_eq!(config.pools[1].upstreams.len(), 4);
        assert_eq!(config.routes[0].prefix, "/api/randoms");
        assert_eq!(config.fallback_pool(), Some("main"));
    }

    #[test]
    fn the_two_host_example_parses() {
        let config = FrontConfig::parse(include_str!("../../examples/front-hosts.toml"))
            .expect("example is valid");
        assert_eq!(config.pools.len(), 1);
        assert!(config.listen.is_some());
    }

    #[test]
    fn defaults_apply_to_a_minimal_file() {
        let config = FrontConfig::parse(
            "[[pools]]\nname = \"p\"\nupstreams = [{ addr = \"127.0.0.1:1\" }]\n",
        )
        .expect("valid");
        assert_eq!(config.health.max_fails, 1);
        assert_eq!(config.health.fail_timeout, Duration::from_secs(10));
        assert_eq!(config.pools[0].upstreams[0].weight, 1);
        assert_eq!(config.pools[0].upstreams[0].max_conns, None);
        assert_eq!(config.fallback_pool(), Some("p"));
    }

    #[test]
    fn tls_keys_are_read_with_their_default_timeout() {
        let config = FrontConfig::parse(
            "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nplain_listen = \"127.0.0.1:8081\"\n\
                [[pools]]\nname = \"p\"\nupstreams = [{ addr = \"127.0.0.1:1\" }]\n",
        )
        .expect("valid");
        let tls = config.tls.expect("tls");
        assert_eq!(tls.cert_file, Path::new("c.pem"));
        assert_eq!(tls.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
        assert!(config.plain_listen.is_some());
    }

    #[test]
    fn max_conns_is_read_and_may_repeat_with_the_same_value() {
        let pool = |name: &str| {
            format!(
                "[[pools]]\nname = \"{name}\"\nupstreams = [{{ addr = \"127.0.0.1:1\", max_conns \
                    = 8 }}]\n"
            )
        };
        let config =
            FrontConfig::parse(&format!("default_pool = \"p\"\n{}{}", pool("p"), pool("q")))
                .expect("the same limit twice is consistent");
        assert_eq!(config.pools[1].upstreams[0].max_conns, Some(8));
    }

    /// A self-signed certificate written to `dir/ca.pem`, as a `ca_file`.
    fn write_ca(dir: &Path) -> PathBuf {
        let ca = dir.join("ca.pem");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["ca.test".to_owned()]).expect("params");
        std::fs::write(&ca, params.self_signed(&key).expect("cert").pem()).expect("write");
        ca
    }

    #[test]
    fn members_may_name_their_scheme_and_https_ones_a_ca_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = write_ca(dir.path());
        let config = FrontConfig::parse(&format!(
            "[[pools]]\nname = \"p\"\nupstreams = [{{ addr = \"http://127.0.0.1:1\" }}, \
                {{ addr = \"https://127.0.0.1:2\", ca_file = \"{}\" }}, {{ addr = \
                \"127.0.0.1:3\" }}]\n",
            ca.display()
        ))
        .expect("valid");
        let members = &config.pools[0].upstreams;
        let schemes: Vec<_> = members.iter().map(|u| u.scheme()).collect();
        assert_eq!(schemes, [Scheme::Http, Scheme::Https, Scheme::Http]);
        assert_eq!(
            members[0].label, "127.0.0.1:1",
            "the scheme is not part of the label"
        );
        assert_eq!(members[1].label, "127.0.0.1:2");
        let tls = members[1].tls.as_ref().expect("https");
        assert_eq!(tls.ca_file(), Some(ca.as_path()));
    }

    #[test]
    fn bad_schemes_and_ca_files_are_refused_by_name() {
        let member = |member: &str| format!("[[pools]]\nname = \"p\"\nupstreams = [{member}]\n");
        let error = error_of(&member("{ addr = \"ftp://127.0.0.1:21\" }"));
        assert!(
            error.contains("pool `p`") && error.contains("scheme `ftp`"),
            "{error}"
        );
        let error = error_of(&member(
            "{ addr = \"https://127.0.0.1:1\", ca_file = \"/nonexistent/ca.pem\" }",
        ));
        assert!(error.contains("ca_file /nonexistent/ca.pem"), "{error}");
        let error = error_of(&member("{ addr = \"127.0.0.1:1\", ca_file = \"ca.pem\" }"));
        assert!(error.contains("is cleartext"), "{error}");
        let dir = tempfile::tempdir().expect("temp dir");
        let two = format!(
            "default_pool = \"p\"\n[[pools]]\nname = \"p\"\nupstreams = [{{ addr = \
                \"127.0.0.1:1\" }}]\n[[pools]]\nname = \"q\"\nupstreams = [{{ addr = \
                \"https://127.0.0.1:1\", ca_file = \"{}\" }}]\n",
            write_ca(dir.path()).display()
        );
        let error = error_of(&two);
        assert!(error.contains("reached one way"), "{error}");
    }

    #[test]
    fn invalid_configs_are_refused_with_a_clear_reason() {
        let pool = "[[pools]]\nname = \"p\"\nupstreams = [{ addr = \"127.0.0.1:1\" }]\n";
        assert!(error_of("").contains("no pools"));
        assert!(error_of(&format!("{pool}{pool}")).contains("two pools are named `p`"));
        assert!(error_of("[[pools]]\nname = \"p\"\nupstreams = []\n").contains("has no upstreams"));
        assert!(
            error_of(&format!(
                "{pool}[[routes]]\nprefix = \"/a\"\npool = \"q\"\n"
            ))
            .contains("unknown pool `q`")
        );
        assert!(
            error_of("[[pools]]\nname = \"p\"\nupstreams = [{ addr = \"nope\" }]\n")
                .contains("upstream `nope`")
        );
        assert!(error_of(&format!("{pool}[health]\ninterval = \"soon\"\n")).contains("interval"));
        assert!(error_of(&format!("{pool}[health]\nrise = 0\n")).contains("rise"));
        let two = "[[pools]]\nname = \"q\"\nupstreams = [{ addr = \"127.0.0.1:2\" }]\n";
        assert!(error_of(&format!("{pool}{two}")).contains("default_pool"));
        assert!(error_of(&format!("{pool}colour = \"red\"\n")).contains("colour"));
        assert!(error_of(&format!("tls_cert = \"c.pem\"\n{pool}")).contains("go together"));
        assert!(error_of(&format!("plain_listen = \"127.0.0.1:1\"\n{pool}")).contains("tls_cert"));
        let twice = "[[pools]]\nname = \"p\"\nupstreams = [{ addr = \"127.0.0.1:1\" }, { addr = \
            \"127.0.0.1:1\" }]\n";
        assert!(error_of(twice).contains("twice"));
        let limited = |pool: &str, max: u32| {
            format!(
                "[[pools]]\nname = \"{pool}\"\nupstreams = [{{ addr = \"127.0.0.1:1\", max_conns \
                    = {max} }}]\n"
            )
        };
        let conflict = format!(
            "default_pool = \"p\"\n{}{}",
            limited("p", 8),
            limited("q", 9)
        );
        assert!(
            error_of(&conflict).contains("one limit"),
            "{}",
            error_of(&conflict)
        );
    }
}
