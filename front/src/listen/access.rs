//! The access-log layer a listener puts outermost ([`AccessLayer`]): each request gets
//! an `X-Request-Id` (the client's when sane, else a new one: [`request_id`]), passed
//! on to the handler (and by the front to its upstream) and returned to the client;
//! once the answer's body has gone out (or the client has gone), one
//! [`AccessRecord`] goes to the access log's writer thread, never waited for.
//!
//! The front says which upstream it tried through an [`UpstreamSlot`] the layer puts
//! in the request's extensions: without the access log there is no slot, and the
//! proxy notes nothing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::Version;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use loadlab_logs::access::AccessLogger;
use loadlab_logs::access_line::AccessRecord;
use tower::{Layer, Service};

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-sent `X-Request-Id` kept; a longer one is replaced.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// The longest `Referer` or `User-Agent` logged (a header may be 32 KiB: the line
/// would be mostly one hostile header).
const MAX_LOGGED_HEADER_BYTES: usize = 512;

/// Where the front notes the upstream it tried last (the one that answered, or the
/// last that failed), for the access log; shared by the layer and the proxy.
#[derive(Debug, Clone, Default)]
pub struct UpstreamSlot(Arc<Mutex<Option<String>>>);

impl UpstreamSlot {
    /// Notes `upstream` (a later try overwrites an earlier one).
    pub fn note(&self, upstream: &str) {
        *self.lock() = Some(upstream.to_owned());
    }

    fn take(&self) -> Option<String> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // Holds a plain value: still usable after a panic elsewhere.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The access-log layer of one listener.
#[derive(Debug, Clone)]
pub struct AccessLayer {
    logger: AccessLogger,
    /// The listener's name in the log: `front`, `shard 0`, ...
    listener: &'static str,
    /// Whether requests get an [`UpstreamSlot`] (the front's do).
    notes_upstream: bool,
}

impl AccessLayer {
    /// Logs every request of the listener named `listener` through `logger`.
    pub fn new(logger: AccessLogger, listener: &'static str) -> Self {
        Self {
            logger,
            listener,
            notes_upstream: false,
        }
    }

    /// Also logs the upstream each request went to (the front).
    pub fn with_upstreams(mut self) -> Self {
        self.notes_upstream = true;
        self
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            layer: self.clone(),
        }
    }
}

/// [`AccessLayer`]'s service.
#[derive(Debug, Clone)]
pub struct AccessService<S> {
    inner: S,
    layer: AccessLayer,
}

impl<S> Service<Request> for AccessService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let pending = Pending::start(&mut req, &self.layer);
        let answer = self.inner.call(req);
        Box::pin(async move { Ok(pending.finish(answer.await?)) })
    }
}

/// A request's line, waiting for its answer to be sent.
struct Pending {
    record: AccessRecord,
    started: Instant,
    request_id: HeaderValue,
    upstream: Option<UpstreamSlot>,
    logger: AccessLogger,
}

impl Pending {
    /// Notes what the line needs of `req`, and gives `req` its request id (and, on
    /// the front, its upstream slot).
    fn start(req: &mut Request, layer: &AccessLayer) -> Self {
        let request_id = request_id(req.headers());
        req.headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id.clone());
        let upstream = layer.notes_upstream.then(|| {
            let slot = UpstreamSlot::default();
            req.extensions_mut().insert(slot.clone());
            slot
        });
        let headers = req.headers();
        let record = AccessRecord {
            time: SystemTime::now(),
            listener: layer.listener,
            client: req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
            method: req.method().as_str().to_owned(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned()),
            protocol: protocol(req.version()),
            status: 0,
            bytes: 0,
            duration: std::time::Duration::ZERO,
            upstream: None,
            // A sane id or one of ours: visible ASCII either way.
            request_id: request_id.to_str().unwrap_or_default().to_owned(),
            referer: logged_header(headers, &header::REFERER),
            user_agent: logged_header(headers, &header::USER_AGENT),
        };
        Self {
            record,
            started: Instant::now(),
            request_id,
            upstream,
            logger: layer.logger.clone(),
        }
    }

    /// Returns the request id with the answer, and has the line written once the
    /// answer's body is done.
    fn finish(mut self, mut response: Response) -> Response {
        response
            .headers_mut()
            .insert(X_REQUEST_ID.clone(), self.request_id.clone());
        self.record.status = response.status().as_u16();
        response.map(|inner| {
            Body::new(LoggedBody {
                inner,
                pending: Some(self),
            })
        })
    }

    /// Hands the line to the writer.
    fn log(mut self) {
        self.record.duration = self.started.elapsed();
        self.record.upstream = self.upstream.as_ref().and_then(UpstreamSlot::take);
        self.logger.log(self.record);
    }
}

/// An answer's body, counting what goes out; the line is written when it is dropped:
/// after its last frame, or when the client went away mid-body.
struct LoggedBody {
    inner: Body,
    /// The line, its byte count growing with each frame; taken when it is written.
    pending: Option<Pending>,
}

impl hyper::body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && let Some(pending) = self.pending.as_mut()
        {
            pending.record.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.log();
        }
    }
}

/// The request's id: the client's `X-Request-Id` when it is sane (1 to
/// [`MAX_REQUEST_ID_BYTES`] bytes of visible ASCII, one header), else a new one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut given = headers.get_all(&X_REQUEST_ID).iter();
    match (given.next(), given.next()) {
        (Some(id), None) if is_sane(id.as_bytes()) => id.clone(),
        _ => new_request_id(),
    }
}

/// Whether `id` may be passed on and logged as it is.
fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_BYTES
        && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A new request id: 32 hex digits, a random prefix per process and a counter, so ids
/// are unique within a process and (almost surely) across processes.
fn new_request_id() -> HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // std's per-process random hash keys: random enough for an id, no crate.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        hasher.write_u32(std::process::id());
        hasher.finish()
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Hex digits only: always a valid header value.
    HeaderValue::from_str(&format!("{prefix:016x}{n:016x}"))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `header`'s value as text, cut to [`MAX_LOGGED_HEADER_BYTES`]; `None` when absent.
fn logged_header(headers: &HeaderMap, header: &HeaderName) -> Option<String> {
    let value = headers.get(header)?;
    let bytes = value.as_bytes();
    let cut = &bytes[..bytes.len().min(MAX_LOGGED_HEADER_BYTES)];
    Some(String::from_utf8_lossy(cut).into_owned())
}

/// The protocol as the request line names it.
fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_id(id: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            X_REQUEST_ID.clone(),
            HeaderValue::from_bytes(id).expect("a header value"),
        );
        headers
    }

    #[test]
    fn a_sane_request_id_is_kept() {
        let id = request_id(&with_id(b"req-42_a.b:c"));
        assert_eq!(id, "req-42_a.b:c");
    }

    #[test]
    fn a_missing_long_spaced_or_doubled_request_id_is_replaced() {
        let long = vec![b'a'; MAX_REQUEST_ID_BYTES + 1];
        let mut doubled = with_id(b"one");
        doubled.append(X_REQUEST_ID.clone(), HeaderValue::from_static("two"));
        for headers in [
            HeaderMap::new(),
            with_id(&long),
            with_id(b"a b"),
            with_id(b"caf\xc3\xa9"),
            doubled,
        ] {
            let id = request_id(&headers);
            assert_eq!(id.len(), 32, "{id:?}");
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit), "{id:?}");
        }
        let longest = vec![b'a'; MAX_REQUEST_ID_BYTES];
        assert_eq!(request_id(&with_id(&longest)).len(), MAX_REQUEST_ID_BYTES);
    }

    #[test]
    fn new_request_ids_differ() {
        let a = request_id(&HeaderMap::new());
        let b = request_id(&HeaderMap::new());
        assert_ne!(a, b);
    }
}
