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
/// database (PostgreSQL), its store commits (no fault since the last successful commit,
/// see `loadlab_workers::mega::health`) and it accepts inserts, and the compute threads
/// admit jobs. 503 with the reasons otherwise; a store fault also names its kind
/// (`"fault": "full"`).
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
    let fault = writer.store_fault();
    if let Some(active) = &fault {
        reasons.push(active.reason());
    }
    let compute = state.compute();
    if compute.in_flight() >= compute.max_jobs() {
        reasons.push("the compute threads are full".to_owned());
    }
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(not_ready(
                &reasons,
                fault.map(|active| active.fault.label()),
            )),
        )
            .into_response()
    }
}

/// The body of a 503: the reasons, joined as `error` like every error body, and listed;
/// `fault` only when a store fault is one of them.
fn not_ready(reasons: &[String], fault: Option<&'static str>) -> serde_json::Value {
    let mut body =
        json!({ "status": "not ready", "error": reasons.join("; "), "reasons": reasons });
    if let Some(fault) = fault {
        body["fault"] = fault.into();
    }
    body
}
