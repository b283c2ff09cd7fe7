//! A minimal blocking HTTP/1.1 GET over `std::net`, for the few requests the harness
//! itself makes (readiness polls, the row count after inserts).
//!
//! Blocking and dependency-free on purpose: the harness has no async runtime, every call
//! is bounded by a timeout, and the load itself is wrk's job, not this client's.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Most bytes read from one response: the harness only reads small JSON bodies.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// A response: its status and body.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The HTTP status code.
    pub(crate) status: u16,
    /// The body, decoded from chunked encoding if needed, lossily as UTF-8.
    pub(crate) body: String,
}

/// Splits `http://host:port/path` into host, port and path (`/` when absent).
pub(crate) fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| "only http:// URLs are supported".to_owned())?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal without a port has colons only inside its brackets.
        Some((host, port)) if !port.contains(']') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("bad port `{port}`"))?;
            (host, port)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    Ok((host.to_owned(), port, path.to_owned()))
}

/// GETs `url`, giving up after `timeout` for the connection and for each read.
pub(crate) fn get(url: &str, timeout: Duration) -> Result<Reply, String> {
    let (host, port, path) = split_url(url)?;
    let addr = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    parse_response(&raw)
}

/// Parses a whole `Connection: close` response.
pub(crate) fn parse_response(raw: &[u8]) -> Result<Reply, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "the response has no end of headers".to_owned())?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Decodes a chunked body (extensions and trailers ignored).
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| "truncated chunk size".to_owned())?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size `{size_hex}`"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".to_owned());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The `rows` of `GET {base}/app/mega/stats`: how many tickets the table holds.
pub(crate) fn mega_rows(base: &str) -> Result<u64, String> {
    let url = format!("{base}/app/mega/stats");
    let reply = get(&url, Duration::from_secs(30))?;
    if reply.status != 200 {
        return Err(format!("{url} answered {}", reply.status));
    }
    let json: serde_json::Value = serde_json::from_str(&reply.body)
        .map_err(|e| format!("{url}: the body is not JSON: {e}"))?;
    json.get("rows")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("{url}: no integer `rows` in the body"))
}
