//! Bodies on their way through the front, streamed, never buffered whole.
//!
//! - [`RequestBody`] / [`UpstreamBody`]: the client's request body, held until a try
//!   reads it, so a try that never read it (a failed connect) can hand it to the next.
//! - [`PooledBody`]: an upstream response body that gives its connection back to the
//!   pool once the last byte is read (a keep-alive connection is reusable only then).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use tokio::sync::OwnedSemaphorePermit;

use super::pool::ConnPool;

/// The client's request body, kept so a try that never read it can hand it to the
/// next try.
pub(crate) enum RequestBody {
    /// No body (most GETs): every try gets an empty one, nothing to keep.
    Empty,
    /// A body, held in a slot shared with the try that may read it.
    Streamed(Arc<Mutex<Slot>>, SizeHint),
}

/// Where a request body waits until a try reads it.
pub(crate) struct Slot {
    /// The try allowed to take the body: a try the front gave up on cannot take it
    /// from the next one, however late its connection polls.
    try_index: usize,
    body: Option<Body>,
}

impl RequestBody {
    /// Keeps the client's body (or notes there is none).
    pub(crate) fn new(body: Body) -> Self {
        use hyper::body::Body as _;
        if body.is_end_stream() {
            RequestBody::Empty
        } else {
            let hint = body.size_hint();
            RequestBody::Streamed(
                Arc::new(Mutex::new(Slot {
                    try_index: 0,
                    body: Some(body),
                })),
                hint,
            )
        }
    }

    /// The body for try `attempt`, or `None` when an earlier try already read it.
    pub(crate) fn for_try(&self, attempt: usize) -> Option<UpstreamBody> {
        match self {
            RequestBody::Empty => Some(UpstreamBody::Empty),
            RequestBody::Streamed(slot, hint) => {
                let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
                guard.body.as_ref()?;
                guard.try_index = attempt;
                Some(UpstreamBody::Streamed {
                    slot: Arc::clone(slot),
                    try_index: attempt,
                    taken: None,
                    hint: *hint,
                })
            }
        }
    }
}

/// The body of one try, as the upstream client reads it.
pub(crate) enum UpstreamBody {
    /// Nothing to send.
    Empty,
    /// The client's body, taken from the slot on first read.
    Streamed {
        /// Where the body waits.
        slot: Arc<Mutex<Slot>>,
        /// This try's index: it may take the body only while the slot names it.
        try_index: usize,
        /// The body, once taken.
        taken: Option<Body>,
        /// The client body's size hint, until taken.
        hint: SizeHint,
    },
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Streamed {
                slot,
                try_index,
                taken,
                ..
            } => {
                if taken.is_none() {
                    let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
                    if guard.try_index == *try_index {
                        *taken = guard.body.take();
                    }
                }
                match taken {
                    Some(body) => Pin::new(body).poll_frame(cx),
                    None => Poll::Ready(Some(Err(axum::Error::new(
                        "the request body went to another upstream",
                    )))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Streamed { taken, .. } => {
                taken.as_ref().is_some_and(|b| b.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Streamed {
                taken: Some(body), ..
            } => body.size_hint(),
            UpstreamBody::Streamed { hint, .. } => *hint,
        }
    }
}

/// An upstream response body that returns its connection to `pool` when it ends,
/// then frees its upstream's `max_conns` slot.
///
/// A body dropped before its end (the client went away) drops the connection too:
/// hyper cannot reuse a connection with an unread response on it.
pub(crate) struct PooledBody {
    inner: Incoming,
    /// The connection and its pool, until given back.
    giveback: Option<(SendRequest<UpstreamBody>, Arc<ConnPool>)>,
    /// The request's `max_conns` slot, released after the connection is back (so the
    /// request it lets in finds the connection idle), or on drop.
    slot: Option<OwnedSemaphorePermit>,
}

impl PooledBody {
    /// Wraps `inner`; an already finished body (204, HEAD, `Content-Length: 0`) gives
    /// the connection back at once, as nothing would poll it to its end.
    pub(crate) fn new(
        inner: Incoming,
        sender: SendRequest<UpstreamBody>,
        slot: Option<OwnedSemaphorePermit>,
        pool: Arc<ConnPool>,
    ) -> Self {
        use hyper::body::Body as _;
        let mut body = Self {
            inner,
            giveback: Some((sender, pool)),
            slot,
        };
        if body.inner.is_end_stream() {
            body.give_back();
        }
        body
    }

    fn give_back(&mut self) {
        if let Some((sender, pool)) = self.giveback.take() {
            pool.checkin(sender);
        }
        self.slot = None;
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.give_back(),
            // The server stops polling once `is_end_stream` says so: give back on the
            // last frame, not only on the `None` after it.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.give_back(),
            Poll::Ready(Some(Err(_))) => {
                this.giveback = None;
                this.slot = None;
            }
            _ => {}
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
