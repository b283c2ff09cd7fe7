//! The metric catalogue: the metric table of `docs/METRICS.md` and a real scrape agree both ways
//! (names, types, labels), every metric is described, and the process metrics are there.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::prometheus::binary_or_skip;
use crate::scrape::{
    Exposition, drive_every_component, force_randoms_rejection, spawn_observed_app,
};
use crate::support::spawn_app;

/// One row of the metric table: `| name | type | labels | unit | meaning |`.
#[derive(Debug, PartialEq, Eq)]
struct TableRow {
    kind: String,
    labels: BTreeSet<String>,
}

/// The table's header cells, lowercased: how the table is found.
const HEADER: [&str; 5] = ["name", "type", "labels", "unit", "meaning"];

/// The metric table of `docs/METRICS.md`, and the path it was read from.
fn metric_table() -> (PathBuf, BTreeMap<String, TableRow>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join("METRICS.md");
    let text = std::fs::read_to_string(&path).expect("docs/METRICS.md is readable");
    let rows = parse_table(&text)
        .expect("docs/METRICS.md has the metric table (| name | type | labels | unit | meaning |)");
    (path, rows)
}

fn cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let line = line.strip_prefix('|').unwrap_or(line);
    let line = line.strip_suffix('|').unwrap_or(line);
    line.split('|').map(|c| c.trim().to_owned()).collect()
}

/// The rows of the first table whose header is [`HEADER`]; `None` if there is none.
/// Panics on a row that names a metric twice.
fn parse_table(text: &str) -> Option<BTreeMap<String, TableRow>> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| {
        cells(l)
            .iter()
            .map(|c| c.to_lowercase())
            .eq(HEADER.iter().map(|h| h.to_string()))
    })?;
    let mut rows = BTreeMap::new();
    for line in lines[start + 2..]
        .iter()
        .take_while(|l| l.trim_start().starts_with('|'))
    {
        let cells = cells(line);
        assert_eq!(
            cells.len(),
            HEADER.len(),
            "a table row with {} cells: {line}",
            cells.len()
        );
        let name = cells[0].trim_matches('`').to_owned();
        let labels = cells[2]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        let row = TableRow {
            kind: cells[1].to_lowercase(),
            labels,
        };
        assert!(
            rows.insert(name.clone(), row).is_none(),
            "{name} is in the table twice"
        );
    }
    Some(rows)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metric_table_and_a_scrape_list_the_same_metrics() {
    // Arrange: traffic through every component, the front included, and a rejection.
    let app = spawn_observed_app().await;
    drive_every_component(&app).await;
    force_randoms_rejection(&app).await;
    let (path, table) = metric_table();

    // Act
    let scrape = Exposition::fetch(&app.client, app.shards[0]).await;

    // Assert: both ways, with types and label names, and a HELP line for each.
    let mut problems = Vec::new();
    for (name, kind) in &scrape.types {
        match table.get(name) {
            None => problems.push(format!("{name} ({kind}) is exported but not in the table")),
            Some(row) if &row.kind != kind => {
                problems.push(format!(
                    "{name} is a {kind} in the scrape, a {} in the table",
                    row.kind
                ));
            }
            Some(row) => {
                let labels = scrape.labels.get(name).cloned().unwrap_or_default();
                if labels != row.labels {
                    problems.push(format!(
                        "{name} has labels {labels:?} in the scrape, {:?} in the table",
                        row.labels
                    ));
                }
            }
        }
        if !scrape.described.contains(name) {
            problems.push(format!(
                "{name} has no # HELP line: describe it in metrics::describe"
            ));
        }
    }
    for name in table
        .keys()
        .filter(|name| !scrape.types.contains_key(*name))
    {
        problems.push(format!("{name} is in the table but not in the scrape"));
    }
    assert!(
        problems.is_empty(),
        "the metric table ({}) and /metrics disagree:\n  {}",
        path.display(),
        problems.join("\n  ")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn process_metrics_are_exported_with_live_values() {
    let app = spawn_app().await;

    let scrape = Exposition::fetch(&app.client, app.addr).await;

    let value = |name: &str| {
        *scrape
            .values
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in /metrics"))
    };
    assert!(
        value("process_resident_memory_bytes") > 1e6,
        "a resident set of over 1 MB"
    );
    assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
    assert!(
        value("process_threads") >= 3.0,
        "shard, compute and writer threads at least"
    );
    assert!(
        value("process_open_fds") >= 3.0,
        "stdio, listeners and the database"
    );
    assert!(value("process_start_time_seconds") > 1.6e9, "a Unix time");
    // CPU time must move with real work: a 1e8-draw histogram burns tens of ms on
    // the compute threads, which runs in this (the app's) process.
    let cpu_before = value("process_cpu_seconds_total");
    let response = app
        .client
        .get(format!("http://{}/api/randoms?cant=1e8", app.addr))
        .send()
        .await
        .expect("randoms");
    assert_eq!(response.status(), 200);
    let after = Exposition::fetch(&app.client, app.addr).await;
    let cpu_after = after.values["process_cpu_seconds_total"];
    assert!(
        cpu_after > cpu_before,
        "process_cpu_seconds_total did not grow ({cpu_before} -> {cpu_after})"
    );
    assert_eq!(
        scrape
            .types
            .get("process_cpu_seconds_total")
            .map(String::as_str),
        Some("counter"),
        "a counter (promtool rejects a `_total` gauge), rendered with fractional seconds"
    );
    app.stop().await;
}

/// `promtool check metrics` (Prometheus's own linter) on a live scrape: types that fit
/// the names (`_total` counters), valid exposition, no lint. Skipped without `promtool`
/// (Debian package `prometheus`), unless `CI` is set.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_scrape_passes_promtool() {
    let Some(promtool) = binary_or_skip("promtool", "a_live_scrape_passes_promtool") else {
        return;
    };
    // Arrange: every component has recorded something.
    let app = spawn_observed_app().await;
    drive_every_component(&app).await;
    force_randoms_rejection(&app).await;
    let text = app
        .client
        .get(format!("http://{}/metrics", app.shards[0]))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("scrape text");

    // Act
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("the scrape goes to promtool");
    let output = child.wait_with_output().expect("promtool ends");

    // Assert
    assert!(
        output.status.success(),
        "promtool check metrics: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    app.stop().await;
}

#[test]
fn the_table_parser_reads_names_types_and_labels() {
    let text = "intro\n\n| Name | Type | Labels | Unit | Meaning |\n|---|---|---|---|---|\n\
                | `a_total` | counter | `x`, `y` | requests | A |\n\
                | `b` | gauge | | | B |\n\nafter | x |\n";

    let rows = parse_table(text).expect("a table");

    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows["a_total"].labels,
        BTreeSet::from(["x".to_owned(), "y".to_owned()])
    );
    assert_eq!(rows["b"].kind, "gauge");
    assert!(rows["b"].labels.is_empty());
    assert!(
        parse_table("| name | type |\n|---|---|\n").is_none(),
        "another table is not the metric table"
    );
}
