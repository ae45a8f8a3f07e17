//! Deciding a callin: find the X's app and mode, gather what the mode's script needs, run it on
//! the active script version, and enforce the platform's invariants on what it returns.
//!
//! This is the switch's hot path: two or three sled point reads, one script call, no lock, no
//! engine construction, no compilation. A script that fails or breaks an invariant does not fail
//! the call: it gets the documented fallback, release with 8020 (service exception) after the
//! app's close-hint tone, and the failure is counted and logged once per location. Naming a tone
//! that is not an approved tone of the app is such a violation. The app's own tone settings count
//! only once their tones are approved: until then the script and the host see them unset.

use std::sync::Arc;

use crate::domain::{state, Action, App, AxbBinding, Decision, Mode, NumberStatus};
use crate::script::api::{Call, Release};
use crate::script::ScriptHost;
use crate::store::{self, Store};
use crate::telemetry::{AppToneNotApproved, AppToneSetting, AppToneSkipped, CallRecordedWithoutNotice, Metrics};

/// The script and handler that decide an AXB callin.
const AXB_SCRIPT: (&str, &str) = ("modes/axb.rhai", "on_callin");

/// A call as the switch reports it.
#[derive(Debug, Clone)]
pub struct CallIn {
    pub session_id: String,
    pub caller: String,
    /// The X dialled.
    pub called: String,
    pub time: i64,
}

/// A decided call, with what the session needs to remember.
#[derive(Debug, Clone)]
pub struct Routed {
    pub decision: Decision,
    pub app: Option<Arc<App>>,
    pub binding: Option<Arc<AxbBinding>>,
    /// The script version that decided, or `None` when the host decided without a script.
    pub script_version: Option<String>,
    /// The script failed or broke an invariant and the fallback was used.
    pub fallback: bool,
}

impl Routed {
    fn by_host(decision: Decision, app: Option<Arc<App>>) -> Self {
        Routed { decision, app, binding: None, script_version: None, fallback: false }
    }
}

fn close_tone(app: &App) -> Option<String> {
    (!app.close_hint_tone.is_empty()).then(|| app.close_hint_tone.clone())
}

/// The app as a call sees it: a tone setting that names a tone not approved (yet) reads as unset,
/// since the switch could not fetch it. Returns the settings so cleared, with their tones.
fn playable(store: &Store, mut app: App) -> (App, Vec<(AppToneSetting, String)>) {
    let unapproved: Vec<AppToneSetting> = unapproved_app_tones(store, &app).map(|(setting, _)| setting).collect();
    let cleared = unapproved.into_iter().map(|setting| (setting, std::mem::take(setting.of_mut(&mut app)))).collect();
    (app, cleared)
}

/// The app's tone settings that name a tone not approved (yet), with the tone.
fn unapproved_app_tones<'a>(store: &'a Store, app: &'a App) -> impl Iterator<Item = (AppToneSetting, &'a str)> {
    [AppToneSetting::RecordHint, AppToneSetting::CloseHint]
        .into_iter()
        .map(|setting| (setting, setting.of(app)))
        .filter(|(_, name)| !name.is_empty() && !store.tone_approved(&app.app_key, name))
}

/// Counts the calls that went without an app tone because it is not approved.
fn count_skipped_tones(metrics: &Metrics, app: &App, cleared: &[(AppToneSetting, String)], decision: &Decision) {
    for (setting, file_name) in cleared {
        let wanted = match setting {
            AppToneSetting::CloseHint => decision.action == Action::Release && decision.tone.is_none(),
            AppToneSetting::RecordHint => decision.record && decision.record_hint_tone.is_none(),
        };
        if wanted {
            AppToneSkipped { app_key: &app.app_key, setting: *setting, file_name }.emit(metrics);
        }
    }
}

/// Decides a callin. `now` is privnum's clock: whether a binding is still active is privnum's
/// judgement, not the switch's (`call.time` is only recorded).
pub fn decide_callin(
    store: &Store,
    scripts: &ScriptHost,
    metrics: &Metrics,
    call: &CallIn,
    now: i64,
) -> Result<Routed, store::Error> {
    let number = store.number(&call.called)?;
    let app = match &number {
        Some(number) => store.app(&number.app_key)?,
        None => None,
    };
    let (Some(number), Some(app)) = (number, app) else {
        return Ok(Routed::by_host(Decision::release(state::APP_NOT_FOUND, None), None));
    };
    let (app, cleared) = playable(store, app);
    let app = Arc::new(app);
    let by_host = |code| {
        let decision = Decision::release(code, close_tone(&app));
        count_skipped_tones(metrics, &app, &cleared, &decision);
        Ok(Routed::by_host(decision, Some(app.clone())))
    };
    if matches!(number.status, NumberStatus::Paused | NumberStatus::Unavailable) {
        return by_host(state::X_UNAVAILABLE);
    }
    if app.mode != Mode::Axb {
        // AX, AXE and X routing are not built yet; their calls are refused as a mode mismatch.
        return by_host(state::SERVICE_TYPE_MISMATCH);
    }
    let binding = store.axb_for_call(&call.called, &call.caller, now)?.map(Arc::new);
    let allowance = binding.as_deref().map(|b| b.allowance(&call.caller, &app)).unwrap_or_default();
    let set = scripts.active();
    let script_call = Call {
        caller: call.caller.as_str().into(),
        called: call.called.as_str().into(),
        session_id: call.session_id.as_str().into(),
        now,
        app: app.clone(),
        binding: binding.clone(),
    };
    let (file, function) = AXB_SCRIPT;
    let decision = match scripts.run::<_, Decision>(&set, file, function, script_call) {
        Ok(decision) => match decision.check(&allowance).and_then(|()| approved_tones(store, &app, &decision)) {
            Ok(()) => Some(decision),
            Err(reason) => {
                scripts.report_failure(&set, &set.path_of(file).display().to_string(), &reason);
                None
            }
        },
        // Already reported by the host.
        Err(_) => None,
    };
    let fallback = decision.is_none();
    let mut decision = decision.unwrap_or_else(|| Decision::release(state::SERVICE_EXCEPTION, close_tone(&app)));
    apply_recording_notice(&mut decision, &app, binding.as_deref(), metrics);
    count_skipped_tones(metrics, &app, &cleared, &decision);
    Ok(Routed { decision, app: Some(app), binding, script_version: Some(set.version.to_string()), fallback })
}

/// Warns when a saved app names a tone that is not approved: its calls will go without it.
pub fn warn_unapproved_app_tones(store: &Store, app: &App) {
    for (setting, file_name) in unapproved_app_tones(store, app) {
        AppToneNotApproved { app_key: &app.app_key, setting, file_name }.emit();
    }
}

/// Every tone a script's decision names must be an approved tone of the app: the switch can fetch
/// no other. (A binding's tones were approved when it was made, and approval is never withdrawn;
/// only a store written by a privnum older than the tone registry holds bindings never checked.)
fn approved_tones(store: &Store, app: &App, decision: &Decision) -> Result<(), String> {
    match decision.tones().find(|(_, tone)| !store.tone_approved(&app.app_key, tone)) {
        Some((field, tone)) => {
            Err(format!("{field} names {tone}, which is not an approved tone of app {}", app.app_key))
        }
        None => Ok(()),
    }
}

/// A recorded call plays a notice: the binding's, else the app's (when approved); with neither, it
/// is recorded without one and counted as a compliance warning (CONTRACT §3).
fn apply_recording_notice(decision: &mut Decision, app: &App, binding: Option<&AxbBinding>, metrics: &Metrics) {
    if !decision.record || decision.record_hint_tone.is_some() {
        return;
    }
    if app.record_hint_tone.is_empty() {
        let subscription_id = binding.map_or("", |b| b.subscription_id.as_str());
        CallRecordedWithoutNotice { app_key: &app.app_key, subscription_id }.emit(metrics);
    } else {
        decision.record_hint_tone = Some(app.record_hint_tone.clone());
    }
}

/// The script that names a release's `stateCode` when the switch gives only causes.
const RELEASE_SCRIPT: (&str, &str) = ("release.rhai", "on_release");

/// The `stateCode` of a release the switch reported without one, from `scripts/release.rhai`.
/// If the script fails or names a code the reference does not list, the failure is reported
/// and the call gets `0` when it was answered (it was released after talking) or `8020`
/// (service exception) when it was not.
pub fn state_code_for_release(scripts: &ScriptHost, release: Release) -> state::StateCode {
    let answered = release.answered;
    let set = scripts.active();
    let (file, function) = RELEASE_SCRIPT;
    // A failed run was reported by the host; a code outside the table is reported here.
    if let Ok(code) = scripts.run::<_, i64>(&set, file, function, release) {
        match state::StateCode::try_from(code).ok().filter(|code| state::describe(*code).is_some()) {
            Some(code) => return code,
            None => scripts.report_failure(
                &set,
                &set.path_of(file).display().to_string(),
                &format!("{function} returned {code}, which is not a reference state code"),
            ),
        }
    }
    if answered {
        state::NORMAL
    } else {
        state::SERVICE_EXCEPTION
    }
}
