//! `dashboards/loadlab.json` works: it is well formed for provisioning, every metric
//! its panels query is exported, and every panel query returns series from a real
//! Prometheus scraping a real loadlab.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::prometheus::{Prometheus, SCRAPE_INTERVAL, binary_or_skip, selectors};
use crate::scrape::{
    Exposition, drive_every_component, force_randoms_rejection, spawn_observed_app,
};

/// The row titles, in order.
const ROWS: [&str; 5] = [
    "Overview",
    "Randoms",
    "Mega writer",
    "Shards and front",
    "Process",
];

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/loadlab.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, rows included, with the panels of collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every PromQL expression, with the title of its panel.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |target| {
                    (
                        title.clone(),
                        target["expr"].as_str().unwrap_or_default().to_owned(),
                    )
                })
        })
        .collect()
}

#[test]
fn the_dashboard_is_ready_to_provision() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "loadlab-overview");
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 39),
        "schemaVersion 39+"
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    assert_eq!(variable("instance")["type"], "query");
    assert_eq!(variable("instance")["allValue"], ".*");

    let panels = panels(&dashboard);
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    assert_eq!(rows, ROWS);
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "every panel has a unique id");
    let mut problems = Vec::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("?");
        if !panel["gridPos"]["w"].is_u64() || !panel["gridPos"]["h"].is_u64() {
            problems.push(format!("{title}: no gridPos"));
        }
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        if targets.is_empty() {
            problems.push(format!("{title}: no queries"));
        }
        for target in targets {
            if target["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("{title}: a query not on ${{datasource}}"));
            }
        }
    }
    for (title, expr) in expressions(&dashboard) {
        let found = selectors(&expr);
        if found.is_empty() {
            problems.push(format!("{title}: no metric in {expr}"));
        }
        for selector in found {
            if !selector.matchers.contains(r#"instance=~"$instance""#) {
                problems.push(format!(
                    "{title}: {} is not filtered by $instance",
                    selector.name
                ));
            }
            if selector
                .range
                .as_ref()
                .is_some_and(|r| r != "$__rate_interval")
            {
                problems.push(format!(
                    "{title}: {} uses a fixed range, not $__rate_interval",
                    selector.name
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n  {}",
        problems.join("\n  ")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_a_panel_queries_is_in_a_scrape() {
    // Arrange: traffic through every component, the front included, and a rejection.
    let app = spawn_observed_app().await;
    drive_every_component(&app).await;
    force_randoms_rejection(&app).await;
    let dashboard = dashboard();

    // Act
    let scrape = Exposition::fetch(&app.client, app.shards[0]).await;

    // Assert
    let missing: BTreeSet<String> = expressions(&dashboard)
        .iter()
        .flat_map(|(title, expr)| selectors(expr).into_iter().map(move |s| (title, s.name)))
        .filter(|(_, name)| !scrape.samples.contains(name))
        .map(|(title, name)| format!("{name} (panel \"{title}\")"))
        .collect();
    assert!(
        missing.is_empty(),
        "queried by the dashboard, absent from /metrics:\n  {}",
        missing.into_iter().collect::<Vec<_>>().join("\n  ")
    );
    app.stop().await;
}

/// The window that stands for `$__rate_interval`: Grafana uses at least four scrape
/// intervals; ten give `rate()` room for a late scrape.
const RATE_INTERVAL: &str = "10s";

/// An expression as Grafana would send it with "All" instances selected.
fn substitute(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__interval", SCRAPE_INTERVAL)
        .replace("$instance", ".*");
    assert!(!expr.contains('$'), "an unsubstituted variable in {expr}");
    expr
}

#[tokio::test(flavor = "multi_thread")]
async fn every_panel_query_returns_series_in_a_real_prometheus() {
    let Some(binary) = binary_or_skip(
        "prometheus",
        "every_panel_query_returns_series_in_a_real_prometheus",
    ) else {
        return;
    };
    // Arrange: a loadlab with traffic everywhere, and Prometheus scraping it.
    let app = spawn_observed_app().await;
    force_randoms_rejection(&app).await;
    let prometheus = Prometheus::start(&binary, app.shards[0]).await;
    let mut queries = vec![(
        "scrape target".to_owned(),
        r#"up{job="loadlab"} == 1"#.to_owned(),
    )];
    queries.extend(
        expressions(&dashboard())
            .into_iter()
            .map(|(title, expr)| (title, substitute(&expr))),
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");

    // Act: keep traffic flowing across scrapes until every query has data (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut pace = tokio::time::interval(Duration::from_millis(250));
    let failures = loop {
        pace.tick().await;
        drive_every_component(&app).await;
        let mut failures = Vec::new();
        for (title, expr) in &queries {
            match prometheus.query(&client, expr).await {
                Ok(0) => failures.push(format!("[{title}] no series: {expr}")),
                Ok(_) => {}
                Err(e) => failures.push(format!("[{title}] error {e}: {expr}")),
            }
        }
        if failures.is_empty() || tokio::time::Instant::now() > deadline {
            break failures;
        }
    };

    // Assert
    assert!(
        failures.is_empty(),
        "{} of {} panel queries failed after 60 s of traffic:\n  {}\nprometheus log:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n  "),
        prometheus.log()
    );
    drop(prometheus);
    app.stop().await;
}

#[test]
fn the_shipped_prometheus_config_is_valid() {
    let Some(promtool) = binary_or_skip("promtool", "the_shipped_prometheus_config_is_valid")
    else {
        return;
    };
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/prometheus.yml");

    let output = Command::new(promtool)
        .arg("check")
        .arg("config")
        .arg(&config)
        .output()
        .expect("promtool runs");

    assert!(
        output.status.success(),
        "promtool check config {}:\n{}{}",
        config.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
