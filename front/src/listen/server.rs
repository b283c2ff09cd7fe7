//! Serving one listener: the accept loop, connection limits, front threads, and graceful
//! shutdown.
//!
//! `axum::serve` hides hyper's connection builder, and loadlab needs two of its knobs at
//! every listener (front and shards): a header-read timeout against slow clients, and a
//! cap on open connections. So this is a small accept loop in the style of mini-redis's
//! `Listener`: `accept` bounds connections (a client over the cap waits in the
//! kernel's accept queue rather than being served badly; idle connections, HTTP/1.1
//! between requests or h2 with no stream open, are closed to make room) and pauses
//! after failed accepts, each connection is served by hyper's builder for the HTTP
//! version it speaks ([`crate::listen::protocol`]: HTTP/1.1, h2 over TLS, h2c), and shutdown
//! stops accepting, lets in-flight requests finish, closes idle keep-alive connections,
//! then returns.
//!
//! Two shapes:
//! - [`serve`]: accept and serve on the current runtime (a shard, the metrics
//!   listener, tests).
//! - [`serve_on_threads`] + [`FrontThread::run`]: one accept loop hands each connection to
//!   the thread with the fewest open connections; each front thread has its
//!   own single-threaded runtime that serves its connections from start to end (the
//!   front). A connection, its requests and whatever they spawn stay on one thread:
//!   no task migrates between cores and no wake-up crosses threads, which serves more
//!   requests per core than one multi-threaded runtime (docs/PERFORMANCE.md).
//!   Handing connections out in turn, rather than letting every thread accept on the
//!   shared socket, keeps the load even (whoever wakes first would take a burst of
//!   connections, then be the bottleneck while the other idles).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accept::{Gate, Slot};
use super::protocol::Protocols;
use super::tls::TlsAcceptor;
use crate::config::ConnectionLimits;
use crate::listen::edge::HttpService;

/// Serves `service` on `listener` until `shutdown` is cancelled, then drains.
///
/// Each request carries `ConnectInfo<SocketAddr>` (the peer) in its extensions.
pub async fn serve(
    listener: TcpListener,
    service: impl HttpService,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let gate = gate_for(&listener, &limits);
    serve_gated(listener, gate, service, limits, shutdown).await;
}

/// [`serve`] with the gate `gate`.
async fn serve_gated(
    listener: TcpListener,
    gate: Gate,
    service: impl HttpService,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let connections = Connections::new(service, &limits);
    accept_loop(&listener, gate, &shutdown, |accepted| {
        connections.spawn(accepted.stream, accepted.peer, None, accepted.slot, || {});
    })
    .await;
    drop(listener);
    connections.drain(limits.shutdown_grace).await;
}

/// A connection on its way from the accept loop to a [`FrontThread`].
#[derive(Debug)]
struct Handoff {
    /// Deregistered from the accepting runtime; the thread registers it with its own.
    stream: std::net::TcpStream,
    peer: SocketAddr,
    /// The connection's slot under `max_connections`, held until it closes.
    slot: Slot,
    /// How to run its TLS handshake, if its listener serves TLS.
    tls: Option<TlsAcceptor>,
}

/// A front thread's end of [`serve_on_threads`]: run it on that thread.
#[derive(Debug)]
pub struct FrontThread {
    inbox: mpsc::UnboundedReceiver<Handoff>,
    /// Connections this thread has open, read by the accept loop to pick a thread.
    open: Arc<AtomicUsize>,
}

/// The accept loop's handle on one thread.
#[derive(Debug, Clone)]
struct FrontThreadHandle {
    outbox: mpsc::UnboundedSender<Handoff>,
    open: Arc<AtomicUsize>,
}

/// `count` threads (at least one) for [`serve_on_threads`].
pub fn front_threads(count: usize) -> (ThreadSet, Vec<FrontThread>) {
    let (handles, threads) = (0..count.max(1))
        .map(|_| {
            let (outbox, inbox) = mpsc::unbounded_channel();
            let open = Arc::new(AtomicUsize::new(0));
            (
                FrontThreadHandle {
                    outbox,
                    open: Arc::clone(&open),
                },
                FrontThread { inbox, open },
            )
        })
        .unzip();
    (ThreadSet { handles }, threads)
}

/// The accept loop's side of a set of [`FrontThread`]s. Clone it to feed the same
/// threads from several listeners (the front's TLS and cleartext ones): the threads
/// stop once every clone has.
#[derive(Debug, Clone)]
pub struct ThreadSet {
    handles: Vec<FrontThreadHandle>,
}

/// Accepts on `listener` until `shutdown` is cancelled, handing each connection to
/// the thread of `threads` with the fewest open connections (the first such after the
/// last one picked, so equal threads take turns). With `tls`, each connection's TLS
/// handshake runs on its thread first. Returns once accepting stopped; the threads
/// then drain their connections.
pub async fn serve_on_threads(
    listener: TcpListener,
    threads: ThreadSet,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let mut next = 0;
    let gate = gate_for(&listener, &limits);
    accept_loop(&listener, gate, &shutdown, |accepted| {
        let handles = &threads.handles;
        let count = handles.len();
        let pick = (0..count)
            .map(|offset| (next + offset) % count)
            .min_by_key(|&i| handles[i].open.load(Ordering::Relaxed))
            .unwrap_or(0);
        next = (pick + 1) % count;
        let stream = match accepted.stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "could not hand a connection over");
                return;
            }
        };
        handles[pick].open.fetch_add(1, Ordering::Relaxed);
        let handoff = Handoff {
            stream,
            peer: accepted.peer,
            slot: accepted.slot,
            tls: tls.clone(),
        };
        if handles[pick].outbox.send(handoff).is_err() {
            // That front thread has stopped (it failed to start): the connection is
            // dropped, the client sees it closed.
            handles[pick].open.fetch_sub(1, Ordering::Relaxed);
        }
    })
    .await;
    // Dropping the senders tells every thread that no more connections come.
}

impl FrontThread {
    /// Serves the connections handed to this thread, on the current runtime, until
    /// the accept loop stops; then drains them like [`serve`].
    pub async fn run(mut self, service: impl HttpService, limits: ConnectionLimits) {
        let connections = Connections::new(service, &limits);
        while let Some(accepted) = self.inbox.recv().await {
            let stream = match TcpStream::from_std(accepted.stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "could not register a connection");
                    self.open.fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
            };
            let open = Arc::clone(&self.open);
            connections.spawn(
                stream,
                accepted.peer,
                accepted.tls,
                accepted.slot,
                move || {
                    open.fetch_sub(1, Ordering::Relaxed);
                },
            );
        }
        connections.drain(limits.shutdown_grace).await;
    }
}

/// A connection just accepted, with its slot.
struct NewConnection {
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
}

/// The gate of `listener` under `limits`; the listener's metrics carry its address as
/// their `listener` label.
fn gate_for(listener: &TcpListener, limits: &ConnectionLimits) -> Gate {
    let name = listener
        .local_addr()
        .map_or_else(|_| "unknown".to_owned(), |addr| addr.to_string());
    Gate::new(&name, limits.max_connections)
}

/// Accepts until `shutdown`, under the `max_connections` cap and pausing after failed
/// accepts (see `accept`).
async fn accept_loop(
    listener: &TcpListener,
    mut gate: Gate,
    shutdown: &CancellationToken,
    mut handle: impl FnMut(NewConnection),
) {
    while let Some((stream, peer, slot)) = gate.accept(listener, shutdown).await {
        let _ = stream.set_nodelay(true);
        handle(NewConnection { stream, peer, slot });
    }
}

/// Serves connections on the current runtime and drains them on shutdown.
struct Connections<S> {
    service: S,
    /// hyper's builders and the connection counters (see [`crate::listen::protocol`]).
    protocols: Arc<Protocols>,
    /// Every connection task, awaited by [`Connections::drain`].
    tasks: TaskTracker,
    /// Cancelled when draining starts: every connection closes once idle.
    draining: CancellationToken,
}

impl<S: HttpService> Connections<S> {
    fn new(service: S, limits: &ConnectionLimits) -> Self {
        Self {
            service,
            protocols: Arc::new(Protocols::new(limits)),
            tasks: TaskTracker::new(),
            draining: CancellationToken::new(),
        }
    }

    /// Serves one connection in its own task (its TLS handshake first, with `tls`),
    /// then calls `closed` and frees its slot. The connection closes gracefully (at
    /// once if idle, else after its requests) when draining starts or when its
    /// listener's cap asks it to.
    fn spawn(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        slot: Slot,
        closed: impl FnOnce() + Send + 'static,
    ) {
        let (service, protocols) = (self.service.clone(), Arc::clone(&self.protocols));
        let draining = self.draining.clone();
        self.tasks.spawn(async move {
            let conn = slot.conn();
            let close = async {
                tokio::select! {
                    _ = draining.cancelled() => {}
                    _ = conn.close_requested() => {}
                }
            };
            protocols
                .serve(stream, peer, tls, service, conn, close)
                .await;
            closed();
            drop(slot);
        });
    }

    /// Lets in-flight requests finish (up to `grace`), closing idle connections.
    async fn drain(self, grace: Duration) {
        self.draining.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over: dropping the connections still open");
        }
    }
}

/// A thread serving with its own runtime; joins to what its task returned.
pub type ServingThread = std::thread::JoinHandle<anyhow::Result<()>>;

/// Joins every thread (blocking: call it off any runtime), all of them even
/// after one failed, and returns the first failure.
pub fn join_all(threads: Vec<ServingThread>) -> anyhow::Result<()> {
    let mut result = Ok(());
    for thread in threads {
        let joined = thread
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("a serving thread panicked")));
        if let (Err(e), Ok(())) = (joined, &result) {
            result = Err(e);
        }
    }
    result
}

/// Runs `task` on a new thread named `name` with its own single-threaded tokio
/// runtime. If the task fails (or the runtime cannot be built), `shutdown` is
/// cancelled so the rest of the process stops too; the error comes back on join.
pub fn spawn_runtime_thread(
    name: String,
    shutdown: CancellationToken,
    task: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
) -> anyhow::Result<ServingThread> {
    let thread_name = name.clone();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(task));
            if let Err(e) = &result {
                let error = format!("{e:#}");
                tracing::error!(thread = %thread_name, %error, "serving thread failed: stopping");
                shutdown.cancel();
            }
            result
        })
        .map_err(|e| anyhow::anyhow!("starting thread {name}: {e}"))
}

/// Everything one process serves: threads that serve with their own runtimes (shards,
/// the front's threads) and accept loops on the caller's runtime (the front's dealer,
/// the metrics listener). Collected while starting, then run by [`run_until_stopped`].
#[derive(Debug, Default)]
pub struct Serving {
    threads: Vec<ServingThread>,
    tasks: tokio::task::JoinSet<()>,
}

impl Serving {
    /// Nothing served yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds threads already serving (each returns once its listener drained).
    pub fn add_threads(&mut self, threads: impl IntoIterator<Item = ServingThread>) {
        self.threads.extend(threads);
    }

    /// Runs an accept loop on the current runtime; it must return once the shutdown
    /// token it was given is cancelled and its connections drained.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn(&mut self, accept_loop: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(accept_loop);
    }
}

/// Serves until `shutdown` is cancelled, then waits for every accept loop to stop and
/// every serving thread to drain, and returns the first failure. `loadlab serve` and
/// `loadlab front` both end here.
pub async fn run_until_stopped(
    serving: Serving,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Serving { threads, mut tasks } = serving;
    shutdown.cancelled().await;
    while tasks.join_next().await.is_some() {}
    // Joining blocks: off the runtime's thread.
    tokio::task::spawn_blocking(move || join_all(threads))
        .await
        .context("joining the serving threads")?
}

/// A token cancelled when SIGINT (Ctrl-C) or SIGTERM arrives.
///
/// # Panics
/// Outside a tokio runtime, like `tokio::spawn`.
pub fn cancel_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received: draining");
        trigger.cancel();
    });
    shutdown
}

/// Resolves when SIGINT (Ctrl-C) or SIGTERM arrives.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends one keep-alive GET on `stream` and returns the response body.
    async fn get(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .expect("write");
        let mut response = Vec::new();
        let mut chunk = [0u8; 1024];
        // The body is one digit: the response is complete once it follows the headers.
        while !response.windows(4).any(|w| w == b"\r\n\r\n") || response.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed early");
            response.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8(response).expect("utf-8");
        text.rsplit("\r\n").next().unwrap_or_default().to_owned()
    }

    /// Reads until `stream` closes, failing after 5 s.
    async fn expect_closed(stream: &mut TcpStream) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest));
        let closed = matches!(read.await, Ok(Ok(_)) | Ok(Err(_)));
        assert!(closed, "the connection is still open");
    }

    #[tokio::test]
    async fn at_the_cap_an_idle_connection_makes_room_and_a_busy_one_is_left_alone() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 2,
            shutdown_grace: Duration::from_secs(1),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let release = Arc::new(tokio::sync::Notify::new());
        let held = Arc::clone(&release);
        let router = Router::new()
            .route("/", axum::routing::get(|| async { "1" }))
            .route(
                "/slow",
                axum::routing::get(move || async move {
                    held.notified().await;
                    "2"
                }),
            );
        let mut gate = gate_for(&listener, &limits);
        gate.set_idle_close_after(Duration::from_millis(50));
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(serve_gated(
            listener,
            gate,
            router,
            limits,
            shutdown.clone(),
        ));

        // Arrange: the cap taken by an idle keep-alive connection and a busy one.
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(get(&mut idle).await, "1");
        let mut busy = TcpStream::connect(addr).await.expect("connect");
        busy.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .expect("write");

        // Act: a third client waits in the backlog.
        let mut third = TcpStream::connect(addr).await.expect("connect");

        // Assert: the idle connection is closed to let it in; the busy one is kept.
        assert_eq!(get(&mut third).await, "1");
        expect_closed(&mut idle).await;
        release.notify_one();
        let mut answer = vec![0u8; 1024];
        let n = busy.read(&mut answer).await.expect("read");
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with('2'),
            "{answer}"
        );

        shutdown.cancel();
        drop((busy, third));
        serving.await.expect("serve");
    }

    /// Sends `GET path` on the h2 connection `sender`; returns the status and body.
    async fn h2_get(
        sender: &mut hyper::client::conn::http2::SendRequest<axum::body::Body>,
        path: &str,
    ) -> (u16, String) {
        use http_body_util::BodyExt as _;
        let request = axum::http::Request::get(format!("http://test{path}"))
            .body(axum::body::Body::empty())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.expect("body");
        (
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        )
    }

    #[tokio::test]
    async fn at_the_cap_an_h2_connection_with_no_stream_open_is_idle_and_one_with_a_stream_busy() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 2,
            shutdown_grace: Duration::from_secs(1),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (entered, release) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        let (enter, held) = (Arc::clone(&entered), Arc::clone(&release));
        let router = Router::new()
            .route("/", axum::routing::get(|| async { "1" }))
            .route(
                "/slow",
                axum::routing::get(move || async move {
                    enter.notify_one();
                    held.notified().await;
                    "2"
                }),
            );
        let mut gate = gate_for(&listener, &limits);
        gate.set_idle_close_after(Duration::from_millis(50));
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(serve_gated(
            listener,
            gate,
            router,
            limits,
            shutdown.clone(),
        ));
        let h2c = || async {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (sender, connection) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(stream),
            )
            .await
            .expect("h2c handshake");
            (sender, tokio::spawn(connection))
        };

        // Arrange: the cap taken by an h2c connection whose stream has ended, and one
        // with a stream open.
        let (mut idle, idle_connection) = h2c().await;
        assert_eq!(h2_get(&mut idle, "/").await, (200, "1".to_owned()));
        let (mut busy, _busy_connection) = h2c().await;
        let slow = tokio::spawn(async move { h2_get(&mut busy, "/slow").await });
        entered.notified().await;

        // Act: a third client waits in the backlog.
        let mut third = TcpStream::connect(addr).await.expect("connect");

        // Assert: the h2 connection with no stream open is closed to let it in; the
        // one with a stream open is kept and its stream answered.
        let third_answer = tokio::time::timeout(Duration::from_secs(5), get(&mut third)).await;
        assert_eq!(third_answer.expect("let in within 5 s"), "1");
        // Closed by the server: how the client's end reports it does not matter.
        let _ = tokio::time::timeout(Duration::from_secs(5), idle_connection)
            .await
            .expect("the idle h2 connection is closed")
            .expect("connection task");
        release.notify_one();
        assert_eq!(slow.await.expect("slow request"), (200, "2".to_owned()));

        shutdown.cancel();
        drop((idle, third));
        serving.await.expect("serve");
    }

    #[tokio::test]
    async fn connections_are_dealt_to_the_thread_with_the_fewest() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 64,
            shutdown_grace: Duration::from_secs(1),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let (set, threads) = front_threads(2);
        let open_counts: Vec<_> = set.handles.iter().map(|h| Arc::clone(&h.open)).collect();
        let mut running = Vec::new();
        for (index, thread) in threads.into_iter().enumerate() {
            let router = Router::new().route(
                "/",
                axum::routing::get(move || async move { index.to_string() }),
            );
            running.push(tokio::spawn(thread.run(router, limits.clone())));
        }
        let accepting = tokio::spawn(serve_on_threads(
            listener,
            set,
            None,
            limits,
            shutdown.clone(),
        ));

        // Equal threads take turns.
        let mut open = Vec::new();
        let mut served_by = Vec::new();
        for _ in 0..4 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            served_by.push(get(&mut stream).await);
            open.push(stream);
        }
        assert_eq!(served_by, ["0", "1", "0", "1"]);
        // Thread 0 loses both its connections: the next two go to it.
        drop(open.remove(2));
        drop(open.remove(0));
        // Thread 0 notices the closed connections when it reads their EOF.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while open_counts[0].load(Ordering::Relaxed) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "thread 0 still counts its closed connections"
            );
            tokio::task::yield_now().await;
        }
        let mut again = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            again.push(get(&mut stream).await);
            open.push(stream);
        }
        assert_eq!(again, ["0", "0"]);
        // Keep-alive: every request on a connection goes to the same thread.
        assert_eq!(get(&mut open[0]).await, "1");

        shutdown.cancel();
        accepting.await.expect("accept loop");
        drop(open);
        for thread in running {
            thread.await.expect("thread");
        }
    }
}
