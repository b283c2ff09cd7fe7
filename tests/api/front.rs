//! The front: balancing (exact round robin and weights), routes, passive and active
//! health, failover, hop-by-hop headers, 502/504, CORS preflights, and `loadlab front`.
//!
//! Upstreams are small axum servers, each on its own thread and runtime: killing one
//! drops its runtime and with it every socket, as a killed process would. Waits are
//! on readiness (bound listeners, polled status with a deadline), never fixed sleeps.

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
use loadlab::config::{EdgeLimits, UpstreamLimits};
use loadlab::front::{Front, FrontConfig};
use loadlab::server::ConnectionLimits;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{expect_error, spawn_app_with_front};

/// Fast health checks so state changes show within a fraction of a second.
const FAST_HEALTH: &str =
    "[health]\ninterval = \"50ms\"\ntimeout = \"500ms\"\nrise = 2\nfall = 2\n";
/// Active checks off: only requests touch the upstreams.
const NO_ACTIVE_HEALTH: &str = "[health]\nactive = false\n";

/// An echo upstream: answers any path with what it received (JSON) and its name in
/// `x-upstream-name`; `/slow` waits 30 s first. It also sends hop-by-hop headers the
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
        pool_idle_per_upstream: 64,
    }
}

async fn spawn_front(config: &str, limits: UpstreamLimits) -> TestFront {
    let config = FrontConfig::parse(config).expect("valid front config");
    let front = Front::new(config, limits).expect("front builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the front");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = CancellationToken::new();
    front.spawn_health_checks(shutdown.clone());
    let edge = edge(&[]);
    tokio::spawn(loadlab::server::serve(
        listener,
        front.router(&edge),
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

/// A `[[pools]]` table over `members` (address, weight).
fn pool(name: &str, members: &[(SocketAddr, u32)]) -> String {
    let upstreams: Vec<String> = members
        .iter()
        .map(|(addr, weight)| format!("{{ addr = \"{addr}\", weight = {weight} }}"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_gives_each_of_three_upstreams_exactly_a_third_of_3000_requests() {
    let upstreams = [
        TestUpstream::start("a"),
        TestUpstream::start("b"),
        TestUpstream::start("c"),
    ];
    let members: Vec<_> = upstreams.iter().map(|u| (u.addr, 1)).collect();
    let front = spawn_front(
        &format!("{FAST_HEALTH}{}", pool("main", &members)),
        limits(Duration::from_secs(5)),
    )
    .await;

    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..3000 {
        *counts.entry(front.upstream_of("/work").await).or_default() += 1;
    }

    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1000), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_two_to_one_give_exactly_2000_and_1000_interleaved() {
    let (heavy, light) = (TestUpstream::start("heavy"), TestUpstream::start("light"));
    let config = format!(
        "{FAST_HEALTH}{}",
        pool("main", &[(heavy.addr, 2), (light.addr, 1)])
    );
    let front = spawn_front(&config, limits(Duration::from_secs(5))).await;

    let mut order = Vec::with_capacity(3000);
    for _ in 0..3000 {
        order.push(front.upstream_of("/").await);
    }

    assert_eq!(order.iter().filter(|n| *n == "heavy").count(), 2000);
    assert_eq!(order.iter().filter(|n| *n == "light").count(), 1000);
    // Interleaved: every run of three has exactly one `light` (a b a a b a ...),
    // never `heavy heavy heavy ... light light`.
    for window in order.windows(3) {
        assert_eq!(
            window.iter().filter(|n| *n == "light").count(),
            1,
            "{window:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_go_to_their_pools_by_longest_prefix() {
    let (main, api, deep) = (
        TestUpstream::start("main"),
        TestUpstream::start("api"),
        TestUpstream::start("deep"),
    );
    let config = format!(
        "default_pool = \"main\"\n{FAST_HEALTH}{}{}{}\
         [[routes]]\nprefix = \"/api/randoms\"\npool = \"api\"\n\
         [[routes]]\nprefix = \"/api/randoms/deep\"\npool = \"deep\"\n",
        pool("main", &[(main.addr, 1)]),
        pool("api", &[(api.addr, 1)]),
        pool("deep", &[(deep.addr, 1)]),
    );
    let front = spawn_front(&config, limits(Duration::from_secs(5))).await;

    assert_eq!(front.upstream_of("/").await, "main");
    assert_eq!(front.upstream_of("/app/mega?page=2").await, "main");
    assert_eq!(front.upstream_of("/api/randoms?cant=10").await, "api");
    assert_eq!(front.upstream_of("/api/randoms/deep/1").await, "deep");
    let echoed: Value = front
        .client
        .get(front.url("/api/randoms?cant=1e3"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        echoed["uri"], "/api/randoms?cant=1e3",
        "path and query go through intact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_upstream_mid_run_fails_no_get_and_marks_it_down_then_up_again() {
    let mut upstreams = [
        TestUpstream::start("a"),
        TestUpstream::start("b"),
        TestUpstream::start("c"),
    ];
    let members: Vec<_> = upstreams.iter().map(|u| (u.addr, 1)).collect();
    let front = Arc::new(
        spawn_front(
            &format!("{FAST_HEALTH}{}", pool("main", &members)),
            limits(Duration::from_secs(5)),
        )
        .await,
    );
    let victim = upstreams[1].addr;
    let (stop, done, failures) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let b_answers = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (front, stop, done, failures, b_answers) = (
            front.clone(),
            stop.clone(),
            done.clone(),
            failures.clone(),
            b_answers.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match front.client.get(front.url("/work")).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        if r.headers()["x-upstream-name"] == "b" {
                            b_answers.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(r) => {
                        eprintln!("GET failed: {} {:?}", r.status(), r.text().await);
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("GET failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let limit = Duration::from_secs(20);
    wait_until("300 requests are done", limit, || {
        done.load(Ordering::Relaxed) >= 300
    })
    .await;

    upstreams[1].kill();
    wait_until("the killed upstream is marked down", limit, || {
        !front.is_up(victim)
    })
    .await;
    let at_down = done.load(Ordering::Relaxed);
    wait_until("300 more requests are done", limit, || {
        done.load(Ordering::Relaxed) >= at_down + 300
    })
    .await;
    upstreams[1].restart();
    wait_until("the restarted upstream is back up", limit, || {
        front.is_up(victim)
    })
    .await;
    let b_before = b_answers.load(Ordering::Relaxed);
    wait_until("b answers again", limit, || {
        b_answers.load(Ordering::Relaxed) > b_before + 10
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }

    assert_eq!(failures.load(Ordering::Relaxed), 0, "failed GETs");
    assert!(done.load(Ordering::Relaxed) >= 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_available_gives_502_at_once() {
    let config = format!(
        "{NO_ACTIVE_HEALTH}{}",
        pool("main", &[(closed_port(), 1), (closed_port(), 1)])
    );
    let front = spawn_front(&config, limits(Duration::from_secs(30))).await;

    let started = Instant::now();
    let first = front
        .client
        .post(front.url("/app/insert"))
        .body("{}")
        .send()
        .await
        .expect("sent");
    let message = expect_error(first, 502).await;
    assert!(message.contains("failed"), "{message}");
    let second = front.client.get(front.url("/")).send().await.expect("sent");
    let message = expect_error(second, 502).await;
    assert!(
        message.contains("no upstream of pool `main` is available"),
        "{message}"
    );

    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_gives_504_after_the_upstream_timeout() {
    let slow = TestUpstream::start("slow");
    let front = spawn_front(
        &format!("{NO_ACTIVE_HEALTH}{}", pool("main", &[(slow.addr, 1)])),
        limits(Duration::from_millis(300)),
    )
    .await;

    let started = Instant::now();
    let response = front
        .client
        .get(front.url("/slow"))
        .send()
        .await
        .expect("sent");
    let message = expect_error(response, 504).await;

    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert!(message.contains("did not answer within"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_stripped_both_ways_and_forwarded_headers_added() {
    let upstream = TestUpstream::start("echo");
    let front = spawn_front(
        &format!("{FAST_HEALTH}{}", pool("main", &[(upstream.addr, 1)])),
        limits(Duration::from_secs(5)),
    )
    .await;

    let response = front
        .client
        .get(front.url("/headers"))
        .header("connection", "keep-alive, x-client-hop")
        .header("x-client-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-forwarded-for", "10.1.2.3")
        .header("x-end-to-end", "kept")
        .send()
        .await
        .expect("sent");

    let returned = response.headers().clone();
    let echoed: Value = response.json().await.expect("json");
    let sent = &echoed["headers"];
    for gone in [
        "connection",
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
    ] {
        assert!(
            sent.get(gone).is_none(),
            "{gone} reached the upstream: {sent}"
        );
    }
    assert_eq!(sent["x-end-to-end"], "kept");
    assert_eq!(sent["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(sent["x-forwarded-proto"], "http");
    assert_eq!(sent["x-forwarded-host"], front.addr.to_string());
    assert_eq!(sent["host"], upstream.addr.to_string());
    assert_response_is_stripped(&returned);
}

fn assert_response_is_stripped(headers: &HeaderMap) {
    assert!(headers.get("x-upstream-hop").is_none(), "{headers:?}");
    assert!(headers.get("keep-alive").is_none(), "{headers:?}");
    assert_eq!(headers["x-upstream-name"], "echo");
}

/// An upstream that reads a request's headers, then closes without answering. A plain
/// thread with blocking sockets: it lives until the test process ends.
fn spawn_dropper() -> (SocketAddr, Arc<AtomicUsize>) {
    use std::io::Read;
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while let Ok(n @ 1..) = stream.read(&mut chunk) {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    counter.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            }
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_not_resent_after_it_reached_an_upstream_but_a_get_is() {
    let echo = TestUpstream::start("echo");
    let (dropper, seen) = spawn_dropper();
    // The dropper first in a fresh pool, so it gets the first request.
    let config = format!(
        "{NO_ACTIVE_HEALTH}{}",
        pool("main", &[(dropper, 1), (echo.addr, 1)])
    );

    let front = spawn_front(&config, limits(Duration::from_secs(5))).await;
    let post = front
        .client
        .post(front.url("/app/insert"))
        .body("{}")
        .send()
        .await
        .expect("sent");
    expect_error(post, 502).await;
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the POST reached the dropper once"
    );

    let front = spawn_front(&config, limits(Duration::from_secs(5))).await;
    let get = front
        .client
        .get(front.url("/work"))
        .send()
        .await
        .expect("sent");
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.headers()["x-upstream-name"], "echo", "the GET moved on");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "the GET reached the dropper first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_moves_a_post_and_its_body_to_the_next_upstream() {
    let echo = TestUpstream::start("echo");
    let config = format!(
        "{NO_ACTIVE_HEALTH}{}",
        pool("main", &[(closed_port(), 1), (echo.addr, 1)])
    );
    let front = spawn_front(&config, limits(Duration::from_secs(5))).await;

    let body = Bytes::from(vec![b'x'; 100_000]);
    let response = front
        .client
        .post(front.url("/upload"))
        .body(body)
        .send()
        .await
        .expect("sent");

    assert_eq!(response.status(), StatusCode::OK);
    let echoed: Value = response.json().await.expect("json");
    assert_eq!(echoed["name"], "echo");
    assert_eq!(echoed["method"], "POST");
    assert_eq!(
        echoed["body_len"], 100_000,
        "the whole body reached the second upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_from_an_allowed_origin_passes_and_from_another_is_refused() {
    let app = spawn_app_with_front(&["--cors-origin", "https://ok.example"]).await;

    for addr in [app.addr, app.shards[0]] {
        let preflight = |origin: &str| {
            app.client
                .request(
                    reqwest::Method::OPTIONS,
                    format!("http://{addr}/api/randoms"),
                )
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .send()
        };
        let allowed = preflight("https://ok.example").await.expect("sent");
        assert!(
            allowed.status().is_success(),
            "{addr}: {}",
            allowed.status()
        );
        assert_eq!(
            allowed.headers()["access-control-allow-origin"],
            "https://ok.example"
        );
        let refused = preflight("https://evil.example").await.expect("sent");
        let message = expect_error(refused, 403).await;
        assert_eq!(message, "origin https://evil.example is not allowed");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_puts_the_front_over_its_shards() {
    let app = spawn_app_with_front(&[]).await;
    assert_eq!(Some(app.addr), app.front);

    let health = app.get("/healthz").await;
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "/healthz goes through the front"
    );
    let status: Value = app.get("/front/status").await.json().await.expect("json");
    let mut listed: Vec<String> = status["pools"][0]["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .map(|u| u["addr"].as_str().expect("addr").to_owned())
        .collect();
    listed.sort();
    let mut shards: Vec<String> = app.shards.iter().map(|a| a.to_string()).collect();
    shards.sort();
    assert_eq!(listed, shards);
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("front_requests_total"),
        "front metrics are exported"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadlab_front_runs_alone_and_exits_cleanly_on_sigterm() {
    let upstream = TestUpstream::start("echo");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("front.toml");
    std::fs::write(
        &config,
        format!("{FAST_HEALTH}{}", pool("main", &[(upstream.addr, 1)])),
    )
    .expect("write config");
    let bind = closed_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_loadlab"))
        .args(["front", "--config"])
        .arg(&config)
        .args(["--bind", &bind.to_string()])
        .spawn()
        .expect("start loadlab front");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");

    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        match client.get(format!("http://{bind}/work")).send().await {
            Ok(response) => break response,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("loadlab front never answered: {e}"),
        }
    };
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-upstream-name"], "echo");

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "loadlab front did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}");
}
