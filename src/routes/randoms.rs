//! `GET /api/randoms?cant=N[&method=M][&seed=S][&pretty=true]`: the histogram of N
//! uniform draws in 1..=1000, made on the compute threads; the reply maps each number that
//! came up to its count, keys ascending. `method=draw` (the default) draws and counts
//! the N numbers; `method=multinomial` samples the same histogram exactly from its law,
//! in time independent of N ([`loadlab_workers::multinomial`]).
//!
//! The handler only parses, admits and awaits: the counting and the rendering of the
//! reply run on the compute threads, so the async runtime stays free for every other
//! request. If the client goes away the handler's future is dropped, which drops the
//! job and raises its cancel flag.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use loadlab_workers::compute::ComputeError;
use loadlab_workers::method::Method;
use loadlab_workers::randoms::{Histogram, random_seed};
use serde::Deserialize;

use crate::count::{CountError, parse_count};
use crate::error::AppError;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The query string. Fields are strings so that every parse error is ours to word.
#[derive(Debug, Deserialize)]
pub struct RandomsQuery {
    /// Draws; absent: the configured default.
    cant: Option<String>,
    /// `draw` or `multinomial`; absent: `draw`.
    method: Option<String>,
    /// Seed for a reproducible answer; absent: a random seed.
    seed: Option<String>,
    /// `true`/`1` to indent the JSON.
    pretty: Option<String>,
}

/// `GET /api/randoms`.
pub async fn randoms_count(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RandomsQuery>,
) -> Result<Response, AppError> {
    let limits = state.config().randoms;
    let method = match query.method.as_deref() {
        None => Method::default(),
        Some(method) => method
            .parse::<Method>()
            .map_err(|e| AppError::BadRequest(e.to_string()))?,
    };
    let max_count = match method {
        Method::Draw => limits.max_count,
        Method::Multinomial => limits.multinomial_max_count,
    };
    let count = match query.cant.as_deref() {
        None => limits.default_count,
        Some(cant) => parse_count(cant, max_count).map_err(|e| match e {
            CountError::TooLarge { .. } => {
                AppError::BadRequest(format!("cant {e} for method={method}"))
            }
            other => AppError::BadRequest(format!("cant {other}")),
        })?,
    };
    let seed = match query.seed.as_deref() {
        None => random_seed(),
        Some(seed) => seed.parse::<u64>().map_err(|_| {
            AppError::BadRequest(format!(
                "seed `{seed}` is not an integer from 0 to {}",
                u64::MAX
            ))
        })?,
    };
    let pretty = match query.pretty.as_deref() {
        None | Some("false" | "0") => false,
        Some("" | "true" | "1") => true,
        Some(other) => {
            return Err(AppError::BadRequest(format!(
                "pretty must be true or false, got `{other}`"
            )));
        }
    };
    let job = state
        .compute()
        .try_count_randoms_then(count, seed, method, move |histogram| {
            render(&histogram, pretty)
        })
        .map_err(|e| match e {
            ComputeError::Full { .. } => AppError::Busy {
                what: "the randoms queue",
                retry_after_secs: 1,
            },
            other => AppError::Internal(other.to_string()),
        })?;
    let json = job
        .outcome()
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// The histogram as a JSON object, keys ascending, rendered on the compute thread
/// that counted it ([`loadlab_workers::compute::Compute::try_count_randoms_then`]).
/// For small `cant` the rendering is most of a request's work: on the serving thread it
/// bounded how many such requests one front thread could serve, so it moved to the
/// compute thread, and numbers go through `itoa` rather than `write!` (the measurements
/// are in docs/PERFORMANCE.md, "Design measurements").
fn render(histogram: &Histogram, pretty: bool) -> String {
    // `"1000":` plus a count and a separator: about 16 bytes an entry, pretty or not.
    let mut out = String::with_capacity(16 * 1024);
    let mut digits = itoa::Buffer::new();
    out.push('{');
    for (i, (number, count)) in histogram.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(if pretty { "\n  \"" } else { "\"" });
        out.push_str(digits.format(number));
        out.push_str(if pretty { "\": " } else { "\":" });
        out.push_str(digits.format(count));
    }
    if pretty && out.len() > 1 {
        out.push('\n');
    }
    out.push('}');
    out
}
