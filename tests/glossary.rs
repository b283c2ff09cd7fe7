//! The glossary is kept: each word is stated once, in the `//!` of the `lib.rs` of the
//! crate that owns it (`# Glossary`), `docs/ARCHITECTURE.md` mirrors the list, and the
//! code uses the words it reserves for nothing else:
//! - **pool** is the front's: no type, trait, module or function outside the front's
//!   pools and their configuration has `pool` in its name (the compute threads are
//!   `compute`, the store's read connections are `Readers`, an upstream's idle
//!   connections are its keep-alive connections).
//! - **workers** is a crate's name: no identifier has `worker` in it (the front serves
//!   on front threads, the writer thread runs a `WriterLoop`), but for the crate's own
//!   name and tokio's `worker_threads`.
//!
//! Read: the sources of the crates that own the words (`src/`, `front/src/`,
//! `workers/src/`), comments and string literals left out. The load-test harness is
//! not read: it writes nginx's configuration, in nginx's words (`worker_processes`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The crates that own glossary words: their source folder.
const OWNERS: [&str; 3] = ["src", "front/src", "workers/src"];

/// Where a definition may have `pool` in its name: the front's pools, their
/// configuration, and the front that holds them.
const POOL_PLACES: [&str; 3] = [
    "front/src/pools/",
    "front/src/config.rs",
    "front/src/lib.rs",
];

/// Identifiers with `worker` in them that are not ours to rename.
const FOREIGN_WORKERS: [&str; 2] = ["loadlab_workers", "worker_threads"];

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("a source folder is readable") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Each owning crate's sources: path relative to the workspace, and text.
fn sources() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in OWNERS {
        rust_files(&root.join(dir), &mut files);
    }
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&root).expect("under the workspace");
            let text = fs::read_to_string(&path).expect("a source file is readable");
            (rel.display().to_string(), text)
        })
        .collect()
}

/// The identifiers of `code` with their line numbers: comments, string literals and
/// character literals left out (lifetimes are kept, as `'a`, and do not matter here).
fn identifiers(code: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
            i += 2;
        } else if c == '"' || (c == 'r' && matches!(next, Some('"' | '#'))) {
            i = skip_string(&chars, i, &mut line);
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            let close = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'')
            } else {
                (chars.get(i + 2) == Some(&'\'')).then_some(i + 2)
            };
            i = close.map_or(i + 1, |j| j + 1);
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((line, chars[start..i].iter().collect()));
        } else {
            i += 1;
        }
    }
    out
}

/// The index just past the string literal that starts at `i` (`"..."`, `r"..."`,
/// `r#"..."#`), counting the lines it spans.
fn skip_string(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    let raw = chars[i] == 'r';
    let mut hashes = 0;
    if raw {
        i += 1;
        while chars.get(i) == Some(&'#') {
            hashes += 1;
            i += 1;
        }
    }
    i += 1; // the opening quote
    while i < chars.len() {
        match chars[i] {
            '\\' if !raw => i += 1,
            '\n' => *line += 1,
            '"' if (1..=hashes).all(|h| chars.get(i + h) == Some(&'#')) => {
                return i + 1 + hashes;
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// The names `code` defines as items: `(line, keyword, name)` for each `struct`,
/// `enum`, `trait`, `type`, `union`, `mod`, `fn`, `const` and `static`.
fn definitions(code: &str) -> Vec<(usize, String, String)> {
    const KEYWORDS: [&str; 9] = [
        "struct", "enum", "trait", "type", "union", "mod", "fn", "const", "static",
    ];
    let words = identifiers(code);
    words
        .windows(2)
        .filter(|pair| KEYWORDS.contains(&pair[0].1.as_str()))
        .map(|pair| (pair[1].0, pair[0].1.clone(), pair[1].1.clone()))
        .collect()
}

#[test]
fn pool_names_only_the_fronts_pools() {
    let mut misnamed = Vec::new();
    for (path, text) in sources() {
        if POOL_PLACES.iter().any(|place| path.starts_with(place)) {
            continue;
        }
        for (line, keyword, name) in definitions(&text) {
            if name.to_lowercase().contains("pool") {
                misnamed.push(format!("{path}:{line}: {keyword} {name}"));
            }
        }
    }
    assert!(
        misnamed.is_empty(),
        "`pool` is the front's word (a named set of upstreams); these name something \
         else:\n{}",
        misnamed.join("\n")
    );
}

#[test]
fn worker_names_nothing_but_the_crate() {
    let mut misnamed = Vec::new();
    for (path, text) in sources() {
        for (line, name) in identifiers(&text) {
            if name.to_lowercase().contains("worker") && !FOREIGN_WORKERS.contains(&name.as_str()) {
                misnamed.push(format!("{path}:{line}: {name}"));
            }
        }
    }
    misnamed.dedup();
    assert!(
        misnamed.is_empty(),
        "`workers` is the crate's name: front threads are `thread`s, the writer thread \
         runs a `WriterLoop`; these say worker:\n{}",
        misnamed.join("\n")
    );
}

/// The words a `# Glossary` section defines (`- **word**:`, and `**word**` later in an
/// entry), from the `//!` lines of a `lib.rs` or the lines of a Markdown file.
fn glossary_words(text: &str, doc_prefix: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let Some(line) = line.strip_prefix(doc_prefix) else {
            if inside && !doc_prefix.is_empty() {
                break;
            }
            continue;
        };
        let line = line.trim();
        if line.starts_with('#') {
            inside = line.trim_start_matches('#').trim() == "Glossary";
            continue;
        }
        if !inside {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("**") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("**") else { break };
            words.push(after[..end].to_owned());
            rest = &after[end + 2..];
        }
    }
    words
}

#[test]
fn each_word_is_stated_once_in_its_crate_and_mirrored_in_the_architecture_doc() {
    let root = workspace_root();
    let mut owner_of: BTreeMap<String, &str> = BTreeMap::new();
    for dir in OWNERS {
        let lib = fs::read_to_string(root.join(dir).join("lib.rs")).expect("lib.rs");
        let words = glossary_words(&lib, "//!");
        assert!(!words.is_empty(), "{dir}/lib.rs states its glossary");
        for word in words {
            if let Some(first) = owner_of.insert(word.clone(), dir) {
                panic!("**{word}** is stated in {first}/lib.rs and {dir}/lib.rs");
            }
        }
    }
    for word in [
        "pool",
        "front threads",
        "readers",
        "writer",
        "compute",
        "workers",
    ] {
        assert!(
            owner_of.contains_key(word),
            "the glossary states **{word}**"
        );
    }
    let doc = fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut mirrored = glossary_words(&doc, "");
    mirrored.sort();
    let stated: Vec<String> = owner_of.into_keys().collect();
    assert_eq!(
        mirrored, stated,
        "docs/ARCHITECTURE.md's glossary mirrors the crates' glossaries"
    );
}

#[test]
fn the_readers_see_code_only() {
    let code = "/// a worker\nfn pool_size<'a>(x: &'a str) -> char {\n    \
                let s = \"worker\"; let r = r#\"pool\"#; let c = '\\''; /* Pool */ 'w'\n}\n";
    let names: Vec<String> = identifiers(code).into_iter().map(|(_, n)| n).collect();
    assert!(names.contains(&"pool_size".to_owned()), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n == "worker" || n == "Pool" || n == "w"),
        "{names:?}"
    );
    assert_eq!(
        definitions(code),
        vec![(2, "fn".to_owned(), "pool_size".to_owned())]
    );
    let glossary = "//! # Glossary\n//! - **pool**: one; a **member** too.\n//! # Next\n";
    assert_eq!(glossary_words(glossary, "//!"), ["pool", "member"]);
}
