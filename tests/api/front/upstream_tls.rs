//! TLS to upstreams: an `https://` member reached over TLS (SNI, the `ca_file` roots,
//! health checks over TLS too), an untrusted certificate as a 502 with failover to the
//! next member, names checked (a host name, an IP address without SNI), and a missing
//! `ca_file` refused by name (`check-config`, SIGHUP reload).

use std::path::Path;

use super::*;
use crate::support::child::loadlab;
use crate::support::tls::{TestCert, TlsUpstream};

/// The echo upstream's router, answering as `name`.
fn echo_router(name: &'static str) -> Router {
    Router::new().fallback(move |req: Request| echo(name, req))
}

/// An `https://localhost:PORT` member trusting `ca_file`, as a TOML inline table.
fn https_member(upstream: &TlsUpstream, ca_file: &Path) -> String {
    format!(
        "{{ addr = \"https://localhost:{}\", ca_file = \"{}\" }}",
        upstream.addr.port(),
        ca_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_member_is_reached_over_tls_with_sni_and_checked_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path(), "upstream", "upstream");
    let upstream = TlsUpstream::start(&cert, echo_router("tls"));
    let config = format!(
        "{FAST_HEALTH}[[pools]]\nname = \"main\"\nupstreams = [{}]\n",
        https_member(&upstream, &cert.cert_file)
    );
    let front = spawn_front(&config, limits(Duration::from_secs(5))).await;

    let response = front
        .client
        .post(front.url("/over/tls"))
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-upstream-name"], "tls");
    let echoed: Value = response.json().await.expect("json");
    let authority = format!("localhost:{}", upstream.addr.port());
    assert_eq!(
        echoed["headers"]["host"], authority,
        "Host is the member's authority"
    );
    let request = upstream
        .served()
        .into_iter()
        .find(|s| s.path == "/over/tls")
        .expect("the upstream served the request over TLS");
    assert_eq!(request.sni.as_deref(), Some("localhost"), "SNI is the host");
    assert_eq!(request.alpn.as_deref(), Some("http/1.1"));

    let status = front.front.status();
    let member = &status["pools"][0]["upstreams"][0];
    assert_eq!(member["addr"], authority.as_str());
    assert_eq!(member["scheme"], "https");
    wait_until("a health check reaches the member over TLS", LIMIT, || {
        upstream.served().iter().any(|s| {
            s.user_agent == "loadlab-front-health" && s.sni.as_deref() == Some("localhost")
        })
    })
    .await;
}

/// How long a wait on a condition may take.
const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_502_and_any_method_fails_over_to_the_next_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path(), "upstream", "upstream");
    let other_ca = TestCert::generate(dir.path(), "other", "another CA");
    let untrusted = TlsUpstream::start(&cert, echo_router("untrusted"));
    let good = TestUpstream::start("good");
    let bad = https_member(&untrusted, &other_ca.cert_file);
    // No passive holds: every round-robin turn of the untrusted member is a try.
    let config = format!(
        "default_pool = \"mixed\"\n[health]\nactive = false\nmax_fails = 0\n\
            [[pools]]\nname = \"mixed\"\nupstreams = [{bad}, {{ addr = \"{}\" }}]\n\
            [[pools]]\nname = \"alone\"\nupstreams = [{bad}]\n\
            [[routes]]\nprefix = \"/alone/\"\npool = \"alone\"\n",
        good.addr
    );
    let front = spawn_front(&config, limits(Duration::from_secs(5))).await;

    // Round robin over two members: at least two of four POSTs tried the untrusted one
    // first. Its handshake failed before a byte of the request left, so even a POST
    // moves on.
    for _ in 0..4 {
        let response = front.post_insert().await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-upstream-name"], "good");
    }
    assert!(
        untrusted.served().is_empty(),
        "nothing was served over an untrusted handshake"
    );

    let response = front
        .client
        .get(front.url("/alone/x"))
        .send()
        .await
        .expect("sent");
    let error = expect_error(response, 502).await;
    let label = format!("localhost:{}", untrusted.addr.port());
    assert!(
        error.contains(&format!("upstream {label} failed")),
        "{error}"
    );
    assert!(
        error.contains("TLS handshake with `localhost` failed: invalid peer certificate"),
        "{error}"
    );
    assert_eq!(front.upstream_of("/still/up").await, "good");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_as_written_is_checked_and_an_ip_member_sends_no_sni() {
    let dir = tempfile::tempdir().expect("tempdir");
    let elsewhere = TestCert::generate_for(dir.path(), "elsewhere", "elsewhere", &["other.test"]);
    let wrong_name = TlsUpstream::start(&elsewhere, echo_router("wrong-name"));
    let cert = TestCert::generate(dir.path(), "upstream", "upstream");
    let by_ip = TlsUpstream::start(&cert, echo_router("by-ip"));
    let ip_member = format!(
        "{{ addr = \"https://127.0.0.1:{}\", ca_file = \"{}\" }}",
        by_ip.addr.port(),
        cert.cert_file.display()
    );
    let config = format!(
        "default_pool = \"ip\"\n{NO_ACTIVE_HEALTH}\
            [[pools]]\nname = \"ip\"\nupstreams = [{ip_member}]\n\
            [[pools]]\nname = \"name\"\nupstreams = [{}]\n\
            [[routes]]\nprefix = \"/name/\"\npool = \"name\"\n",
        https_member(&wrong_name, &elsewhere.cert_file)
    );
    let front = spawn_front(&config, limits(Duration::from_secs(5))).await;

    let response = front
        .client
        .get(front.url("/name/x"))
        .send()
        .await
        .expect("sent");
    let error = expect_error(response, 502).await;
    assert!(
        error.contains("certificate not valid for name \"localhost\""),
        "{error}"
    );
    assert!(wrong_name.served().is_empty());

    assert_eq!(front.upstream_of("/by/ip").await, "by-ip");
    let served = by_ip.served();
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!(served[0].sni, None, "no SNI for an IP address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_file_is_refused_by_check_config_and_by_a_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path(), "upstream", "upstream");
    let upstream = TlsUpstream::start(&cert, echo_router("tls"));
    let missing = dir.path().join("nowhere").join("ca.pem");
    let path = dir.path().join("front.toml");
    let config_with = |ca_file: &Path| {
        format!(
            "{NO_ACTIVE_HEALTH}[[pools]]\nname = \"main\"\nupstreams = [{}]\n",
            https_member(&upstream, ca_file)
        )
    };

    std::fs::write(&path, config_with(&missing)).expect("write");
    let output = loadlab()
        .current_dir(dir.path())
        .args(["check-config", "--front-config"])
        .arg(&path)
        .output()
        .expect("check-config runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "check-config accepted it: {stderr}"
    );
    assert!(
        stderr.contains(&missing.display().to_string()),
        "the file is named: {stderr}"
    );

    std::fs::write(&path, config_with(&cert.cert_file)).expect("write");
    let front = Front::load(&path, limits(Duration::from_secs(5))).expect("front loads");
    let front = serve_front(front, edge(&[])).await;
    assert_eq!(front.upstream_of("/before").await, "tls");
    std::fs::write(&path, config_with(&missing)).expect("write");
    let error = format!("{:#}", front.front.reload().expect_err("refused"));
    assert!(error.contains(&missing.display().to_string()), "{error}");
    assert_eq!(front.front.generation(), 1, "the old config stays");
    assert_eq!(front.upstream_of("/after").await, "tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_handshake_is_counted_as_tls_and_a_sighup_reads_a_changed_ca_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path(), "upstream", "upstream");
    let other_ca = TestCert::generate(dir.path(), "other", "another CA");
    let upstream = TlsUpstream::start(&cert, echo_router("tls"));
    let ca_file = dir.path().join("ca.pem");
    std::fs::copy(&other_ca.cert_file, &ca_file).expect("the wrong CA");
    let path = dir.path().join("front.toml");
    let config = format!(
        "{NO_ACTIVE_HEALTH}[[pools]]\nname = \"main\"\nupstreams = [{}]\n",
        https_member(&upstream, &ca_file)
    );
    std::fs::write(&path, config).expect("write");
    let (command, base) = front_command(&path, 1);
    let (child, client) = start_front_process(command, &base).await;

    let response = client.get(format!("{base}/x")).send().await.expect("sent");
    let error = expect_error(response, 502).await;
    assert!(error.contains("TLS handshake"), "{error}");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let label = format!("upstream=\"localhost:{}\"", upstream.addr.port());
    let tls_errors = metrics.lines().find(|line| {
        line.starts_with("front_upstream_errors_total{")
            && line.contains(&label)
            && line.contains("kind=\"tls\"")
    });
    assert!(
        tls_errors.is_some_and(|line| line.ends_with(" 1")),
        "{tls_errors:?} in\n{metrics}"
    );

    // The same path, now the right CA: a reload reads it again.
    std::fs::copy(&cert.cert_file, &ca_file).expect("the right CA");
    child.sighup();
    let deadline = Instant::now() + LIMIT;
    loop {
        let status: Value = client
            .get(format!("{base}/front/status"))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json");
        if status["config"]["generation"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "never reloaded: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = client.get(format!("{base}/y")).send().await.expect("sent");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the member starts afresh"
    );
    assert_eq!(response.headers()["x-upstream-name"], "tls");
    child.sigterm();
    assert!(child.wait_exit().await.success());
}
