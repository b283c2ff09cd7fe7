//! The few plain HTTP requests the harness makes itself (readiness polls, the row count
//! after inserts), through `ureq`: blocking, like the rest of the harness, which has no
//! async runtime. The load itself is wrk's job, not this client's.

use std::time::Duration;

/// Most bytes read from one response: the harness only reads small JSON bodies.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// A response: its status and body.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The HTTP status code.
    pub(crate) status: u16,
    /// The body, lossily as UTF-8.
    pub(crate) body: String,
}

/// The host of an `http://` URL (brackets kept on an IPv6 literal).
pub(crate) fn url_host(url: &str) -> Result<String, String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs are supported".to_owned());
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(host.to_owned()),
        _ => Err("no host".to_owned()),
    }
}

/// `GET url`, the whole exchange bounded by `timeout`. Any status is a reply (the
/// callers decide what a 503 means); only a failure to exchange at all is an error.
pub(crate) fn get(url: &str, timeout: Duration) -> Result<Reply, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .lossy_utf8(true)
        .read_to_string()
        .map_err(|e| format!("reading {url}: {e}"))?;
    Ok(Reply { status, body })
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
