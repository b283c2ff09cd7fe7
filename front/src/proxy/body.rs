//! Bodies on their way through the front, streamed, never buffered whole.
//!
//! - [`RequestBody`] / [`UpstreamBody`]: the client's request body, held until a try
//!   reads it, so a try that never read it (a failed connect) can hand it to the next.
//!   It also watches the client's side: an error reading it, or
//!   [`BODY_IDLE_TIMEOUT`] without a byte, is recorded as a [`ClientFault`] so the
//!   proxy does not blame the upstream; and whether it was read to its end, so a
//!   connection whose request was not fully written never goes back to the idle ones
//!   (hyperium/hyper#4176).
//!
//! The response body, which gives its connection back, is the keep-alive connections':
//! [`crate::proxy::conns::KeepAliveBody`].

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::failure::{BODY_IDLE_TIMEOUT, ClientFault};

/// Time spent waiting on one side of the proxy for a byte. Only continuous waiting
/// counts: the clock starts when a poll finds nothing and stops when data comes, so
/// a pause in which nobody polled (the *other* side applying backpressure: an
/// upstream slow to read the request, a client slow to read the response) is not
/// held against the side being waited on. Used here for the client's body and by
/// [`super::conns::KeepAliveBody`] for the upstream's response.
pub(crate) struct IdleTimer {
    limit: Duration,
    /// Made on the first wait only: most bodies arrive whole, and never wait.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether the last poll found nothing.
    waiting: bool,
}

impl IdleTimer {
    /// A timer that expires after `limit` of continuous waiting.
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            limit,
            sleep: None,
            waiting: false,
        }
    }

    /// After a poll found nothing: ready once `limit` has passed since the wait began.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let limit = self.limit;
        let began = !self.waiting;
        self.waiting = true;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if began {
            sleep.as_mut().reset(Instant::now() + limit);
        }
        sleep.as_mut().poll(cx)
    }

    /// Data came: the wait is over.
    pub(crate) fn progressed(&mut self) {
        self.waiting = false;
    }
}

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
    /// What went wrong reading the client's body, with the error's text.
    fault: Option<(ClientFault, String)>,
    /// Whether the body was read to its end.
    finished: bool,
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
                    fault: None,
                    finished: false,
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
                    idle: IdleTimer::new(BODY_IDLE_TIMEOUT),
                })
            }
        }
    }

    /// What went wrong on the client's side while a try read the body, if anything.
    pub(crate) fn client_fault(&self) -> Option<(ClientFault, String)> {
        match self {
            RequestBody::Empty => None,
            RequestBody::Streamed(slot, _) => {
                slot.lock().unwrap_or_else(|e| e.into_inner()).fault.clone()
            }
        }
    }

    /// Whether the whole body has been read (always, without one).
    pub(crate) fn is_finished(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Streamed(slot, _) => {
                slot.lock().unwrap_or_else(|e| e.into_inner()).finished
            }
        }
    }

    /// A handle that tells whether the body has been read to its end, for the
    /// response body to decide whether its connection may be kept alive.
    pub(crate) fn watch(&self) -> BodyWatch {
        match self {
            RequestBody::Empty => BodyWatch(None),
            RequestBody::Streamed(slot, _) => BodyWatch(Some(Arc::clone(slot))),
        }
    }
}

/// Whether a request body was written out whole: a connection whose request body was
/// not fully written must not be reused (the upstream would read the rest of it as
/// the next request).
pub(crate) struct BodyWatch(Option<Arc<Mutex<Slot>>>);

impl BodyWatch {
    pub(crate) fn is_finished(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).finished)
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
        /// Fires after [`BODY_IDLE_TIMEOUT`] of waiting on the client for a byte.
        idle: IdleTimer,
    },
}

impl UpstreamBody {
    /// Records the end of the client's body, or what went wrong reading it.
    fn note(slot: &Mutex<Slot>, fault: Option<(ClientFault, String)>) {
        let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
        match fault {
            Some(fault) => guard.fault = Some(fault),
            None => guard.finished = true,
        }
    }
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
                idle,
                ..
            } => {
                if taken.is_none() {
                    let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
                    if guard.try_index == *try_index {
                        *taken = guard.body.take();
                    }
                }
                let Some(body) = taken else {
                    return Poll::Ready(Some(Err(axum::Error::new(
                        "the request body went to another upstream",
                    ))));
                };
                let polled = Pin::new(&mut *body).poll_frame(cx);
                match &polled {
                    Poll::Pending => {
                        ready!(idle.poll_expired(cx));
                        let fault = (ClientFault::Timeout, "no byte in time".to_owned());
                        Self::note(slot, Some(fault));
                        return Poll::Ready(Some(Err(axum::Error::new(
                            "the client's request body stalled",
                        ))));
                    }
                    Poll::Ready(Some(Ok(_))) => {
                        idle.progressed();
                        if body.is_end_stream() {
                            Self::note(slot, None);
                        }
                    }
                    Poll::Ready(None) => Self::note(slot, None),
                    Poll::Ready(Some(Err(e))) => {
                        let fault = (
                            ClientFault::classify(e),
                            crate::listen::error::error_chain(e),
                        );
                        Self::note(slot, Some(fault));
                    }
                }
                polled
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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Body as _;

    /// A client body that never sends a byte.
    struct Stalled;

    impl hyper::body::Body for Stalled {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_without_a_byte_for_the_idle_timeout_is_the_clients_fault() {
        let request = RequestBody::new(Body::new(Stalled));
        let mut body = request.for_try(0).expect("the first try gets the body");
        let started = Instant::now();

        let polled = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;

        assert!(matches!(polled, Some(Err(_))), "{polled:?}");
        assert!(started.elapsed() >= BODY_IDLE_TIMEOUT);
        let fault = request.client_fault().map(|(kind, _)| kind);
        assert_eq!(fault, Some(ClientFault::Timeout));
        assert!(!request.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn only_continuous_waiting_counts_toward_the_idle_limit() {
        let mut timer = IdleTimer::new(Duration::from_secs(10));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(timer.poll_expired(&mut cx).is_pending());
        timer.progressed();

        // Nobody polled for 11 s (backpressure from the other side): not a wait.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(timer.poll_expired(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(timer.poll_expired(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(timer.poll_expired(&mut cx).is_ready());
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_is_finished_and_blames_nobody() {
        let request = RequestBody::new(Body::from("{}"));
        let mut body = request.for_try(0).expect("the first try gets the body");
        while !body.is_end_stream() {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
            if frame.is_none() {
                break;
            }
        }
        assert!(request.is_finished());
        assert!(request.client_fault().is_none());
    }
}
