//! Health and failover: a killed upstream, nothing available (502), a slow upstream
//! (504), what is retried and what is not.

use super::*;

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

    // kill and restart block (join a thread, rebind a port): off the front's worker,
    // whose queued tasks would otherwise wait for them.
    tokio::task::block_in_place(|| upstreams[1].kill());
    wait_until("the killed upstream is marked down", limit, || {
        !front.is_up(victim)
    })
    .await;
    let at_down = done.load(Ordering::Relaxed);
    wait_until("300 more requests are done", limit, || {
        done.load(Ordering::Relaxed) >= at_down + 300
    })
    .await;
    tokio::task::block_in_place(|| upstreams[1].restart());
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
    let first = front.post_insert().await;
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

    let message = front
        .expect_504_after("/slow", Duration::from_millis(300))
        .await;

    assert!(message.contains("did not answer within"), "{message}");
}

/// The front's edge leaves its request time limit to the proxy (one deadline per
/// request): where that limit is the shorter, the client gets the edge's 503, and a
/// request that outlived the front's own limit is not held against the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_time_limit_under_the_upstream_timeout_gives_503_and_blames_no_one() {
    let slow = TestUpstream::start("slow");
    let mut edge = edge(&[]);
    edge.request_timeout = Duration::from_millis(300);
    let front = spawn_front_with(
        &format!("{NO_ACTIVE_HEALTH}{}", pool("main", &[(slow.addr, 1)])),
        limits(Duration::from_secs(30)),
        edge,
    )
    .await;

    let started = Instant::now();
    let response = front
        .client
        .get(front.url("/slow"))
        .send()
        .await
        .expect("sent");
    let message = expect_error(response, 503).await;
    let took = started.elapsed();

    assert!(message.contains("0.3s request timeout"), "{message}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert!(
        front.is_up(slow.addr),
        "held out for the front's own time limit"
    );
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
    let post = front.post_insert().await;
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
