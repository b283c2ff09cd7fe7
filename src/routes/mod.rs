//! The HTTP routes of a shard, one module per resource, and [`app`], which assembles
//! them with the edge layers and request metrics.
//!
//! | route | handler |
//! |---|---|
//! | `GET /api/randoms` | [`randoms::randoms_count`] |
//! | `GET /app/` | [`mega::app_index`] |
//! | `POST /app/insert` | [`mega::mega_insert`] |
//! | `POST /app/insert/batch` | [`mega::mega_insert_batch`] |
//! | `GET /app/mega` | [`mega::mega_page`] |
//! | `GET /app/mega/{id}` | [`mega::mega_get`] |
//! | `GET /app/mega/stats` | [`mega::mega_stats`] |
//! | `GET /healthz`, `GET /readyz` | [`health::health_live`], [`health::health_ready`] |
//! | `GET /info` | [`info::info_show`] |
//! | `GET /live`, `GET /live/events` | [`loadlab_front::live::live_page`], [`live::live_events`] |
//! | `GET /metrics` | [`crate::metrics::metrics_render`] |

pub mod health;
pub mod info;
pub mod live;
pub mod mega;
pub mod randoms;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::metrics::metrics_render;
use crate::shard::{ShardLabel, ShardTracking, track_requests};
use crate::state::AppState;

/// The router of one shard: every route, its JSON fallbacks, the write tokens
/// ([`crate::auth`], with `--write-token-file`), and request metrics labelled with
/// `shard` (shard number `shard`). The shard's listener puts the edge guard around it
/// ([`crate::shard::Shard::spawn`]); the front's in-process path calls it as it is.
pub fn app(state: AppState, shard: usize) -> Router {
    let tracking = ShardTracking {
        label: ShardLabel::shard(shard),
        stats: state.shard_stats(shard),
    };
    let config = state.config();
    let routes = Router::new()
        .route("/api/randoms", get(randoms::randoms_count))
        .route("/app/", get(mega::app_index))
        .route("/app", get(mega::app_index))
        .route("/app/insert", post(mega::mega_insert))
        .route(
            "/app/insert/batch",
            post(mega::mega_insert_batch)
                .layer(DefaultBodyLimit::max(config.batch_body_limit_bytes)),
        )
        .route("/app/mega", get(mega::mega_page))
        .route("/app/mega/stats", get(mega::mega_stats))
        .route("/app/mega/{id}", get(mega::mega_get))
        .route("/healthz", get(health::health_live))
        .route("/readyz", get(health::health_ready))
        .route("/info", get(info::info_show))
        .route("/live", get(loadlab_front::live::live_page))
        .route("/live/events", get(live::live_events))
        .route("/metrics", get(metrics_render))
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .with_state(state.clone());
    // Only on matched routes: an unknown path is 404 with or without a token.
    let routes = match &config.write_tokens {
        Some(tokens) => routes.route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(tokens),
            crate::auth::require_write_token,
        )),
        None => routes,
    };
    loadlab_front::listen::edge::fallbacks(routes).layer(axum::middleware::from_fn_with_state(
        tracking,
        track_requests,
    ))
}
