//! Prometheus for the dashboard tests: reading the metric selectors out of PromQL (with
//! `promql-parser`), and a real Prometheus server (the `prometheus` package) run for
//! one test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use promql_parser::parser::Expr;
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

use crate::support::child::{ChildProcess, free_port};

/// How often the test's Prometheus scrapes.
pub(crate) const SCRAPE_INTERVAL: &str = "1s";

/// A metric selector in a PromQL expression: `name{matchers}[range]`, with Grafana's
/// variables shown as the dashboard writes them (`$instance`, `$__rate_interval`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Selector {
    pub(crate) name: String,
    /// The label matchers, `label=~"value"`, comma-separated.
    pub(crate) matchers: String,
    pub(crate) range: Option<String>,
}

/// Stand-ins for Grafana's variables while `promql-parser` reads the expression (it
/// knows PromQL, not Grafana): a duration nobody writes, and a plain label value.
const RATE_INTERVAL_STANDIN: Duration = Duration::from_secs(9876);
const INSTANCE_STANDIN: &str = "grafana_instance_variable";

/// The metric selectors of `expr`, in the order they are written. Panics if `expr` is
/// not valid PromQL (once Grafana's variables are stood in for): the dashboard test
/// should fail on a query Prometheus would refuse.
pub(crate) fn selectors(expr: &str) -> Vec<Selector> {
    let standin = expr
        .replace(
            "$__rate_interval",
            &format!("{}s", RATE_INTERVAL_STANDIN.as_secs()),
        )
        .replace("$instance", INSTANCE_STANDIN);
    let parsed = promql_parser::parser::parse(&standin)
        .unwrap_or_else(|e| panic!("not valid PromQL: {expr}: {e}"));
    let mut collector = SelectorCollector(Vec::new());
    let Ok(_) = walk_expr(&mut collector, &parsed);
    collector.0
}

/// Collects selectors as [`walk_expr`] visits the expression tree.
struct SelectorCollector(Vec<Selector>);

impl ExprVisitor for SelectorCollector {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        let (vector, range) = match expr {
            Expr::VectorSelector(vector) => (vector, None),
            Expr::MatrixSelector(matrix) => (&matrix.vs, Some(matrix.range)),
            _ => return Ok(true),
        };
        let matchers: Vec<String> = vector
            .matchers
            .matchers
            .iter()
            .filter(|m| m.name != "__name__")
            .map(|m| m.to_string().replace(INSTANCE_STANDIN, "$instance"))
            .collect();
        self.0.push(Selector {
            name: vector.name.clone().unwrap_or_default(),
            matchers: matchers.join(","),
            range: range.map(|r| {
                if r == RATE_INTERVAL_STANDIN {
                    "$__rate_interval".to_owned()
                } else {
                    format!("{}s", r.as_secs())
                }
            }),
        });
        Ok(true)
    }
}

/// A binary on PATH, or in /usr/bin (where Debian puts `prometheus` and `promtool`).
fn find_binary(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    on_path
        .chain([Path::new("/usr/bin").join(name)])
        .find(|p| p.is_file())
}

/// `None` means skip: the binary is absent and this is not CI (under `CI`, absence
/// fails the test: CI installs the `prometheus` package).
pub(crate) fn binary_or_skip(name: &str, test: &str) -> Option<PathBuf> {
    package_binary_or_skip(name, "prometheus", test)
}

/// [`binary_or_skip`] for a binary of Debian's `package`.
pub(crate) fn package_binary_or_skip(name: &str, package: &str, test: &str) -> Option<PathBuf> {
    let found = find_binary(name);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: `{name}` is not installed (apt-get install -y {package}), and CI is set"
        );
        eprintln!(
            "SKIPPED {test}: `{name}` not found on PATH or in /usr/bin (apt-get install -y \
                {package})"
        );
    }
    found
}

/// A Prometheus server in a temp dir, killed when dropped.
pub(crate) struct Prometheus {
    process: ChildProcess,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every [`SCRAPE_INTERVAL`] and waits (bounded)
    /// until it reports ready.
    pub(crate) async fn start(binary: &Path, target: std::net::SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: \
                    {SCRAPE_INTERVAL}\n\
                 scrape_configs:\n  - job_name: loadlab\n    static_configs:\n      \
                 - targets: [\"{target}\"]\n"
            ),
        )
        .expect("write the prometheus config");
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let base = format!("http://127.0.0.1:{port}");
        let process =
            ChildProcess::start_ready("prometheus", command, &format!("{base}/-/ready")).await;
        Self {
            process,
            base,
            _dir: dir,
        }
    }

    /// Runs an instant query: `Ok(series count)` or the error Prometheus gave.
    pub(crate) async fn query(
        &self,
        client: &reqwest::Client,
        expr: &str,
    ) -> Result<usize, String> {
        let response = client
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"].as_array().map_or(0, Vec::len))
    }

    /// The last lines Prometheus logged, for failure messages.
    pub(crate) fn log(&self) -> String {
        self.process.log()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_read_out_of_promql() {
        let expr = concat!(
            r#"(sum(rate(http_requests_total{instance=~"$instance",status=~"5.."}"#,
            r#"[$__rate_interval])) or on() vector(0)) / histogram_quantile(0.99, "#,
            r#"sum by (le, route) (rate(x_bucket{route="/a/{id}"}[1m]))) - time() + "#,
            r#"1e3 * process_threads"#
        );

        let found = selectors(expr);

        let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["http_requests_total", "x_bucket", "process_threads"]
        );
        assert_eq!(found[0].matchers, r#"instance=~"$instance",status=~"5..""#);
        assert_eq!(found[0].range.as_deref(), Some("$__rate_interval"));
        assert_eq!(found[1].matchers, r#"route="/a/{id}""#);
        assert_eq!(found[2].range, None);
    }
}
