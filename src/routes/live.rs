//! The live page: `GET /live` (the page itself is the front's,
//! [`loadlab_front::live::live_page`]: one HTML file, everything inline, which
//! `loadlab front` serves too) and `GET /live/events` ([`live_events`]: server-sent
//! events, one JSON object a second: [`live_snapshot`], the whole process).
//!
//! Built from the process's own counts (each shard's and each upstream's
//! `LiveWindow`, the compute threads, the writer), not from the Prometheus text. A
//! stream holds nothing while its client is slow or gone: each event is made when
//! the connection asks for it, and a closed connection drops the stream. At most
//! [`loadlab_front::live::STREAMS_MAX`] streams are open at once, the front's own
//! included; the next is answered 503.

use std::convert::Infallible;
use std::time::{Instant, SystemTime};

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use futures_util::Stream;
use loadlab_front::live::{StreamTicket, every_second};
use serde_json::{Value, json};

use crate::error::AppError;
use crate::state::AppState;

/// `GET /live/events`: a [`live_snapshot`] at once, then one a second, until the
/// client goes; 503 when [`loadlab_front::live::STREAMS_MAX`] streams are open.
pub async fn live_events(
    State(state): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let ticket = StreamTicket::take().ok_or(AppError::Busy {
        what: "the live event stream",
        retry_after_secs: 5,
    })?;
    // The writer's totals of the previous event, for this one's rates.
    let start = (state, None::<Committed>);
    Ok(every_second(ticket, start, |(state, last)| {
        let (data, now) = live_snapshot(state, *last);
        *last = Some(now);
        data
    }))
}

/// The writer's totals at one event, for the next event's rates.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    at: Instant,
    batches: u64,
    rows: u64,
}

/// What the page shows now: each shard's and each upstream's last seconds, the compute
/// threads and the writer (its batches since `last`, the previous event's totals).
pub fn live_snapshot(state: &AppState, last: Option<Committed>) -> (Value, Committed) {
    let shards: Vec<Value> = state
        .listeners()
        .shards
        .iter()
        .enumerate()
        .map(|(index, addr)| {
            let mut shard = json!({ "shard": index, "addr": addr.to_string() });
            let window = serde_json::to_value(state.shard_stats(index).window().snapshot());
            if let (Some(fields), Ok(Value::Object(window))) = (shard.as_object_mut(), window) {
                fields.extend(window);
            }
            shard
        })
        .collect();
    let compute = state.compute();
    let writer = state.writer();
    let (batches, rows) = writer.committed();
    let now = Committed {
        at: Instant::now(),
        batches,
        rows,
    };
    let (batches_per_second, rows_per_batch) = match last {
        Some(last) => {
            let seconds = now.at.duration_since(last.at).as_secs_f64().max(1e-3);
            let batches = now.batches.saturating_sub(last.batches);
            let rows = now.rows.saturating_sub(last.rows);
            let per_batch = (batches > 0).then(|| rows as f64 / batches as f64);
            (Some(batches as f64 / seconds), per_batch)
        }
        None => (None, None),
    };
    let mut data = json!({
        "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "uptime_seconds": state.started().elapsed().as_secs_f64(),
        "shards": shards,
        "upstreams": state.front().map_or(Value::Array(Vec::new()), |f| f.live()),
        "compute": {
            "in_flight": compute.in_flight(),
            "capacity": compute.max_jobs(),
            "threads": compute.threads(),
        },
        "writer": {
            "store": writer.store(),
            "queue": writer.queue_depth(),
            "capacity": writer.queue_capacity(),
            "batches_per_second": batches_per_second,
            "rows_per_batch": rows_per_batch,
        },
    });
    // The front's configuration generation, so a reload shows on the page.
    if let (Some(front), Some(fields)) = (state.front(), data.as_object_mut()) {
        fields.insert("generation".to_owned(), json!(front.generation()));
    }
    (data, now)
}
