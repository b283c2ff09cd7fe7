//! `GET /front/status`: the front's pools, routes, members and configuration as JSON
//! (`crate::Front::status`), also shown by the service's `/info`.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;

use crate::listen::tls::Certificates;
use crate::pools::balance::Member;
use crate::reload::Live;

/// Pools, routes, each upstream's address, weight, health, drain and requests in
/// flight, the front's threads, its listeners and TLS certificate (`listening`, once
/// it serves), and where the configuration came from
/// (`config`: `generation`, `sha256` of the file, `loaded_at`, reloads), as JSON
/// (for `/info` and `GET /front/status`). `up` is whether requests may go there
/// now; a pool's `panic` is whether it is trying members held out by passive
/// checks because none is up.
pub(crate) fn status(live: &Live, listening: Option<&Listening>, admin: bool) -> serde_json::Value {
    let table = live.table.load();
    let pools: Vec<_> = table
        .pools
        .iter()
        .map(|pool| {
            let upstreams: Vec<_> = pool.members().iter().map(member_status).collect();
            json!({ "name": pool.name(), "panic": pool.in_panic(), "upstreams": upstreams })
        })
        .collect();
    let routes: Vec<_> = table
        .routes
        .entries()
        .iter()
        .map(|(prefix, pool)| json!({ "prefix": prefix, "pool": table.pools[*pool].name() }))
        .collect();
    let origin = &table.origin;
    let (listeners, certificate) = match listening.map(Listening::to_json) {
        Some(mut listening) => (
            listening["listeners"].take(),
            listening["certificate"].take(),
        ),
        None => (json!([]), serde_json::Value::Null),
    };
    json!({
        "pools": pools,
        "routes": routes,
        "default_pool": table.pools[table.routes.fallback()].name(),
        "threads": live.threads,
        "listeners": listeners,
        "certificate": certificate,
        "config": {
            "file": live.reloads.source().map(|p| p.display().to_string()),
            "generation": origin.generation,
            "sha256": origin.sha256,
            "loaded_at": humantime::format_rfc3339_seconds(origin.loaded_at).to_string(),
            "reloads": live.reloads.counts(),
        },
        "admin": admin,
    })
}

/// One member's line in `/front/status`. `state`: `down` (its upstream is not
/// available), `draining` (weight 0, or drained by an operator) or `up`.
fn member_status(m: &Member) -> serde_json::Value {
    let u = &m.upstream;
    let up = m.is_available();
    let state = member_state(m);
    json!({
        "addr": m.label,
        "scheme": u.scheme().as_str(),
        "resolved": u.addr().to_string(),
        "weight": m.weight,
        "path": m.path(),
        "up": up && m.takes_requests(),
        "state": state,
        "draining": u.is_draining(),
        "active_check": if u.is_active_up() { "up" } else { "down" },
        "passive_failed": u.passive_failed(),
        "max_conns": u.max_conns(),
        "in_flight": u.in_flight(),
    })
}

/// Each member of each pool in the current table, its state and its upstream's last
/// few seconds, as a JSON array (`crate::Front::live`, for the live page).
pub(crate) fn live(live: &Live) -> serde_json::Value {
    let table = live.table.load();
    let members = table.pools.iter().flat_map(|pool| {
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

/// A member's state on the status and live pages: `down` (its upstream is not
/// available), `draining` (weight 0, or drained by an operator) or `up`.
fn member_state(m: &Member) -> &'static str {
    match (m.is_available(), m.takes_requests()) {
        (false, _) => "down",
        (true, false) => "draining",
        (true, true) => "up",
    }
}

/// What the status pages show of the front's listeners.
#[derive(Debug)]
pub(crate) struct Listening {
    /// Each address, and whether it serves TLS.
    pub(crate) addrs: Vec<(SocketAddr, bool)>,
    /// The certificate the TLS listener presents.
    pub(crate) certificates: Option<Arc<Certificates>>,
}

impl Listening {
    pub(crate) fn to_json(&self) -> serde_json::Value {
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
