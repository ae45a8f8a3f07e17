//! The Rhai script host: builds the sandboxed engine, loads and proves script sets, runs
//! handlers, and swaps versions atomically when ops edit `scripts/`.
//!
//! Reading order: `engine` (limits and sandbox), `api` (what scripts see), `set` (load, compile,
//! check handlers), `cases` (a set's own test cases), `run` (calling a handler), `host` (the
//! active version, reload and rollback, running a live call's handler on the pool), `pool` (the
//! script threads: per-app queues, the suspect lane), `strikes` (failures counted per script and
//! location), `watch` (file events → debounced reload); `ruleset`: customer rule sets (their API,
//! compile, call, the invariants they are judged by, the submission check and its probe), run by
//! the host on the same pool.

pub mod api;
pub mod cases;
pub mod engine;
pub mod host;
pub mod pool;
pub mod ruleset;
pub mod run;
pub mod set;
pub mod strikes;
pub mod watch;

pub use engine::Limits;
pub use host::{ReloadOutcome, ScriptHost};
pub use pool::PoolConfig;
