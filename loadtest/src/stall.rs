//! A server that stalls on purpose: every request that arrives during the first `window`
//! of each `period` is held until the window ends, then answered `200 ok`; the rest are
//! answered at once. It is how coordinated omission is shown (and tested): driven at a
//! fixed rate, about `window / period` of the intended sends fall in a stall, while a
//! connection only ever has one request caught in it.
//!
//! Used by the harness's own test and by `cargo run --release -p loadlab-loadtest
//! --example stall-server`, to put a stalling server on the same curve as the others with
//! `--extra stall=URL`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// When the server stalls.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    /// How long each stall lasts.
    pub window: Duration,
    /// One stall starts every `period`, the first at start-up.
    pub period: Duration,
}

impl Default for Stall {
    /// 200 ms of every second.
    fn default() -> Self {
        Self {
            window: Duration::from_millis(200),
            period: Duration::from_secs(1),
        }
    }
}

impl Stall {
    /// How long a request arriving `since_start` after start-up is held.
    pub fn hold(&self, since_start: Duration) -> Duration {
        let period = self.period.as_nanos().max(1);
        let phase = Duration::from_nanos((since_start.as_nanos() % period) as u64);
        self.window.saturating_sub(phase)
    }
}

/// Serves `listener` until the task is dropped or the runtime stops; each connection is
/// a task of the current runtime.
pub async fn serve(listener: tokio::net::TcpListener, stall: Stall) {
    let origin = Instant::now();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: back off briefly instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| async move {
                let hold = stall.hold(origin.elapsed());
                if !hold.is_zero() {
                    tokio::time::sleep(hold).await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            // A client that goes away mid-request is no concern of a test server.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A stalling server on its own thread and runtime, stopped when dropped.
pub struct StallServer {
    addr: SocketAddr,
    /// Dropping it ends `serve` (the runtime stops with the thread).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StallServer {
    /// Binds `127.0.0.1:port` (0: any free port) and serves on a new thread.
    pub fn start(port: u16, stall: Stall) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("stall-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let server = tokio::spawn(serve(listener, stall));
                    // Sent or dropped: either way, stop.
                    let _ = stopped.await;
                    server.abort();
                });
            })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for StallServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
