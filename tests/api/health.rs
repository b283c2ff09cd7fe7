//! `/healthz` and `/readyz`: liveness stays up while readiness reports a stopped writer.
//!
//! A writer crash cannot be caused on demand, so the 503 test stops the writer through
//! `App::stop_writer` before serving: the thread really exits, which is what readiness
//! checks (the same flag a panic sets), while the listeners keep serving.

use loadlab::app::App;
use loadlab::config::Config;
use serde_json::Value;

use crate::support::{expect_error, serve_args, spawn_app, spawn_built, ticket};

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_200_while_the_writer_runs() {
    let app = spawn_app().await;

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_with_a_reason_once_the_writer_thread_has_exited() {
    // Arrange: an app whose writer thread has exited before it serves.
    let dir = tempfile::tempdir().expect("tempdir");
    let args = serve_args(&dir.path().join("loadlab.db"), &[]);
    let app = App::build(Config::from_args(&args).expect("valid config")).expect("app builds");
    let writer = app.state().writer().clone();
    assert!(!writer.is_stopped(), "the writer runs after build");
    // `stop_writer` joins the thread: off the runtime's workers.
    let app = tokio::task::spawn_blocking(move || {
        let mut app = app;
        app.stop_writer();
        app
    })
    .await
    .expect("the writer stops");
    assert!(writer.is_stopped(), "the writer thread has exited");
    let app = spawn_built(app);

    // Act
    let ready = app.get("/readyz").await;
    let live = app.get("/healthz").await;
    let insert = app
        .post_json("/app/insert", &ticket([1, 2, 3, 4, 5, 6]))
        .await;

    // Assert
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "not ready");
    let reasons = body["reasons"].as_array().expect("a list of reasons");
    assert!(
        reasons
            .iter()
            .any(|r| r == "the Mega writer thread has stopped"),
        "{body}"
    );
    assert_eq!(live.status(), 200, "the process is still alive");
    let message = expect_error(insert, 503).await;
    assert!(message.contains("not stored"), "{message}");
    app.stop().await;
    drop(dir);
}
