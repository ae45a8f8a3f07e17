//! AXB routing: a call to X from A or B of one of X's bindings reaches the other party.
//!
//! Invariant: the allowance names the binding's other party only, so a script cannot connect a
//! caller to anyone but its pair.

use std::sync::Arc;

use super::{ModeRoute, Prepared};
use crate::domain::{App, Binding, Mode};
use crate::script::api::Call;
use crate::store::{self, Store};

/// The script and handler that decide an AXB callin.
const AXB_SCRIPT: (&str, &str) = ("modes/axb.rhai", "on_callin");

pub(crate) struct AxbRoute;

impl ModeRoute for AxbRoute {
    fn mode(&self) -> Mode {
        Mode::Axb
    }

    /// The active binding that has the caller as A or B on X.
    fn callin(&self, store: &Store, mut call: Call, app: &App, now: i64) -> Result<Prepared, store::Error> {
        let binding = store.bindings().axb_for_call(&call.called, &call.caller, now)?.map(Arc::new);
        let allowance = binding.as_deref().map(|b| b.allowance(&call.caller, app)).unwrap_or_default();
        let user_data = binding.as_ref().and_then(|b| b.user_data.clone());
        call.binding = binding.map(Binding::Axb);
        Ok(Prepared { script: AXB_SCRIPT, call, allowance, user_data, ruleset_version: None })
    }
}
