//! The documentation states facts the code can check: the README stays short, every
//! relative link in the README and `docs/` leads to a file (and a heading, when it names
//! one), and the flag table of `docs/OPERATIONS.md` lists exactly `loadlab serve`'s flags.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use loadlab::cli::Cli;

/// The README is the ten-minute read; depth lives in `docs/`.
const README_MAX_LINES: usize = 300;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// README.md and every Markdown file in `docs/`.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let dir = root().join("docs");
    for entry in std::fs::read_dir(&dir).expect("docs/ is readable") {
        let path = entry.expect("a docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs.sort();
    docs
}

/// The lines of `text` outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The targets of the inline links `[text](target)` in `text`, outside code.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    targets
}

/// GitHub's anchor for a heading: lowercase, spaces to hyphens, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The anchors of every heading in `text`.
fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .into_iter()
        .filter_map(|line| {
            let hashes = line.len() - line.trim_start_matches('#').len();
            (hashes > 0 && line[hashes..].starts_with(' ')).then(|| slug(line[hashes..].trim()))
        })
        .collect()
}

#[test]
fn the_readme_is_at_most_300_lines() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines: move depth to docs/ (at most {README_MAX_LINES})"
    );
}

#[test]
fn every_relative_link_in_the_docs_leads_somewhere() {
    let mut broken = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        let dir = doc.parent().expect("a document has a folder");
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                doc.clone()
            } else {
                dir.join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: {target} (no such file)", doc.display()));
                continue;
            }
            let is_markdown = path.extension().is_some_and(|e| e == "md");
            if !anchor.is_empty() && is_markdown && !anchors(&read(&path)).contains(anchor) {
                broken.push(format!("{}: {target} (no such heading)", doc.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The flags in the first column of the table under `## Flags` in `docs/OPERATIONS.md`,
/// aliases in parentheses included.
fn documented_serve_flags() -> BTreeSet<String> {
    let text = read(&root().join("docs").join("OPERATIONS.md"));
    let section = text
        .split("\n## Flags\n")
        .nth(1)
        .expect("docs/OPERATIONS.md has a `## Flags` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .flat_map(|l| {
            let cell = l.split('|').nth(1).unwrap_or_default();
            cell.split('`')
                .filter(|part| part.starts_with("--"))
                .map(|part| part.split_whitespace().next().unwrap_or(part).to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_flag_table_lists_exactly_the_serve_flags() {
    // Arrange: every long flag and alias clap knows for `loadlab serve`.
    let cli = Cli::command();
    let serve = cli
        .find_subcommand("serve")
        .expect("loadlab has a serve subcommand");
    let real: BTreeSet<String> = serve
        .get_arguments()
        .filter(|a| a.get_id() != "help")
        .filter_map(|a| a.get_long())
        .map(|long| format!("--{long}"))
        .collect();

    // Act
    let documented = documented_serve_flags();

    // Assert: both ways; a documented alias must be a real one.
    let missing: Vec<_> = real.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "flags missing from docs/OPERATIONS.md: {missing:?}"
    );
    let all_aliases: BTreeSet<String> = serve
        .get_arguments()
        .flat_map(|a| a.get_all_aliases().unwrap_or_default())
        .map(|alias| format!("--{alias}"))
        .collect();
    let unknown: Vec<_> = documented
        .iter()
        .filter(|f| !real.contains(*f) && !all_aliases.contains(*f))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/OPERATIONS.md documents flags `loadlab serve` does not have: {unknown:?}"
    );
}
