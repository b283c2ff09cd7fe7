//! `GET /api/randoms`: the response contract, parsing of `cant` and `method`,
//! determinism, admission control, cancellation, and that the runtime stays responsive.

use serde_json::{Map, Value};

use crate::scrape::wait_until;
use crate::support::{TestApp, expect_error, spawn_app, spawn_app_with};

async fn counts(app: &TestApp, query: &str) -> Map<String, Value> {
    let response = app.get(&format!("/api/randoms?{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    let Value::Object(map) = response.json::<Value>().await.expect("json") else {
        panic!("not an object");
    };
    map
}

fn total(map: &Map<String, Value>) -> u64 {
    map.values()
        .map(|v| v.as_u64().expect("integer count"))
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_sum_to_cant_with_keys_in_ascending_order() {
    let app = spawn_app().await;
    let map = counts(&app, "cant=100000&seed=7").await;
    assert_eq!(total(&map), 100_000);
    let keys: Vec<u32> = map
        .keys()
        .map(|k| k.parse().expect("numeric key"))
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "ascending keys");
    assert!(keys.iter().all(|k| (1..=1000).contains(k)));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scientific_notation_is_a_count_not_its_first_digit() {
    let app = spawn_app().await;
    assert_eq!(total(&counts(&app, "cant=1e8").await), 100_000_000);
    assert_eq!(total(&counts(&app, "cant=2.5e6").await), 2_500_000);
    assert_eq!(total(&counts(&app, "cant=1E3").await), 1000);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn absent_cant_uses_the_default_and_zero_gives_an_empty_object() {
    let app = spawn_app_with(&["--randoms-default", "5e3"]).await;
    assert_eq!(total(&counts(&app, "").await), 5000);
    let body = app
        .get("/api/randoms?cant=0")
        .await
        .text()
        .await
        .expect("body");
    assert_eq!(body, "{}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_cant_is_a_400_that_says_what_is_accepted() {
    let app = spawn_app_with(&["--randoms-max", "1e10"]).await;
    for bad in [
        "abc", "-5", "1.5", "1e400", "NaN", "", "2e10", "0x10", "1e", "%20",
    ] {
        let message = expect_error(app.get(&format!("/api/randoms?cant={bad}")).await, 400).await;
        assert!(message.starts_with("cant"), "{bad}: {message}");
    }
    let message = expect_error(app.get("/api/randoms?cant=10&seed=x").await, 400).await;
    assert!(message.contains("seed"), "{message}");
    let message = expect_error(app.get("/api/randoms?cant=10&pretty=maybe").await, 400).await;
    assert!(message.contains("pretty"), "{message}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pretty_output_is_indented_and_equal() {
    let app = spawn_app().await;
    let plain = app
        .get("/api/randoms?cant=5000&seed=3")
        .await
        .text()
        .await
        .expect("body");
    let pretty = app
        .get("/api/randoms?cant=5000&seed=3&pretty=true")
        .await
        .text()
        .await
        .expect("body");
    assert!(pretty.contains("\n  \""), "indented");
    let a: Value = serde_json::from_str(&plain).expect("json");
    let b: Value = serde_json::from_str(&pretty).expect("json");
    assert_eq!(a, b);
    app.stop().await;
}

/// Asserts `query` answers the same on 1 and 3 compute threads, and `other_seed` (the
/// same query with another seed) answers differently.
async fn assert_the_seed_decides(query: &str, other_seed: &str) {
    let one = spawn_app_with(&["--threads", "1"]).await;
    let three = spawn_app_with(&["--threads", "3"]).await;
    let a = one.get(query).await.text().await.expect("body");
    let b = three.get(query).await.text().await.expect("body");
    assert_eq!(a, b);
    let c = three.get(other_seed).await.text().await.expect("body");
    assert_ne!(a, c, "another seed, another answer");
    one.stop().await;
    three.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_seed_gives_the_same_answer_whatever_the_thread_count() {
    assert_the_seed_decides(
        "/api/randoms?cant=3500000&seed=12345",
        "/api/randoms?cant=3500000&seed=12346",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_503_at_once_with_retry_after() {
    let app = spawn_app_with(&["--randoms-queue", "1", "--threads", "1"]).await;
    let big = {
        let (client, url) = (app.client.clone(), app.url("/api/randoms?cant=1e10"));
        tokio::spawn(async move { client.get(url).send().await })
    };
    let state = app.state.clone();
    wait_until("the big job is admitted", || {
        state.compute().in_flight() == 1
    })
    .await;
    let response = app.get("/api/randoms?cant=10").await;
    assert_eq!(
        response.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let message = expect_error(response, 503).await;
    assert!(message.contains("busy"), "{message}");
    big.abort();
    wait_until("the compute threads are free again", || {
        state.compute().in_flight() == 0
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disconnected_client_frees_the_compute_threads() {
    let app = spawn_app_with(&["--threads", "1"]).await;
    let cancelled_before = scrape_counter(&app, "randoms_cancelled_total").await;
    let big = {
        let (client, url) = (app.client.clone(), app.url("/api/randoms?cant=1e10"));
        tokio::spawn(async move { client.get(url).send().await })
    };
    let state = app.state.clone();
    wait_until("the big job is admitted", || {
        state.compute().in_flight() == 1
    })
    .await;
    // The client goes away: its connection closes, the handler future is dropped.
    big.abort();
    wait_until("the job is cancelled and its slot freed", || {
        state.compute().in_flight() == 0
    })
    .await;
    let cancelled_after = scrape_counter(&app, "randoms_cancelled_total").await;
    assert!(
        cancelled_after > cancelled_before,
        "the job ended as cancelled, not completed"
    );
    // And the compute threads serve the next job.
    assert_eq!(total(&counts(&app, "cant=1000").await), 1000);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_while_a_huge_job_holds_every_compute_thread() {
    let app = spawn_app_with(&["--threads", "2"]).await;
    let big = {
        let (client, url) = (app.client.clone(), app.url("/api/randoms?cant=1e10"));
        tokio::spawn(async move { client.get(url).send().await })
    };
    let state = app.state.clone();
    wait_until("the big job is admitted", || {
        state.compute().in_flight() == 1
    })
    .await;
    let health = reqwest::Client::new()
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    // Answered while the job still runs: the runtime was never blocked by the count.
    assert_eq!(
        state.compute().in_flight(),
        1,
        "the huge job is still running"
    );
    big.abort();
    wait_until("the compute threads are free again", || {
        state.compute().in_flight() == 0
    })
    .await;
    app.stop().await;
}

/// The value of a counter in a `/metrics` scrape, summed over its label sets (0 if
/// absent); `labels` (e.g. `method="draw"`) narrows it to the series carrying them.
pub(crate) async fn scrape_counter_with(app: &TestApp, name: &str, labels: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| match rest.strip_prefix('{') {
            Some(labelled) => labelled
                .split_once("} ")
                .filter(|(set, _)| set.contains(labels))
                .map(|(_, value)| value),
            None => rest.strip_prefix(' '),
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

/// The value of a counter in a `/metrics` scrape, summed over its label sets.
pub(crate) async fn scrape_counter(app: &TestApp, name: &str) -> f64 {
    scrape_counter_with(app, name, "").await
}

#[tokio::test(flavor = "multi_thread")]
async fn multinomial_counts_sum_exactly_to_1e15_with_keys_ascending() {
    let app = spawn_app().await;
    let map = counts(&app, "cant=1e15&method=multinomial").await;
    assert_eq!(total(&map), 1_000_000_000_000_000);
    let keys: Vec<u32> = map
        .keys()
        .map(|k| k.parse().expect("numeric key"))
        .collect();
    assert_eq!(
        keys,
        (1..=1000).collect::<Vec<u32>>(),
        "every number, ascending"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multinomial_edge_counts_sum_exactly() {
    let app = spawn_app_with(&["--randoms-multinomial-max", "9007199254740992"]).await;
    for n in [0u64, 1, 999, 1000, 1001, 1 << 53] {
        let map = counts(&app, &format!("cant={n}&method=multinomial&seed=9")).await;
        assert_eq!(total(&map), n, "cant={n}");
        assert!(
            map.values().all(|v| v.as_u64() != Some(0)),
            "no zero counts"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multinomial_with_a_seed_is_deterministic_whatever_the_thread_count() {
    assert_the_seed_decides(
        "/api/randoms?cant=1e12&method=multinomial&seed=77",
        "/api/randoms?cant=1e12&method=multinomial&seed=78",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn method_draw_is_the_default() {
    let app = spawn_app().await;
    let plain = app.get("/api/randoms?cant=5000&seed=3").await.text().await;
    let draw = app
        .get("/api/randoms?cant=5000&seed=3&method=draw")
        .await
        .text()
        .await;
    assert_eq!(plain.expect("body"), draw.expect("body"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_method_is_a_400_naming_the_accepted_values() {
    let app = spawn_app().await;
    for bad in ["", "Draw", "binomial", "multinomial%20"] {
        let response = app.get(&format!("/api/randoms?cant=10&method={bad}")).await;
        let message = expect_error(response, 400).await;
        assert!(
            message.contains("method")
                && message.contains("draw")
                && message.contains("multinomial"),
            "{bad}: {message}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_method_has_its_own_cant_limit() {
    let app = spawn_app_with(&[
        "--randoms-max",
        "1e6",
        "--randoms-default",
        "1000",
        "--randoms-multinomial-max",
        "1e12",
    ])
    .await;
    assert_eq!(
        total(&counts(&app, "cant=1e12&method=multinomial").await),
        1_000_000_000_000
    );
    let message = expect_error(app.get("/api/randoms?cant=1e12").await, 400).await;
    assert!(
        message.contains("1000000") && message.contains("draw"),
        "{message}"
    );
    let response = app.get("/api/randoms?cant=2e12&method=multinomial").await;
    let message = expect_error(response, 400).await;
    assert!(
        message.contains("1000000000000") && message.contains("multinomial"),
        "{message}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_are_counted_in_the_metrics_by_method() {
    // The recorder is process-wide and other tests run alongside: compare deltas, and
    // only from below (their jobs can add, never subtract).
    let app = spawn_app().await;
    let numbers = |method: &'static str| {
        let app = &app;
        async move {
            scrape_counter_with(
                app,
                "randoms_numbers_total",
                &format!("method=\"{method}\""),
            )
            .await
        }
    };
    let jobs = || {
        scrape_counter_with(
            &app,
            "randoms_job_duration_seconds_count",
            "method=\"multinomial\"",
        )
    };
    let (multinomial_before, draw_before, jobs_before) = (
        numbers("multinomial").await,
        numbers("draw").await,
        jobs().await,
    );

    counts(&app, "cant=1e15&method=multinomial").await;
    counts(&app, "cant=1000&method=draw").await;

    assert!(numbers("multinomial").await - multinomial_before >= 1e15);
    assert!(numbers("draw").await - draw_before >= 1000.0);
    assert!(
        jobs().await - jobs_before >= 1.0,
        "the multinomial job was timed"
    );
    app.stop().await;
}
