//! Tokens on writes (`--write-token-file`): POST routes need a bearer token, reads
//! stay open, and the file is re-read on SIGHUP.

use serde_json::Value;

use crate::support::child::{ChildProcess, free_port, loadlab};
use crate::support::{expect_error, spawn_app_with_front, ticket};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_write_tokens_an_insert_needs_one_and_reads_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("write-tokens");
    std::fs::write(&tokens, "# writers\nw-token\n").expect("write");
    let app = spawn_app_with_front(&["--write-token-file", &tokens.display().to_string()]).await;
    let insert = app.url("/app/insert");
    let body = ticket([4, 8, 15, 16, 23, 42]);

    let refused = app
        .client
        .post(&insert)
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    let message = expect_error(refused, 401).await;
    assert!(message.contains("Bearer"), "{message}");
    let wrong = app
        .client
        .post(&insert)
        .json(&body)
        .bearer_auth("nope")
        .send()
        .await;
    expect_error(wrong.expect("sent"), 401).await;
    // Straight to a shard too, not only through the front.
    let direct = format!("http://{}/app/insert/batch", app.shards[0]);
    let direct = app.client.post(direct).json(&[&body]).send().await;
    expect_error(direct.expect("sent"), 401).await;

    let created = app
        .client
        .post(&insert)
        .json(&body)
        .bearer_auth("w-token")
        .send()
        .await;
    let created = created.expect("sent");
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    let id = created["id"].as_i64().expect("an id");
    assert_eq!(app.get(&format!("/app/mega/{id}")).await.status(), 200);
    assert_eq!(app.get("/app/mega").await.status(), 200);
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_reloads_the_write_tokens_and_a_broken_file_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("write-tokens");
    std::fs::write(&tokens, "first\n").expect("write");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut command = loadlab();
    command
        .args([
            "serve",
            "--shards",
            "1",
            "--shard-base-port",
            "0",
            "--threads",
            "1",
        ])
        .args(["--bind", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.path().join("loadlab.db"))
        .arg("--write-token-file")
        .arg(&tokens);
    let child =
        ChildProcess::start_ready("loadlab serve", command, &format!("{base}/readyz")).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let insert = |token: &'static str| {
        let request = client.post(format!("{base}/app/insert"));
        request
            .json(&ticket([1, 2, 3, 4, 5, 6]))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(insert("first").await.expect("sent").status(), 201);

    std::fs::write(&tokens, "second\n").expect("write");
    child.sighup();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while insert("second").await.expect("sent").status() != 201 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tokens never reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(insert("first").await.expect("sent").status(), 401);

    std::fs::write(&tokens, "").expect("write");
    child.sighup();
    // The broken file is refused: the running tokens stay. No event to wait on but
    // the log line; then the process still takes `second`.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !child.log().contains("token file reload failed") {
        assert!(tokio::time::Instant::now() < deadline, "{}", child.log());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(insert("second").await.expect("sent").status(), 201);
    child.sigterm();
    assert!(child.wait_exit().await.success());
}
