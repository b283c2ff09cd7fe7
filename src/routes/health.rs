//! Liveness and readiness, as load balancers and orchestrators probe them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz`: the process answers. Cheap on purpose: it is what the front's active
/// health checks and load tests hit.
pub async fn health_live() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// `GET /readyz`: ready to do all its work: the writer thread runs, is connected to its
/// database (PostgreSQL) and accepts inserts, and the compute threads admit jobs. 503 with
/// the reasons otherwise.
pub async fn health_ready(State(state): State<AppState>) -> Response {
    let mut reasons = Vec::new();
    let writer = state.writer();
    if writer.is_stopped() {
        reasons.push("the Mega writer thread has stopped".to_owned());
    } else if !writer.is_accepting() {
        reasons.push("the Mega writer is shutting down".to_owned());
    } else if !writer.is_connected() {
        reasons.push("the Mega writer is not connected to the database".to_owned());
    } else if writer.queue_depth() >= writer.queue_capacity() {
        reasons.push("the Mega write queue is full".to_owned());
    }
    let pool = state.pool();
    if pool.in_flight() >= pool.max_jobs() {
        reasons.push("the compute threads are full".to_owned());
    }
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "error": reasons.join("; "), "reasons": reasons })),
        )
            .into_response()
    }
}
