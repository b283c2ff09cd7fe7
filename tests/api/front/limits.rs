//! `max_conns`: requests in flight to one upstream at once. The overflow goes to an
//! upstream with room, or waits for a slot, bounded by the upstream timeout.

use super::*;

/// A pool `main` over `members` (address, max_conns), equal weights.
fn limited_pool(members: &[(SocketAddr, u32)]) -> String {
    pool_of("main", "max_conns", members)
}

impl TestFront {
    /// `in_flight` of `addr` in the front's status.
    fn in_flight(&self, addr: SocketAddr) -> Option<u64> {
        let status = self.front.status();
        let label = addr.to_string();
        status["pools"][0]["upstreams"]
            .as_array()
            .expect("upstreams")
            .iter()
            .find(|u| u["addr"] == label.as_str())
            .and_then(|u| u["in_flight"].as_u64())
    }

    /// Starts a `GET /slow-body` in the background (headers at once, a body that
    /// takes 30 s, so the upstream timeout does not end it) and waits until it holds a
    /// slot of `addr`.
    async fn hold_a_slot(&self, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
        let (client, url) = (self.client.clone(), self.url("/slow-body"));
        let before = self.in_flight(addr).unwrap_or(0);
        let slow = tokio::spawn(async move {
            if let Ok(response) = client.get(url).send().await {
                let _ = response.bytes().await;
            }
        });
        wait_until(
            "the slow request holds a slot",
            Duration::from_secs(10),
            || self.in_flight(addr) == Some(before + 1),
        )
        .await;
        slow
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_upstream_is_skipped_for_one_with_room() {
    let (a, b) = (TestUpstream::start("a"), TestUpstream::start("b"));
    let config = format!(
        "{NO_ACTIVE_HEALTH}{}",
        limited_pool(&[(a.addr, 1), (b.addr, 1)])
    );
    let front = spawn_front(&config, limits(Duration::from_secs(30))).await;
    // Round robin sends the first request to a: it holds a's only slot.
    let slow = front.hold_a_slot(a.addr).await;

    // Round robin would give half of these to a; a is full, so b takes them all, one
    // at a time, each freeing b's slot when its response has been read.
    let mut answered_by = Vec::new();
    for _ in 0..6 {
        answered_by.push(front.upstream_of("/work").await);
    }

    assert_eq!(answered_by, ["b"; 6]);
    assert_eq!(front.in_flight(b.addr), Some(0), "b's slots are all back");
    // A client that goes away mid-response gives its slot back.
    slow.abort();
    wait_until("a's slot is back", Duration::from_secs(10), || {
        front.in_flight(a.addr) == Some(0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_max_conns_wait_their_turn_and_all_succeed() {
    let only = TestUpstream::start("only");
    let config = format!("{NO_ACTIVE_HEALTH}{}", limited_pool(&[(only.addr, 2)]));
    let front = Arc::new(spawn_front(&config, limits(Duration::from_secs(30))).await);

    let requests: Vec<_> = (0..32)
        .map(|_| {
            let front = Arc::clone(&front);
            tokio::spawn(async move { front.upstream_of("/work").await })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("request task"), "only");
    }

    assert_eq!(front.in_flight(only.addr), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_slot_held_a_request_gets_504_after_the_upstream_timeout() {
    let only = TestUpstream::start("only");
    let config = format!("{NO_ACTIVE_HEALTH}{}", limited_pool(&[(only.addr, 1)]));
    let front = spawn_front(&config, limits(Duration::from_millis(400))).await;
    let slow = front.hold_a_slot(only.addr).await;

    let message = front
        .expect_504_after("/work", Duration::from_millis(400))
        .await;

    assert!(message.contains("max_conns (1)"), "{message}");
    slow.abort();
}
