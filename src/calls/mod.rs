//! Calls: deciding a call that reaches an X, and the sessions the switch reports on.
//!
//! `switchboard` is the one way in (the switch adapter and the customer's call controls): it
//! routes, changes the session through the ledger, and says how durable an answer must be;
//! `route` turns a switch's callin (and an AXE call's digits) into a decision (store lookup →
//! the mode's script → platform checks), one `ModeRoute` per mode;
//! `session` keeps what privnum knows of each call while it lasts; `ledger` saves each change
//! with the pushes it causes; `report` and `answer` are what the customer and the switch are
//! sent, as typed shapes encoded once.

pub mod answer;
pub mod deciding;
pub mod ledger;
pub mod report;
pub mod route;
pub mod session;
pub mod switchboard;

pub use switchboard::{Answered, Durability, Switchboard};
