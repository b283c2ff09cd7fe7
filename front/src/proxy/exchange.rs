//! HTTP/1.1 on the wire for requests without a body (GET and HEAD, the bulk of what
//! a front carries), driven in the request's own task: [`RawConn::exchange`] writes
//! the request head and reads the response head back; [`BodyReader`] then reads the
//! response body from the same connection as the client takes it.
//!
//! Why not hyper's client, as requests with a body use ([`super::conns`]): hyper runs
//! each connection in a task of its own and talks to the request through a channel,
//! a oneshot for the response and another channel for the body. Per request that is
//! three hand-offs between tasks and their wake-ups, on a path whose work is one
//! write and one read. Measured with `benches/h2load.sh` (h2 over TLS through one
//! front thread to two shards), it was the largest cost the front adds per request
//! over nginx; docs/PERFORMANCE.md has the figures. A request with a body keeps
//! hyper's client: streaming a body out while an early answer may come back is
//! where hyper earns its keep.
//!
//! What it keeps from hyper's client: a response head of at most [`MAX_HEAD`] bytes
//! and [`MAX_HEADERS`] headers (hyper's defaults), interim (1xx) answers skipped,
//! the body framed by RFC 9112 section 6.3 (none for HEAD, 204 and 304; chunked;
//! `Content-Length`; else until the upstream closes), and a connection reused only
//! when the response said nothing against it and its body was read to the end.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Response, StatusCode, Version};
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::SizeHint;
use tokio::io::AsyncWriteExt;
use tokio_util::io::poll_read_buf;

use super::body::UpstreamBody;
use super::connect::UpstreamIo;

/// The largest response head read, in bytes (hyper's client allows about as much).
const MAX_HEAD: usize = 400 * 1024;
/// The most headers a response head may have (hyper's default).
const MAX_HEADERS: usize = 100;
/// The most bytes a chunk-size line or a trailer line may take.
const MAX_LINE: usize = 8 * 1024;
/// How much room each read asks for.
const READ_SIZE: usize = 16 * 1024;

/// Whether a request can go by [`RawConn::exchange`]: a GET or HEAD without a body
/// (`body`), whose `headers` announce none either. Both methods are safe to repeat,
/// which lets a request that met a stale keep-alive connection go again on a fresh
/// one.
pub(crate) fn is_bodiless(method: &Method, headers: &HeaderMap, body: &UpstreamBody) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && matches!(body, UpstreamBody::Empty)
        && !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|length| length.as_bytes() == b"0")
}

/// A bodiless request's head as it goes on the wire, with `host` as its `Host` and
/// every other header of `headers`; `path`: origin form. Written straight from the
/// client's request, with no copy of its headers made first. A `HeaderValue` holds no
/// CR or LF, so none can end a line early.
pub(crate) fn encode_head(
    method: &Method,
    path: &str,
    host: &HeaderValue,
    headers: &HeaderMap,
) -> BareHead {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(host.as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::HOST {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    BareHead {
        head,
        head_request: method == Method::HEAD,
    }
}

/// A bodiless request ready for [`RawConn::exchange`].
#[derive(Debug)]
pub(crate) struct BareHead {
    /// The request head, on the wire's form.
    pub(crate) head: Vec<u8>,
    /// A HEAD request, whose answer has no body.
    pub(crate) head_request: bool,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) struct ExchangeFailure {
    pub(crate) error: io::Error,
    /// The connection was closed or reset before a byte of answer came: on a reused
    /// connection, the upstream had closed it while idle (the stale keep-alive race),
    /// and the request may go again on a fresh one.
    pub(crate) stale: bool,
}

impl ExchangeFailure {
    fn invalid(message: String) -> Self {
        Self {
            error: io::Error::new(io::ErrorKind::InvalidData, message),
            stale: false,
        }
    }
}

/// A connection to an upstream with what has been read from it and not yet used.
#[derive(Debug)]
pub(crate) struct RawConn {
    io: UpstreamIo,
    buf: BytesMut,
}

impl RawConn {
    pub(crate) fn new(io: UpstreamIo) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle connection can carry a request: the upstream has not closed
    /// it and has sent nothing unasked. One read that must find nothing, polled
    /// without waiting.
    pub(crate) fn is_reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.buf.reserve(READ_SIZE);
        // A TLS record with no data (a session ticket) reads as nothing: still pending.
        matches!(
            poll_read_buf(Pin::new(&mut self.io), &mut cx, &mut self.buf),
            Poll::Pending
        ) && self.buf.is_empty()
    }

    /// Sends `head` (a bodiless request, from [`encode_head`]) and reads the response
    /// head; `head_request`: the request was a HEAD, whose answer has no body.
    pub(crate) async fn exchange(
        &mut self,
        head: &[u8],
        head_request: bool,
    ) -> Result<(Response<()>, BodyReader), ExchangeFailure> {
        let sent = async {
            self.io.write_all(head).await?;
            self.io.flush().await
        };
        if let Err(error) = sent.await {
            let stale = is_closed(&error);
            return Err(ExchangeFailure { error, stale });
        }
        let mut received = false;
        loop {
            if let Some(len) = self.parse_head(head_request)? {
                return Ok(len);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ExchangeFailure::invalid(format!(
                    "the upstream's response head is over {MAX_HEAD} bytes"
                )));
            }
            self.buf.reserve(READ_SIZE);
            let read =
                std::future::poll_fn(|cx| poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf))
                    .await;
            match read {
                Ok(0) => {
                    return Err(ExchangeFailure {
                        error: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the upstream closed the connection before answering",
                        ),
                        stale: !received,
                    });
                }
                Ok(_) => received = true,
                Err(error) => {
                    let stale = !received && is_closed(&error);
                    return Err(ExchangeFailure { error, stale });
                }
            }
        }
    }

    /// The response head, once the buffer holds a whole one (interim answers
    /// skipped), with the reader of its body.
    fn parse_head(
        &mut self,
        head_request: bool,
    ) -> Result<Option<(Response<()>, BodyReader)>, ExchangeFailure> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut headers);
            let len = match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => {
                    return Err(ExchangeFailure::invalid(format!(
                        "invalid response head from the upstream: {e}"
                    )));
                }
            };
            let code = parsed.code.unwrap_or_default();
            let status = StatusCode::from_u16(code).map_err(|_| {
                ExchangeFailure::invalid(format!("invalid status {code} from the upstream"))
            })?;
            let http11 = parsed.version == Some(1);
            let mut map = HeaderMap::with_capacity(parsed.headers.len());
            for h in parsed.headers.iter() {
                let name = HeaderName::from_bytes(h.name.as_bytes());
                let value = HeaderValue::from_bytes(h.value);
                let (Ok(name), Ok(value)) = (name, value) else {
                    return Err(ExchangeFailure::invalid(format!(
                        "invalid header `{}` from the upstream",
                        h.name
                    )));
                };
                map.append(name, value);
            }
            self.buf.advance(len);
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(ExchangeFailure::invalid(
                    "the upstream switched protocols on a request that asked for none".into(),
                ));
            }
            if status.is_informational() {
                continue;
            }
            let chunked = map.contains_key(header::TRANSFER_ENCODING);
            if chunked && !http11 {
                return Err(ExchangeFailure::invalid(
                    "Transfer-Encoding in an HTTP/1.0 answer from the upstream".into(),
                ));
            }
            let framing = Framing::of(head_request, status, &map)?;
            // Transfer-Encoding overrides Content-Length, which a proxy must then drop
            // (RFC 9112 section 6.3): the client would frame the body by it. Both at
            // once is a smuggling shape: the connection is not reused (as hyper does).
            let both = chunked && map.remove(header::CONTENT_LENGTH).is_some();
            let keep_alive =
                http11 && !both && !says_close(&map) && !matches!(framing, Framing::Close);
            let mut response = Response::new(());
            *response.status_mut() = status;
            *response.version_mut() = Version::HTTP_11;
            *response.headers_mut() = map;
            return Ok(Some((response, BodyReader::new(framing, keep_alive))));
        }
    }
}

/// Whether `error` says the peer closed or reset the connection.
fn is_closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// Whether a `Connection` header says `close`.
fn says_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}

/// How a response body ends (RFC 9112 section 6.3).
#[derive(Debug)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Inside a chunk's data, this many bytes left.
    ChunkData(u64),
    /// Chunked, between chunks' data.
    Chunked(Chunk),
    /// Until the upstream closes: the connection cannot be reused.
    Close,
    /// Read to its end (or never had one).
    Done,
}

/// Where a chunked body's decoder stands between chunks' data.
#[derive(Debug)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines (dropped) until an empty one.
    Trailers,
}

impl Framing {
    fn of(
        head_request: bool,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<Self, ExchangeFailure> {
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok(Self::Done);
        }
        if let Some(codings) = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
        {
            let last = codings.to_str().ok().and_then(|c| c.rsplit(',').next());
            let chunked = last.is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            return Ok(if chunked {
                Self::Chunked(Chunk::Size)
            } else {
                Self::Close
            });
        }
        let mut length = None;
        for value in headers.get_all(header::CONTENT_LENGTH) {
            for part in value.to_str().unwrap_or("x").split(',') {
                // Digits only: `parse` would also take a sign.
                let part = part.trim();
                let digits = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
                let parsed = part.parse::<u64>().ok().filter(|_| digits);
                if parsed.is_none() || (length.is_some() && length != parsed) {
                    return Err(ExchangeFailure::invalid(
                        "invalid Content-Length from the upstream".into(),
                    ));
                }
                length = parsed;
            }
        }
        Ok(match length {
            Some(0) => Self::Done,
            Some(n) => Self::Length(n),
            None => Self::Close,
        })
    }
}

/// Reads one response body from its connection: what the head's read left in the
/// buffer first, then the socket.
#[derive(Debug)]
pub(crate) struct BodyReader {
    framing: Framing,
    /// The response allows reuse (HTTP/1.1, no `Connection: close`, not framed by
    /// the close).
    keep_alive: bool,
}

/// What the buffer gave.
enum Step {
    Data(Bytes),
    NeedMore,
    End,
}

impl BodyReader {
    fn new(framing: Framing, keep_alive: bool) -> Self {
        Self {
            framing,
            keep_alive,
        }
    }

    /// Whether the body has been read to its end (or had none).
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.framing, Framing::Done)
    }

    /// Whether `conn` may carry another request: the body is read, the response
    /// allowed it, and nothing more came.
    pub(crate) fn leaves_reusable(&self, conn: &RawConn) -> bool {
        self.keep_alive && self.is_done() && conn.buf.is_empty()
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }

    /// The next piece of the body from `conn`: `None` at its end.
    pub(crate) fn poll_data(
        &mut self,
        conn: &mut RawConn,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match self.step(&mut conn.buf)? {
                Step::Data(data) => return Poll::Ready(Some(Ok(data))),
                Step::End => return Poll::Ready(None),
                Step::NeedMore => {}
            }
            conn.buf.reserve(READ_SIZE);
            let read = ready!(poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf))?;
            if read == 0 {
                if matches!(self.framing, Framing::Close) {
                    self.framing = Framing::Done;
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection mid-body",
                ))));
            }
        }
    }

    /// Takes what `buf` holds of the body, by its framing.
    fn step(&mut self, buf: &mut BytesMut) -> io::Result<Step> {
        loop {
            match &mut self.framing {
                Framing::Done => return Ok(Step::End),
                Framing::Length(left) | Framing::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= take as u64;
                    if *left == 0 {
                        self.framing = match self.framing {
                            Framing::Length(_) => Framing::Done,
                            _ => Framing::Chunked(Chunk::DataEnd),
                        };
                    }
                    return Ok(Step::Data(buf.split_to(take).freeze()));
                }
                Framing::Close => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Framing::Chunked(chunk) => {
                    let Some(next) = chunk_step(chunk, buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    self.framing = next;
                }
            }
        }
    }
}

/// One step of the chunked decoder outside a chunk's data: the framing after it, or
/// `None` when `buf` holds too little yet.
fn chunk_step(chunk: &Chunk, buf: &mut BytesMut) -> io::Result<Option<Framing>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    match chunk {
        Chunk::Size => match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete((used, size))) => {
                buf.advance(used);
                Ok(Some(if size == 0 {
                    Framing::Chunked(Chunk::Trailers)
                } else {
                    Framing::ChunkData(size)
                }))
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_LINE => Ok(None),
            _ => Err(invalid("invalid chunk size from the upstream")),
        },
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(None);
            }
            if &buf[..2] != b"\r\n" {
                return Err(invalid("a chunk from the upstream did not end with CRLF"));
            }
            buf.advance(2);
            Ok(Some(Framing::Chunked(Chunk::Size)))
        }
        Chunk::Trailers => {
            let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                if buf.len() > MAX_LINE {
                    return Err(invalid("a trailer line from the upstream is too long"));
                }
                return Ok(None);
            };
            buf.advance(end + 2);
            Ok(Some(if end == 0 {
                Framing::Done
            } else {
                Framing::Chunked(Chunk::Trailers)
            }))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    const GET: &[u8] = b"GET /x HTTP/1.1\r\nhost: up\r\n\r\n";

    /// An upstream that answers each request head on one connection with the next of
    /// `answers` (each written in the pieces given), then closes.
    async fn upstream(answers: Vec<Vec<&'static [u8]>>) -> RawConn {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            for pieces in answers {
                if !read_request_head(&mut socket).await {
                    return;
                }
                for piece in pieces {
                    socket.write_all(piece).await.expect("write");
                    socket.flush().await.expect("flush");
                    tokio::task::yield_now().await;
                }
            }
        });
        let stream = TcpStream::connect(addr).await.expect("connect");
        RawConn::new(UpstreamIo::Plain(stream))
    }

    /// Reads one request head off `socket`, byte by byte (never past it); `false`
    /// when the connection closed first.
    pub(crate) async fn read_request_head(socket: &mut TcpStream) -> bool {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                return false;
            }
            head.push(byte[0]);
        }
        true
    }

    async fn body(reader: &mut BodyReader, conn: &mut RawConn) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(piece) = std::future::poll_fn(|cx| reader.poll_data(conn, cx)).await {
            body.extend_from_slice(&piece?);
        }
        Ok(body)
    }

    #[tokio::test]
    async fn a_content_length_body_is_read_and_the_connection_carries_the_next_request() {
        let mut conn = upstream(vec![
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel", b"lo"],
            vec![b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"],
        ])
        .await;

        let (response, mut reader) = conn.exchange(GET, false).await.expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(reader.size_hint().exact(), Some(5));
        assert_eq!(body(&mut reader, &mut conn).await.expect("body"), b"hello");
        assert!(reader.leaves_reusable(&conn));

        let (response, reader) = conn.exchange(GET, false).await.expect("answer");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(reader.is_done());
    }

    #[tokio::test]
    async fn a_chunked_body_is_decoded_across_reads_and_its_trailers_dropped() {
        let mut conn = upstream(vec![vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nwi",
            b"ki\r\n5;ext=1\r\npedia\r\n0\r\nx-trailer: y",
            b"\r\n\r\n",
        ]])
        .await;

        let (_, mut reader) = conn.exchange(GET, false).await.expect("answer");
        assert_eq!(reader.size_hint().exact(), None);
        assert_eq!(
            body(&mut reader, &mut conn).await.expect("body"),
            b"wikipedia"
        );
        assert!(reader.leaves_reusable(&conn));
    }

    #[tokio::test]
    async fn transfer_encoding_wins_over_content_length_which_is_dropped_with_the_connection() {
        let mut conn = upstream(vec![vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\ntransfer-encoding: chunked\r\n\r\n",
            b"2\r\nok\r\n0\r\n\r\n",
        ]])
        .await;

        let (response, mut reader) = conn.exchange(GET, false).await.expect("answer");
        assert!(!response.headers().contains_key(header::CONTENT_LENGTH));
        assert_eq!(body(&mut reader, &mut conn).await.expect("body"), b"ok");
        assert!(!reader.leaves_reusable(&conn), "both framings: not reused");
    }

    #[tokio::test]
    async fn a_body_without_length_ends_when_the_upstream_closes_and_is_not_reused() {
        let mut conn = upstream(vec![vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"the end"]]).await;

        let (_, mut reader) = conn.exchange(GET, false).await.expect("answer");
        assert_eq!(
            body(&mut reader, &mut conn).await.expect("body"),
            b"until the end"
        );
        assert!(!reader.leaves_reusable(&conn));
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error() {
        let mut conn = upstream(vec![vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort",
        ]])
        .await;

        let (_, mut reader) = conn.exchange(GET, false).await.expect("answer");
        let error = body(&mut reader, &mut conn).await.expect_err("cut short");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn head_204_and_304_answers_have_no_body_whatever_their_headers_say() {
        let mut conn = upstream(vec![
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 42\r\n\r\n"],
            vec![b"HTTP/1.1 204 No Content\r\n\r\n"],
            vec![b"HTTP/1.1 304 Not Modified\r\ncontent-length: 7\r\n\r\n"],
        ])
        .await;

        let (response, reader) = conn.exchange(GET, true).await.expect("answer");
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "42");
        assert!(reader.is_done() && reader.leaves_reusable(&conn));
        for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
            let (response, reader) = conn.exchange(GET, false).await.expect("answer");
            assert_eq!(response.status(), status);
            assert!(reader.is_done() && reader.leaves_reusable(&conn));
        }
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_connection_close_is_obeyed() {
        let mut conn = upstream(vec![vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        ]])
        .await;

        let (response, mut reader) = conn.exchange(GET, false).await.expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(&mut reader, &mut conn).await.expect("body"), b"ok");
        assert!(!reader.leaves_reusable(&conn), "the upstream said close");
    }

    #[tokio::test]
    async fn malformed_answers_are_errors_not_stale_connections() {
        let cases: [&'static [u8]; 6] = [
            b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\nx",
            b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"NOT HTTP AT ALL\r\n\r\n",
        ];
        for case in cases {
            let mut conn = upstream(vec![vec![case]]).await;
            let failure = conn.exchange(GET, false).await.expect_err("malformed");
            assert!(!failure.stale, "{case:?}");
            assert_eq!(failure.error.kind(), io::ErrorKind::InvalidData, "{case:?}");
        }
    }

    #[tokio::test]
    async fn an_upstream_that_closes_before_answering_leaves_a_stale_connection() {
        let mut conn = upstream(vec![vec![]]).await;
        let failure = conn.exchange(GET, false).await.expect_err("closed");
        assert!(failure.stale);
    }

    #[tokio::test]
    async fn an_idle_connection_the_upstream_closed_is_not_reused() {
        let mut conn = upstream(vec![vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"]]).await;
        let (_, reader) = conn.exchange(GET, false).await.expect("answer");
        assert!(reader.leaves_reusable(&conn));
        assert!(conn.is_reusable(), "open and quiet");

        // The upstream closes after its one answer; the close takes a moment to land.
        let closed = async {
            while conn.is_reusable() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), closed)
            .await
            .expect("the close is seen");
    }

    #[test]
    fn only_gets_and_heads_without_a_body_go_bare() {
        let bare = |method: Method, headers: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.insert(*name, HeaderValue::from_static(value));
            }
            is_bodiless(&method, &map, &UpstreamBody::Empty)
        };
        assert!(bare(Method::GET, &[]));
        assert!(bare(Method::HEAD, &[("content-length", "0")]));
        assert!(!bare(Method::POST, &[]));
        assert!(!bare(Method::DELETE, &[]));
        assert!(!bare(Method::GET, &[("content-length", "3")]));
        assert!(!bare(Method::GET, &[("transfer-encoding", "chunked")]));
    }

    #[test]
    fn the_head_goes_out_in_origin_form_with_the_members_host_and_every_other_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("client.example"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.append("accept", HeaderValue::from_static("*/*"));
        let host = HeaderValue::from_static("127.0.0.1:4000");
        let bare = encode_head(&Method::GET, "/api/randoms?cant=10", &host, &headers);
        assert!(!bare.head_request);
        assert_eq!(
            String::from_utf8_lossy(&bare.head),
            "GET /api/randoms?cant=10 HTTP/1.1\r\nhost: 127.0.0.1:4000\r\n\
             x-forwarded-for: 10.0.0.1\r\naccept: */*\r\n\r\n"
        );
        assert!(encode_head(&Method::HEAD, "/", &host, &headers).head_request);
    }
}
