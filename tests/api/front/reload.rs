//! Operations without downtime: reloading the front config (SIGHUP), draining an
//! upstream at run time (token-guarded admin actions).

use std::path::Path;

use super::*;
use crate::support::child::{free_port, loadlab};

/// A front on port 0 over the config file `path` (reloadable), with `admin` tokens.
async fn spawn_front_file(path: &Path, admin: Option<&Path>) -> TestFront {
    let mut front = Front::load(path, limits(Duration::from_secs(5))).expect("front loads");
    if let Some(tokens) = admin {
        let tokens = loadlab_front::tokens::TokenFile::load(tokens).expect("tokens");
        front = front.with_admin(Arc::new(tokens));
    }
    serve_front(front, edge(&[])).await
}

/// Which upstream answered each of `n` sequential GETs, counted by name.
async fn split(client: &reqwest::Client, url: &str, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let response = client.get(url).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
        let name = response.headers()["x-upstream-name"]
            .to_str()
            .expect("ascii")
            .to_owned();
        *counts.entry(name).or_default() += 1;
    }
    counts
}

async fn status_of(client: &reqwest::Client, base: &str) -> Value {
    let response = client
        .get(format!("{base}/front/status"))
        .send()
        .await
        .expect("status");
    response.json().await.expect("status json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_from_1_1_to_3_1_costs_no_request_and_the_next_400_split_300_100() {
    let (a, b) = (TestUpstream::start("a"), TestUpstream::start("b"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("front.toml");
    std::fs::write(&path, pool("main", &[(a.addr, 1), (b.addr, 1)])).expect("write");
    let (command, base) = front_command(&path, 2);
    let (child, client) = start_front_process(command, &base).await;
    let before = split(&client, &format!("{base}/"), 100).await;
    assert_eq!(before.get("a"), Some(&50), "{before:?}");

    // Eight clients keep requests in flight across the reload.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (client.clone(), format!("{base}/"));
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let ok = match client.get(&url).send().await {
                        Ok(r) => r.status() == StatusCode::OK && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    let counter = if ok { &served } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_until("the clients are going", Duration::from_secs(10), || {
        served.load(Ordering::Relaxed) > 200
    })
    .await;
    std::fs::write(&path, pool("main", &[(a.addr, 3), (b.addr, 1)])).expect("rewrite");
    child.sighup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = status_of(&client, &base).await;
        if status["config"]["generation"] == 2 {
            assert_eq!(status["config"]["reloads"]["ok"], 1, "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "never reloaded: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_reload = served.load(Ordering::Relaxed);
    wait_until(
        "requests run after the reload",
        Duration::from_secs(10),
        || served.load(Ordering::Relaxed) > at_reload + 200,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }

    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed");
    let after = split(&client, &format!("{base}/"), 400).await;
    assert_eq!(after.get("a"), Some(&300), "{after:?}");
    assert_eq!(after.get("b"), Some(&100), "{after:?}");
    child.sigterm();
    assert!(child.wait_exit().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_state_of_members_that_stay_and_refuses_a_bad_file() {
    let (a, mut b, c) = (
        TestUpstream::start("a"),
        TestUpstream::start("b"),
        TestUpstream::start("c"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("front.toml");
    let config = |members: &[(SocketAddr, u32)]| format!("{FAST_HEALTH}{}", pool("main", members));
    std::fs::write(&path, config(&[(a.addr, 1), (b.addr, 1)])).expect("write");
    let front = spawn_front_file(&path, None).await;
    b.kill();
    wait_until("b is down", Duration::from_secs(10), || {
        !front.is_up(b.addr)
    })
    .await;

    // b stays (its health with it), c comes in with a fresh state.
    std::fs::write(&path, config(&[(a.addr, 2), (b.addr, 1), (c.addr, 1)])).expect("write");
    let reload = {
        let front = front.front.clone();
        tokio::task::spawn_blocking(move || front.reload())
    };
    assert_eq!(reload.await.expect("joined").expect("reloaded"), 2);
    assert!(!front.is_up(b.addr), "b is still down after the reload");
    let counts = split(&front.client, &front.url("/"), 30).await;
    assert_eq!(counts.get("a"), Some(&20), "{counts:?}");
    assert_eq!(counts.get("c"), Some(&10), "{counts:?}");
    b.restart();
    wait_until("b is back up", Duration::from_secs(10), || {
        front.is_up(b.addr)
    })
    .await;

    // A bad file: the old config stays, and says why in the counts.
    std::fs::write(&path, "[[pools]]\nname = \"main\"\nupstreams = []\n").expect("write");
    let failed = {
        let front = front.front.clone();
        tokio::task::spawn_blocking(move || front.reload())
    };
    let error = format!("{:#}", failed.await.expect("joined").expect_err("refused"));
    assert!(error.contains("no upstreams"), "{error}");
    let status = front.front.status();
    assert_eq!(status["config"]["generation"], 2, "{status}");
    assert_eq!(status["config"]["reloads"]["error"], 1, "{status}");
    let text = std::fs::read(&path).expect("read");
    assert_ne!(
        status["config"]["sha256"].as_str(),
        Some(sha256_hex(&text).as_str())
    );
    let counts = split(&front.client, &front.url("/"), 40).await;
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_shard_gets_no_new_request_until_ready_and_needs_a_token() {
    let (a, b) = (TestUpstream::start("a"), TestUpstream::start("b"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("front.toml");
    std::fs::write(&path, pool("main", &[(a.addr, 1), (b.addr, 1)])).expect("write");
    let tokens = dir.path().join("admin-tokens");
    std::fs::write(&tokens, "s3cret\n").expect("write");
    let front = spawn_front_file(&path, Some(&tokens)).await;
    let drain = front.url(&format!("/front/upstreams/{}/drain", a.addr));

    let missing = front.client.post(&drain).send().await.expect("sent");
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    expect_error(missing, 401).await;
    let wrong = front.client.post(&drain).bearer_auth("guess").send().await;
    expect_error(wrong.expect("sent"), 401).await;
    let drained = front.client.post(&drain).bearer_auth("s3cret").send().await;
    let drained: Value = drained.expect("sent").json().await.expect("json");
    assert_eq!(drained["draining"], true, "{drained}");

    let counts = split(&front.client, &front.url("/"), 100).await;
    assert_eq!(counts.get("b"), Some(&100), "{counts:?}");
    let status = front.front.status();
    let member = &status["pools"][0]["upstreams"][0];
    assert_eq!(member["state"], "draining", "{status}");
    assert_eq!(member["in_flight"], 0, "{status}");

    let ready = front.url(&format!("/front/upstreams/{}/ready", a.addr));
    let ready = front.client.post(&ready).bearer_auth("s3cret").send().await;
    assert_eq!(ready.expect("sent").status(), 200);
    let counts = split(&front.client, &front.url("/"), 10).await;
    assert_eq!(counts.get("a"), Some(&5), "{counts:?}");
    let unknown = front.url("/front/upstreams/127.0.0.1:1/drain");
    let unknown = front
        .client
        .post(&unknown)
        .bearer_auth("s3cret")
        .send()
        .await;
    expect_error(unknown.expect("sent"), 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_are_off_without_a_token_file() {
    let a = TestUpstream::start("a");
    let front = spawn_front(
        &pool("main", &[(a.addr, 1)]),
        limits(Duration::from_secs(5)),
    )
    .await;
    let drain = front.url(&format!("/front/upstreams/{}/drain", a.addr));
    let response = front.client.post(&drain).bearer_auth("any").send().await;
    let message = expect_error(response.expect("sent"), 403).await;
    assert_eq!(message, "admin is off: start with --admin-token-file");
    assert!(front.is_up(a.addr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sighup_reloads_the_front_config_the_certificate_and_the_admin_tokens() {
    use crate::support::tls::TestCert;
    let (a, b) = (TestUpstream::start("a"), TestUpstream::start("b"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("front.toml");
    std::fs::write(&path, pool("main", &[(a.addr, 1), (b.addr, 1)])).expect("write");
    let tokens = dir.path().join("admin-tokens");
    std::fs::write(&tokens, "first\n").expect("write");
    let first = TestCert::generate(dir.path(), "front", "loadlab first");
    let (port, plain) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{plain}");
    let mut command = loadlab();
    // Info: the handler's "SIGHUP: reloading" line is counted below.
    command.env("RUST_LOG", "info");
    command
        .args(["front", "--config"])
        .arg(&path)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(["--plain-bind", &format!("127.0.0.1:{plain}")])
        .arg("--admin-token-file")
        .arg(&tokens)
        .args(first.flags());
    let (child, client) = start_front_process(command, &base).await;

    // All three change; one signal.
    std::fs::write(&path, pool("main", &[(a.addr, 3), (b.addr, 1)])).expect("rewrite");
    std::fs::write(&tokens, "second\n").expect("rewrite");
    TestCert::generate(dir.path(), "front", "loadlab second");
    child.sighup();
    // The front config reloads last: once it has, so have the others.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = status_of(&client, &base).await;
        if status["config"]["generation"] == 2 {
            break status;
        }
        assert!(Instant::now() < deadline, "never reloaded: {}", child.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        status["certificate"]["subject"], "CN=loadlab second",
        "{status}"
    );
    let drain = format!("{base}/front/upstreams/{}/drain", a.addr);
    let old = client.post(&drain).bearer_auth("first").send().await;
    expect_error(old.expect("sent"), 401).await;
    let new = client.post(&drain).bearer_auth("second").send().await;
    assert_eq!(new.expect("sent").status(), StatusCode::OK);
    let metrics = client.get(format!("{base}/metrics")).send().await;
    let metrics = metrics.expect("metrics").text().await.expect("text");
    for line in [
        "front_config_reloads_total{result=\"ok\"} 1",
        "tls_certificate_reloads_total{result=\"ok\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    child.sigterm();
    // Read after the exit: the log writer flushes then.
    let (exit, log) = child.wait_exit_with_log().await;
    assert!(exit.success(), "{log}");
    assert_eq!(
        log.matches("SIGHUP: reloading").count(),
        1,
        "one handler: {log}"
    );
}

/// Requests each shard of the app at `front` has answered so far, by shard index, as
/// the shards count them (the live page's stream).
fn shard_requests(front: SocketAddr) -> Vec<u64> {
    let (_, event) = crate::live::first_event(front);
    let mut shards: Vec<(u64, u64)> = event["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| {
            let index = s["shard"].as_u64().expect("index");
            (index, s["requests"].as_u64().expect("requests"))
        })
        .collect();
    shards.sort_unstable();
    shards.into_iter().map(|(_, requests)| requests).collect()
}

/// The done-when's own case on a real `serve`: two shards behind the in-process
/// front, one drained through the admin API (401 without the token first): the next
/// 100 requests all go to the other, as the shards themselves count them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_one_of_two_shards_of_serve_sends_the_next_100_to_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("admin-tokens");
    std::fs::write(&tokens, "ops-token\n").expect("write");
    let flag = tokens.to_str().expect("a UTF-8 path");
    let app = spawn_app_with_front(&["--admin-token-file", flag]).await;
    let drain = app.url(&format!("/front/upstreams/{}/drain", app.shards[0]));

    let refused = app.client.post(&drain).send().await.expect("sent");
    expect_error(refused, 401).await;
    let drained = app
        .client
        .post(&drain)
        .bearer_auth("ops-token")
        .send()
        .await;
    assert_eq!(drained.expect("sent").status(), StatusCode::OK);
    let addr = app.addr;
    let before = tokio::task::spawn_blocking(move || shard_requests(addr)).await;
    let before = before.expect("read");
    for _ in 0..100 {
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    }
    let after = tokio::task::spawn_blocking(move || shard_requests(addr)).await;
    let after = after.expect("read");

    assert_eq!(
        after[0], before[0],
        "the drained shard answered: {before:?} -> {after:?}"
    );
    assert!(
        after[1] >= before[1] + 100,
        "the other shard did not get all 100: {before:?} -> {after:?}"
    );
    app.stop().await;
}
