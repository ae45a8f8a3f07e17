//! Settings shared by the property tests: the `fuzz` modules beside the code they test
//! (`cargo test --lib fuzz` runs them all; README, Reliability and security, lists them).
//!
//! Each property runs a fixed number of cases, so the set takes the same bounded time at every
//! run. `PROPTEST_CASES` overrides every count for a longer search, e.g.
//! `PROPTEST_CASES=20000 cargo test --lib fuzz`. A failing case that proptest shrank is saved
//! under `proptest-regressions/` and replayed first by later runs.

use proptest::test_runner::{Config, FileFailurePersistence};

/// The configuration of a property that runs `cases` cases unless `PROPTEST_CASES` says otherwise.
pub(crate) fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))),
        ..Config::default()
    }
}
