//! Shared by the observability tests: reading a `/metrics` scrape, and an app whose
//! traffic reaches every component, so that every metric loadlab exports has a series.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::tls::TestCert;
use crate::support::{TestApp, spawn_app_with_front, ticket};

/// One `/metrics` scrape, parsed.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    /// Metric family name (`http_requests_total`, `mega_batch_rows`) -> its `# TYPE`.
    pub(crate) types: BTreeMap<String, String>,
    /// Metric family name -> the label names its samples carry (`le` left out).
    pub(crate) labels: BTreeMap<String, BTreeSet<String>>,
    /// Every sample name as written (`mega_batch_rows_bucket`, `process_threads`).
    pub(crate) samples: BTreeSet<String>,
    /// The value of each sample that has no labels, by name.
    pub(crate) values: BTreeMap<String, f64>,
    /// The families with a `# HELP` line.
    pub(crate) described: BTreeSet<String>,
}

impl Exposition {
    /// Parses the Prometheus text format. Panics on a line it cannot read: the test
    /// should fail if loadlab writes something Prometheus would reject.
    pub(crate) fn parse(text: &str) -> Self {
        let mut scrape = Self::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("bad TYPE line: {line}"));
                scrape.types.insert(name.to_owned(), kind.trim().to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                scrape.described.insert(name.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (name, labels, value) = parse_sample(line);
            if labels.is_empty() {
                scrape.values.insert(name.clone(), value);
            }
            let family = scrape.family_of(&name);
            scrape
                .labels
                .entry(family)
                .or_default()
                .extend(labels.into_iter().filter(|l| l != "le" && l != "quantile"));
            scrape.samples.insert(name);
        }
        scrape
    }

    /// Fetches and parses `http://{addr}/metrics`.
    pub(crate) async fn fetch(client: &reqwest::Client, addr: SocketAddr) -> Self {
        let response = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .expect("scrape sent");
        assert_eq!(response.status(), 200, "GET /metrics");
        Self::parse(&response.text().await.expect("scrape body"))
    }

    /// The family a sample belongs to: `x_bucket`, `x_sum` and `x_count` of a
    /// histogram `x` belong to `x`; any other sample to itself.
    fn family_of(&self, sample: &str) -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix)
                && matches!(
                    self.types.get(base).map(String::as_str),
                    Some("histogram" | "summary")
                )
            {
                return base.to_owned();
            }
        }
        sample.to_owned()
    }
}

/// A sample line's name, label names and value. Label values may hold `{`, `}`, `,` and
/// escaped quotes (route templates do), so they are read, not split.
///
/// Hand-written on purpose: the `prometheus-parse` crate matches labels with
/// `\{[^}]+\}`, so it cuts `route="/app/mega/{id}"` at the first `}` and misreads
/// loadlab's own scrape.
fn parse_sample(line: &str) -> (String, Vec<String>, f64) {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("bad sample line: {line}"));
    let name = line[..name_end].to_owned();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = rest
                .split_once("=\"")
                .unwrap_or_else(|| panic!("bad labels: {line}"));
            labels.push(label.trim().to_owned());
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => {
                        chars.next();
                    }
                    Some((i, '"')) => break i,
                    Some(_) => {}
                    None => panic!("unterminated label value: {line}"),
                }
            };
            rest = &after[end + 1..];
        }
    }
    let value = rest
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no value: {line}"));
    let value = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    (name, labels, value)
}

/// Starts an app whose traffic can reach every component: the front over two shards,
/// serving TLS with a cleartext listener beside it (`TestApp::addr` is that one, so
/// plain clients reach the front), randoms admitting one job at a time (so a rejection
/// is easy to cause). The front registers its error and retry counters (for every
/// upstream and kind of failure) when it is built, so they are exported at 0 without
/// having to break an upstream; its TLS counters and certificate gauge likewise.
pub(crate) async fn spawn_observed_app() -> TestApp {
    // The certificate is read once, at build: its files may go afterwards.
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::generate(dir.path(), "front", "loadlab observed");
    let owned = cert.flags();
    let mut flags: Vec<&str> = owned.iter().map(String::as_str).collect();
    flags.extend(["--randoms-queue", "1", "--plain-bind", "127.0.0.1:0"]);
    // The access log's metrics too; its file is held open after the folder goes.
    let access_log = dir.path().join("access.log").display().to_string();
    flags.extend(["--access-log", &access_log]);
    let mut app = spawn_app_with_front(&flags).await;
    app.addr = app.front_plain.expect("the cleartext listener");
    app
}

/// One round of requests touching every component: each route through the front and
/// on every shard directly.
pub(crate) async fn drive_every_component(app: &TestApp) {
    let mut bases = vec![app.addr];
    bases.extend(&app.shards);
    for (round, base) in bases.iter().enumerate() {
        let url = |path: &str| format!("http://{base}{path}");
        expect_status(app.client.get(url("/healthz")), 200).await;
        expect_status(app.client.get(url("/api/randoms?cant=1000&seed=1")), 200).await;
        let numbers = [1, 2, 3, 4, 5, 6 + round as i64];
        expect_status(
            app.client.post(url("/app/insert")).json(&ticket(numbers)),
            201,
        )
        .await;
        let batch = serde_json::json!([
            ticket([7, 8, 9, 10, 11, 12]),
            ticket([13, 14, 15, 16, 17, 18])
        ]);
        expect_status(app.client.post(url("/app/insert/batch")).json(&batch), 201).await;
        expect_status(app.client.get(url("/app/mega/1")), 200).await;
        expect_status(app.client.get(url("/app/mega/stats")), 200).await;
        expect_status(app.client.get(url("/info")), 200).await;
        expect_status(app.client.get(url("/no/such/route")), 404).await;
    }
}

/// Makes the compute threads refuse a job with 503 (the app must run `--randoms-queue 1`):
/// a huge job holds the only slot, a second job is refused, then the huge one's client
/// goes away, which cancels it (so `randoms_cancelled_total` moves too).
pub(crate) async fn force_randoms_rejection(app: &TestApp) {
    let shard = app.shards[0];
    let big = {
        let client = app.client.clone();
        tokio::spawn(async move {
            client
                .get(format!("http://{shard}/api/randoms?cant=1e10"))
                .send()
                .await
        })
    };
    let state = app.state.clone();
    wait_until("the huge job is admitted", || {
        state.compute().in_flight() == 1
    })
    .await;
    expect_status(
        app.client
            .get(format!("http://{shard}/api/randoms?cant=10")),
        503,
    )
    .await;
    big.abort();
    wait_until("the huge job is cancelled", || {
        state.compute().in_flight() == 0
    })
    .await;
}

/// Sends `request` and asserts its status, naming the request on failure.
async fn expect_status(request: reqwest::RequestBuilder, status: u16) {
    let (client, request) = request.build_split();
    let request = request.expect("a valid request");
    let what = format!("{} {}", request.method(), request.url());
    let response = client
        .execute(request)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(response.status().as_u16(), status, "{what}");
}

/// Waits (bounded) until `condition` holds, polling state; never a fixed sleep.
pub(crate) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
