//! AXE routing: A of an extension calls out through X to its callback party; anyone else keys an
//! extension first (a `collect`), and the digits then decide.
//!
//! Invariant: a stranger's callin may only collect (the app's extension length); the digits may
//! only reach the A of the extension they name.

use std::sync::Arc;

use super::{ModeRoute, Prepared};
use crate::domain::{Allowance, App, Binding, Mode};
use crate::script::api::Call;
use crate::store::{self, Store};

/// The script and handlers that decide an AXE callin, and its digits.
const AXE_SCRIPT: (&str, &str) = ("modes/axe.rhai", "on_callin");
const AXE_DIGITS_SCRIPT: (&str, &str) = ("modes/axe.rhai", "on_digits");

pub(crate) struct AxeRoute;

impl ModeRoute for AxeRoute {
    fn mode(&self) -> Mode {
        Mode::Axe
    }

    /// A's own binding on X and callback record; for anyone else, an extension to collect.
    fn callin(&self, store: &Store, mut call: Call, app: &App, now: i64) -> Result<Prepared, store::Error> {
        call.x_bindings = i64::from(store.bindings().pairs_on(&call.called)?);
        let binding = store.bindings().axe_for_a(&call.called, &call.caller, now)?.map(Arc::new);
        let (allowance, user_data) = match binding.as_deref() {
            Some(binding) => {
                let callback = store.bindings().axe_callback(binding, now)?;
                let party = callback.map(|callback| callback.party);
                if let Some(party) = &party {
                    call.callback = party.as_str().into();
                }
                (binding.allowance_for_a(party.as_deref(), app), binding.user_data.clone())
            }
            None => (Allowance { collect_digits: Some(app.extension_digits), ..Allowance::default() }, None),
        };
        call.binding = binding.map(Binding::Axe);
        Ok(Prepared { script: AXE_SCRIPT, call, allowance, user_data, ruleset_version: None })
    }

    /// The extension the caller keyed, if it is one of X's.
    fn digits(&self, store: &Store, call: Call, app: &App, now: i64) -> Option<Result<Prepared, store::Error>> {
        Some(prepare_digits(store, call, app, now))
    }
}

fn prepare_digits(store: &Store, mut call: Call, app: &App, now: i64) -> Result<Prepared, store::Error> {
    call.x_bindings = i64::from(store.bindings().pairs_on(&call.called)?);
    let binding = match call.digits.as_str() {
        "" => None,
        digits => store.bindings().axe_for_extension(&call.called, digits, now)?.map(Arc::new),
    };
    let allowance = binding.as_deref().map(|b| b.allowance_for_extension(app)).unwrap_or_default();
    let user_data = binding.as_deref().and_then(|b| b.user_data.clone());
    call.binding = binding.map(Binding::Axe);
    Ok(Prepared { script: AXE_DIGITS_SCRIPT, call, allowance, user_data, ruleset_version: None })
}
