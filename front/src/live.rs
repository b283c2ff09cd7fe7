//! The live page ([`PAGE`], one HTML file, everything inline, so it works offline and
//! behind any proxy), served by `loadlab serve` at `/live` with its whole process's
//! figures, and by the front itself at `GET /front/live`, with
//! `GET /front/live/events`: server-sent events, one JSON object a second, of the
//! front's members and their last seconds, its configuration's generation and its
//! uptime. `loadlab front`, which has no shards, gets a live page that way.
//!
//! The page reads `live/events` beside itself, whichever of the two paths served it.
//! A stream holds nothing while its client is slow or gone: each event is made when
//! the connection asks for it, and a closed connection drops the stream. At most
//! [`STREAMS_MAX`] streams are open at once in a process, both paths together; the
//! next is answered 503.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures_util::Stream;
use serde_json::json;

use crate::listen::error::json_error;
use crate::reload::Live;

/// The page.
pub const PAGE: &str = include_str!("live.html");

/// Event streams open at once, per process.
pub const STREAMS_MAX: usize = 32;

/// Time between two events.
const EVERY: Duration = Duration::from_secs(1);

/// Streams open now (every listener of the process: the limit is on its sockets and
/// tasks).
static OPEN_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// The page, as `GET /live` and `GET /front/live` answer it. Its
/// Content-Security-Policy allows nothing from elsewhere: the page is whole by itself.
pub async fn live_page() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:",
            ),
        ],
        Html(PAGE),
    )
}

/// One open stream, counted against [`STREAMS_MAX`] until dropped (with its stream).
#[derive(Debug)]
pub struct StreamTicket(());

impl StreamTicket {
    /// A ticket, or `None` when [`STREAMS_MAX`] streams are open.
    pub fn take() -> Option<Self> {
        OPEN_STREAMS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < STREAMS_MAX).then_some(open + 1)
            })
            .ok()
            .map(|_| Self(()))
    }
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        OPEN_STREAMS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the front's event stream reads.
#[derive(Debug, Clone)]
pub(crate) struct LiveState {
    pub(crate) live: Arc<Live>,
    /// When the front was made: its uptime.
    pub(crate) started: Instant,
}

/// `GET /front/live/events`: [`front_snapshot`] at once, then one a second, until the
/// client goes; 503 when [`STREAMS_MAX`] streams are open.
pub(crate) async fn front_events(State(state): State<LiveState>) -> Response {
    let Some(ticket) = StreamTicket::take() else {
        let mut refused = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the live event stream is busy ({STREAMS_MAX} open): retry later"),
        );
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return refused;
    };
    every_second(ticket, state, |state: &mut LiveState| front_snapshot(state)).into_response()
}

/// A live event stream, both paths' (`serve`'s `/live/events` too): `next(&mut state)`
/// as an event at once, then one a second, while the stream holds `ticket`
/// (dropped with it when the client goes).
pub fn every_second<S, F>(
    ticket: StreamTicket,
    state: S,
    next: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    S: Send + 'static,
    F: FnMut(&mut S) -> serde_json::Value + Send + 'static,
{
    let mut ticks = tokio::time::interval(EVERY);
    // A client that was slow to read gets the present, not a burst of the past.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = (ticket, ticks, state, next);
    Sse::new(futures_util::stream::unfold(
        start,
        |(ticket, mut ticks, mut state, mut next)| async move {
            ticks.tick().await;
            let event = Event::default().data(next(&mut state).to_string());
            Some((Ok(event), (ticket, ticks, state, next)))
        },
    ))
}

/// One event of the front's stream: the time, the front's uptime, its configuration's
/// generation, and each member of each pool with its state and last seconds
/// ([`crate::status::live`]); the page shows what is there.
pub(crate) fn front_snapshot(state: &LiveState) -> serde_json::Value {
    json!({
        "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "generation": state.live.table.load().origin.generation,
        "upstreams": crate::status::live(&state.live),
    })
}
