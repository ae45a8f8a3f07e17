//! The tones a call may play, shared by every mode's routing: the app's own tone settings count
//! only once approved, every tone a decision names must be an approved tone of the app, and a
//! recorded call plays a notice (or is counted as recorded without one).
//!
//! Invariant: every check here is an `ArcSwap` load of the store's serving set; no lock, no IO.

use std::sync::Arc;

use crate::domain::{Action, App, AppToneSetting, Binding, Decision};
use crate::store::Store;
use crate::telemetry::{AppToneNotApproved, AppToneSkipped, CallRecordedWithoutNotice, Metrics};

/// The app's tone settings a call went without, with their tones.
pub(super) type Cleared = Vec<(AppToneSetting, String)>;

/// The app's close-hint tone, played before the host's own releases.
pub(super) fn close_tone(app: &App) -> Option<String> {
    (!app.close_hint_tone.is_empty()).then(|| app.close_hint_tone.clone())
}

/// The app as a call sees it: a tone setting that names a tone not approved (yet) reads as unset,
/// since the switch could not fetch it. Returns the settings so cleared, with their tones.
pub(super) fn playable(store: &Store, mut app: Arc<App>) -> (Arc<App>, Cleared) {
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
    AppToneSetting::ALL
        .into_iter()
        .map(|setting| (setting, setting.of(app)))
        .filter(|(_, name)| !name.is_empty() && !store.tones().approved(&app.app_key, name))
}

/// Counts the calls that went without an app tone because it is not approved.
pub(super) fn count_skipped_tones(
    metrics: &Metrics,
    app: &App,
    cleared: &[(AppToneSetting, String)],
    decision: &Decision,
) {
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

/// Warns when a saved app names a tone that is not approved: its calls will go without it.
pub fn warn_unapproved_app_tones(store: &Store, app: &App) {
    for (setting, file_name) in unapproved_app_tones(store, app) {
        AppToneNotApproved { app_key: &app.app_key, setting, file_name }.emit();
    }
}

/// Every tone a script's decision names must be an approved tone of the app: the switch can fetch
/// no other. (A binding's tones were approved when it was made, and approval is never withdrawn;
/// only a store written by a privnum older than the tone registry holds bindings never checked.)
pub(super) fn approved_tones(store: &Store, app: &App, decision: &Decision) -> Result<(), String> {
    match decision.tones().find(|(_, tone)| !store.tones().approved(&app.app_key, tone)) {
        Some((field, tone)) => {
            Err(format!("{field} names {tone}, which is not an approved tone of app {}", app.app_key))
        }
        None => Ok(()),
    }
}

/// A recorded call plays a notice: the binding's, else the app's (when approved); with neither, it
/// is recorded without one and counted as a compliance warning (README, Tones).
pub(super) fn apply_recording_notice(decision: &mut Decision, app: &App, binding: Option<&Binding>, metrics: &Metrics) {
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
