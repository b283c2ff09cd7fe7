//! Where requests go: exact round robin, weights, routes; and with which headers.

use super::*;

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
