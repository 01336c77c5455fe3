//! The library's layering, as docs/architecture.md states it, checked on the source: each
//! top-level module of src/ may use only the modules below it, and the library reads no
//! environment variable (src/cli/, the front end, does). A new import that breaks the order
//! fails here, naming the file.
use std::collections::BTreeSet;
use std::path::Path;

/// Each module and what it may use (besides itself, `error` and the crate root's re-exports).
const ALLOWED: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("model", &[]),
    ("memory", &["model"]),
    ("gpu", &["model", "options"]),
    ("options", &[]),
    ("cpu", &["model", "memory"]),
    ("fastcpu", &["cpu", "memory", "model"]),
    ("decoder", &["gpu", "model", "memory", "options"]),
    ("sample", &[]),
    ("frequency", &[]),
    ("openai", &["sample"]),
    ("chat", &["model", "openai"]),
    ("session", &["memory", "model", "options"]),
    (
        "engine",
        &[
            "cpu", "decoder", "fastcpu", "gpu", "memory", "model", "options", "sample",
        ],
    ),
    ("generate", &["engine", "model", "sample"]),
    ("inspect", &["engine", "model", "frequency"]),
    (
        "serve",
        &["chat", "engine", "generate", "model", "openai", "sample"],
    ),
    ("eval", &["engine", "frequency", "model"]),
    (
        "web",
        &[
            "engine", "generate", "inspect", "memory", "model", "openai", "options", "sample",
            "serve", "session",
        ],
    ),
];

/// Known breaks, pinned so that they cannot spread (none now: the model describes its tables
/// and memory/stores.rs builds their row stores).
const KNOWN: &[(&str, &str)] = &[];

/// The crate's top-level modules (and names re-exported at the root, which are not modules).
fn modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_stem()?.to_str()?.to_string();
            (p.is_dir() || p.extension().is_some_and(|x| x == "rs")).then_some(name)
        })
        .filter(|n| !["lib", "main", "cli"].contains(&n.as_str()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every .rs file under src/: its path relative to src/ ('/'-separated) and its text.
fn sources(src: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .into_iter()
        .map(|f| {
            let rel = f
                .strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

/// `crate::NAME` paths in `text`, comments left out.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + 7..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
        // `use crate::{a, b::c}`: the braced list's first segments.
        if let Some(i) = code.find("crate::{") {
            let list = &code[i + 8..];
            for part in list.split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    for m in &mods {
        assert!(
            ALLOWED.iter().any(|(n, _)| n == m),
            "src/{m}: a module this test does not know: add it to ALLOWED with its layer"
        );
    }
    let mut broken = Vec::new();
    let mut known_seen = BTreeSet::new();
    for (rel, text) in sources(&src) {
        let module = rel.split('/').next().unwrap().trim_end_matches(".rs");
        let Some((_, allowed)) = ALLOWED.iter().find(|(n, _)| *n == module) else {
            continue; // lib.rs, main.rs, cli/: the front end may use everything
        };
        for used in crate_paths(&text) {
            if used == module || used == "error" || !mods.contains(&used) {
                continue;
            }
            if allowed.contains(&used.as_str()) {
                continue;
            }
            if KNOWN.contains(&(rel.as_str(), used.as_str())) {
                known_seen.insert((rel.clone(), used));
                continue;
            }
            broken.push(format!("src/{rel} uses crate::{used}, above {module}"));
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
    // A pinned break that is gone must leave the list too.
    for (file, used) in KNOWN {
        assert!(
            known_seen.contains(&(file.to_string(), used.to_string())),
            "src/{file} no longer uses crate::{used}: remove it from KNOWN"
        );
    }
}

#[test]
fn the_library_reads_no_environment() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (rel, text) in sources(&src) {
        if rel.starts_with("cli/") || rel == "main.rs" {
            continue;
        }
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if ["env::var", "env::vars", "env!(\"TIDE", "option_env!"]
                .iter()
                .any(|p| code.contains(p))
            {
                found.push(format!("src/{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the library reads the environment:\n{}",
        found.join("\n")
    );
}
