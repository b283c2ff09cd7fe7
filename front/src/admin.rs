//! The front's own routes under `/front/`: `GET /front/status`, the live page
//! (`GET /front/live` and its events, [`crate::live`]), and the admin actions on one
//! upstream address, guarded by a bearer token (`--admin-token-file`):
//!
//! - `POST /front/upstreams/{addr}/drain`: no new requests go to `addr` (in every pool
//!   listing it) while those in flight finish; the end of the drain is logged.
//! - `POST /front/upstreams/{addr}/ready`: it takes requests again.
//!
//! `addr` is the address as the config file writes it (`host:port`) or as it resolved
//! (`ip:port`). A drain belongs to the address, not to the config: a reload that keeps
//! the address keeps it drained. Without admin tokens every action answers 403, so an
//! open port never lets a stranger take members out.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::listen::error::json_error;
use crate::live::{LiveState, front_events};
use crate::pools::upstream::Upstream;
use crate::reload::Live;
use crate::status::Listening;
use crate::tokens::{Access, TokenFile, unauthorized};

/// How often a drain's watcher looks at the requests still in flight.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// What the front's own routes need.
#[derive(Debug, Clone)]
pub(crate) struct AdminState {
    pub(crate) live: Arc<Live>,
    /// Where the front listens, once it serves.
    pub(crate) listening: Arc<OnceLock<Listening>>,
    /// `--admin-token-file`; `None`: admin is off.
    pub(crate) tokens: Option<Arc<TokenFile>>,
    /// When the front was made: the live page's uptime.
    pub(crate) started: Instant,
}

/// The front's own routes (before `/metrics`, added by the caller).
pub(crate) fn routes(state: AdminState) -> Router {
    let live = LiveState {
        live: Arc::clone(&state.live),
        started: state.started,
    };
    Router::new()
        .route("/front/status", get(front_status))
        .route("/front/upstreams/{addr}/{action}", post(upstream_action))
        .with_state(state)
        .merge(
            Router::new()
                .route("/front/live", get(crate::live::live_page))
                .route("/front/live/events", get(front_events))
                .with_state(live),
        )
}

/// `GET /front/status`: `Front::status`.
async fn front_status(State(state): State<AdminState>) -> axum::Json<serde_json::Value> {
    axum::Json(crate::status::status(
        &state.live,
        state.listening.get(),
        state.tokens.is_some(),
    ))
}

/// `POST /front/upstreams/{addr}/drain` and `POST /front/upstreams/{addr}/ready`.
async fn upstream_action(
    State(state): State<AdminState>,
    Path((addr, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let drain = match action.as_str() {
        "drain" => true,
        "ready" => false,
        _ => {
            return json_error(
                StatusCode::NOT_FOUND,
                format!("no admin action `{action}`: use drain or ready"),
            );
        }
    };
    let upstream = match admitted(&state, &addr, &headers) {
        Ok(upstream) => upstream,
        Err(refusal) => return *refusal,
    };
    if upstream.set_draining(drain) {
        let (label, in_flight) = (upstream.label(), upstream.in_flight());
        if drain {
            tracing::info!(
                upstream = label,
                in_flight,
                "upstream draining: no new requests"
            );
            tokio::spawn(watch_drain(Arc::clone(&upstream)));
        } else {
            tracing::info!(upstream = label, "upstream ready: taking requests again");
        }
    }
    axum::Json(json!({
        "upstream": upstream.label(),
        "draining": upstream.is_draining(),
        "in_flight": upstream.in_flight(),
    }))
    .into_response()
}

/// The upstream an admin action names, once its token is checked: 403 with admin off,
/// 401 without a valid token, 404 for an address the config does not list.
/// (Boxed: a refusal is the rare path.)
fn admitted(
    state: &AdminState,
    addr: &str,
    headers: &HeaderMap,
) -> Result<Arc<Upstream>, Box<Response>> {
    let Some(tokens) = &state.tokens else {
        return Err(Box::new(json_error(
            StatusCode::FORBIDDEN,
            "admin is off: start with --admin-token-file",
        )));
    };
    match tokens.check(headers) {
        Access::Granted => {}
        refused => return Err(Box::new(unauthorized(refused))),
    }
    let table = state.live.table.load();
    table.upstream(addr).cloned().ok_or_else(|| {
        Box::new(json_error(
            StatusCode::NOT_FOUND,
            format!("no upstream {addr} in the front config"),
        ))
    })
}

/// Logs once `upstream`'s last request in flight has finished, unless the drain is
/// called off first.
async fn watch_drain(upstream: Arc<Upstream>) {
    while upstream.is_draining() {
        if upstream.in_flight() == 0 {
            tracing::info!(
                upstream = upstream.label(),
                "upstream drained: no request in flight"
            );
            return;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}
