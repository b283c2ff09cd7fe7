//! [`Table`]: what the front builds from one [`FrontConfig`] (pools, routes, the
//! upstreams they list), and which a reload swaps whole (see `reload`).
//!
//! Requests read the current table once, when they are dispatched, and keep it until
//! they are answered: a request in flight finishes on the pools it started on. A
//! rebuilt table reuses the [`Upstream`] of every address that stays (same label,
//! address, `max_conns` and TLS settings), so that address keeps its health state, its keep-alive
//! connections, its `max_conns` slots and an operator's drain; only the members
//! (weights, per-pool metrics, balancer turns) are new.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use anyhow::Context;
use axum::Router;

use crate::config::{FrontConfig, UpstreamLimits, UpstreamTls};
use crate::pools::balance::{Member, Pool, Routes};
use crate::pools::upstream::{LocalShard, ShardRuntime, Upstream};

/// One configuration of the front, as requests use it.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) pools: Vec<Pool>,
    pub(crate) routes: Routes,
    /// Each distinct upstream address once, for the health checks.
    pub(crate) upstreams: Vec<Arc<Upstream>>,
    /// The configuration it was built from (health settings, resolved addresses).
    pub(crate) config: FrontConfig,
    /// Where it came from, and when.
    pub(crate) origin: Origin,
}

/// Where a table came from: the `generation`, `sha256` and `loaded_at` of
/// `/front/status`.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// 1 for the configuration the front started with, then +1 per applied reload.
    pub(crate) generation: u64,
    /// SHA-256 of the file's bytes (hex); `None` for a built-in configuration.
    pub(crate) sha256: Option<String>,
    /// When this table was swapped in.
    pub(crate) loaded_at: SystemTime,
}

/// One shard of this process that members reach in-process: its address, its router
/// (alive while it serves) and its runtime (for the health checks).
pub(crate) type LocalShardAt = (SocketAddr, Weak<Router>, ShardRuntime);

/// The shards of this process, kept by the front so a rebuilt table attaches its new
/// upstreams on their addresses too.
pub(crate) type LocalShards = Vec<LocalShardAt>;

impl Table {
    /// Builds the table of `config` (validated again here), reusing the upstreams of
    /// `previous` whose label, address, `max_conns` and TLS stay the same, and attaching
    /// members on `shards`. Nothing shared changes unless the whole build succeeds.
    pub(crate) fn build(
        config: FrontConfig,
        limits: &UpstreamLimits,
        previous: &[Arc<Upstream>],
        shards: &[LocalShardAt],
        origin: Origin,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        // Who lists each address, so shared addresses get one state and one checker:
        // address -> (its label, its max_conns if the file sets one, its TLS (the same
        // in every pool: validated), the (pool, label) pairs that list it).
        type Listed<'a> = (
            &'a str,
            Option<u32>,
            Option<&'a UpstreamTls>,
            Vec<(&'a str, &'a str)>,
        );
        let mut memberships: HashMap<SocketAddr, Listed<'_>> = HashMap::new();
        let mut order = Vec::new();
        for pool in &config.pools {
            for member in &pool.upstreams {
                let entry = memberships.entry(member.addr).or_insert_with(|| {
                    order.push(member.addr);
                    (member.label.as_str(), None, member.tls.as_ref(), Vec::new())
                });
                entry.1 = entry.1.or(member.max_conns);
                entry.3.push((pool.name.as_str(), member.label.as_str()));
            }
        }
        let mut by_addr = HashMap::new();
        let mut upstreams = Vec::with_capacity(order.len());
        let mut kept = Vec::new();
        for addr in order {
            let (label, max_conns, tls, pools) = &memberships[&addr];
            let max_conns = max_conns.map_or(limits.max_conns_per_upstream, |m| m as usize);
            let same = previous.iter().find(|u| {
                u.label() == *label
                    && u.addr() == addr
                    && u.max_conns() == max_conns
                    && u.tls() == *tls
            });
            let upstream = match same {
                Some(upstream) => {
                    kept.push((Arc::clone(upstream), pools));
                    Arc::clone(upstream)
                }
                None => Arc::new(
                    Upstream::new(label, addr, *tls, pools, max_conns, &config.health, limits)
                        .with_context(|| {
                            format!("upstream `{label}` is not a valid Host header")
                        })?,
                ),
            };
            by_addr.insert(addr, Arc::clone(&upstream));
            upstreams.push(upstream);
        }
        let pools = member_sets(&config, &by_addr);
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
        for (upstream, pools) in kept {
            upstream.set_passive(&config.health);
            upstream.set_memberships(pools);
        }
        let table = Self {
            routes: Routes::new(routes, fallback),
            pools,
            upstreams,
            config,
            origin,
        };
        for shard in shards {
            table.attach(shard);
        }
        Ok(table)
    }

    /// Reaches the upstream on `shard`'s address in-process (an upstream kept from the
    /// previous table already is); returns how many members list that address.
    pub(crate) fn attach(&self, shard: &LocalShardAt) -> usize {
        let (addr, router, runtime) = shard;
        let Some(upstream) = self.upstreams.iter().find(|u| u.addr() == *addr) else {
            return 0;
        };
        // `false` when it already was: kept from the previous table.
        let _ = upstream.attach_local(LocalShard::new(Weak::clone(router), runtime));
        self.pools
            .iter()
            .flat_map(|p| p.members())
            .filter(|m| m.upstream.addr() == *addr)
            .count()
    }

    /// The upstream labelled or addressed `addr` (as written in the file, or its
    /// resolved `ip:port`).
    pub(crate) fn upstream(&self, addr: &str) -> Option<&Arc<Upstream>> {
        self.upstreams
            .iter()
            .find(|u| u.label() == addr)
            .or_else(|| self.upstreams.iter().find(|u| u.addr().to_string() == addr))
    }
}

/// The pools of `config`, each member on the upstream of its address in `by_addr`.
fn member_sets(config: &FrontConfig, by_addr: &HashMap<SocketAddr, Arc<Upstream>>) -> Vec<Pool> {
    config
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
        .collect()
}
