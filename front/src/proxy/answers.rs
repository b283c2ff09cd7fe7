//! The answers the front gives itself when a forward gets no response from a member:
//! 504 (no `max_conns` slot in time, no answer in time) and 502 (the last member failed,
//! no member to try), each counted under the member (or `none`) it concerns. Whether
//! one applies is the proxy's decision ([`super::Proxy`]); here is what it says.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;

use crate::listen::error::json_error;
use crate::pools::balance::{Member, Pool, requests_counter};

/// 504: `member` had its `max_conns` requests in flight and none finished within the
/// upstream timeout, `response_timeout`.
pub(super) fn no_slot_in_time(member: &Member, response_timeout: Duration) -> Response {
    let upstream = &member.upstream;
    member.count_status(StatusCode::GATEWAY_TIMEOUT.as_u16());
    json_error(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "upstream {} had its max_conns ({}) requests in flight and none finished \
                within the {}s upstream timeout",
            upstream.label(),
            upstream.max_conns(),
            response_timeout.as_secs_f64()
        ),
    )
}

/// 504: `member` sent no response headers within the upstream timeout,
/// `response_timeout`.
pub(super) fn upstream_timed_out(member: &Member, response_timeout: Duration) -> Response {
    member.count_status(StatusCode::GATEWAY_TIMEOUT.as_u16());
    json_error(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "upstream {} did not answer within the {}s upstream timeout",
            member.upstream.label(),
            response_timeout.as_secs_f64()
        ),
    )
}

/// 502: the last member tried, `member`, failed with `message` and no other may be
/// tried; says so when `pool` is in panic mode (trying members held out).
pub(super) fn upstream_failed(pool: &Pool, member: &Member, message: &str) -> Response {
    member.count_status(StatusCode::BAD_GATEWAY.as_u16());
    let panic = if pool.in_panic() {
        format!(
            "no upstream of pool `{}` is available (all held out, tried anyway); ",
            pool.name()
        )
    } else {
        String::new()
    };
    json_error(
        StatusCode::BAD_GATEWAY,
        format!("{panic}upstream {} failed: {message}", member.label),
    )
}

/// 502: `pool` had no member to try.
pub(super) fn no_upstream_available(pool: &Pool) -> Response {
    requests_counter(pool.name(), "none", StatusCode::BAD_GATEWAY.as_u16()).increment(1);
    json_error(
        StatusCode::BAD_GATEWAY,
        format!("no upstream of pool `{}` is available", pool.name()),
    )
}
