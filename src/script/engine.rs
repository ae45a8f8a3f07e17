//! The one place a Rhai engine is built, with every sandbox limit set and the script API
//! registered. Engines are built once and shared by every call (`sync` feature); scripts are
//! compiled once per reload.
//!
//! Sandbox: operation count, call depth, expression depth, string/array/map sizes, no module
//! imports (no resolver), no `print` to stdout, and a wall-clock deadline per call checked in
//! `on_progress`. The deadline is kept per thread because the engine is shared; `tokio::time::timeout`
//! cannot stop a running script, which never yields.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine, OptimizationLevel};

use super::api;

/// The limits every engine gets. A routing script needs a few hundred operations; these leave
/// room for real policies while stopping a runaway in well under the 100 ms a switch will wait.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    /// Wall-clock budget of one call.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 100_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 16 * 1024,
            max_array_size: 1024,
            max_map_size: 256,
            deadline: Duration::from_millis(20),
        }
    }
}

/// How often (in operations) the deadline is read: reading the clock on every operation would cost
/// more than the operation. At 64 a script is stopped within a few microseconds of its deadline
/// (an operation takes tens of nanoseconds; the sandbox's size limits bound the costliest), for
/// about 1 % of a script's time in reading the clock (`docs/performance.md`, Scripts).
const DEADLINE_CHECK_EVERY: u64 = 64;

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// A run's own operation budget, below the engine's (a rule set's per-app limit); 0: none.
    static OPERATIONS: Cell<u64> = const { Cell::new(0) };
}

/// What `on_progress` stops a run with when its own operation budget is spent (the engine's
/// own limit is Rhai's `ErrorTooManyOperations`).
pub(crate) const OPERATIONS_SPENT: &str = "the run used up its operations";

/// Runs `f` with this thread's script deadline set at `at`.
pub(crate) fn with_deadline_at<T>(at: Instant, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DEADLINE.with(|deadline| deadline.set(None));
        }
    }
    DEADLINE.with(|deadline| deadline.set(Some(at)));
    let _reset = Reset;
    f()
}

/// Runs `f` with this thread's deadline at `at` and at most `operations` operations (checked
/// every [`DEADLINE_CHECK_EVERY`]).
pub(crate) fn with_budget<T>(at: Instant, operations: u64, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            OPERATIONS.with(|budget| budget.set(0));
        }
    }
    OPERATIONS.with(|budget| budget.set(operations));
    let _reset = Reset;
    with_deadline_at(at, f)
}

/// Builds a sandboxed engine with the privnum script API.
pub fn build(limits: &Limits) -> Engine {
    let mut engine = sandbox(limits);
    api::register(&mut engine);
    engine
}

/// Builds the engine customer rule sets run on: the same sandbox, with the rule-set API
/// (`script::ruleset`) instead of the scripts'.
pub fn build_for_rulesets(limits: &Limits) -> Engine {
    let mut engine = sandbox(limits);
    // Each run has its app's own operation budget (`with_budget`), up to
    // `MAX_RULESET_OPERATIONS`; the engine's own limit must not cut it shorter.
    engine.set_max_operations(crate::config::MAX_RULESET_OPERATIONS + DEADLINE_CHECK_EVERY);
    // A reviewed rule set must not run code it did not show: `eval` of a string from data would.
    engine.disable_symbol("eval");
    // A customer's `print` on every call must not fill privnum's log.
    engine.on_print(|text| tracing::debug!(target: "privnum::ruleset", "{text}"));
    super::ruleset::register(&mut engine);
    engine
}

fn sandbox(limits: &Limits) -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_modules(0)
        // The strings interner sits behind a lock under `sync`: two threads deciding would
        // serialize on it (house style, measured).
        .set_max_strings_interned(0)
        .set_optimization_level(OptimizationLevel::Simple);
    engine.on_print(|text| tracing::info!(target: "privnum::script", "{text}"));
    engine.on_debug(|text, source, position| {
        tracing::debug!(target: "privnum::script", source = source.unwrap_or(""), %position, "{text}")
    });
    engine.on_progress(|operations| {
        if operations % DEADLINE_CHECK_EVERY != 0 {
            return None;
        }
        let spent = OPERATIONS.with(|budget| budget.get() > 0 && operations >= budget.get());
        if spent {
            return Some(Dynamic::from(OPERATIONS_SPENT));
        }
        let late = DEADLINE.with(|deadline| deadline.get().is_some_and(|at| Instant::now() >= at));
        late.then(|| Dynamic::from("the script ran past its deadline"))
    });
    engine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_stops_a_script_that_no_other_limit_stops() {
        // 0 operations means unlimited: only the deadline can end this loop.
        let limits = Limits { max_operations: 0, deadline: Duration::from_millis(5), ..Limits::default() };
        let engine = build(&limits);
        let started = Instant::now();
        let result = with_deadline_at(started + limits.deadline, || engine.run("loop { }"));
        let took = started.elapsed();
        let terminated = matches!(result.as_ref().map_err(|err| &**err), Err(rhai::EvalAltResult::ErrorTerminated(..)));
        assert!(terminated, "{result:?}");
        assert!(took < Duration::from_secs(1), "stopped after {took:?}");
        // The deadline is cleared afterwards: the next script on this thread runs normally.
        assert!(engine.run("let x = 0; for i in 0..1000 { x += i; }").is_ok());
    }

    #[test]
    fn imports_are_not_available() {
        let engine = build(&Limits::default());
        assert!(engine.run(r#"import "x" as x;"#).is_err());
    }
}
