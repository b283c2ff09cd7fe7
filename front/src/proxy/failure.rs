//! Whose fault a failed forward is: the client's or the upstream's.
//!
//! A try can fail because the *client's* request body could not be read (malformed
//! chunked framing, a body that stalls, a client that went away) while the front was
//! streaming it upstream. hyper reports that as a failed send, exactly like a broken
//! upstream connection; counting it against the upstream would let two tiny malformed
//! requests mark every shard failed (`max_fails = 1`) and take the service down for
//! `fail_timeout`. So [`crate::proxy::body::UpstreamBody`] records what went wrong on
//! the client's side, and [`crate::proxy`] asks here before blaming anyone:
//! a [`ClientFault`] is answered by the front itself (nginx's 400 / 408 / 499), counted
//! in `front_client_errors_total{kind}`, never retried and never marks an upstream.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use metrics::Counter;

use crate::listen::error::json_error;

/// How long a request body may go without a byte before the front gives up on the
/// client (nginx's `client_body_timeout`, 60 s there; 10 s like loadlab's own
/// `--header-read-timeout`).
pub(crate) const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A failure reading the client's request body: the `kind` label of
/// `front_client_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientFault {
    /// The body's framing was invalid (a bad chunk size, a bad chunk terminator).
    Malformed,
    /// The body went over a size limit.
    TooLarge,
    /// No byte of the body for [`BODY_IDLE_TIMEOUT`].
    Timeout,
    /// The client closed or reset its connection mid-body.
    Gone,
}

impl ClientFault {
    /// Every kind, in label order.
    pub(crate) const ALL: [ClientFault; 4] = [
        ClientFault::Malformed,
        ClientFault::TooLarge,
        ClientFault::Timeout,
        ClientFault::Gone,
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            ClientFault::Malformed => "malformed",
            ClientFault::TooLarge => "too_large",
            ClientFault::Timeout => "timeout",
            ClientFault::Gone => "gone",
        }
    }

    /// Classifies an error that came out of reading the client's body: walks the
    /// source chain for hyper's own verdicts and the `io::Error` its decoder returns
    /// (`InvalidInput`/`InvalidData` for bad framing, `UnexpectedEof` or a reset when
    /// the client left).
    pub(crate) fn classify(error: &(dyn std::error::Error + 'static)) -> ClientFault {
        let mut source = Some(error);
        while let Some(e) = source {
            if e.is::<http_body_util::LengthLimitError>() {
                return ClientFault::TooLarge;
            }
            if let Some(e) = e.downcast_ref::<hyper::Error>() {
                if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
                    return ClientFault::Gone;
                }
                if e.is_timeout() {
                    return ClientFault::Timeout;
                }
            }
            if let Some(e) = e.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind;
                return match e.kind() {
                    ErrorKind::InvalidInput | ErrorKind::InvalidData => ClientFault::Malformed,
                    ErrorKind::TimedOut => ClientFault::Timeout,
                    _ => ClientFault::Gone,
                };
            }
            source = e.source();
        }
        // Nothing recognisable: most likely the connection went; nothing to answer.
        ClientFault::Gone
    }

    /// The status the front answers with. A client that is gone gets nothing (the
    /// answer is written to a closed socket); 400 is what it would see otherwise.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            ClientFault::Malformed | ClientFault::Gone => StatusCode::BAD_REQUEST,
            ClientFault::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ClientFault::Timeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The front's JSON answer, `detail` being the error as read.
    pub(crate) fn response(self, detail: &str) -> Response {
        let message = match self {
            ClientFault::Malformed => format!("the request body is malformed: {detail}"),
            ClientFault::TooLarge => format!("the request body is too large: {detail}"),
            ClientFault::Timeout => format!(
                "the request body stalled: no byte for {}s",
                BODY_IDLE_TIMEOUT.as_secs()
            ),
            ClientFault::Gone => format!("the client closed the connection mid-body: {detail}"),
        };
        json_error(self.status(), message)
    }
}

/// `front_client_errors_total{kind}`, one handle per [`ClientFault`], registered at 0
/// when the front starts so dashboards show 0 rather than no data.
#[derive(Debug)]
pub(crate) struct ClientErrors([Counter; 4]);

impl ClientErrors {
    /// The counters, each registered at 0.
    pub(crate) fn new() -> Self {
        Self(ClientFault::ALL.map(|kind| {
            let counter = metrics::counter!("front_client_errors_total", "kind" => kind.label());
            counter.increment(0);
            counter
        }))
    }

    /// Counts one fault.
    pub(crate) fn count(&self, fault: ClientFault) {
        self.0[fault as usize].increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn decoder_errors_are_told_apart() {
        let bad = io::Error::new(io::ErrorKind::InvalidInput, "Invalid chunk size line");
        assert_eq!(ClientFault::classify(&bad), ClientFault::Malformed);
        let eof = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "end of file before message length reached",
        );
        assert_eq!(ClientFault::classify(&eof), ClientFault::Gone);
        let wrapped = axum::Error::new(io::Error::new(io::ErrorKind::InvalidData, "bad"));
        assert_eq!(ClientFault::classify(&wrapped), ClientFault::Malformed);
    }

    #[test]
    fn each_fault_has_its_status() {
        assert_eq!(ClientFault::Malformed.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            ClientFault::TooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(ClientFault::Timeout.status(), StatusCode::REQUEST_TIMEOUT);
        for (i, kind) in ClientFault::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "ALL is in discriminant order");
        }
    }
}
