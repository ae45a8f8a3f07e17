//! AX routing: A calls out through X to its valid temporary callee; anyone else who calls X
//! reaches A.
//!
//! Invariant: only a binding of the X's own app counts, and a temporary callee only while it is
//! valid on privnum's clock.

use std::sync::Arc;

use super::{ModeRoute, Prepared};
use crate::domain::{App, Binding, Mode};
use crate::script::api::Call;
use crate::store::{self, Store};

/// The script and handler that decide an AX callin.
const AX_SCRIPT: (&str, &str) = ("modes/ax.rhai", "on_callin");

pub(crate) struct AxRoute;

impl ModeRoute for AxRoute {
    fn mode(&self) -> Mode {
        Mode::Ax
    }

    /// The binding on X (of this app) and, for A, its valid temporary callee, or else (with
    /// memory callback on) the last party who called A through X.
    fn callin(&self, store: &Store, mut call: Call, app: &App, now: i64) -> Result<Prepared, store::Error> {
        let binding = store.bindings().ax_for_call(&call.called)?.filter(|b| b.app_key == app.app_key).map(Arc::new);
        let mut allowance = binding.as_deref().map(|b| b.allowance(&call.caller, app, now)).unwrap_or_default();
        let user_data = binding.as_deref().and_then(|b| b.user_data_for(&call.caller, now));
        if let Some(binding) = binding.as_deref().filter(|b| b.orig_num == call.caller.as_str()) {
            if let Some(callee) = binding.temporary_callee_at(now) {
                call.temporary_callee = callee.number.as_str().into();
            } else if app.memory_callback_minutes > 0 {
                let record = store.bindings().ax_memory(binding)?;
                if let Some(party) = record.as_ref().and_then(|record| binding.remembered(record, now)) {
                    call.callback = party.into();
                    allowance.callee = Some(party.to_owned());
                }
            }
        }
        call.binding = binding.map(Binding::Ax);
        Ok(Prepared { script: AX_SCRIPT, call, allowance, user_data, ruleset_version: None })
    }
}
