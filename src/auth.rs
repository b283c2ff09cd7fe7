//! Tokens on writes (`--write-token-file`): with the flag, every POST route of a shard
//! requires `Authorization: Bearer TOKEN` with a token from the file, and answers 401
//! JSON with `WWW-Authenticate: Bearer` otherwise. Reads stay open. Off by default, so
//! the ancestors' clients keep working.
//!
//! Checked on the shard's router, so it holds however a request arrives: straight to
//! a shard, through the front over TCP, or in-process. The file is re-read on SIGHUP
//! ([`crate::reload`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use loadlab_front::tokens::{Access, TokenFile, unauthorized};

/// Lets a POST through only with a valid bearer token; every other method passes.
pub async fn require_write_token(
    State(tokens): State<Arc<TokenFile>>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() == Method::POST {
        match tokens.check(req.headers()) {
            Access::Granted => {}
            refused => {
                metrics::counter!("http_unauthorized_writes_total").increment(1);
                return unauthorized(refused);
            }
        }
    }
    next.run(req).await
}

/// Describes `http_unauthorized_writes_total` and registers it at zero.
pub fn describe() {
    metrics::describe_counter!(
        "http_unauthorized_writes_total",
        "POST requests refused 401 for a missing or wrong write token (--write-token-file)"
    );
    metrics::counter!("http_unauthorized_writes_total").increment(0);
}
