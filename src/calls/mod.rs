//! Calls: deciding a call that reaches an X, and the sessions the switch reports on.
//!
//! `route` turns a switch's callin (and an AXE call's digits) into a decision (store lookup →
//! the mode's script → platform checks);
//! `session` keeps what privnum knows of each call while it lasts.

pub mod ledger;
pub mod report;
pub mod route;
pub mod session;
