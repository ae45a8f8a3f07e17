//! The core: apps, numbers, bindings, their rules and the platform's codes.
//!
//! Invariant: nothing here does IO or reads a clock. Time comes in as an argument (Unix seconds),
//! so every rule can be tested with any instant; `tests/it/layering.rs` checks that this module
//! imports none of sled, axum, tokio or rhai.

pub mod app;
pub mod ax;
pub mod axb;
pub mod axe;
pub mod binding;
pub mod codes;
pub mod data;
pub mod decision;
pub mod fields;
pub mod number;
pub mod provision;
pub mod recording;
pub mod rejection;
pub mod ruleset;
pub mod settings;
pub mod state;
pub mod time;
pub mod tone;
pub mod x;

pub use app::{App, AppToneSetting, Mode, RulesetSettings};
pub use ax::AxBinding;
pub use axb::AxbBinding;
pub use axe::AxeBinding;
pub use binding::Binding;
pub use decision::{Action, Allowance, Decision};
pub use fields::{Fields, Invalid};
pub use number::{NumberStatus, XNumber};
pub use provision::{Page, Provisioning, XSelection};
pub use rejection::Rejection;
pub use x::{XFailure, XReply};
