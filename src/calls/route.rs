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

use super::session::Session;
use crate::domain::{state, Action, Allowance, App, AppToneSetting, Binding, Decision, Mode, NumberStatus};
use crate::script::api::{Call, Release};
use crate::script::ScriptHost;
use crate::store::{self, Store};
use crate::telemetry::{AppToneNotApproved, AppToneSkipped, CallRecordedWithoutNotice, Metrics};

/// The script and handler that decide each mode's callin, and AXE's digits.
const AXB_SCRIPT: (&str, &str) = ("modes/axb.rhai", "on_callin");
const AX_SCRIPT: (&str, &str) = ("modes/ax.rhai", "on_callin");
const AXE_SCRIPT: (&str, &str) = ("modes/axe.rhai", "on_callin");
const AXE_DIGITS_SCRIPT: (&str, &str) = ("modes/axe.rhai", "on_digits");

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
    pub binding: Option<Binding>,
    /// The `userData` this call's events and CDR carry.
    pub user_data: Option<String>,
    /// The script version that decided, or `None` when the host decided without a script.
    pub script_version: Option<String>,
    /// The script failed or broke an invariant and the fallback was used.
    pub fallback: bool,
}

impl Routed {
    fn by_host(decision: Decision, app: Option<Arc<App>>) -> Self {
        Routed { decision, app, binding: None, user_data: None, script_version: None, fallback: false }
    }
}

fn close_tone(app: &App) -> Option<String> {
    (!app.close_hint_tone.is_empty()).then(|| app.close_hint_tone.clone())
}

/// The app as a call sees it: a tone setting that names a tone not approved (yet) reads as unset,
/// since the switch could not fetch it. Returns the settings so cleared, with their tones.
fn playable(store: &Store, mut app: Arc<App>) -> (Arc<App>, Vec<(AppToneSetting, String)>) {
    let unapproved: Vec<AppToneSetting> = unapproved_app_tones(store, &app).map(|(setting, _)| setting).collect();
    if unapproved.is_empty() {
        return (app, Vec::new());
    }
    let owned = Arc::make_mut(&mut app);
    let cleared = unapproved.into_iter().map(|setting| (setting, std::mem::take(setting.of_mut(owned)))).collect();
    (app, cleared)
}

/// The app's tone settings that name a tone not approved (yet), with the tone.
fn unapproved_app_tones<'a>(store: &'a Store, app: &'a App) -> impl Iterator<Item = (AppToneSetting, &'a str)> {
    [AppToneSetting::RecordHint, AppToneSetting::CloseHint, AppToneSetting::ExtensionPrompt]
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
            AppToneSetting::ExtensionPrompt => decision.action == Action::Collect && decision.prompt.is_none(),
        };
        if wanted {
            AppToneSkipped { app_key: &app.app_key, setting: *setting, file_name }.emit(metrics);
        }
    }
}

/// What a mode's router hands to the script runner.
struct Prepared {
    script: (&'static str, &'static str),
    call: Call,
    allowance: Allowance,
    user_data: Option<String>,
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
    let by_host = |code| {
        let decision = Decision::release(code, close_tone(&app));
        count_skipped_tones(metrics, &app, &cleared, &decision);
        Ok(Routed::by_host(decision, Some(app.clone())))
    };
    if matches!(number.status, NumberStatus::Paused | NumberStatus::Unavailable) {
        return by_host(state::X_UNAVAILABLE);
    }
    let script_call = Call::new(&call.caller, &call.called, &call.session_id, now, app.clone());
    let prepared = match app.mode {
        Mode::Axb => prepare_axb(store, script_call, &app, now)?,
        Mode::Ax => prepare_ax(store, script_call, &app, now)?,
        Mode::Axe => prepare_axe(store, script_call, &app, now)?,
        // X-mode routing is not built yet; its calls are refused as a mode mismatch.
        Mode::X => return by_host(state::SERVICE_TYPE_MISMATCH),
    };
    Ok(run(store, scripts, metrics, (app, &cleared), prepared))
}

/// AXB: the active binding that has the caller as A or B on X.
fn prepare_axb(store: &Store, mut call: Call, app: &App, now: i64) -> Result<Prepared, store::Error> {
    let binding = store.axb_for_call(&call.called, &call.caller, now)?.map(Arc::new);
    let allowance = binding.as_deref().map(|b| b.allowance(&call.caller, app)).unwrap_or_default();
    let user_data = binding.as_ref().and_then(|b| b.user_data.clone());
    call.binding = binding.map(Binding::Axb);
    Ok(Prepared { script: AXB_SCRIPT, call, allowance, user_data })
}

/// AX: the binding on X (of this app) and, for A, its valid temporary callee.
fn prepare_ax(store: &Store, mut call: Call, app: &App, now: i64) -> Result<Prepared, store::Error> {
    let binding = store.ax_for_call(&call.called)?.filter(|b| b.app_key == app.app_key).map(Arc::new);
    let allowance = binding.as_deref().map(|b| b.allowance(&call.caller, app, now)).unwrap_or_default();
    let user_data = binding.as_deref().and_then(|b| b.user_data_for(&call.caller, now));
    if let Some(callee) = binding.as_deref().and_then(|b| b.temporary_callee_at(now)) {
        call.temporary_callee = callee.number.as_str().into();
    }
    call.binding = binding.map(Binding::Ax);
    Ok(Prepared { script: AX_SCRIPT, call, allowance, user_data })
}

/// AXE callin: A's own binding on X and callback record; for anyone else, an extension to collect.
fn prepare_axe(store: &Store, mut call: Call, app: &App, now: i64) -> Result<Prepared, store::Error> {
    call.x_bindings = i64::from(store.axb_pairs_on(&call.called)?);
    let binding = store.axe_for_a(&call.called, &call.caller, now)?.map(Arc::new);
    let (allowance, user_data) = match binding.as_deref() {
        Some(binding) => {
            let callback = store.axe_callback(binding, now)?;
            let party = callback.map(|callback| callback.party);
            if let Some(party) = &party {
                call.callback = party.as_str().into();
            }
            (binding.allowance_for_a(party.as_deref(), app), binding.user_data.clone())
        }
        None => (Allowance { collect_digits: Some(app.extension_digits), ..Allowance::default() }, None),
    };
    call.binding = binding.map(Binding::Axe);
    Ok(Prepared { script: AXE_SCRIPT, call, allowance, user_data })
}

/// Decides an AXE call after the caller entered `digits` (the switch's collect). The session
/// must be collecting; the caller checks that.
pub fn decide_digits(
    store: &Store,
    scripts: &ScriptHost,
    metrics: &Metrics,
    session: &Session,
    digits: &str,
    now: i64,
) -> Result<Routed, store::Error> {
    let app = match &session.app_key {
        Some(app_key) => store.app(app_key)?,
        None => None,
    };
    // The app was removed while its caller keyed digits.
    let Some(app) = app else {
        return Ok(Routed::by_host(Decision::release(state::SERVICE_EXCEPTION, None), None));
    };
    let (app, cleared) = playable(store, app);
    let mut call = Call::new(&session.caller, &session.x_number, &session.session_id, now, app.clone());
    call.digits = digits.into();
    call.x_bindings = i64::from(store.axb_pairs_on(&session.x_number)?);
    let binding = match digits {
        "" => None,
        digits => store.axe_for_extension(&session.x_number, digits, now)?.map(Arc::new),
    };
    let allowance = binding.as_deref().map(|b| b.allowance_for_extension(&app)).unwrap_or_default();
    let user_data = binding.as_deref().and_then(|b| b.user_data.clone());
    call.binding = binding.map(Binding::Axe);
    let prepared = Prepared { script: AXE_DIGITS_SCRIPT, call, allowance, user_data };
    Ok(run(store, scripts, metrics, (app, &cleared), prepared))
}

/// Runs a mode's handler on the active version and enforces the invariants (the tones named
/// included); a failure or a violation gets the fallback (8020 after the close tone). `app` is the
/// app as the call sees it, with the tone settings `playable` cleared.
fn run(
    store: &Store,
    scripts: &ScriptHost,
    metrics: &Metrics,
    (app, cleared): (Arc<App>, &[(AppToneSetting, String)]),
    prepared: Prepared,
) -> Routed {
    let Prepared { script: (file, function), call, allowance, user_data } = prepared;
    let binding = call.binding.clone();
    let set = scripts.active();
    let decision = match scripts.run::<_, Decision>(&set, file, function, call) {
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
    apply_recording_notice(&mut decision, &app, binding.as_ref(), metrics);
    count_skipped_tones(metrics, &app, cleared, &decision);
    Routed { decision, app: Some(app), binding, user_data, script_version: Some(set.version.to_string()), fallback }
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
fn apply_recording_notice(decision: &mut Decision, app: &App, binding: Option<&Binding>, metrics: &Metrics) {
    if !decision.record || decision.record_hint_tone.is_some() {
        return;
    }
    if app.record_hint_tone.is_empty() {
        let subscription_id = binding.map_or("", Binding::subscription_id);
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
