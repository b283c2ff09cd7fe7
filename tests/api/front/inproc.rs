//! The front over its own shards, on both paths: in-process (the default: the shard's
//! router called on the front's thread) and loopback TCP (`--front-path tcp`).
//!
//! Counting which shard served a request needs `http_requests_total{shard}`, and the
//! metrics recorder is global to a process: other tests in this binary run shards
//! labelled `0` and `1` at the same time. So the counting tests start `loadlab serve`
//! as a child process of its own and read its `/metrics`.

use super::*;
use crate::support::child::{ChildProcess, assert_sigterm_lets_a_slow_job_finish, loadlab};

/// Requests per shard in the counting tests.
const PER_SHARD: usize = 1000;
/// The route the counting tests send (health checks go to `/healthz`, not here).
const COUNTED: &str = "/api/randoms?cant=1000";

/// `loadlab serve` in a child process, with a front, killed on drop.
struct ServeProcess {
    process: ChildProcess,
    front: SocketAddr,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl ServeProcess {
    /// Starts `loadlab serve --shards {shards}` (on free ports) with `extra` flags (later
    /// flags win) and waits until its front answers `/readyz`.
    async fn start(shards: usize, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let front = closed_port();
        let mut command = loadlab();
        command
            .args(["serve", "--shards", &shards.to_string(), "--threads", "1"])
            .args(["--bind", &front.to_string(), "--shard-base-port", "0"])
            .arg("--db")
            .arg(dir.path().join("loadlab.db"))
            .args(extra);
        let ready = format!("http://{front}/readyz");
        Self {
            process: ChildProcess::start_ready("loadlab serve", command, &ready).await,
            front,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.front)
    }

    /// `/front/status`.
    async fn status(&self) -> Value {
        let response = self.client.get(self.url("/front/status")).send().await;
        response.expect("sent").json().await.expect("json")
    }

    /// `http_requests_total` of [`COUNTED`]'s route by shard label, summed over
    /// statuses.
    async fn counted_by_shard(&self) -> HashMap<String, u64> {
        self.counted_on("/api/randoms").await
    }

    /// `http_requests_total` of route template `route` by shard label, summed over
    /// statuses.
    async fn counted_on(&self, route: &str) -> HashMap<String, u64> {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("text");
        let mut counts = HashMap::new();
        for line in text.lines() {
            let Some(labels) = line.strip_prefix("http_requests_total{") else {
                continue;
            };
            if !labels.contains(&format!("route=\"{route}\"")) {
                continue;
            }
            let shard = labels
                .split("shard=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("a shard label");
            let value: u64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("a count");
            *counts.entry(shard.to_owned()).or_default() += value;
        }
        counts
    }

    /// Sends `n` GETs of [`COUNTED`] through the front, 8 at a time, each answered 200.
    async fn send_counted(&self, n: usize) {
        let sent = Arc::new(AtomicUsize::new(0));
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (client, url, sent) = (self.client.clone(), self.url(COUNTED), Arc::clone(&sent));
            clients.spawn(async move {
                while sent.fetch_add(1, Ordering::Relaxed) < n {
                    let response = client.get(&url).send().await.expect("sent");
                    assert_eq!(response.status(), StatusCode::OK);
                }
            });
        }
        while let Some(done) = clients.join_next().await {
            done.expect("client task");
        }
    }
}

/// Each member's `path` in a `/front/status` answer.
fn paths(status: &Value) -> Vec<String> {
    status["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .flat_map(|p| p["upstreams"].as_array().expect("upstreams").iter())
        .map(|u| u["path"].as_str().expect("a path").to_owned())
        .collect()
}

/// Sends 3 x [`PER_SHARD`] requests through a front over 3 shards and asserts each
/// shard counted exactly [`PER_SHARD`]: every request counted once, by one shard, in
/// exact turns.
async fn assert_round_robin_is_exact(process: &ServeProcess) {
    let before = process.counted_by_shard().await;
    assert!(before.is_empty(), "nothing counted yet: {before:?}");

    process.send_counted(3 * PER_SHARD).await;

    let counts = process.counted_by_shard().await;
    let expected: HashMap<String, u64> = ["0", "1", "2"]
        .into_iter()
        .map(|shard| (shard.to_owned(), PER_SHARD as u64))
        .collect();
    assert_eq!(counts, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_status_says_which_path_each_member_uses() {
    let inproc = spawn_app_with_front(&[]).await;
    let tcp = spawn_app_with_front(&["--front-path", "tcp"]).await;

    let inproc_status: Value = inproc
        .get("/front/status")
        .await
        .json()
        .await
        .expect("json");
    let tcp_status: Value = tcp.get("/front/status").await.json().await.expect("json");

    assert_eq!(paths(&inproc_status), ["inproc", "inproc"]);
    assert_eq!(paths(&tcp_status), ["tcp", "tcp"]);
    inproc.stop().await;
    tcp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_through_the_in_process_front_is_counted_by_exactly_one_shard_in_turn() {
    let process = ServeProcess::start(3, &[]).await;
    assert_eq!(paths(&process.status().await), ["inproc"; 3]);

    assert_round_robin_is_exact(&process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tcp_path_keeps_round_robin_exact() {
    let process = ServeProcess::start(3, &["--front-path", "tcp"]).await;
    assert_eq!(paths(&process.status().await), ["tcp"; 3]);

    assert_round_robin_is_exact(&process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_two_to_one_over_our_own_shards_give_exactly_2000_and_1000_in_process() {
    // The front config must name the shards' ports before they exist: two consecutive
    // free ports, probed (another process could take one in between: then this fails
    // to start, loudly, rather than passing wrongly).
    let base = (0..50)
        .map(|_| closed_port().port())
        .find(|&p| p < u16::MAX && StdListener::bind(("127.0.0.1", p + 1)).is_ok())
        .expect("two consecutive free ports");
    let (heavy, light): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{base}").parse().expect("addr"),
        format!("127.0.0.1:{}", base + 1).parse().expect("addr"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("front.toml");
    std::fs::write(
        &config,
        format!("{FAST_HEALTH}{}", pool("main", &[(heavy, 2), (light, 1)])),
    )
    .expect("write the front config");
    let config = config.display().to_string();
    let base = base.to_string();
    let process =
        ServeProcess::start(2, &["--shard-base-port", &base, "--front-config", &config]).await;
    assert_eq!(paths(&process.status().await), ["inproc"; 2]);

    process.send_counted(3000).await;

    let counts = process.counted_by_shard().await;
    assert_eq!(counts.get("0"), Some(&2000), "{counts:?}");
    assert_eq!(counts.get("1"), Some(&1000), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_whose_runtime_stopped_leaves_rotation_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("loadlab.db");
    let mut args = crate::support::serve_args(&db, &["--shards", "2"]);
    args.no_front = false;
    let config = loadlab::config::Config::from_args(&args).expect("valid config");
    let app = loadlab::app::App::build(config).expect("app builds");
    let stop_shard_1 = app.shard_stopper(1).expect("shard 1 exists");
    let app = crate::support::spawn_built(app);
    let shard_1 = app.shards[1].to_string();
    let state_of = |status: &Value| {
        status["pools"][0]["upstreams"]
            .as_array()
            .expect("upstreams")
            .iter()
            .find(|u| u["addr"] == shard_1.as_str())
            .map(|u| u["state"].as_str().expect("state").to_owned())
            .expect("shard 1 is listed")
    };
    let status: Value = app.get("/front/status").await.json().await.expect("json");
    assert_eq!(state_of(&status), "up");

    stop_shard_1.cancel();
    // The shard's thread drops its router once its listener has drained: the front
    // sees it at its next request, with no health check needed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status: Value = app.get("/front/status").await.json().await.expect("json");
        if state_of(&status) == "down" {
            break;
        }
        assert!(Instant::now() < deadline, "shard 1 never left rotation");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    for _ in 0..20 {
        let response = app.get("/healthz").await;
        assert_eq!(response.status(), StatusCode::OK, "shard 0 serves them all");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_in_flight_through_the_in_process_front_finish() {
    let process = ServeProcess::start(2, &[]).await;
    let base = process.url("");
    assert_sigterm_lets_a_slow_job_finish(process.process, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_conns_slots_come_back_after_each_in_process_response() {
    // One request in flight per shard: a slot that never came back would make the
    // third request wait out the upstream timeout and answer 504.
    let app =
        spawn_app_with_front(&["--upstream-max-conns", "1", "--upstream-timeout", "5s"]).await;

    for _ in 0..10 {
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
        let randoms = app.get("/api/randoms?cant=100").await;
        assert_eq!(randoms.status(), StatusCode::OK);
    }

    let status: Value = app.get("/front/status").await.json().await.expect("json");
    let members = status["pools"][0]["upstreams"]
        .as_array()
        .expect("upstreams");
    assert_eq!(members.len(), 2);
    for member in members {
        assert_eq!(member["path"], "inproc");
        assert_eq!(member["max_conns"], 1);
        assert_eq!(member["in_flight"], 0, "{member}");
    }
    app.stop().await;
}

/// The in-process path has no queue in front of a shard: a request runs on the front's
/// thread, and what bounds a shard's share is `--upstream-max-conns`. A shard with its
/// slots taken is passed over for one with room, so the others serve meanwhile and
/// nothing waits for the busy one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_with_its_max_conns_in_flight_is_passed_over_in_process() {
    let process = ServeProcess::start(2, &["--upstream-max-conns", "1"]).await;
    // Seconds of work on the one compute thread: it holds its shard's only slot.
    let slow = {
        let (client, url) = (
            process.client.clone(),
            process.url("/api/randoms?cant=1e10"),
        );
        tokio::spawn(async move { client.get(url).send().await })
    };
    let in_flight = |status: &Value| -> Vec<u64> {
        status["pools"][0]["upstreams"]
            .as_array()
            .expect("upstreams")
            .iter()
            .map(|m| m["in_flight"].as_u64().expect("a count"))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let busy = loop {
        if let Some(busy) = in_flight(&process.status().await)
            .iter()
            .position(|&n| n == 1)
        {
            break busy;
        }
        assert!(Instant::now() < deadline, "the slow job never took a slot");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    for _ in 0..20 {
        let response = process.client.get(process.url("/info")).send().await;
        assert_eq!(response.expect("sent").status(), StatusCode::OK);
    }

    let idle = (1 - busy).to_string();
    let counts = process.counted_on("/info").await;
    assert_eq!(
        counts,
        HashMap::from([(idle, 20)]),
        "all on the shard with room"
    );
    assert_eq!(
        in_flight(&process.status().await)[busy],
        1,
        "the slow job still ran"
    );
    slow.abort();
}
