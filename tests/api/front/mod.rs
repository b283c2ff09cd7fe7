//! The front: balancing (exact round robin and weights), routes, passive and active
//! health, failover, hop-by-hop headers, 502/504, CORS preflights, and `loadlab front`.
//!
//! Upstreams are small axum servers, each on its own thread and runtime: killing one
//! drops its runtime and with it every socket, as a killed process would. Waits are
//! on readiness (bound listeners, polled status with a deadline), never fixed sleeps.
//!
//! This file holds the test upstreams and fronts; the tests are in `routing`
//! (where requests go, with which headers), `failover` (health, retries, 502/504),
//! `serve` (the front inside `loadlab serve`, CORS, `loadlab front`), `hostile`
//! (raw-TCP clients that break the rules: smuggling shapes, bad bodies, slow clients;
//! their client is `raw`), `inproc` (the front over its own shards, in-process and
//! over TCP), `tls` (TLS termination, HTTP/2 and h2c, certificate reload, rapid
//! reset) and `upstream_tls` (`https://` members: verification, SNI, failover).

mod failover;
mod hostile;
mod inproc;
mod limits;
mod live;
mod raw;
mod reload;
mod routing;
mod serve;
mod tls;
mod upstream_tls;
mod wire;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use loadlab_front::ConnectionLimits;
use loadlab_front::{EdgeLimits, UpstreamLimits};
use loadlab_front::{Front, FrontConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::child::{ChildProcess, free_port, loadlab};
use crate::support::{expect_error, spawn_app_with_front};

/// Fast health checks so state changes show within a fraction of a second.
const FAST_HEALTH: &str =
    "[health]\ninterval = \"50ms\"\ntimeout = \"500ms\"\nrise = 2\nfall = 2\n";
/// Active checks off: only requests touch the upstreams.
const NO_ACTIVE_HEALTH: &str = "[health]\nactive = false\n";

/// An echo upstream: answers any path with what it received (JSON) and its name in
/// `x-upstream-name`; `/slow` waits 30 s first, `/slow-body` sends its headers at
/// once and ends its body 30 s later. It also sends hop-by-hop headers the
/// front must strip.
struct TestUpstream {
    name: &'static str,
    addr: SocketAddr,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

impl TestUpstream {
    fn start(name: &'static str) -> Self {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind an upstream");
        let addr = listener.local_addr().expect("local addr");
        let mut upstream = Self {
            name,
            addr,
            running: None,
        };
        upstream.serve(listener);
        upstream
    }

    fn serve(&mut self, listener: StdListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let name = self.name;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("upstream runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("adopt listener");
                let router = Router::new().fallback(move |req: Request| echo(name, req));
                tokio::select! {
                    _ = axum::serve(listener, router) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task: all sockets close.
            drop(runtime);
        });
        self.running = Some((stop, thread));
    }

    /// Stops the upstream like a killed process: listener and connections close.
    fn kill(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            thread.join().expect("upstream thread");
        }
    }

    /// Starts again on the same port.
    fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match StdListener::bind(self.addr) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}", self.addr);
                    std::thread::yield_now();
                }
                Err(e) => panic!("could not rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        if let Some((stop, _thread)) = self.running.take() {
            let _ = stop.send(());
        }
    }
}

async fn echo(name: &'static str, req: Request) -> Response {
    if req.uri().path() == "/slow-body" {
        return (
            [("x-upstream-name", name)],
            axum::body::Body::new(SlowBody::default()),
        )
            .into_response();
    }
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 24)
        .await
        .unwrap_or_default();
    let headers: HashMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let reply = json!({
        "name": name,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_len": body.len(),
    });
    (
        [
            ("x-upstream-name", name),
            ("connection", "x-upstream-hop"),
            ("x-upstream-hop", "1"),
            ("keep-alive", "timeout=99"),
        ],
        axum::Json(reply),
    )
        .into_response()
}

/// A front on port 0 over the pools of `config`, stopped on drop.
struct TestFront {
    addr: SocketAddr,
    front: Front,
    client: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestFront {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn edge(cors: &[&str]) -> EdgeLimits {
    EdgeLimits {
        cors_origins: cors.iter().map(|s| s.to_string()).collect(),
        request_timeout: Duration::from_secs(60),
        connections: ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(1),
        },
    }
}

fn limits(response_timeout: Duration) -> UpstreamLimits {
    UpstreamLimits {
        response_timeout,
        connect_timeout: Duration::from_secs(1),
        idle_per_upstream: 64,
        front_threads: 1,
        max_conns_per_upstream: 0,
    }
}

async fn spawn_front(config: &str, limits: UpstreamLimits) -> TestFront {
    spawn_front_with(config, limits, edge(&[])).await
}

/// [`spawn_front`] with the edge limits `edge`.
async fn spawn_front_with(config: &str, limits: UpstreamLimits, edge: EdgeLimits) -> TestFront {
    let config = FrontConfig::parse(config).expect("valid front config");
    serve_front(Front::new(config, limits).expect("front builds"), edge).await
}

/// Serves `front` on port 0 with the edge limits `edge`, its health checks running.
async fn serve_front(front: Front, edge: EdgeLimits) -> TestFront {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the front");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = CancellationToken::new();
    front.spawn_health_checks(shutdown.clone());
    tokio::spawn(loadlab_front::listen::server::serve(
        listener,
        front.service(&edge),
        edge.connections,
        shutdown.clone(),
    ));
    TestFront {
        addr,
        front,
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        shutdown,
    }
}

impl TestFront {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `{}` to `/app/insert`, expecting an answer.
    async fn post_insert(&self) -> reqwest::Response {
        self.client
            .post(self.url("/app/insert"))
            .body("{}")
            .send()
            .await
            .expect("sent")
    }

    /// GETs `path`, expects a 504 that took at least `timeout` (and well under 5 s),
    /// and returns its error message.
    async fn expect_504_after(&self, path: &str, timeout: Duration) -> String {
        let started = Instant::now();
        let response = self.client.get(self.url(path)).send().await.expect("sent");
        let message = expect_error(response, 504).await;
        let took = started.elapsed();
        assert!(
            took >= timeout && took < Duration::from_secs(5),
            "took {took:?}"
        );
        message
    }

    /// GETs `path` and returns which upstream answered.
    async fn upstream_of(&self, path: &str) -> String {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.headers()["x-upstream-name"]
            .to_str()
            .expect("ascii")
            .to_owned()
    }

    /// Whether the front's status says `addr` is up, in every pool listing it.
    fn is_up(&self, addr: SocketAddr) -> bool {
        let status = self.front.status();
        let label = addr.to_string();
        status["pools"]
            .as_array()
            .expect("pools")
            .iter()
            .flat_map(|p| p["upstreams"].as_array().expect("upstreams").iter())
            .filter(|u| u["addr"] == label.as_str())
            .all(|u| u["up"] == true)
    }
}

/// A response body that ends 30 s after it is first polled: the headers are out at
/// once, the response is not finished.
struct SlowBody(std::pin::Pin<Box<tokio::time::Sleep>>);

impl Default for SlowBody {
    fn default() -> Self {
        Self(Box::pin(tokio::time::sleep(Duration::from_secs(30))))
    }
}

impl hyper::body::Body for SlowBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0.as_mut().poll(cx).map(|()| None)
    }
}

/// A `[[pools]]` table over `members` (address, weight).
/// `loadlab front` on `config`, listening on a free port with `threads` front threads;
/// more flags may follow. With the base URL of that port.
fn front_command(config: &std::path::Path, threads: usize) -> (std::process::Command, String) {
    let port = free_port();
    let mut command = loadlab();
    command.args(["front", "--config"]).arg(config).args([
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--front-threads",
        &threads.to_string(),
    ]);
    (command, format!("http://127.0.0.1:{port}"))
}

/// Starts a `loadlab front` process, ready once `base` answers `/front/status`; with a
/// client for it.
async fn start_front_process(
    command: std::process::Command,
    base: &str,
) -> (ChildProcess, reqwest::Client) {
    let child =
        ChildProcess::start_ready("loadlab front", command, &format!("{base}/front/status")).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    (child, client)
}

fn pool(name: &str, members: &[(SocketAddr, u32)]) -> String {
    pool_of(name, "weight", members)
}

/// A `[[pools]]` table over `members` (address, value of `key`).
fn pool_of(name: &str, key: &str, members: &[(SocketAddr, u32)]) -> String {
    let upstreams: Vec<String> = members
        .iter()
        .map(|(addr, value)| format!("{{ addr = \"{addr}\", {key} = {value} }}"))
        .collect();
    format!(
        "[[pools]]\nname = \"{name}\"\nupstreams = [{}]\n",
        upstreams.join(", ")
    )
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// Polls `condition` until it holds, failing after `limit`.
async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
