//! A raw HTTP/1.1 client for the hostile-client tests: bytes written as given (however
//! malformed), responses parsed with httparse, and whether the server closed.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::ticket;

/// The longest a raw exchange waits for the server's answer or close: a safety net
/// against a hang (a failure), never something the tests wait out.
pub(super) const READ_LIMIT: Duration = Duration::from_secs(10);

/// What a case expects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// One response with this status, then the connection closes (the request was
    /// refused or its framing cannot be trusted: nothing after it may be read).
    StatusThenClose(u16),
    /// One response with this status and a JSON `{"error": ...}` body.
    JsonError(u16),
    /// One response with this status.
    Status(u16),
}

/// One parsed response.
#[derive(Debug)]
pub(super) struct RawResponse {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl RawResponse {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn json_error(&self) -> String {
        let body: Value = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body))
        });
        body["error"]
            .as_str()
            .expect("an `error` string")
            .to_owned()
    }
}

/// What came back on one connection.
#[derive(Debug)]
pub(super) struct Exchange {
    pub(super) responses: Vec<RawResponse>,
    /// Whether the server closed the connection (EOF or reset) after them.
    pub(super) closed: bool,
}

/// Parses the complete responses at the start of `buf`; returns them and the bytes
/// used. A response without `Content-Length` or chunking runs to the close.
pub(super) fn parse_responses(buf: &[u8], at_eof: bool) -> (Vec<RawResponse>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    loop {
        let rest = &buf[used..];
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = response.parse(rest) else {
            break;
        };
        let status = response.code.expect("a status");
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let body_start = head;
        let (body, end) = if let Some(length) = find("content-length") {
            let length: usize = length.trim().parse().expect("a numeric content-length");
            if rest.len() < body_start + length {
                break;
            }
            (
                rest[body_start..body_start + length].to_vec(),
                body_start + length,
            )
        } else if find("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            let mut body = Vec::new();
            let mut at = body_start;
            let mut complete = None;
            while let Some(line_end) = rest[at..].windows(2).position(|w| w == b"\r\n") {
                let line = std::str::from_utf8(&rest[at..at + line_end]).expect("chunk size");
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .expect("a hex chunk size");
                let data = at + line_end + 2;
                if rest.len() < data + size + 2 {
                    break;
                }
                if size == 0 {
                    // No trailers from loadlab: the final CRLF follows.
                    complete = Some(data + 2);
                    break;
                }
                body.extend_from_slice(&rest[data..data + size]);
                at = data + size + 2;
            }
            match complete {
                Some(end) => (body, end),
                None => break,
            }
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            (Vec::new(), body_start)
        } else if at_eof {
            (rest[body_start..].to_vec(), rest.len())
        } else {
            break;
        };
        out.push(RawResponse {
            status,
            headers,
            body,
        });
        used += end;
    }
    (out, used)
}

/// Writes `raw` to `addr` and reads until `want` responses have come and, if
/// `until_close`, the connection has closed (or [`READ_LIMIT`] passed: a failure the
/// caller's asserts report).
pub(super) async fn exchange(
    addr: SocketAddr,
    raw: &[u8],
    want: usize,
    until_close: bool,
) -> Exchange {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before it has read everything: a failed write
    // is part of what is tested, not an error here.
    let _ = stream.write_all(raw).await;
    read_exchange(&mut stream, want, until_close).await
}

pub(super) async fn read_exchange(
    stream: &mut TcpStream,
    want: usize,
    until_close: bool,
) -> Exchange {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut closed = false;
    let deadline = tokio::time::Instant::now() + READ_LIMIT;
    loop {
        let (responses, _) = parse_responses(&buf, false);
        if responses.len() >= want && !until_close {
            return Exchange {
                responses,
                closed: false,
            };
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    let (responses, _) = parse_responses(&buf, closed);
    Exchange { responses, closed }
}

/// A request head with `Host` and `Connection: keep-alive`, then `extra` header lines
/// (each ending in CRLF), then `body`.
pub(super) fn request(method: &str, path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut raw =
        format!("{method} {path} HTTP/1.1\r\nHost: loadlab.test\r\n{extra}\r\n").into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// A valid ticket, as JSON text.
pub(super) fn ticket_json() -> String {
    ticket([1, 2, 3, 4, 5, 6]).to_string()
}

/// A chunked body of `total` bytes of JSON-ish filler, in 16 KiB chunks, terminated.
pub(super) fn chunked_filler(total: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(total + total / 1000 + 16);
    let mut left = total;
    while left > 0 {
        let n = left.min(16 * 1024);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend(std::iter::repeat_n(b' ', n));
        out.extend_from_slice(b"\r\n");
        left -= n;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Asserts `got` is what `expect` says, naming `case` when it is not.
pub(super) fn check(case: &str, got: &Exchange, expect: Expect) {
    let first = got
        .responses
        .first()
        .unwrap_or_else(|| panic!("{case}: no response (closed: {})", got.closed));
    match expect {
        Expect::StatusThenClose(status) => {
            assert_eq!(first.status, status, "{case}: {first:?}");
            assert_eq!(got.responses.len(), 1, "{case}: a second response: {got:?}");
            assert!(got.closed, "{case}: the connection stayed open");
        }
        Expect::JsonError(status) => {
            assert_eq!(first.status, status, "{case}: {first:?}");
            assert!(!first.json_error().is_empty(), "{case}");
        }
        Expect::Status(status) => assert_eq!(first.status, status, "{case}: {first:?}"),
    }
}
