//! The module graph of every library crate in the workspace is acyclic: no module
//! imports one that (directly or through others) imports it back.
//!
//! Why a test and not a tool: `cargo modules dependencies --acyclic` does this, but it
//! builds rust-analyzer (many minutes of CI); the rule needs only paths, which a small
//! reader over the sources finds. What counts as an import: any `crate::`, `super::` or
//! `self::` path outside comments and `#[cfg(test)]` modules, in `use` declarations and
//! inline, resolved to the deepest module it names. A name a parent re-exports from a
//! child (`pub use self::child::Name`) resolves to that child, so a facade `mod.rs` is
//! not mistaken for a cycle. `mod child;` itself is not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One library crate: its module paths (`""` is the root), and per module the file text.
struct Crate {
    name: String,
    modules: BTreeMap<String, String>,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `src/lib.rs` of the workspace: the root package's and each member folder's.
fn library_crates() -> Vec<Crate> {
    let root = workspace_root();
    let mut roots = vec![root.join("src")];
    for entry in fs::read_dir(&root).expect("the workspace folder is readable") {
        let dir = entry.expect("a folder entry").path();
        if dir.join("Cargo.toml").is_file() && dir.join("src/lib.rs").is_file() {
            roots.push(dir.join("src"));
        }
    }
    roots
        .into_iter()
        .filter(|src| src.join("lib.rs").is_file())
        .map(|src| {
            let mut modules = BTreeMap::new();
            collect(&src, &src, &mut modules);
            let folder = src.parent().and_then(|dir| dir.strip_prefix(&root).ok());
            let name = folder.map_or_else(String::new, |dir| dir.display().to_string());
            let name = if name.is_empty() {
                "loadlab".to_owned()
            } else {
                name
            };
            Crate { name, modules }
        })
        .collect()
}

/// Reads every `.rs` file under `dir` into `modules`, keyed by module path.
fn collect(src: &Path, dir: &Path, modules: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).expect("a source folder is readable") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            collect(src, &path, modules);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let rel = path
            .strip_prefix(src)
            .expect("under src")
            .with_extension("");
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        match parts.last().map(String::as_str) {
            Some("main") if parts.len() == 1 => continue, // the binary: a crate of its own
            Some("lib") if parts.len() == 1 => parts.clear(),
            Some("mod") => {
                parts.pop();
            }
            _ => {}
        }
        let text = fs::read_to_string(&path).expect("a source file is readable");
        modules.insert(parts.join("::"), code_only(&text));
    }
}

/// The text without comments and without the `#[cfg(test)]` module at the end of a file
/// (tests may reach anywhere).
fn code_only(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file names: inline `crate::a::b` and every leaf of a `use` tree.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let preceded_ok = rest[..at]
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        rest = &rest[at + 4..];
        if !preceded_ok {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        expand_use(
            &rest[..end].replace(char::is_whitespace, ""),
            &mut Vec::new(),
            &mut paths,
        );
    }
    for base in ["crate::", "super::", "self::"] {
        let mut rest = code;
        while let Some(at) = rest.find(base) {
            let preceded_ok = rest[..at]
                .chars()
                .last()
                .is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != ':');
            let path: String = rest[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            rest = &rest[at + base.len()..];
            if preceded_ok {
                paths.push(
                    path.split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
        }
    }
    paths
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand_use(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let depth = prefix.len();
        prefix.extend(head);
        let mut level = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => level += 1,
                '}' => level -= 1,
                ',' if level == 0 => {
                    expand_use(&inner[start..i], prefix, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_use(&inner[start..], prefix, out);
        prefix.truncate(depth);
    } else if !tree.is_empty() {
        let mut path = prefix.clone();
        path.extend(
            tree.split(" as ")
                .next()
                .unwrap_or(tree)
                .split("::")
                .map(str::to_owned),
        );
        out.push(path);
    }
}

/// The module a path from `from` lands in, following re-exports of children.
fn resolve(krate: &Crate, from: &str, path: &[String]) -> Option<String> {
    let mut module: Vec<&str> = if from.is_empty() {
        vec![]
    } else {
        from.split("::").collect()
    };
    let mut segments = path.iter().map(String::as_str).peekable();
    match segments.next()? {
        "crate" => module.clear(),
        "self" => {}
        "super" => {
            module.pop()?;
            while segments.peek() == Some(&"super") {
                segments.next();
                module.pop()?;
            }
        }
        _ => return None,
    }
    for segment in segments {
        let mut deeper = module.clone();
        deeper.push(segment);
        if krate.modules.contains_key(&deeper.join("::")) {
            module = deeper;
            continue;
        }
        // A name re-exported from a child: `pub use self::child::Name` / `child::{Name}`.
        let here = module.join("::");
        let code = krate.modules.get(&here)?;
        let child = paths_in(code).into_iter().find_map(|p| {
            let is_reexport = p.first().map(String::as_str) == Some("self")
                && p.last().map(String::as_str) == Some(segment);
            is_reexport.then(|| resolve(krate, &here, &p)).flatten()
        });
        return child.or(Some(here));
    }
    Some(module.join("::"))
}

fn cycles(krate: &Crate) -> Vec<String> {
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in &krate.modules {
        for path in paths_in(code) {
            if let Some(target) = resolve(krate, module, &path)
                && target != *module
            {
                edges.entry(module).or_default().insert(target);
            }
        }
    }
    let mut found = Vec::new();
    for start in krate.modules.keys() {
        // Depth-first from `start`: a path back to it is a cycle (named once, from its
        // smallest module).
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in edges.get(node.as_str()).into_iter().flatten() {
                if next == start {
                    if trail.iter().all(|m| m >= start) {
                        found.push(format!("{} -> {start}", trail.join(" -> ")));
                    }
                } else if seen.insert(next.clone()) {
                    let mut longer = trail.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it() {
    let crates = library_crates();
    assert!(
        crates.len() >= 2,
        "the service and the workers crates are read"
    );
    let mut report = Vec::new();
    for krate in &crates {
        assert!(krate.modules.len() > 1, "{} has modules", krate.name);
        for cycle in cycles(krate) {
            report.push(format!(
                "{}: {}",
                krate.name,
                cycle.replace("crate ", "(root)")
            ));
        }
    }
    assert!(
        report.is_empty(),
        "module import cycles:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_cycle_finder_sees_a_cycle_and_a_facade() {
    let modules = [
        ("", "mod a; mod b; mod f;"),
        ("a", "use crate::b::Thing;"),
        ("b", "use super::{a::Other, f::Name};"),
        ("f", "mod inner; pub use self::inner::Name;"),
        ("f::inner", "pub struct Name;"),
    ];
    let krate = Crate {
        name: "fixture".into(),
        modules: modules
            .iter()
            .map(|(m, c)| (m.to_string(), c.to_string()))
            .collect(),
    };
    let found = cycles(&krate);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("a -> b"), "{found:?}");
    // `b` uses `f::Name`, which `f` re-exports from `f::inner`: the edge goes to the child.
    assert_eq!(
        resolve(&krate, "b", &["super".into(), "f".into(), "Name".into()]).as_deref(),
        Some("f::inner")
    );
}

/// rustfmt's `max_width` (the default; the workspace sets no other).
const MAX_WIDTH: usize = 100;

/// Every `.rs` file of the workspace (sources, tests, benches), `target/` aside.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("a folder is readable") {
        let path = entry.expect("a folder entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// rustfmt silently leaves a whole statement unformatted when one of its lines cannot
/// fit in `max_width`, so `cargo fmt --check` would pass over unformatted code: no
/// line may be longer (long strings are split with `concat!` or `\` continuations).
#[test]
fn no_line_is_too_long_for_rustfmt_to_format() {
    let mut files = Vec::new();
    rust_files(&workspace_root(), &mut files);
    assert!(files.len() > 20, "the workspace's sources are found");
    let mut long = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("a source file is readable");
        for (number, line) in text.lines().enumerate() {
            if line.chars().count() > MAX_WIDTH {
                let rel = file.strip_prefix(workspace_root()).unwrap_or(&file);
                long.push(format!("{}:{}", rel.display(), number + 1));
            }
        }
    }
    assert!(
        long.is_empty(),
        "lines over {MAX_WIDTH} columns:\n{}",
        long.join("\n")
    );
}

/// The house's limit on a function's length, signature to closing brace.
const MAX_FUNCTION_LINES: usize = 100;

/// The code with comments, string and character literals blanked, newlines kept (so
/// line numbers still match), for counting braces.
fn blank_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // Keeps the newlines of `chars[from..to]`, drops the rest.
    let keep_newlines = |out: &mut String, from: usize, to: usize| {
        out.extend(
            chars[from..to.min(chars.len())]
                .iter()
                .filter(|c| **c == '\n'),
        );
    };
    while i < chars.len() {
        let rest = &chars[i..];
        let after_word = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if rest.starts_with(&['/', '/']) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            let end = find(&chars, i + 2, &['*', '/']).map_or(chars.len(), |e| e + 2);
            keep_newlines(&mut out, i, end);
            i = end;
        } else if chars[i] == 'r' && !after_word && matches!(rest.get(1), Some('"' | '#')) {
            let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
            if rest.get(1 + hashes) != Some(&'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let mut closing = vec!['"'];
            closing.extend(std::iter::repeat_n('#', hashes));
            let from = i + 2 + hashes;
            let end = find(&chars, from, &closing).map_or(chars.len(), |e| e + closing.len());
            out.push_str("\"\"");
            keep_newlines(&mut out, i, end);
            i = end;
        } else if chars[i] == '"' {
            let mut end = i + 1;
            while end < chars.len() && chars[end] != '"' {
                end += if chars[end] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            keep_newlines(&mut out, i, end);
            i = end + 1;
        } else if let Some(len) = char_literal(rest) {
            out.push_str("' '");
            i += len;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Where `needle` next starts in `chars`, from `from`.
fn find(chars: &[char], from: usize, needle: &[char]) -> Option<usize> {
    (from..chars.len()).find(|&at| chars[at..].starts_with(needle))
}

/// The length of a character literal at the start of `rest` (`'a'`, `'\n'`, `'\u{1F600}'`);
/// `None` for a lifetime or a label.
fn char_literal(rest: &[char]) -> Option<usize> {
    if rest.first() != Some(&'\'') {
        return None;
    }
    match rest.get(1)? {
        '\\' => (3..rest.len().min(14))
            .find(|&end| rest[end] == '\'')
            .map(|end| end + 1),
        '\'' => None,
        _ => (rest.get(2) == Some(&'\'')).then_some(3),
    }
}

/// The index of the bracket that closes the one at `open`.
fn closing(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (at, byte) in code.iter().enumerate().skip(open) {
        match byte {
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return at;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// Line ranges (0-based, inclusive) of the `#[cfg(test)] mod name { ... }` blocks.
fn test_module_lines(code: &str) -> Vec<(usize, usize)> {
    let bytes = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count();
    let mut ranges = Vec::new();
    for (at, _) in code.match_indices("#[cfg(test)]") {
        let after = &code[at..];
        let Some(brace) = after.find(['{', ';']) else {
            continue;
        };
        if after[..brace].contains("mod ") && after.as_bytes()[brace] == b'{' {
            ranges.push((line_of(at), line_of(closing(bytes, at + brace))));
        }
    }
    ranges
}

/// Every function with a body longer than `limit` lines outside `#[cfg(test)]` modules:
/// `(name, first line (1-based), lines)`.
fn long_functions(text: &str, limit: usize) -> Vec<(String, usize, usize)> {
    let code = blank_literals(text);
    let bytes = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count();
    let in_tests = test_module_lines(&code);
    let mut found = Vec::new();
    for (at, _) in code.match_indices("fn ") {
        let preceded_ok = code[..at]
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        let name: String = code[at + 3..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let first = line_of(at);
        if !preceded_ok
            || name.is_empty()
            || in_tests.iter().any(|&(a, b)| (a..=b).contains(&first))
        {
            continue;
        }
        // The body's brace: the first `{` outside the signature's brackets, unless a `;`
        // ends a declaration first (`[u8; 4]` is inside brackets).
        let mut depth = 0i32;
        let mut body = None;
        for (i, byte) in bytes.iter().enumerate().skip(at) {
            match byte {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth == 0 => break,
                b'{' if depth == 0 => {
                    body = Some(i);
                    break;
                }
                _ => {}
            }
        }
        if let Some(open) = body {
            let lines = line_of(closing(bytes, open)) - first + 1;
            if lines > limit {
                found.push((name, first + 1, lines));
            }
        }
    }
    found
}

/// Modules declared `#[cfg(test)] mod name;` anywhere: their files are tests.
fn test_module_files(files: &[PathBuf]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in files {
        let text = fs::read_to_string(file).expect("a source file is readable");
        for (at, _) in text.match_indices("#[cfg(test)]") {
            let decl = text[at + "#[cfg(test)]".len()..].trim_start();
            if let Some(name) = decl.strip_prefix("mod ").and_then(|d| d.split_once(';'))
                && !name.0.contains('{')
            {
                names.insert(name.0.trim().to_owned());
            }
        }
    }
    names
}

/// Functions are read whole: no function outside tests is over a hundred lines (the
/// house style's limit; a longer one wants named phases).
#[test]
fn no_function_outside_tests_is_over_a_hundred_lines() {
    let mut files = Vec::new();
    rust_files(&workspace_root(), &mut files);
    let test_modules = test_module_files(&files);
    let mut long = Vec::new();
    let mut read = 0;
    for file in &files {
        let rel = file.strip_prefix(workspace_root()).unwrap_or(file);
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if rel.components().any(|c| c.as_os_str() == "tests") || test_modules.contains(stem) {
            continue;
        }
        read += 1;
        let text = fs::read_to_string(file).expect("a source file is readable");
        for (name, line, lines) in long_functions(&text, MAX_FUNCTION_LINES) {
            long.push(format!("{}:{line} fn {name}: {lines} lines", rel.display()));
        }
    }
    assert!(read > 20, "the workspace's sources are found");
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (split them into named phases):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_function_counter_skips_literals_and_tests() {
    let body = "    let x = 1;\n".repeat(4);
    let text = format!(
        "fn short() {{\n{body}}}\n\
         fn long(a: [u8; 2]) -> u8 {{\n    let s = \"}}\";\n    let c = '}}';\n\
         // }}\n    let r = r#\"}}\"#;\n{body}    a[0]\n}}\n\
         trait T {{ fn declared(&self); }}\n\
         #[cfg(test)]\nmod tests {{\n    fn long_test() {{\n{body}    }}\n}}\n"
    );
    let found = long_functions(&text, 6);
    assert_eq!(found, vec![("long".to_owned(), 7, 11)], "{found:?}");
    assert!(long_functions(&text, 11).is_empty());
}
