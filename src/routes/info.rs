//! `GET /info`: what this process is and how it is doing, for a person debugging it.
//!
//! What the ancestor showed (arguments, platform, executable, version, pid, working
//! folder, cores, resident memory) plus loadlab's own: uptime, compute threads, shards
//! and their ports, the front's pools with each upstream's health, the database and the
//! writer's queue. Memory, threads and file descriptors are measured on every request.
//!
//! JSON by default; an HTML page when the client's `Accept` prefers `text/html` (a
//! browser). The page is rendered from the same JSON value, so the two forms cannot
//! disagree, and every value in it is HTML-escaped: arguments, paths and the front's
//! status are arbitrary text.

use std::str::FromStr as _;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use headers_accept::Accept;
use loadlab_workers::mega::{Database, mask_password};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use mediatype::{MediaType, names};
use serde_json::{Map, Value, json};

use crate::state::AppState;

/// `GET /info`: JSON, or HTML for clients that prefer it.
pub async fn info_show(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let info = snapshot(&state);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let mut response = if prefers_html(accept) {
        Html(render_html(&info)).into_response()
    } else {
        Json(info).into_response()
    };
    // The body depends on `Accept`: caches must not serve one form for the other.
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

/// Everything `/info` shows, one object per section.
///
/// The process figures come from `metrics_process` (the collector behind the
/// `process_*` metrics): a few reads of `/proc/self`, which the kernel answers from
/// memory, so they do not block on disk.
fn snapshot(state: &AppState) -> Value {
    let process = metrics_process::collector::collect();
    let config = state.config();
    let compute = state.compute();
    let writer = state.writer();
    let listeners = state.listeners();
    // Facts about the process, shown as they are; the configuration itself comes from
    // `Config`, never from here.
    // A `--db postgres://user:password@...` must not leak its password here.
    let arguments: Vec<String> = std::env::args_os()
        .map(|a| mask_password(&a.to_string_lossy()))
        .collect();
    let executable = std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string());
    let working_folder = std::env::current_dir()
        .ok()
        .map(|p| p.display().to_string());
    let shards: Vec<Value> = listeners
        .shards
        .iter()
        .enumerate()
        .map(|(index, addr)| {
            json!({ "index": index, "address": addr.to_string(), "port": addr.port() })
        })
        .collect();
    // The front's own status (pools, upstreams and their health), after its address.
    let front = match (listeners.front, state.front()) {
        (Some(addr), Some(front)) => {
            let mut shown = Map::new();
            shown.insert("address".to_owned(), Value::from(addr.to_string()));
            match front.status() {
                Value::Object(status) => shown.extend(status),
                other => {
                    shown.insert("status".to_owned(), other);
                }
            }
            Value::Object(shown)
        }
        _ => Value::Null,
    };
    json!({
        "service": {
            "name": env!("CARGO_PKG_NAME"),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": state.started().elapsed().as_secs_f64(),
        },
        "process": {
            "pid": std::process::id(),
            "arguments": arguments,
            "executable": executable,
            "working_folder": working_folder,
            "resident_memory_bytes": process.resident_memory_bytes,
            "virtual_memory_bytes": process.virtual_memory_bytes,
            "threads": process.threads,
            "open_fds": process.open_fds,
            "cpu_seconds": process.cpu_seconds_total,
        },
        "host": {
            "platform": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        "compute": {
            "threads": compute.threads(),
            "jobs_in_flight": compute.in_flight(),
            "jobs_max": compute.max_jobs(),
        },
        "shards": shards,
        "front": front,
        "database": {
            "store": config.writer.db.store().label(),
            "path": match &config.writer.db {
                Database::Sqlite(path) => Some(path.display().to_string()),
                Database::Postgres(_) => None,
            },
            // Shown with the password masked.
            "url": match &config.writer.db {
                Database::Sqlite(_) => None,
                Database::Postgres(url) => Some(url.to_string()),
            },
            "sync": format!("{:?}", config.writer.sync).to_lowercase(),
            "batch_max_rows": config.writer.batch_max_rows,
            "read_connections": config.read_connections,
        },
        "writer": {
            "accepting": writer.is_accepting(),
            "connected": writer.is_connected(),
            "queue_depth": writer.queue_depth(),
            "queue_capacity": writer.queue_capacity(),
        },
    })
}

/// Whether `accept` ranks `text/html` above `application/json`. No header, a header
/// that does not parse, or a tie (`*/*`, as curl sends) means JSON.
///
/// RFC 9110 section 12.5.1 negotiation (most specific range, then q-value) comes from
/// `headers-accept`; JSON is offered first so that it wins ties.
pub fn prefers_html(accept: Option<&str>) -> bool {
    const OFFERED: &[MediaType<'static>] = &[
        MediaType::new(names::APPLICATION, names::JSON),
        MediaType::new(names::TEXT, names::HTML),
    ];
    accept
        .and_then(|accept| Accept::from_str(accept).ok())
        .and_then(|accept| accept.negotiate(OFFERED))
        .is_some_and(|chosen| chosen.subty == names::HTML)
}

/// Inline styles: the page loads nothing else.
const STYLE: &str = "\
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}\
main{max-width:1100px;margin:0 auto;padding:24px}\
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:0 0 8px}\
.sub{color:#5b6573;margin:0 0 20px}\
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:14px 18px;\
margin:0 0 16px}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;vertical-align:top;padding:4px 10px 4px 0;border-bottom:1px solid #eef0f3}\
th{color:#5b6573;font-weight:600}.kv>tbody>tr>th{width:13em}.kv .kv>tbody>tr>th{width:9em}\
.grid th{border-bottom:2px solid #dde1e6}.grid td{white-space:nowrap}\
code,td{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13.5px;\
overflow-wrap:anywhere}\
ul{margin:0;padding-left:18px}.chip{display:inline-block;background:#eef0f3;border-radius:4px;\
padding:0 6px;margin:0 4px 3px 0}.none{color:#8a94a3}.ok{color:#13795b;font-weight:600}\
.bad{color:#b42318;font-weight:600}";

/// The HTML page for `info` (the value [`snapshot`] builds). maud escapes every
/// spliced value, so arguments and paths cannot inject markup.
fn render_html(info: &Value) -> String {
    let version = info["service"]["version"].as_str().unwrap_or("");
    let pid = info["process"]["pid"].to_string();
    let sections = info.as_object().into_iter().flatten();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { "loadlab " (version) " (pid " (pid) ")" }
                style { (PreEscaped(STYLE)) }
            }
            body { main {
                h1 { "loadlab " (version) }
                p class="sub" {
                    "pid " (pid) " · measured when this page was served · "
                    a href="?" { "refresh" } " · JSON: " code { "curl /info" }
                }
                @for (name, value) in sections {
                    section { h2 { (title(name)) } (render_value(name, value)) }
                }
            } }
        }
    }
    .into_string()
}

/// Renders `value` (found under `key`): objects as two-column tables, lists of flat
/// objects (shards, upstreams) as tables with a column per field, other lists as
/// bullet lists, scalars as text.
fn render_value(key: &str, value: &Value) -> Markup {
    match value {
        Value::Object(map) if !map.is_empty() => html! {
            table class="kv" {
                @for (k, v) in map { tr { th { (title(k)) } td { (render_value(k, v)) } } }
            }
        },
        Value::Array(items) if !items.is_empty() && items.iter().all(is_flat_object) => {
            let mut columns: Vec<&str> = Vec::new();
            for key in items
                .iter()
                .filter_map(Value::as_object)
                .flat_map(Map::keys)
            {
                if !columns.contains(&key.as_str()) {
                    columns.push(key);
                }
            }
            html! {
                table class="grid" {
                    thead { tr { @for column in &columns { th { (title(column)) } } } }
                    @for item in items.iter().filter_map(Value::as_object) {
                        tr { @for column in &columns {
                            td { (render_value(column, item.get(*column).unwrap_or(&Value::Null))) }
                        } }
                    }
                }
            }
        }
        // Scalars (the arguments) inline, one chip each, so a command line reads as one.
        Value::Array(items)
            if !items.is_empty() && items.iter().all(|v| !v.is_object() && !v.is_array()) =>
        {
            html! { @for item in items { span class="chip" { (scalar_text(key, item).0) } } }
        }
        Value::Array(items) if !items.is_empty() => html! {
            ul { @for item in items { li { (render_value(key, item)) } } }
        },
        Value::Object(_) | Value::Array(_) | Value::Null => html! { span class="none" { "none" } },
        scalar => {
            let (text, class) = scalar_text(key, scalar);
            html! {
                @match class {
                    Some(class) => span class=(class) { (text) },
                    None => (text),
                }
            }
        }
    }
}

/// A scalar as a person reads it, and a CSS class for health words. Units follow the
/// key's suffix, as in metric names: `_bytes` in MiB, `_seconds` as a duration.
fn scalar_text(key: &str, value: &Value) -> (String, Option<&'static str>) {
    match value {
        // Coloured only where true means healthy: elsewhere (`passive_failed`) it may not.
        Value::Bool(b) => {
            let class = matches!(key, "up" | "accepting" | "healthy").then_some(if *b {
                "ok"
            } else {
                "bad"
            });
            (if *b { "yes" } else { "no" }.to_owned(), class)
        }
        Value::Number(n) => match n.as_f64() {
            Some(x) if key.ends_with("_bytes") => (
                format!("{:.1} MiB ({n} bytes)", x / (1024.0 * 1024.0)),
                None,
            ),
            Some(x) if key.ends_with("_seconds") => (duration_text(x), None),
            _ => (n.to_string(), None),
        },
        Value::String(s) => {
            let class = match s.to_ascii_lowercase().as_str() {
                "up" | "healthy" | "ok" => Some("ok"),
                "down" | "unhealthy" | "draining" => Some("bad"),
                _ => None,
            };
            (s.clone(), class)
        }
        Value::Null | Value::Array(_) | Value::Object(_) => (String::new(), None),
    }
}

/// Whether `value` is an object of scalars only: a row of a table.
fn is_flat_object(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|map| map.values().all(|v| !v.is_object() && !v.is_array()))
}

/// `3725.4` seconds as `1h 2m 5s`; under a minute with one decimal.
fn duration_text(seconds: f64) -> String {
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let whole = seconds as u64;
    let (days, hours, minutes, secs) = (
        whole / 86_400,
        whole / 3600 % 24,
        whole / 60 % 60,
        whole % 60,
    );
    match (days, hours) {
        (0, 0) => format!("{minutes}m {secs}s"),
        (0, _) => format!("{hours}h {minutes}m {secs}s"),
        _ => format!("{days}d {hours}h {minutes}m"),
    }
}

/// `working_folder` as `working folder`; unit suffixes go (the value carries its unit).
fn title(key: &str) -> String {
    let key = key
        .strip_suffix("_bytes")
        .or_else(|| key.strip_suffix("_seconds"))
        .unwrap_or(key);
    key.replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn browsers_get_html_and_everyone_else_json() {
        let firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(prefers_html(Some(firefox)));
        assert!(prefers_html(Some("text/*")));
        assert!(!prefers_html(None));
        assert!(!prefers_html(Some("*/*")), "a tie means JSON");
        assert!(!prefers_html(Some("application/json")));
        assert!(!prefers_html(Some("text/html;q=0.5, application/json")));
        assert!(!prefers_html(Some("text/html;q=0, */*")));
        assert!(prefers_html(Some("application/json;q=0.2, text/html")));
    }

    #[test]
    fn the_most_specific_range_sets_the_quality() {
        assert!(prefers_html(Some(
            "text/*;q=0.3, text/html;q=0.7, */*;q=0.1"
        )));
        assert!(!prefers_html(Some(
            "text/*;q=0.9, text/html;q=0.2, */*;q=0.5"
        )));
        assert!(!prefers_html(Some("image/png")));
        assert!(!prefers_html(Some("not a media range at all")));
    }

    #[test]
    fn markup_in_values_is_escaped() {
        let page = render_html(&json!({ "process": { "arguments": ["<script>&\""] } }));
        assert!(page.contains("&lt;script&gt;&amp;&quot;"), "{page}");
        assert!(!page.contains("<script>"), "{page}");
    }

    #[test]
    fn units_follow_the_key_suffix() {
        assert_eq!(
            scalar_text("resident_memory_bytes", &json!(1_048_576)).0,
            "1.0 MiB (1048576 bytes)"
        );
        assert_eq!(scalar_text("uptime_seconds", &json!(3725.4)).0, "1h 2m 5s");
        assert_eq!(title("working_folder"), "working folder");
        assert_eq!(title("uptime_seconds"), "uptime");
    }

    proptest! {
        #[test]
        fn any_accept_header_is_handled_without_panicking(accept in ".{0,80}") {
            let _ = prefers_html(Some(&accept));
        }

        #[test]
        fn spliced_text_holds_no_markup(text in ".{0,80}") {
            let page = render_html(&json!({ "process": { "arguments": [text] } }));
            let body = &page[page.find("<section>").unwrap_or(0)..];
            let chip = body.split("<span class=\"chip\">").nth(1).unwrap_or("");
            let content = chip.split("</span>").next().unwrap_or("");
            prop_assert!(!content.contains(['<', '>', '"']), "{content}");
        }
    }
}
