//! The metrics this crate records, described in one place so the binary that installs
//! the exporter can publish their `# HELP` lines ([`describe`]), and the buckets its
//! histograms need ([`HISTOGRAMS`]).
//!
//! Recorded in: `balance` (`front_requests_total`, `front_upstream_duration_seconds`),
//! `reload` (`front_config_reloads_total`), `upstream` (`front_upstream_up`,
//! `front_upstream_errors_total`, `front_upstream_queued_total`), `proxy`
//! (`front_retries_total`), [`crate::listen::edge`] (`http_request_timeouts_total`), `accept`
//! (`http_accept_errors_total`, `http_connections_open`, `http_listener_at_cap_total`,
//! `http_connections_idle_closed_total`, each registered at 0 when its listener
//! starts), [`crate::listen::protocol`] (`http_connections_total`) and [`crate::listen::tls`]
//! (`tls_handshakes_total`, `tls_certificate_expiry_seconds`,
//! `tls_certificate_reloads_total`).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Latency buckets (seconds) for request and upstream durations: 100 us to 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Every histogram this crate records, with its buckets: without explicit buckets the
/// Prometheus exporter renders summaries, which cannot be aggregated across instances.
pub const HISTOGRAMS: &[(&str, &[f64])] = &[("front_upstream_duration_seconds", LATENCY_BUCKETS)];

/// Describes this crate's metrics to the installed recorder and registers its error
/// counters at zero (a counter that first appears with the first error shows "no
/// data" instead of 0 in `rate()`). Call once, after installing the recorder.
pub fn describe() {
    describe_counter!(
        "front_requests_total",
        "Requests the front answered, by pool, upstream and status"
    );
    describe_histogram!(
        "front_upstream_duration_seconds",
        Unit::Seconds,
        "Time from forwarding a request to the upstream's response headers, by pool and upstream"
    );
    describe_gauge!(
        "front_upstream_up",
        "1 while the front considers the upstream healthy, 0 while it is out of rotation"
    );
    describe_counter!(
        "front_retries_total",
        "Requests the front re-sent to another upstream"
    );
    describe_counter!(
        "front_upstream_errors_total",
        "Failed attempts to reach an upstream, by upstream and kind of failure"
    );
    describe_counter!(
        "front_upstream_queued_total",
        "Requests that found their upstream at max_conns and waited for a slot"
    );
    describe_counter!(
        "front_client_errors_total",
        "Requests whose body failed on the client's side, answered by the front and not held \
            against the upstream, by kind (malformed, too_large, timeout, gone)"
    );
    describe_counter!(
        "front_response_stalls_total",
        "Upstream response bodies the front cut after 60 s without a byte"
    );
    describe_counter!(
        "front_pool_panic_total",
        "Times a pool had every member held out by passive checks and tried them anyway, by pool"
    );
    describe_counter!(
        "http_refused_requests_total",
        "Requests refused at the edge before routing, by reason (no_host, many_hosts, \
            headers_too_large, method_not_allowed)"
    );
    describe_counter!(
        "http_request_timeouts_total",
        "Requests answered 503 because they outlived --request-timeout"
    );
    describe_counter!(
        "http_accept_errors_total",
        "Failed accepts, by listener and kind (emfile, enfile, enobufs, enomem: the listener \
            pauses; aborted: the client gave up in the backlog; other)"
    );
    describe_counter!(
        "http_connections_total",
        "Client connections served, on any listener, by protocol (http1; h2 over TLS; h2c, \
            cleartext HTTP/2 with prior knowledge)"
    );
    describe_counter!(
        "tls_handshakes_total",
        "TLS handshakes on the front's listener, by result (ok, or why it failed: timeout, \
            closed, alert, incompatible, protocol, io)"
    );
    describe_gauge!(
        "tls_certificate_expiry_seconds",
        "Seconds until the front's TLS certificate expires (negative once it has)"
    );
    describe_counter!(
        "tls_certificate_reloads_total",
        "Reloads of the TLS certificate files on SIGHUP, by result (ok, failed: the old \
            certificate stays)"
    );
    describe_gauge!(
        "http_connections_open",
        "Client connections open, by listener"
    );
    describe_counter!(
        "http_listener_at_cap_total",
        "Times a listener reached --max-connections and stopped accepting (new clients wait \
            in the kernel's backlog), by listener"
    );
    describe_counter!(
        "http_connections_idle_closed_total",
        "Idle keep-alive connections closed to make room at the connection cap, by listener"
    );
    describe_counter!(
        "front_config_reloads_total",
        "Front config reloads (SIGHUP, --resolve-interval), by result (ok: swapped in; error: \
            refused, the old config kept)"
    );
    for result in crate::reload::RESULTS {
        metrics::counter!("front_config_reloads_total", "result" => result).increment(0);
    }
    metrics::counter!("http_request_timeouts_total").increment(0);
    for reason in crate::listen::edge::REFUSAL_REASONS {
        metrics::counter!("http_refused_requests_total", "reason" => reason).increment(0);
    }
}
