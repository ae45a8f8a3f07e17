//! Architecture invariants that a test can check.

/// `domain` is the core: no IO, no clock, no frameworks. A `use` of any of these there is a bug.
#[test]
fn domain_imports_no_io_or_framework_crates() {
    let forbidden = ["sled", "axum", "tokio", "rhai", "reqwest", "std::fs", "std::net", "SystemTime", "Utc::now"];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("src/domain exists") {
        let path = entry.expect("dir entry").path();
        let text = std::fs::read_to_string(&path).expect("readable source");
        let code = text.lines().enumerate().filter(|(_, line)| !line.trim_start().starts_with("//"));
        for (number, line) in code {
            for word in forbidden {
                assert!(!line.contains(word), "{}:{}: domain must not use {word}: {line}", path.display(), number + 1);
            }
        }
        checked += 1;
    }
    assert!(checked >= 5, "expected the domain modules, found {checked} files");
}
