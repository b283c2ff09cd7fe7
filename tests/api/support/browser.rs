//! A real browser for the live page's test: headless Chromium driven over the DevTools
//! protocol (a WebSocket), so the test can wait until the page has drawn what the
//! event stream sent, read the DOM, and take a screenshot.
//!
//! `--dump-dom` is no use here: it dumps at the load event, before any event arrives,
//! and `--virtual-time-budget` never ends while an event stream is open.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::prometheus::package_binary_or_skip;

/// How long Chromium gets to start, and a page to get where a test wants it.
pub(crate) const PATIENCE: Duration = Duration::from_secs(45);

/// Chromium's binary, or `None` to skip (absent and not CI; under `CI` its absence
/// fails the test: CI installs the `chromium` package).
pub(crate) fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    package_binary_or_skip("chromium", "chromium", test)
}

/// A headless Chromium showing one page; killed when dropped.
pub(crate) struct Browser {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _child: KillOnDrop,
    /// Its profile and output (`chromium.log`).
    dir: tempfile::TempDir,
}

/// A child process killed (and reaped) when dropped, also when a test fails half-way.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Starts Chromium on `url` and connects to that page's DevTools endpoint.
    /// Blocking: call it off the test's runtime.
    pub(crate) fn open(binary: &Path, url: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let profile = dir.path().join("profile");
        let log = std::fs::File::create(dir.path().join("chromium.log")).expect("log file");
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("chromium starts");
        let child = KillOnDrop(child);
        let port = wait_devtools_port(&profile, dir.path());
        let endpoint = page_endpoint(port, dir.path());
        let (socket, _) = tungstenite::connect(endpoint.as_str()).expect("DevTools connects");
        // Every read bounded: a browser that stops answering fails the test, not hangs it.
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(PATIENCE))
                .expect("a read timeout");
        }
        Self {
            socket,
            next_id: 0,
            _child: child,
            dir,
        }
    }

    /// Sends one DevTools command; its result (events in between are skipped).
    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(command.to_string()))
            .expect("command sent");
        loop {
            let message = self.socket.read().expect("DevTools answers");
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str()).expect("JSON from DevTools");
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page; its value.
    pub(crate) fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        assert!(result.get("exceptionDetails").is_none(), "{result}");
        result["result"]["value"].clone()
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub(crate) fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let data = shot["data"].as_str().expect("base64 data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).expect("screenshot written");
    }

    /// Chromium's own output so far, for failure messages.
    pub(crate) fn log(&self) -> String {
        chromium_log(self.dir.path())
    }
}

/// The last lines Chromium wrote.
fn chromium_log(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("chromium.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The DevTools port Chromium chose: the first line of `DevToolsActivePort` in its
/// profile, once it is there (bounded).
fn wait_devtools_port(profile: &Path, dir: &Path) -> u16 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(profile.join("DevToolsActivePort")).unwrap_or_default();
        if let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
            return port;
        }
        assert!(
            Instant::now() < deadline,
            "no DevTools port:\n{}",
            chromium_log(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The WebSocket address of the page Chromium opened (bounded: the page target may
/// appear a moment after the browser's).
fn page_endpoint(port: u16, dir: &Path) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let targets = get_json(port, "/json/list");
        let page = targets
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "page");
        if let Some(endpoint) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
            return endpoint.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no page target:\n{}",
            chromium_log(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET `path` from the DevTools HTTP endpoint, as JSON (`null` on any failure). The
/// server keeps the connection open: the body is read by its `Content-Length`.
fn get_json(port: u16, path: &str) -> Value {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return Value::Null;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = std::io::BufReader::new(stream);
    // HTTP/1.1: the DevTools server refuses 1.0.
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if reader.get_mut().write_all(request.as_bytes()).is_err() {
        return Value::Null;
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_or(true, |n| n == 0) {
            return Value::Null;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return Value::Null;
    }
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}
