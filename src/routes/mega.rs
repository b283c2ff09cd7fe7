//! The Mega-Sena ticket routes, at the ancestor's paths so its clients keep working.
//!
//! Inserts go to the single writer thread and are answered only after commit; reads go
//! to the read connections on tokio's blocking threads (SQLite and `postgres` calls block).
//! A fault of the store (full, read-only, I/O error, busy, out of reach) is never a 500:
//! 507 when only an operator can clear it, 503 with `Retry-After` when the same request
//! may succeed later, as with a full queue ([`AppError::store_status`]). Nothing is
//! acknowledged before it is committed. A failed statement is a 500.
//!
//! Both inserts take an optional `Idempotency-Key` header: the key is stored with the
//! rows, and a retry under it gets the first answer (the same ids, header
//! `Idempotent-Replayed: true`) and stores nothing; the same key with another body is a
//! 422, a key whose first request is not answered yet a 409.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use loadlab_workers::mega::{
    Fingerprint, Idempotency, IdempotencyKey, Inserted, MegaReader, MegaTicket, PendingInsert,
    ReadError, StoreFault, StoredTicket, SubmitError, WriteError,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::AppError;
use crate::extract::{ApiPath, ApiQuery, JsonBody};
use crate::state::AppState;

/// The fields of a ticket, in order.
const FIELDS: [&str; 6] = ["num1", "num2", "num3", "num4", "num5", "num6"];
/// Largest page of `GET /app/mega`.
const PAGE_MAX: u32 = 1000;
/// The request header that makes an insert safe to retry (IETF httpapi draft "The
/// Idempotency-Key HTTP Header Field").
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on an answer replayed from the first request under the same key (as Stripe does).
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// `GET /app/`: a welcome that lists the routes.
pub async fn app_index() -> Json<Value> {
    Json(json!({
        "message": "Welcome to loadlab's Mega-Sena store",
        "routes": {
            "POST /app/insert":
                "store one ticket: {\"num1\":..,\"num6\":..}, six distinct numbers in 1..=60",
            "POST /app/insert/batch": "store a JSON array of tickets, all or nothing",
            "GET /app/mega/{id}": "one stored ticket",
            "GET /app/mega?after_id=&limit=": "a page of tickets in id order",
            "GET /app/mega/stats": "row count and how often each number was played",
            "GET /api/randoms?cant=N": "count N random draws in 1..=1000",
            "GET /healthz": "liveness",
            "GET /readyz": "readiness",
            "GET /metrics": "Prometheus metrics",
        }
    }))
}

/// `POST /app/insert`: one ticket -> `201 {"id": N, "message": ...}`.
pub async fn mega_insert(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let key = idempotency_key(&headers)?;
    let ticket = ticket_from_json(&body).map_err(AppError::BadRequest)?;
    let inserted = insert(&state, key, "insert", vec![ticket]).await?;
    let id = inserted
        .ids()
        .first()
        .copied()
        .ok_or_else(|| AppError::Internal("the writer returned no id".into()))?;
    Ok(respond(
        &inserted,
        json!({ "id": id, "message": "ticket stored" }),
    ))
}

/// `POST /app/insert/batch`: a JSON array of tickets -> `201 {"ids": [...], "count": N}`,
/// all committed in one transaction or none.
pub async fn mega_insert_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let key = idempotency_key(&headers)?;
    let Value::Array(items) = body else {
        return Err(AppError::BadRequest(
            "the body must be a JSON array of tickets".into(),
        ));
    };
    let max = state.config().batch_request_max;
    if items.is_empty() {
        return Err(AppError::BadRequest(
            "the batch is empty: send at least one ticket".into(),
        ));
    }
    if items.len() > max {
        return Err(AppError::PayloadTooLarge(format!(
            "a batch holds at most {max} tickets, got {}",
            items.len()
        )));
    }
    let tickets = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            ticket_from_json(item).map_err(|e| AppError::BadRequest(format!("ticket {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inserted = insert(&state, key, "batch", tickets).await?;
    let ids = inserted.ids();
    Ok(respond(
        &inserted,
        json!({ "count": ids.len(), "ids": ids }),
    ))
}

/// The request's `Idempotency-Key`, if it sent one; a malformed or repeated header is a
/// 400 that says what a key may hold.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, AppError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AppError::BadRequest(
            "send one Idempotency-Key header, not several".into(),
        ));
    }
    IdempotencyKey::parse(value.as_bytes())
        .map(Some)
        .map_err(|e| AppError::BadRequest(e.to_string()))
}

/// Submits `tickets` (under `key`, if given) and waits for the writer's answer.
/// `route` names the route in the request's fingerprint.
async fn insert(
    state: &AppState,
    key: Option<IdempotencyKey>,
    route: &str,
    tickets: Vec<MegaTicket>,
) -> Result<Inserted, AppError> {
    let writer = state.writer();
    let submitted = match key {
        None => writer.try_insert_many(tickets),
        Some(key) => {
            let fingerprint = Fingerprint::of(route, &tickets);
            let key = Idempotency {
                key,
                fingerprint,
                status: StatusCode::CREATED.as_u16(),
            };
            writer.try_insert_keyed(tickets, key)
        }
    };
    committed(submit(submitted)?).await
}

/// The answer to an insert: 201, or for a replay the first answer's status, marked
/// `Idempotent-Replayed: true`.
fn respond(inserted: &Inserted, body: Value) -> Response {
    match inserted {
        Inserted::Stored(_) => (StatusCode::CREATED, Json(body)).into_response(),
        Inserted::Replayed { status, .. } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::CREATED);
            let mut response = (status, Json(body)).into_response();
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            response
        }
    }
}

/// `GET /app/mega/{id}`: the stored ticket, or 404.
pub async fn mega_get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, AppError> {
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::BadRequest(format!("id `{id}` is not an integer")))?;
    let found = read(&state, move |reader| reader.get(id)).await?;
    found
        .map(|ticket| Json(ticket_json(&ticket)))
        .ok_or_else(|| AppError::NotFound(format!("no ticket with id {id}")))
}

/// Query of `GET /app/mega`.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// Return tickets with a larger id (default 0: from the start).
    after_id: Option<String>,
    /// Tickets per page (default 100, at most 1000).
    limit: Option<String>,
}

/// `GET /app/mega?after_id=&limit=`: a page of tickets in id order (keyset pagination).
pub async fn mega_page(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Value>, AppError> {
    let after_id: i64 = match query.after_id.as_deref() {
        None => 0,
        Some(s) => s
            .parse()
            .map_err(|_| AppError::BadRequest(format!("after_id `{s}` is not an integer")))?,
    };
    let limit: u32 = match query.limit.as_deref() {
        None => 100,
        Some(s) => match s.parse::<u32>() {
            Ok(n @ 1..=PAGE_MAX) => n,
            _ => {
                return Err(AppError::BadRequest(format!(
                    "limit must be an integer from 1 to {PAGE_MAX}, got `{s}`"
                )));
            }
        },
    };
    let tickets = read(&state, move |reader| reader.page(after_id, limit)).await?;
    let next = (tickets.len() == limit as usize)
        .then(|| tickets.last().map(|t| t.id))
        .flatten();
    Ok(Json(json!({
        "tickets": tickets.iter().map(ticket_json).collect::<Vec<_>>(),
        "next_after_id": next,
    })))
}

/// `GET /app/mega/stats`: the row count and how often each number 1..=60 was played.
pub async fn mega_stats(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let stats = read(&state, |reader| reader.stats()).await?;
    let plays: Map<String, Value> = stats
        .plays
        .iter()
        .enumerate()
        .map(|(i, &count)| ((i + 1).to_string(), Value::from(count)))
        .collect();
    Ok(Json(json!({ "rows": stats.rows, "plays": plays })))
}

/// Validates a JSON ticket, naming the field and the rule on failure.
pub fn ticket_from_json(value: &Value) -> Result<MegaTicket, String> {
    let Value::Object(fields) = value else {
        return Err(format!(
            "a ticket must be a JSON object with fields num1..num6, got {}",
            kind(value)
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field `{}`: a ticket has exactly num1..num6",
            shorten(unknown)
        ));
    }
    let mut numbers = [0i64; 6];
    for (slot, name) in numbers.iter_mut().zip(FIELDS) {
        *slot = match fields.get(name) {
            None => {
                return Err(format!(
                    "missing field {name}: a ticket has exactly num1..num6"
                ));
            }
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| format!("{name} must be an integer from 1 to 60, got {n}"))?,
            Some(other) => {
                return Err(format!(
                    "{name} must be an integer from 1 to 60, got {}",
                    kind(other)
                ));
            }
        };
    }
    MegaTicket::new(numbers).map_err(|e| e.to_string())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

fn ticket_json(ticket: &StoredTicket) -> Value {
    let [num1, num2, num3, num4, num5, num6] = ticket.numbers;
    json!({
        "id": ticket.id,
        "num1": num1, "num2": num2, "num3": num3, "num4": num4, "num5": num5, "num6": num6,
    })
}

fn submit(result: Result<PendingInsert, SubmitError>) -> Result<PendingInsert, AppError> {
    result.map_err(|e| match e {
        SubmitError::Full => AppError::Busy {
            what: "the write queue",
            retry_after_secs: 1,
        },
        SubmitError::Closed => {
            AppError::Unavailable("the service is shutting down: the ticket was not stored".into())
        }
        SubmitError::Empty => AppError::BadRequest("nothing to insert".into()),
        SubmitError::KeyInFlight => key_in_flight(),
    })
}

fn key_in_flight() -> AppError {
    AppError::Conflict(
        "a request with this Idempotency-Key is still in flight: retry once it is answered".into(),
    )
}

async fn committed(pending: PendingInsert) -> Result<Inserted, AppError> {
    pending.answered().await.map_err(|e| match e {
        WriteError::Commit(cause) => {
            AppError::Internal(format!("the ticket was not stored: {cause}"))
        }
        error @ (WriteError::Unavailable(_) | WriteError::Store { .. }) => AppError::Store {
            fault: error.fault().unwrap_or(StoreFault::ConnectionLost),
            message: format!("the ticket was not stored: {error}"),
        },
        WriteError::WriterGone => {
            AppError::Unavailable("the writer stopped: the ticket was not stored".into())
        }
        WriteError::KeyReused => AppError::Unprocessable(
            "the Idempotency-Key was already used with a different request: \
             send a new key for a new request"
                .into(),
        ),
        WriteError::KeyInFlight => key_in_flight(),
    })
}

/// Runs a read on tokio's blocking pool (database calls block).
async fn read<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&MegaReader) -> Result<T, ReadError> + Send + 'static,
) -> Result<T, AppError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || f(state.reader()))
        .await
        .map_err(|e| AppError::Internal(format!("the read task failed: {e}")))?
        .map_err(|e| match e.fault() {
            Some(fault) => AppError::Store {
                fault,
                message: e.to_string(),
            },
            None => AppError::Internal(e.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_ticket_parses() {
        let t = ticket_from_json(&json!({"num1":1,"num2":2,"num3":3,"num4":4,"num5":5,"num6":60}))
            .expect("valid");
        assert_eq!(t.numbers(), [1, 2, 3, 4, 5, 60]);
    }

    #[test]
    fn errors_name_the_field_and_the_rule() {
        let cases = [
            (json!([1, 2]), "JSON object"),
            (
                json!({"num1":1,"num2":2,"num3":3,"num4":4,"num5":5}),
                "missing field num6",
            ),
            (
                json!({"num1":1,"num2":2,"num3":3,"num4":4,"num5":5,"num6":6,"x":1}),
                "unknown field `x`",
            ),
            (
                json!({"num1":1.5,"num2":2,"num3":3,"num4":4,"num5":5,"num6":6}),
                "num1 must be an integer",
            ),
            (
                json!({"num1":"1","num2":2,"num3":3,"num4":4,"num5":5,"num6":6}),
                "got a string",
            ),
            (
                json!({"num1":1,"num2":2,"num3":3,"num4":4,"num5":5,"num6":61}),
                "num6 must be an integer from 1 to 60",
            ),
            (
                json!({"num1":1,"num2":2,"num3":3,"num4":4,"num5":5,"num6":1}),
                "num6 repeats num1",
            ),
        ];
        for (input, want) in cases {
            let err = ticket_from_json(&input).expect_err("invalid");
            assert!(err.contains(want), "{input}: {err}");
        }
    }
}
