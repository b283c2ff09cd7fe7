//! The headers the front rewrites on the way through, on both paths (TCP and
//! in-process): hop-by-hop headers out in both directions, `X-Forwarded-*` in.

use std::cell::RefCell;
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
/// the client sent), `X-Forwarded-Proto` (`https` when the client came `over_tls`)
/// and `X-Forwarded-Host` (the client's `Host`, which is replaced by the upstream's
/// own).
pub(crate) fn prepare_request_headers(
    headers: &mut HeaderMap,
    peer: Option<IpAddr>,
    over_tls: bool,
) {
    remove_hop_by_hop(headers);
    // Room for the three added below: one growth of the map instead of several.
    headers.reserve(3);
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    let proto = if over_tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(peer) = peer {
        let peer = peer_value(peer);
        let mut earlier = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
        let value = if earlier.peek().is_none() {
            Some(peer)
        } else {
            let mut list = Vec::with_capacity(64);
            for value in earlier {
                list.extend_from_slice(value.as_bytes());
                list.extend_from_slice(b", ");
            }
            list.extend_from_slice(peer.as_bytes());
            // Earlier values were valid header values and an IP is ASCII: this
            // succeeds; if it somehow did not, forwarding without the header beats
            // failing.
            HeaderValue::from_maybe_shared(Bytes::from(list)).ok()
        };
        if let Some(value) = value {
            headers.insert(X_FORWARDED_FOR.clone(), value);
        }
    }
}

thread_local! {
    /// The last peer address this thread wrote, as a header value: a front thread
    /// sees the same clients (and the same few proxies) again and again, and
    /// formatting an address costs more than the rest of the rewrite together.
    static LAST_PEER: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
}

/// `peer` as a header value (`127.0.0.1`, `::1`).
fn peer_value(peer: IpAddr) -> HeaderValue {
    LAST_PEER.with_borrow_mut(|last| match last {
        Some((ip, value)) if *ip == peer => value.clone(),
        _ => {
            // An IP address is ASCII: always a valid header value.
            let value = HeaderValue::from_str(&peer.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
            *last = Some((peer, value.clone()));
            value
        }
    })
}

/// Removes the [`HOP_BY_HOP`] headers and any header `Connection` names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names (a standard name compares as
    // a small tag) instead of a lookup for each of the nine.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
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
        prepare_request_headers(
            &mut headers,
            Some("127.0.0.1".parse().expect("literal")),
            false,
        );
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

    #[test]
    fn each_peer_gets_its_own_address_whatever_came_before() {
        // One thread, peers alternating: the cached address must follow the peer.
        for peer in ["127.0.0.1", "::1", "10.1.2.3", "127.0.0.1"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static("front.example"));
            prepare_request_headers(&mut headers, Some(peer.parse().expect("literal")), false);
            assert_eq!(headers["x-forwarded-for"], peer);
            let mut listed = HeaderMap::new();
            listed.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
            listed.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
            prepare_request_headers(&mut listed, Some(peer.parse().expect("literal")), true);
            assert_eq!(
                listed["x-forwarded-for"],
                format!("10.0.0.1, 10.0.0.2, {peer}").as_str()
            );
            assert_eq!(listed["x-forwarded-proto"], "https");
        }
    }

    #[test]
    fn a_message_without_hop_by_hop_headers_keeps_every_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 2);
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        remove_hop_by_hop(&mut headers);
        assert!(headers.get(header::UPGRADE).is_none());
        assert_eq!(headers.len(), 2);
    }
}
