//! The app's customer rule set on the call path (`policy-docs/rulesets.md`): X mode's
//! `on_x_callin` before the Block push and `on_x_fallback` when it got no answer, and
//! `on_decision` after an AXB, AX or AXE script decided.
//!
//! A rule set never decides what the platform forbids, and never decides at all when it fails:
//! a run that fails, is stopped, or returns what breaks an invariant is counted and logged by the
//! host (`ScriptHost::report_ruleset_failure`) and the call goes on as if the app had no rule set.

use std::sync::Arc;

use serde_json::{json, Value};

use super::CallIn;
use crate::calls::report;
use crate::domain::ruleset::{Handler, Tightened};
use crate::domain::time::reference_time;
use crate::domain::{Allowance, App, Decision, XFailure, XReply};
use crate::script::ruleset::{decision_value, judge, DataLookup, Judged, Reads, Verdict};
use crate::script::ScriptHost;
use crate::store::Store;

/// What the app's rule set reads of the store: its data items as of `now`, its answered calls.
struct StoreReads {
    data: crate::store::Data,
    calls: crate::store::Calls,
    app_key: String,
    now: i64,
}

impl Reads for StoreReads {
    fn data(&self, key: &str) -> Result<Option<String>, String> {
        let item = self.data.get(&self.app_key, key, self.now).map_err(|err| err.to_string())?;
        Ok(item.map(|item| item.value))
    }

    fn answered(&self, a: &str, b: &str, since: i64) -> Result<i64, String> {
        let count = self.calls.answered_between(&self.app_key, (a, b), since).map_err(|err| err.to_string())?;
        Ok(i64::from(count))
    }
}

fn data_of(store: &Store, app_key: &str, now: i64) -> DataLookup {
    Box::new(StoreReads { data: store.data().clone(), calls: store.calls().clone(), app_key: app_key.to_owned(), now })
}

/// The event an X-mode handler gets: the Block `callin`'s `statusInfo`, `appKey`, `now`, and
/// for `on_x_fallback` why there was no reply.
fn x_event(app: &App, call: &CallIn, now: i64, failure: Option<&XFailure>) -> Value {
    let mut event = serde_json::to_value(&report::block_callin_event(call).status_info).unwrap_or_default();
    if let Some(map) = event.as_object_mut() {
        map.insert("appKey".into(), Value::from(app.app_key.as_str()));
        map.insert("now".into(), Value::from(now));
        if let Some(failure) = failure {
            map.insert("failure".into(), json!({"kind": failure.kind(), "reason": failure.to_string()}));
        }
    }
    event
}

/// X mode: the reply the app's rule set gives a call, from `on_x_callin` (no `failure`) or
/// `on_x_fallback` (after `failure`), with the version that gave it; `None` when it has no such
/// handler, returns `()`, or fails.
pub(super) async fn x_reply(
    store: &Store,
    scripts: &Arc<ScriptHost>,
    app: &App,
    call: &CallIn,
    now: i64,
    failure: Option<&XFailure>,
) -> Option<(XReply, String)> {
    let handler = if failure.is_some() { Handler::XFallback } else { Handler::XCallin };
    let ruleset = scripts.ruleset(&app.app_key).filter(|ruleset| ruleset.has(handler))?;
    let event = x_event(app, call, now, failure);
    let result =
        scripts.run_ruleset(ruleset.clone(), handler, (event, None), data_of(store, &app.app_key, now)).await.ok()?;
    let approved = |tone: &str| store.tones().approved(&app.app_key, tone);
    match judge(handler, result, &Judged { x_number: &call.called, original: None, given: None, approved: &approved }) {
        Ok(Verdict::Reply(reply)) => {
            scripts.count_ruleset_run(&ruleset, "decided");
            Some((reply, ruleset.version.clone()))
        }
        Ok(_) => {
            scripts.count_ruleset_run(&ruleset, "passed");
            None
        }
        Err(why) => {
            scripts.report_ruleset_failure(
                &ruleset,
                "invariant",
                &format!("{}:{}", ruleset.location(), handler.name()),
                &why,
            );
            None
        }
    }
}

/// A call's decision so far, for `on_decision`.
pub(super) struct Decided<'a> {
    pub(super) app: &'a App,
    pub(super) caller: &'a str,
    pub(super) x_number: &'a str,
    pub(super) session_id: &'a str,
    pub(super) subscription_id: Option<&'a str>,
    pub(super) decision: &'a Decision,
    pub(super) user_data: Option<&'a str>,
    /// What the mode permits the call: the tightened decision is checked against it again, as
    /// the mode's decision was (`tighten` keeps within it; this is the platform's own check).
    pub(super) allowance: &'a Allowance,
}

/// AXB, AX and AXE: what the app's `on_decision` makes of a decision, with the version, once
/// checked to only tighten it and to stay within the mode's `allowance`; `None` when it has no such handler, returns `()` (the decision
/// stands; the version is still the one that decided), or fails.
pub(super) async fn tightened(
    store: &Store,
    scripts: &Arc<ScriptHost>,
    decided: Decided<'_>,
    now: i64,
) -> Option<(Option<Tightened>, String)> {
    let Decided { app, caller, x_number, session_id, subscription_id, decision, user_data, allowance } = decided;
    let ruleset = scripts.ruleset(&app.app_key).filter(|ruleset| ruleset.has(Handler::Decision))?;
    let mut event = json!({
        "appKey": app.app_key, "mode": app.mode.to_string(), "caller": caller, "called": x_number,
        "sessionId": session_id, "timestamp": reference_time(now), "now": now,
    });
    let mut shown = decision_value(decision, user_data);
    if let Some(map) = shown.as_object_mut() {
        map.insert("sessionId".into(), Value::from(session_id));
        if decision.callee.is_some() {
            map.insert("display".into(), Value::from(x_number));
        }
        if let Some(id) = subscription_id {
            map.insert("subscriptionId".into(), Value::from(id));
            if let Some(event) = event.as_object_mut() {
                event.insert("subscriptionId".into(), Value::from(id));
            }
        }
    }
    let data = data_of(store, &app.app_key, now);
    let given = shown.clone();
    let result = scripts.run_ruleset(ruleset.clone(), Handler::Decision, (event, Some(shown)), data).await.ok()?;
    let approved = |tone: &str| store.tones().approved(&app.app_key, tone);
    let judged = Judged { x_number, original: Some((decision, user_data)), given: Some(&given), approved: &approved };
    let verdict = judge(Handler::Decision, result, &judged).and_then(|verdict| match &verdict {
        Verdict::Decision(tightened) => tightened.decision.check(allowance).map(|()| verdict),
        _ => Ok(verdict),
    });
    match verdict {
        Ok(Verdict::Decision(tightened)) => {
            scripts.count_ruleset_run(&ruleset, "decided");
            Some((Some(tightened), ruleset.version.clone()))
        }
        Ok(_) => {
            scripts.count_ruleset_run(&ruleset, "passed");
            Some((None, ruleset.version.clone()))
        }
        Err(why) => {
            scripts.report_ruleset_failure(&ruleset, "invariant", &format!("{}:on_decision", ruleset.location()), &why);
            None
        }
    }
}

/// Makes the app's active rule-set version, as the store has it, the one its calls run (compiled
/// with the app's current limits), or none when it is off or the app is gone. A kept version
/// that no longer compiles (an engine change) is logged and left off. Blocks (reads the store,
/// compiles): call it on a blocking thread. Loads are serialized, so the last to read the store
/// is the last to swap.
pub fn load_active(store: &Store, scripts: &ScriptHost, app_key: &str) -> Result<Option<String>, crate::store::Error> {
    let _loading = scripts.loading_rulesets();
    let app = store.apps().get(app_key)?;
    let active = match (app, store.rulesets().active_name(app_key)?) {
        (Some(app), Some(name)) => store.rulesets().get(app_key, &name)?.map(|version| (app, version)),
        _ => None,
    };
    let Some((app, version)) = active else {
        scripts.set_ruleset(app_key, None);
        return Ok(None);
    };
    match crate::script::ruleset::compile(
        scripts.ruleset_engine(),
        app_key,
        &version.version,
        &version.source,
        app.ruleset,
    ) {
        Ok(compiled) => {
            scripts.set_ruleset(app_key, Some(compiled));
            Ok(Some(version.version))
        }
        Err(err) => {
            tracing::error!(app_key, version = %version.version, "the active rule set does not compile: {err}; it stays off");
            scripts.set_ruleset(app_key, None);
            Ok(None)
        }
    }
}
