//! privnum: a programmable rules engine for privacy-protected calls.
//!
//! Crate map, in reading order (ARCHITECTURE.md has the bird's-eye view):
//! - [`domain`]: apps, numbers, bindings and their rules; no IO, no clock.
//! - [`auth`]: AKSK/WSSE header parsing, digests and signing.
//! - [`config`]: `privnum.toml`, strictly validated.
//! - [`clock`]: the system clock and a manual one for tests.
//! - [`script`]: the Rhai host: sandboxed engine, script API, load → test → swap, hot reload.
//! - [`calls`]: deciding calls (store lookup → script → platform checks) and their sessions.
//! - [`store`]: sled and the call log behind privnum's own API; atomic multi-key changes and group commit.
//! - [`push`]: delivering call events and CDRs: one lane per app and kind, signed, retried.
//! - [`telemetry`]: counters behind `/metrics`.
//! - [`tone`]: hint-tone WAVs: checking the carrier format, converting to A-law 8000 Hz mono.
//! - [`http`]: the axum router: provisioning (Huawei-compatible), the switch adapter, admin, health.
//! - [`cli`]: `privnum check`, `test`, `call` (a virtual switch) and `tone`.
//! - [`server`]: wiring: open the store, load apps, start background tasks, serve.

pub mod auth;
pub mod calls;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
#[cfg(test)]
mod fuzzing;
pub mod http;
pub mod push;
pub mod script;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tone;
