//! Naming a release: the `stateCode` of a call the switch released without one, from
//! `scripts/release.rhai`.
//!
//! Invariant: the code returned is always one of the Huawei API's state codes; a script that
//! fails or names another gets `0` for an answered call and `8020` for one that was not.

use std::sync::Arc;

use crate::domain::state;
use crate::script::api::Release;
use crate::script::ScriptHost;

/// The pool queue `release.rhai` runs in: it is the operator's script, shared by every app.
const RELEASE_QUEUE: &str = "release.rhai";

/// The script that names a release's `stateCode` when the switch gives only causes.
const RELEASE_SCRIPT: (&str, &str) = ("release.rhai", "on_release");

/// The `stateCode` of a release the switch reported without one, from `scripts/release.rhai`.
/// If the script fails or names a code the Huawei API does not list, the failure is reported
/// and the call gets `0` when it was answered (it was released after talking) or `8020`
/// (service exception) when it was not. It runs on the script pool, like a callin's handler.
pub async fn state_code_for_release(scripts: &Arc<ScriptHost>, release: Release) -> state::StateCode {
    let answered = release.answered;
    let set = scripts.active();
    let (file, function) = RELEASE_SCRIPT;
    let input = format!(
        "{:?} {:?} {} {} {} {}",
        release.q850, release.sip_status, release.release_side, release.alerted, answered, release.collecting
    );
    let key = scripts.input_key(&[RELEASE_QUEUE, file, function, &input]);
    // A failed run was reported by the host; a code outside the table is reported here.
    if let Ok(code) = scripts.run_pooled::<_, i64>(RELEASE_QUEUE, key, set.clone(), RELEASE_SCRIPT, release).await {
        match state::StateCode::try_from(code).ok().filter(|code| state::describe(*code).is_some()) {
            Some(code) => return code,
            None => scripts.report_violation(
                &set,
                RELEASE_SCRIPT,
                &format!("{function} returned {code}, which is not a Huawei release code"),
            ),
        }
    }
    if answered {
        state::NORMAL
    } else {
        state::SERVICE_EXCEPTION
    }
}
