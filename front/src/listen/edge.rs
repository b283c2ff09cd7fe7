//! The edge: layers every listener (front and shards) puts around its routes.
//!
//! CORS with an allow-list (preflights answered here; a preflight from an origin not
//! on the list gets 403 JSON, other requests from it get no CORS headers, so browsers
//! refuse them), a time limit per request, and JSON answers for
//! unknown routes and methods (405 with `Allow`). Body-size limits are per route (the
//! service's `routes`); connection limits, the header-read timeout and hyper's own
//! header-buffer cap live in [`crate::listen::server`] and `protocol`.
//!
//! Hostile or clumsy requests are refused here with a JSON 4xx, counted in
//! `http_refused_requests_total{reason}`: an HTTP/1.1 request without `Host`, or with
//! more than one (400: which host is meant is ambiguous, a smuggling shape); a header
//! block over [`MAX_HEADER_BYTES`] (431, nginx's 4 x 8 KiB). Bodies a handler leaves
//! unread are drained (`leftover`) so its answer is not lost to a reset.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use tower::{Layer, Service, ServiceBuilder};

use crate::config::EdgeLimits;
use crate::listen::error::json_error;

/// The largest header block (names, values, and 4 bytes of `: ` and CRLF per line)
/// accepted: nginx's default `large_client_header_buffers 4 8k`. hyper's own buffer
/// (and the h2 header-list limit, both in `protocol`) stops anything past twice this
/// before it is parsed.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The `reason` labels of `http_refused_requests_total`.
pub const REFUSAL_REASONS: [&str; 4] = [
    "no_host",
    "many_hosts",
    "headers_too_large",
    "method_not_allowed",
];

/// What a listener serves: a service from requests to responses that never fails. An
/// axum [`Router`] is one (the shards, the metrics listener); the front serves its
/// own ([`crate::Front::service`]), which sends most requests on without routing them.
pub trait HttpService:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// JSON answers for unknown routes (404) and methods (405 with `Allow`): part of a
/// router's own answers, so the front's in-process path gets them from a shard too.
pub fn fallbacks(router: Router) -> Router {
    router
        .method_not_allowed_fallback(|req: Request| async move {
            refused(
                "method_not_allowed",
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed on {}", req.method(), req.uri().path()),
            )
        })
        .fallback(|req: Request| async move {
            json_error(
                StatusCode::NOT_FOUND,
                format!("no route for {} {}", req.method(), req.uri().path()),
            )
        })
}

/// The layers a listener puts around a router: the refusals and leftover drain
/// (`guard_request`), the request time limit and CORS. The front's in-process path
/// calls a shard's router without them: the front's own listener has applied the same
/// ones to the request already, and doing them twice costs a boxed future each.
pub fn guard(router: Router, limits: &EdgeLimits) -> Router {
    let router =
        time_limit(router, limits.request_timeout).layer(axum::middleware::from_fn(guard_request));
    match cors_layers(limits) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// The edge of a proxy: the layers of [`guard`], in the same order, around any
/// service rather than a router's routes (the front's service,
/// [`crate::Front::service`]), except the request time limit. The proxy folds that
/// limit into its own deadline for each request (one timer, not two nested ones) and
/// answers it as [`request_timed_out`]; the front's own routes take it from
/// [`time_limit`].
pub fn guard_proxy<S>(inner: S, limits: &EdgeLimits) -> impl HttpService
where
    S: HttpService,
    S::Future: Unpin,
{
    ServiceBuilder::new()
        .option_layer(cors_layers(limits))
        .service(Guarded { inner })
}

/// [`guard_request`] as a plain service, for [`guard_proxy`]: what axum's `from_fn`
/// does with it costs, on every request, a boxed future and a boxed clone of the
/// inner service; on the front's path to every upstream that was measurable
/// (docs/PERFORMANCE.md, "TLS and HTTP/2"). The inner service's future must be
/// `Unpin` (the front's is boxed already).
#[derive(Clone)]
struct Guarded<S> {
    inner: S,
}

impl<S> Service<Request> for Guarded<S>
where
    S: HttpService,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Guarding<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match refusal(&req) {
            Some(refused) => Guarding::Refused(Some(refused)),
            None => Guarding::Passed(
                self.inner
                    .call(crate::listen::leftover::watch_leftovers(req)),
            ),
        }
    }
}

/// [`Guarded`]'s future: the refusal, or the inner service's answer.
enum Guarding<F> {
    Refused(Option<Response>),
    Passed(F),
}

impl<F> Future for Guarding<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Guarding::Refused(refused) => match refused.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            Guarding::Passed(inner) => Pin::new(inner).poll(cx),
        }
    }
}

/// The CORS layers of an allow-list, outermost first: the refusal of foreign
/// preflights, then CORS itself; `None` when the list is empty (no CORS at all). The
/// refusal sits outside the CORS layer, which would answer a refused preflight 200
/// with no CORS headers: correct for browsers, but a 403 says plainly what is wrong.
fn cors_layers<S: HttpService>(
    limits: &EdgeLimits,
) -> Option<impl Layer<S, Service: HttpService> + Clone + Send + Sync + 'static> {
    let cors = cors_layer(&limits.cors_origins)?;
    let allowed: Arc<[String]> = limits.cors_origins.clone().into();
    Some(
        ServiceBuilder::new()
            .layer(axum::middleware::from_fn(
                move |req: Request, next: Next| {
                    refuse_foreign_preflight(Arc::clone(&allowed), req, next)
                },
            ))
            .layer(cors),
    )
}

/// `router` answering [`request_timed_out`] once a request outlives `limit`.
pub fn time_limit(router: Router, limit: Duration) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| request_timeout(limit, req, next),
    ))
}

/// Refuses requests whose head is well-formed HTTP but unsafe to act on (see the
/// module docs); passes the rest on with their body watched for leftovers
/// ([`crate::listen::leftover`]). One middleware for both: each layer costs a boxed future
/// per request.
async fn guard_request(req: Request, next: Next) -> Response {
    if let Some(refusal) = refusal(&req) {
        return refusal;
    }
    next.run(crate::listen::leftover::watch_leftovers(req))
        .await
}

/// The refusal `req` deserves, if any.
fn refusal(req: &Request) -> Option<Response> {
    let headers = req.headers();
    if req.version() == axum::http::Version::HTTP_11 {
        let mut hosts = headers.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) => {
                return Some(refused(
                    "no_host",
                    StatusCode::BAD_REQUEST,
                    "an HTTP/1.1 request needs a Host header",
                ));
            }
            (Some(_), Some(_)) => {
                return Some(refused(
                    "many_hosts",
                    StatusCode::BAD_REQUEST,
                    "the request has more than one Host header",
                ));
            }
            _ => {}
        }
    }
    let size: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (size > MAX_HEADER_BYTES).then(|| {
        refused(
            "headers_too_large",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request's headers take {size} bytes, over the {MAX_HEADER_BYTES} allowed"),
        )
    })
}

/// A refusal: counted in `http_refused_requests_total{reason}`, answered in JSON.
fn refused(reason: &'static str, status: StatusCode, message: impl Into<String>) -> Response {
    metrics::counter!("http_refused_requests_total", "reason" => reason).increment(1);
    json_error(status, message)
}

/// Answers 403 JSON to a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) from an origin not in `allowed`; passes the rest.
async fn refuse_foreign_preflight(allowed: Arc<[String]>, req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && let Some(origin) = req.headers().get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("(not text)");
        if !allowed.iter().any(|o| o == "*" || o == origin) {
            return json_error(
                StatusCode::FORBIDDEN,
                format!("origin {origin} is not allowed"),
            );
        }
    }
    next.run(req).await
}

/// Answers 503 JSON when a request outlives `limit`. Dropping the handler's future
/// cancels its work (a randoms job's cancel flag is raised on drop).
async fn request_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => request_timed_out(limit),
    }
}

/// The answer to a request that outlived the request time limit `limit`: 503 JSON,
/// counted in `http_request_timeouts_total`.
pub fn request_timed_out(limit: Duration) -> Response {
    metrics::counter!("http_request_timeouts_total").increment(1);
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the request took longer than the {}s request timeout",
            limit.as_secs_f64()
        ),
    )
}

/// The CORS layer for an allow-list; `None` when the list is empty (no CORS at all).
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            // `Idempotency-Key`: browsers may retry inserts safely too.
            .allow_headers([
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers(Any)
            .max_age(Duration::from_secs(600)),
    )
}
