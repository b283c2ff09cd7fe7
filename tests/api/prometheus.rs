//! Prometheus for the dashboard tests: reading the metric selectors out of PromQL, and
//! a real Prometheus server (the `prometheus` package) run for one test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// How often the test's Prometheus scrapes.
pub(crate) const SCRAPE_INTERVAL: &str = "1s";

/// A metric selector in a PromQL expression: `name{matchers}[range]`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Selector {
    pub(crate) name: String,
    pub(crate) matchers: String,
    pub(crate) range: Option<String>,
}

/// PromQL words that are not metric names when they are not followed by `(`.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
];
/// Modifiers whose parentheses hold label names, not expressions.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric selectors of `expr`, read with a small scanner: enough for the
/// dashboard's expressions (functions, aggregations, `by`/`on` lists, matchers,
/// ranges, numbers), not a full PromQL parser.
pub(crate) fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // The text from `start` to the bracket closing the one at `start`, skipping strings.
    let closing = |start: usize, open: char, close: char| -> usize {
        let (mut depth, mut j, mut in_string) = (0, start, false);
        while j < chars.len() {
            match chars[j] {
                '\\' if in_string => j += 1,
                '"' => in_string = !in_string,
                c if c == open && !in_string => depth += 1,
                c if c == close && !in_string => {
                    depth -= 1;
                    if depth == 0 {
                        return j;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        panic!("unbalanced {open}{close} in {expr}");
    };
    let next_non_space = |from: usize| (from..chars.len()).find(|&j| !chars[j].is_whitespace());
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = closing_quote(&chars, i) + 1;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c == '[' {
            i = closing(i, '[', ']') + 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = next_non_space(i);
            let followed_by = |c: char| next.is_some_and(|j| chars[j] == c);
            if LABEL_LISTS.contains(&word.as_str()) && followed_by('(') {
                i = closing(next.unwrap_or(i), '(', ')') + 1;
            } else if followed_by('(') || KEYWORDS.contains(&word.as_str()) {
                // A function call or an operator: its arguments are scanned in turn.
            } else {
                let mut selector = Selector {
                    name: word,
                    matchers: String::new(),
                    range: None,
                };
                if let Some(open) = next.filter(|_| followed_by('{')) {
                    let close = closing(open, '{', '}');
                    selector.matchers = chars[open + 1..close].iter().collect();
                    i = close + 1;
                }
                if let Some(open) = next_non_space(i).filter(|&j| chars[j] == '[') {
                    let close = closing(open, '[', ']');
                    selector.range = Some(chars[open + 1..close].iter().collect());
                    i = close + 1;
                }
                out.push(selector);
            }
        } else {
            i += 1;
        }
    }
    out
}

fn closing_quote(chars: &[char], start: usize) -> usize {
    let mut j = start + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 1,
            '"' => return j,
            _ => {}
        }
        j += 1;
    }
    panic!(
        "unterminated string in {}",
        chars.iter().collect::<String>()
    );
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
    let found = find_binary(name);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: `{name}` is not installed (apt-get install -y prometheus), and CI is set"
        );
        eprintln!(
            "SKIPPED {test}: `{name}` not found on PATH or in /usr/bin (apt-get install -y prometheus)"
        );
    }
    found
}

/// A Prometheus server in a temp dir, killed when dropped.
pub(crate) struct Prometheus {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
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
                "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: {SCRAPE_INTERVAL}\n\
                 scrape_configs:\n  - job_name: loadlab\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .expect("write the prometheus config");
        // A free port: bound, read, released just before Prometheus binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let mut prometheus = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        prometheus.wait_ready().await;
        prometheus
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            let ready = client.get(format!("{}/-/ready", self.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus not ready in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
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
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_read_out_of_promql() {
        let expr = r#"(sum(rate(http_requests_total{instance=~"$instance",status=~"5.."}[$__rate_interval])) or on() vector(0)) / histogram_quantile(0.99, sum by (le, route) (rate(x_bucket{route="/a/{id}"}[1m]))) - time() + 1e3 * process_threads"#;

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
