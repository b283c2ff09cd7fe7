//! [`watch_leftovers`]: reads what a handler left of a request body, so its answer
//! reaches the client instead of a reset.
//!
//! A handler may answer before reading the whole body (413 past a body limit, 400 on
//! bad JSON, the front relaying an upstream's early answer). hyper then closes the
//! connection with the rest of the body unread in the socket, and a close with unread
//! data sends a TCP reset, which can reach the client before it has read the answer
//! and wipe it: the client sees "connection reset" instead of a 413, and a proxy in
//! front sees a broken upstream. RFC 9112 section 9.6 says to drain first. So every
//! listener (front and shards) wraps non-empty request bodies in [`Leftover`]: when a
//! body is dropped before its end, the rest is read and discarded in the background,
//! up to [`DRAIN_MAX_BYTES`] and [`DRAIN_MAX_TIME`] (HAProxy and nginx cap their
//! lingering close the same way); past either cap the connection closes as before.
//! A body read to its end also leaves the connection reusable.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};

/// The most bytes of an abandoned body read before giving up and closing.
pub(crate) const DRAIN_MAX_BYTES: usize = 16 << 20;

/// The longest an abandoned body is read before giving up and closing.
pub(crate) const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

/// `req` with its body (if it has one) wrapped in [`Leftover`]; called by the edge
/// ([`crate::listen::edge`]) for every request.
pub(crate) fn watch_leftovers(req: Request) -> Request {
    use hyper::body::Body as _;
    if req.body().is_end_stream() {
        return req;
    }
    req.map(|body| Body::new(Leftover { inner: Some(body) }))
}

/// A request body that, dropped before its end, drains the rest in a background
/// task (see the module docs).
pub(crate) struct Leftover {
    /// `None` once the body ended or failed: nothing left to drain.
    inner: Option<Body>,
}

impl hyper::body::Body for Leftover {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let Some(body) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.inner = None,
            Poll::Ready(Some(Ok(_))) if body.is_end_stream() => self.inner = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Leftover {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        // Outside a runtime (never, in loadlab) the body is simply dropped.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

/// Reads and discards `body` within the caps; returns the bytes read.
async fn drain(mut body: Body) -> usize {
    let mut read = 0;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while read < DRAIN_MAX_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    })
    .await;
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `frames` frames of 1 MiB each, all ready at once.
    struct Megabytes {
        frames: usize,
    }

    impl hyper::body::Body for Megabytes {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            if self.frames == 0 {
                return Poll::Ready(None);
            }
            self.frames -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![0u8; 1 << 20])))))
        }
    }

    #[tokio::test]
    async fn an_abandoned_body_is_drained_up_to_the_cap() {
        assert_eq!(drain(Body::new(Megabytes { frames: 3 })).await, 3 << 20);
        assert_eq!(
            drain(Body::new(Megabytes { frames: 40 })).await,
            DRAIN_MAX_BYTES
        );
    }
}
