//! Architecture invariants that a test can check.

use std::path::{Path, PathBuf};

/// `domain` is the core: no IO, no clock, no frameworks. A `use` of any of these there is a bug.
#[test]
fn domain_imports_no_io_or_framework_crates() {
    let forbidden = ["sled", "axum", "tokio", "rhai", "reqwest", "std::fs", "std::net", "SystemTime", "Utc::now"];
    let files = rust_files(&source("src/domain"));
    for path in &files {
        for (number, line) in code_lines(path) {
            for word in forbidden {
                assert!(!line.contains(word), "{}:{number}: domain must not use {word}: {line}", path.display());
            }
        }
    }
    assert!(files.len() >= 5, "expected the domain modules, found {} files", files.len());
}

/// `domain` knows no other layer of privnum, in its tests too: the layers above it use it, never
/// the other way round.
#[test]
fn domain_names_no_other_layer() {
    let files = rust_files(&source("src/domain"));
    for path in &files {
        forbid_crate_paths(path, &["http", "store", "script", "push", "calls", "config"], "domain");
    }
    assert!(files.len() >= 5, "expected the domain modules, found {} files", files.len());
}

/// Telemetry is a leaf: its event types know no subsystem, so every layer can emit them.
#[test]
fn telemetry_names_no_subsystem() {
    forbid_crate_paths(&source("src/telemetry.rs"), &["script", "store"], "telemetry");
}

/// Fails at the first `crate::<module>` path (in a `use`, grouped or not, or inline) naming one
/// of `modules`, with its file and line.
fn forbid_crate_paths(path: &Path, modules: &[&str], layer: &str) {
    for (number, line) in code_lines(path) {
        for named in crate_modules(&line) {
            assert!(
                !modules.contains(&named.as_str()),
                "{}:{number}: {layer} must not name crate::{named}: {}",
                path.display(),
                line.trim()
            );
        }
    }
}

/// The first segment of every `crate::` path on a line: `crate::store::Foo` gives `store`, and
/// `use crate::{config, domain::Mode}` gives `config` and `domain`.
fn crate_modules(line: &str) -> Vec<String> {
    let mut modules = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        let rest = &line[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = group.split('}').next().unwrap_or(group);
                modules.extend(group.split(',').map(|item| identifier(item.trim_start())));
            }
            None => modules.push(identifier(rest)),
        }
    }
    modules.retain(|module| !module.is_empty());
    modules
}

fn identifier(text: &str) -> String {
    text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

fn source(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Every `.rs` file under `dir`, in subdirectories too, in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// A file's lines that are not comments, numbered from 1.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .map(|(index, line)| (index + 1, line.to_owned()))
        .collect()
}
