//! A script set: every `.rhai` file of the scripts directory, compiled, checked for the handlers
//! privnum calls, and proven against its own test cases. Only a set that passed all of that ever
//! becomes active.
//!
//! Errors carry `file:line:column`, so an operator reads `scripts/modes/axb.rhai:14:9: …`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Engine, Position, AST};
use sha2::{Digest, Sha256};

use super::cases;

/// The handlers privnum calls: `(file under the scripts directory, function, parameter count)`.
/// A set without one of them is rejected.
pub const HANDLERS: &[(&str, &str, usize)] = &[
    ("modes/axb.rhai", "on_callin", 1),
    ("modes/ax.rhai", "on_callin", 1),
    ("modes/axe.rhai", "on_callin", 1),
    ("modes/axe.rhai", "on_digits", 1),
    ("modes/x.rhai", "on_callin", 1),
    ("release.rhai", "on_release", 1),
];

/// Identifies one loaded set: a counter for this process, and a hash of the files' content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub number: u64,
    pub hash: String,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}-{}", self.number, self.hash)
    }
}

/// Why a set was not loaded. `Display` is one line per problem, each starting with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(pub Vec<String>);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for LoadError {}

/// `path:line:column` for a position in a file (or just the path when the position is unknown).
pub fn locate(path: &Path, position: Position) -> String {
    match (position.line(), position.position()) {
        (Some(line), Some(column)) => format!("{}:{line}:{column}", path.display()),
        (Some(line), None) => format!("{}:{line}", path.display()),
        _ => path.display().to_string(),
    }
}

#[derive(Debug)]
pub struct ScriptSet {
    pub version: Version,
    pub dir: PathBuf,
    /// Relative path (with `/`) → compiled script.
    scripts: BTreeMap<String, Arc<AST>>,
    /// Relative path → the text it was compiled from, so that the next reload compiles only
    /// the files that changed.
    sources: BTreeMap<String, Arc<str>>,
    /// How many test cases the set passed when it was loaded.
    pub cases_passed: usize,
}

impl ScriptSet {
    pub fn script(&self, name: &str) -> Option<&Arc<AST>> {
        self.scripts.get(name)
    }

    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.scripts.keys().map(String::as_str)
    }

    /// Where a script of this set lives on disk, for messages.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads, compiles and checks every script in `dir`, then runs the test cases.
    pub fn load(engine: &Engine, dir: &Path, number: u64, limits: &super::Limits) -> Result<ScriptSet, LoadError> {
        ScriptSet::compile(engine, dir, number)?.pass_cases(engine, limits)
    }

    /// Runs the set's test cases: the set back if all pass, the failures otherwise.
    pub fn pass_cases(mut self, engine: &Engine, limits: &super::Limits) -> Result<ScriptSet, LoadError> {
        let report = cases::run_all(engine, &self, limits);
        if !report.failures.is_empty() {
            return Err(LoadError(report.failures));
        }
        self.cases_passed = report.passed;
        Ok(self)
    }

    /// Reads, compiles and checks for handlers, without running the cases.
    pub fn compile(engine: &Engine, dir: &Path, number: u64) -> Result<ScriptSet, LoadError> {
        ScriptSet::compile_after(engine, dir, number, None)
    }

    /// Like [`ScriptSet::compile`], reusing the compiled scripts of `previous` whose text has not
    /// changed: an edit to one file compiles that file alone.
    pub fn compile_after(
        engine: &Engine,
        dir: &Path,
        number: u64,
        previous: Option<&ScriptSet>,
    ) -> Result<ScriptSet, LoadError> {
        ScriptSet::compile_read(engine, dir, number, previous, Sources::read(dir))
    }

    /// Like [`ScriptSet::compile_after`], for a directory already read.
    pub fn compile_read(
        engine: &Engine,
        dir: &Path,
        number: u64,
        previous: Option<&ScriptSet>,
        read: Sources,
    ) -> Result<ScriptSet, LoadError> {
        let Sources { scripts: sources, cases: case_files, mut problems } = read;
        if sources.is_empty() && problems.is_empty() {
            problems.push(format!("{}: no .rhai scripts found", dir.display()));
        }
        let mut hash = Sha256::new();
        let mut scripts = BTreeMap::new();
        let mut texts = BTreeMap::new();
        for (name, text) in &sources {
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(text.as_bytes());
            let unchanged = previous.and_then(|set| {
                set.sources.get(name).filter(|old| ***old == **text).and_then(|_| set.scripts.get(name))
            });
            if let Some(ast) = unchanged {
                scripts.insert(name.clone(), ast.clone());
                texts.insert(name.clone(), Arc::from(text.as_str()));
                continue;
            }
            match engine.compile(text) {
                Ok(mut ast) => {
                    ast.set_source(dir.join(name).display().to_string());
                    scripts.insert(name.clone(), Arc::new(ast));
                    texts.insert(name.clone(), Arc::from(text.as_str()));
                }
                Err(err) => problems.push(format!("{}: {}", locate(&dir.join(name), err.position()), err.err_type())),
            }
        }
        for (file, function, params) in HANDLERS {
            match scripts.get(*file) {
                None if !sources.iter().any(|(name, _)| name == file) => {
                    problems.push(format!("{}: missing: privnum needs this script", dir.join(file).display()))
                }
                None => {} // it failed to compile; already reported
                Some(ast) if !ast.iter_functions().any(|f| f.name == *function && f.params.len() == *params) => {
                    problems.push(format!(
                        "{}: missing handler: define fn {function} with {params} parameter(s) in this file",
                        dir.join(file).display(),
                    ));
                }
                Some(_) => {}
            }
        }
        if !problems.is_empty() {
            return Err(LoadError(problems));
        }
        // The cases are part of a version: an edit to a case alone is a change to reload.
        for (name, text) in &case_files {
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(text.as_bytes());
        }
        let digest = hash.finalize();
        let hash = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        Ok(ScriptSet {
            version: Version { number, hash },
            dir: dir.to_owned(),
            scripts,
            sources: texts,
            cases_passed: 0,
        })
    }
}

/// A scripts directory as read from disk: its scripts and case files (relative path with `/`, and
/// text), and what could not be read.
#[derive(Debug, Default)]
pub struct Sources {
    scripts: Vec<(String, String)>,
    cases: Vec<(String, String)>,
    problems: Vec<String>,
}

impl Sources {
    /// Reads every `.rhai` and `.json` file under `dir`, in path order.
    pub fn read(dir: &Path) -> Sources {
        let mut read = Sources::default();
        collect_sources(dir, dir, &mut read.scripts, &mut read.cases, &mut read.problems);
        read
    }
}

/// Every `.rhai` file under `dir` into `sources`, every `.json` into `cases`, as
/// `(relative path with '/', text)`, in path order.
fn collect_sources(
    root: &Path,
    dir: &Path,
    sources: &mut Vec<(String, String)>,
    cases: &mut Vec<(String, String)>,
    problems: &mut Vec<String>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            problems.push(format!("{}: cannot read the scripts directory: {err}", dir.display()));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|entry| entry.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let extension = path.extension().and_then(|ext| ext.to_str()).unwrap_or_default();
        if path.is_dir() {
            collect_sources(root, &path, sources, cases, problems);
        } else if extension == "rhai" || extension == "json" {
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let into = if extension == "rhai" { &mut *sources } else { &mut *cases };
            match std::fs::read_to_string(&path) {
                Ok(text) => into.push((name, text)),
                Err(err) => problems.push(format!("{}: cannot read: {err}", path.display())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_scripts(to: &Path) {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
        for entry in walk(&from) {
            let target = to.join(entry.strip_prefix(&from).unwrap());
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&entry, &target).unwrap();
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    #[test]
    fn a_reload_compiles_only_the_files_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        copy_scripts(dir.path());
        let engine = super::super::engine::build(&super::super::Limits::default());
        let first = ScriptSet::compile(&engine, dir.path(), 1).unwrap();
        let release = dir.path().join("release.rhai");
        let text = std::fs::read_to_string(&release).unwrap();
        std::fs::write(&release, format!("{text}\n// edited\n")).unwrap();
        let second = ScriptSet::compile_after(&engine, dir.path(), 2, Some(&first)).unwrap();
        let same = |name: &str| Arc::ptr_eq(first.script(name).unwrap(), second.script(name).unwrap());
        assert!(same("modes/axb.rhai"), "an unchanged file keeps its compiled script");
        assert!(!same("release.rhai"), "the edited file is compiled again");
        assert_ne!(first.version.hash, second.version.hash);
    }

    #[test]
    fn an_x_mode_case_that_gives_a_binding_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        copy_scripts(dir.path());
        let case = r#"{"description": "a binding X mode cannot have",
            "call": {"caller": "+8613800000001", "called": "+8617000000001"},
            "binding": {"caller_num": "+8613800000001", "callee_num": "+8613900000002"},
            "reply": {"operation": "close"},
            "expect": {"action": "release"}}"#;
        std::fs::write(dir.path().join("modes/x.cases/with-binding.json"), case).unwrap();
        let limits = super::super::Limits::default();
        let engine = super::super::engine::build(&limits);
        let Err(err) = ScriptSet::load(&engine, dir.path(), 1, &limits) else { panic!("the case was accepted") };
        let shown = err.to_string();
        assert!(shown.contains("with-binding.json") && shown.contains("X mode has no bindings"), "{shown}");
    }
}
