//! [`AppError`]: every way a request can fail, and how each is shown to the client.
//!
//! Handlers return `Result<_, AppError>`. Each variant is an outcome the client handles
//! differently; `IntoResponse` maps it to a status and the JSON body `{"error": "..."}`.
//! The extractors in [`crate::extract`] turn axum's rejections (bad JSON, bad query
//! strings, bodies over the limit) into the same shape, so a client never sees plain
//! text or an HTML error page from loadlab.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loadlab_workers::mega::StoreFault;
use serde_json::json;

/// The JSON error shape, for fallbacks and middleware (the front crate owns it: the
/// front and the shards answer errors alike).
pub use loadlab_front::json_error;

/// A failed request, as the client will see it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed or breaks a rule; the message says which and why.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with one still running (the same `Idempotency-Key`);
    /// the same request may succeed once that one is answered.
    #[error("{0}")]
    Conflict(String),
    /// 422: the request is well-formed but contradicts an earlier one (an
    /// `Idempotency-Key` reused for a different request).
    #[error("{0}")]
    Unprocessable(String),
    /// 413: the body is over the route's limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503 with `Retry-After`: a bounded queue is full; the same request may succeed soon.
    #[error("{what} is busy: try again shortly")]
    Busy {
        /// What is full ("the randoms queue", "the write queue").
        what: &'static str,
        /// Seconds the client should wait before retrying.
        retry_after_secs: u32,
    },
    /// 503: the service is shutting down or a component has stopped.
    #[error("{0}")]
    Unavailable(String),
    /// A fault of the store itself, never a 500 (see [`AppError::store_status`]): 507
    /// when it is full or read-only, 503 with `Retry-After` when it is busy, out of
    /// reach or failing I/O. The body names the fault (`"fault": "full"`).
    #[error("{message}")]
    Store {
        /// Which fault.
        fault: StoreFault,
        /// What was not done and why, with the store's own message.
        message: String,
    },
    /// 500: a bug or an I/O failure on our side. Logged and counted; the client gets a
    /// generic message plus the cause.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Busy { .. } | AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Store { fault, .. } => Self::store_status(*fault).0,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The status of a store fault, and the `Retry-After` seconds that go with it.
    ///
    /// Full and read-only get 507 Insufficient Storage (RFC 4918: the server cannot
    /// store what the request needs) and no `Retry-After`: only an operator clears
    /// them, so a client told to retry in a second would only hammer a store that
    /// cannot take its row, and proxies that re-send 503s to another upstream would do
    /// the same; 507 also tells dashboards and clients a full disk from an overload.
    /// Busy, a lost connection and I/O errors get 503 with `Retry-After`: they clear by
    /// themselves (a lock released, a server back, a transient EIO), and the same
    /// request may then succeed.
    pub fn store_status(fault: StoreFault) -> (StatusCode, Option<u32>) {
        match fault {
            StoreFault::Full | StoreFault::ReadOnly => (StatusCode::INSUFFICIENT_STORAGE, None),
            StoreFault::Io => (StatusCode::SERVICE_UNAVAILABLE, Some(5)),
            StoreFault::Busy | StoreFault::ConnectionLost => {
                (StatusCode::SERVICE_UNAVAILABLE, Some(1))
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let AppError::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
            metrics::counter!("http_internal_errors_total").increment(1);
        }
        let (body, retry_after) = match &self {
            AppError::Store { fault, .. } => (
                json!({ "error": self.to_string(), "fault": fault.label() }),
                Self::store_status(*fault).1,
            ),
            AppError::Busy {
                retry_after_secs, ..
            } => (
                json!({ "error": self.to_string() }),
                Some(*retry_after_secs),
            ),
            _ => (json!({ "error": self.to_string() }), None),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Describes `http_internal_errors_total` (recorded above) and registers it at zero: a
/// counter that first appears with the first error shows "no data" instead of 0 in
/// `rate()`.
pub fn describe() {
    metrics::describe_counter!(
        "http_internal_errors_total",
        "Requests answered 500 (bugs or I/O failures)"
    );
    metrics::counter!("http_internal_errors_total").increment(0);
}
