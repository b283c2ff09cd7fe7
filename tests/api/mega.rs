//! The Mega store over HTTP: inserts, reads, validation of every kind of bad input.

use serde_json::{Value, json};

use crate::support::{
    assert_insert_reads_back, assert_two_pages, expect_error, spawn_app, spawn_app_with, ticket,
};

#[tokio::test(flavor = "multi_thread")]
async fn insert_returns_201_with_an_id_that_reads_back() {
    let app = spawn_app().await;
    assert_insert_reads_back(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_insert_is_all_or_nothing() {
    let app = spawn_app().await;
    let good: Vec<Value> = (0..100)
        .map(|i| ticket([1, 2, 3, 4, 5, 6 + i % 50]))
        .collect();
    let response = app
        .post_json("/app/insert/batch", &Value::Array(good))
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["ids"].as_array().expect("ids").len(), 100);

    let mut mixed: Vec<Value> = (0..10).map(|_| ticket([10, 20, 30, 40, 50, 60])).collect();
    mixed[3] = ticket([10, 20, 30, 40, 50, 50]);
    let message = expect_error(
        app.post_json("/app/insert/batch", &Value::Array(mixed))
            .await,
        400,
    )
    .await;
    assert!(message.starts_with("ticket 3:"), "{message}");
    let stats: Value = app.get("/app/mega/stats").await.json().await.expect("json");
    assert_eq!(stats["rows"], 100, "the rejected batch stored nothing");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_limits_are_enforced() {
    let app = spawn_app_with(&["--batch-request-max", "5"]).await;
    let six = Value::Array((0..6).map(|_| ticket([1, 2, 3, 4, 5, 6])).collect());
    let message = expect_error(app.post_json("/app/insert/batch", &six).await, 413).await;
    assert!(message.contains("at most 5"), "{message}");
    expect_error(app.post_json("/app/insert/batch", &json!([])).await, 400).await;
    expect_error(
        app.post_json("/app/insert/batch", &ticket([1, 2, 3, 4, 5, 6]))
            .await,
        400,
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_and_stats_reflect_what_was_stored() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let body: Value = app
            .post_json("/app/insert", &ticket([1, 2, 3, 4, 5, 10 + i]))
            .await
            .json()
            .await
            .expect("json");
        ids.push(body["id"].as_i64().expect("id"));
    }
    assert_two_pages(&app, "/app/mega?limit=2", &ids[..2], 10, 3).await;
    expect_error(app.get("/app/mega?limit=0").await, 400).await;
    expect_error(app.get("/app/mega?limit=5000").await, 400).await;

    let stats: Value = app.get("/app/mega/stats").await.json().await.expect("json");
    assert_eq!(stats["rows"], 5);
    assert_eq!(stats["plays"]["1"], 5);
    assert_eq!(stats["plays"]["14"], 1);
    assert_eq!(stats["plays"]["60"], 0);
    let keys: Vec<&String> = stats["plays"].as_object().expect("plays").keys().collect();
    assert_eq!(keys.first().map(|k| k.as_str()), Some("1"));
    assert_eq!(keys.len(), 60);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corpus_of_bad_bodies_gets_only_4xx_json_errors() {
    let app = spawn_app().await;
    let valid = r#"{"num1":1,"num2":2,"num3":3,"num4":4,"num5":5,"num6":6}"#;
    let bodies: Vec<(&str, String)> = vec![
        ("application/json", String::new()),
        ("application/json", "{".into()),
        ("application/json", "null".into()),
        ("application/json", "[]".into()),
        ("application/json", "42".into()),
        ("application/json", r#""ticket""#.into()),
        ("application/json", "{}".into()),
        (
            "application/json",
            r#"{"num1":1,"num2":2,"num3":3,"num4":4,"num5":5}"#.into(),
        ),
        (
            "application/json",
            r#"{"num1":1,"num2":2,"num3":3,"num4":4,"num5":5,"num6":6,"num7":7}"#.into(),
        ),
        (
            "application/json",
            r#"{"num1":1.0,"num2":2,"num3":3,"num4":4,"num5":5,"num6":6}"#.into(),
        ),
        (
            "application/json",
            r#"{"num1":"1","num2":2,"num3":3,"num4":4,"num5":5,"num6":6}"#.into(),
        ),
        (
            "application/json",
            r#"{"num1":null,"num2":2,"num3":3,"num4":4,"num5":5,"num6":6}"#.into(),
        ),
        (
            "application/json",
            r#"{"num1":true,"num2":2,"num3":3,"num4":4,"num5":5,"num6":6}"#.into(),
        ),
        (
            "application/json",
            r#"{"num1":[1],"num2":2,"num3":3,"num4":4,"num5":5,"num6":6}"#.into(),
        ),
        (
            "application/json",
            r#"{"num1":0,"num2":2,"num3":3,"num4":4,"num5":5,"num6":6}"#.into(),
        ),
        (
            "application/json",
            r#"{"num1":61,"num2":2,"num3":3,"num4":4,"num5":5,"num6":6}"#.into(),
        ),
        (
            "application/json",
            r#"{"num1":-1,"num2":2,"num3":3,"num4":4,"num5":5,"num6":6}"#.into(),
        ),
        (
            "application/json",
            r#"{"num1":99999999999999999999,"num2":2,"num3":3,"num4":4,"num5":5,"num6":6}"#.into(),
        ),
        (
            "application/json",
            r#"{"num1":1,"num2":1,"num3":3,"num4":4,"num5":5,"num6":6}"#.into(),
        ),
        ("application/json", format!("{valid}garbage")),
        ("application/json", "\u{0}\u{1}\u{2}".into()),
        (
            "application/json",
            format!("{{\"num1\": {}}}", "[".repeat(10_000)),
        ),
        ("application/json", "x".repeat(100 * 1024)),
        ("text/plain", valid.into()),
        ("application/x-www-form-urlencoded", "num1=1&num2=2".into()),
        ("", valid.into()),
    ];
    for (content_type, body) in &bodies {
        let mut request = app.client.post(app.url("/app/insert")).body(body.clone());
        if !content_type.is_empty() {
            request = request.header("content-type", *content_type);
        }
        let response = request.send().await.expect("sent");
        let status = response.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{content_type} {:.60}: status {status}",
            body
        );
        let error: Value = response.json().await.expect("a JSON error body");
        assert!(
            error["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{body:.60}"
        );
    }
    // Named fields and rules.
    let message = expect_error(
        app.post_json(
            "/app/insert",
            &json!({"num1":1,"num2":2,"num3":3,"num4":4,"num5":5,"num6":77}),
        )
        .await,
        400,
    )
    .await;
    assert!(
        message.contains("num6") && message.contains("1 to 60"),
        "{message}"
    );
    // Still healthy, nothing stored.
    assert_eq!(app.get("/healthz").await.status(), 200);
    let stats: Value = app.get("/app/mega/stats").await.json().await.expect("json");
    assert_eq!(stats["rows"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = spawn_app().await;
    let message = expect_error(app.get("/nope").await, 404).await;
    assert!(message.contains("/nope"));
    let response = app
        .client
        .get(app.url("/app/insert"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 405);
    let index: Value = app.get("/app/").await.json().await.expect("json");
    assert!(index["routes"]["POST /app/insert"].is_string());
    app.stop().await;
}
