//! privnum's integration tests: one binary, one module per feature. Every test starts a real
//! server on a loopback port with real sled in a temporary directory (see `support`).

#![allow(dead_code)] // support helpers are shared; not every module uses each one
#![allow(unreachable_pub)] // a test binary has no public API
#![allow(clippy::unwrap_used)] // a failed unwrap in a test helper is a failed test with its location

mod admin;
mod admin_calls;
mod auth;
mod ax;
mod axb;
mod axe;
mod concurrency;
mod connections;
mod controls;
mod customer;
mod data;
mod delivery;
mod hygiene;
mod layering;
mod openapi;
mod persistence;
mod policy_docs;
mod push;
mod receiver;
mod reference_client;
mod reload;
mod retries;
mod rulesets;
mod sandbox;
mod script_pool;
mod store_faults;
mod support;
mod switch;
mod tls;
mod tone_registry;
mod tones;
mod xmode;
