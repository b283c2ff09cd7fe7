//! One access-log line: what is recorded of a request ([`AccessRecord`]) and its two
//! shapes ([`AccessFormat`]): a JSON object, or the combined log format of Apache and
//! nginx with loadlab's fields appended.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// The shape of a line (`--access-log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessFormat {
    /// One JSON object per line (the fields of [`AccessRecord`]).
    Json,
    /// `client - - [time] "method path protocol" status bytes "referer" "user agent"`
    /// (what log tools parse as *combined*), then `duration upstream request_id
    /// listener`: seconds, and three quoted fields (`"-"` when absent).
    Combined,
}

/// What the access log records of one request.
#[derive(Debug, Clone, Serialize)]
pub struct AccessRecord {
    /// When the request came in (the line is written once its answer is sent).
    #[serde(serialize_with = "rfc3339_millis")]
    pub time: SystemTime,
    /// Which listener took it: `front`, or `shard N`.
    pub listener: &'static str,
    /// The client's address (the peer of the connection).
    pub client: Option<SocketAddr>,
    /// The request method.
    pub method: String,
    /// The path and query, as received.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub protocol: &'static str,
    /// The status sent.
    pub status: u16,
    /// Body bytes sent (fewer than the body's length when the client went away).
    pub bytes: u64,
    /// From the request's arrival to the end of its answer's body.
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
    /// The front: the upstream that answered (`None` when the front answered itself).
    pub upstream: Option<String>,
    /// `X-Request-Id`: the client's, when sane, else one made up for it.
    pub request_id: String,
    /// The `Referer` header.
    pub referer: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

impl AccessRecord {
    /// Appends the line (without its newline) in `format` to `out`.
    pub fn write_line(&self, format: AccessFormat, out: &mut Vec<u8>) {
        match format {
            AccessFormat::Json => {
                // Serializing plain strings and numbers cannot fail.
                let _ = serde_json::to_writer(&mut *out, self);
            }
            AccessFormat::Combined => {
                let mut line = String::with_capacity(256);
                self.combined(&mut line);
                out.extend_from_slice(line.as_bytes());
            }
        }
    }

    /// The combined format, and loadlab's fields after it.
    fn combined(&self, line: &mut String) {
        let client = self.client.map(|c| c.ip().to_string());
        let _ = write!(
            line,
            "{} - - [{}] \"",
            client.as_deref().unwrap_or("-"),
            clf_time(self.time)
        );
        escape(&self.method, line);
        line.push(' ');
        escape(&self.path, line);
        let _ = write!(line, " {}\" {} {} ", self.protocol, self.status, self.bytes);
        quoted(self.referer.as_deref(), line);
        line.push(' ');
        quoted(self.user_agent.as_deref(), line);
        let _ = write!(line, " {:.6} ", self.duration.as_secs_f64());
        quoted(self.upstream.as_deref(), line);
        line.push(' ');
        quoted(Some(&self.request_id), line);
        line.push(' ');
        quoted(Some(self.listener), line);
    }
}

/// `"value"` escaped, or `"-"`.
fn quoted(value: Option<&str>, line: &mut String) {
    line.push('"');
    match value {
        Some(value) => escape(value, line),
        None => line.push('-'),
    }
    line.push('"');
}

/// `value` with `"`, `\` and anything not printable ASCII as `\xHH` (nginx's
/// escaping), so a hostile header cannot forge a field or a line.
fn escape(value: &str, line: &mut String) {
    for byte in value.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\' {
            line.push(char::from(byte));
        } else {
            let _ = write!(line, "\\x{byte:02X}");
        }
    }
}

/// `10/Oct/2000:13:55:36 +0000`: the common log format's time, in UTC.
fn clf_time(time: SystemTime) -> String {
    // `2000-10-10T13:55:36Z`: fixed positions.
    let iso = humantime::format_rfc3339_seconds(time).to_string();
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .unwrap_or(&"???");
    format!(
        "{}/{month}/{}:{} +0000",
        iso.get(8..10).unwrap_or("??"),
        iso.get(0..4).unwrap_or("????"),
        iso.get(11..19).unwrap_or("??:??:??")
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn rfc3339_millis<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*time))
}

fn seconds<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            // 2000-10-10T13:55:36.5Z
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(971_186_136_500),
            listener: "front",
            client: Some("127.0.0.1:40000".parse().expect("addr")),
            method: "GET".to_owned(),
            path: "/api/randoms?cant=10".to_owned(),
            protocol: "HTTP/1.1",
            status: 200,
            bytes: 1234,
            duration: Duration::from_micros(1500),
            upstream: Some("127.0.0.1:3000".to_owned()),
            request_id: "abc-123".to_owned(),
            referer: None,
            user_agent: Some("curl/8.0 \"quoted\"".to_owned()),
        }
    }

    fn line(record: &AccessRecord, format: AccessFormat) -> String {
        let mut out = Vec::new();
        record.write_line(format, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn a_json_line_has_every_field() {
        let value: serde_json::Value =
            serde_json::from_str(&line(&record(), AccessFormat::Json)).expect("JSON");
        assert_eq!(value["time"], "2000-10-10T13:55:36.500Z");
        assert_eq!(value["client"], "127.0.0.1:40000");
        assert_eq!(value["method"], "GET");
        assert_eq!(value["path"], "/api/randoms?cant=10");
        assert_eq!(value["status"], 200);
        assert_eq!(value["bytes"], 1234);
        assert_eq!(value["duration_seconds"], 0.0015);
        assert_eq!(value["upstream"], "127.0.0.1:3000");
        assert_eq!(value["request_id"], "abc-123");
        assert_eq!(value["listener"], "front");
        assert!(value["referer"].is_null());
    }

    #[test]
    fn a_combined_line_parses_as_combined_with_the_extras_after() {
        assert_eq!(
            line(&record(), AccessFormat::Combined),
            "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /api/randoms?cant=10 HTTP/1.1\" \
                200 1234 \"-\" \"curl/8.0 \\x22quoted\\x22\" 0.001500 \"127.0.0.1:3000\" \
                \"abc-123\" \"front\""
        );
    }

    #[test]
    fn control_characters_cannot_forge_a_line() {
        let mut hostile = record();
        hostile.path = "/a\nb\"c\\".to_owned();
        hostile.user_agent = Some("x\r\ny".to_owned());
        let combined = line(&hostile, AccessFormat::Combined);
        assert!(
            !combined.contains('\n') && !combined.contains('\r'),
            "{combined}"
        );
        assert!(combined.contains("/a\\x0Ab\\x22c\\x5C"), "{combined}");
        let json = line(&hostile, AccessFormat::Json);
        assert!(!json.contains('\n'), "{json}");
    }
}
