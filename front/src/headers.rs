//! The headers the front rewrites on the way through, on both paths (TCP and
//! in-process): hop-by-hop headers out in both directions, `X-Forwarded-*` in.

use std::io::Write as _;
use std::net::IpAddr;

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;

/// `X-Forwarded-For`, `-Proto`, `-Host`.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one connection, not the message (RFC 9110 7.6.1, plus the
/// old `Keep-Alive` and `Proxy-Connection`): never forwarded, in either direction.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Strips hop-by-hop headers; sets `X-Forwarded-For` (appending the peer to any list
/// the client sent), `X-Forwarded-Proto` and `X-Forwarded-Host` (the client's `Host`,
/// which is replaced by the upstream's own).
pub(crate) fn prepare_request_headers(headers: &mut HeaderMap, peer: Option<IpAddr>) {
    remove_hop_by_hop(headers);
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(peer) = peer {
        let mut list = Vec::with_capacity(48);
        for earlier in headers.get_all(&X_FORWARDED_FOR) {
            list.extend_from_slice(earlier.as_bytes());
            list.extend_from_slice(b", ");
        }
        // Writing to a Vec cannot fail.
        let _ = write!(list, "{peer}");
        // Earlier values were valid header values and an IP is ASCII: this succeeds;
        // if it somehow did not, forwarding without the header beats failing.
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(list)) {
            headers.insert(X_FORWARDED_FOR.clone(), value);
        }
    }
}

/// Removes the [`HOP_BY_HOP`] headers and any header `Connection` names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            // The usual tokens name no header to remove (keep-alive is removed anyway).
            if token.is_empty()
                || token.eq_ignore_ascii_case("keep-alive")
                || token.eq_ignore_ascii_case("close")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_forwarded_headers_come() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::HOST, HeaderValue::from_static("front.example"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        prepare_request_headers(&mut headers, Some("127.0.0.1".parse().expect("literal")));
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "transfer-encoding",
            "host",
        ] {
            assert!(headers.get(gone).is_none(), "{gone} was forwarded");
        }
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(headers["x-forwarded-host"], "front.example");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-kept"], "yes");
    }
}
