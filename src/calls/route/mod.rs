//! Deciding a callin: find the X's app and mode, gather what the mode's script needs, run it on
//! the active script version, and enforce the platform's invariants on what it returns.
//!
//! This is the switch's hot path: two or three sled point reads, one script call, no lock, no
//! engine construction, no compilation. The script runs on the script pool (`script::pool`), in
//! the app's turn, and is awaited: a slow one holds a script thread, never an async worker. A
//! script that fails, is stopped by its deadline, or breaks an invariant does not fail the call:
//! it gets the documented fallback, release with 8020 (service exception) after the app's
//! close-hint tone, and the failure is counted per script and location (a strike) and logged
//! once per version and location, then in summaries. So does a run the pool refused (its app's
//! queue full) or that did not answer by its deadline plus a small margin. Naming a tone
//! that is not an approved tone of the app is such a violation. The app's own tone settings count
//! only once their tones are approved: until then the script and the host see them unset.
//!
//! Each mode is one `ModeRoute` in a file of its own (`axb`, `ax`, `axe`, `x`), listed in `ROUTES`:
//! it gathers its lookups, names its script handler and builds the [`Allowance`]. What every mode
//! shares is here (the script run, the invariant check, the fallback) and in `tones` (which
//! tones a call may play). X mode's route also asks the customer's server (`x::ask`, a Block
//! push awaited on the runtime) before its script runs.

mod ax;
mod axb;
mod axe;
mod release;
mod ruleset;
mod tones;
mod x;

use std::sync::Arc;

use super::session::Session;
use crate::domain::{state, Allowance, App, Binding, Decision, Mode, NumberStatus, XReply};
use crate::script::api::Call;
use crate::script::set::ScriptSet;
use crate::script::ScriptHost;
use crate::store::{self, Store};
use crate::telemetry::Metrics;

pub use release::state_code_for_release;
pub use ruleset::load_active as load_active_ruleset;
pub use tones::warn_unapproved_app_tones;
pub use x::Customer;

/// One mode's routing: what its script needs to decide a call and what the platform lets it
/// decide. Implemented once per mode, each in its own file; adding a mode is a new file, its
/// entry in [`ROUTES`], and its script.
pub(crate) trait ModeRoute: Sync {
    /// The mode whose apps this routes.
    fn mode(&self) -> Mode;

    /// A callin to one of the mode's X numbers: the lookups, the script handler, the allowance.
    /// `app` is the app as the call sees it (unapproved tone settings cleared).
    fn callin(&self, store: &Store, call: Call, app: &App, now: i64) -> Result<Prepared, store::Error>;

    /// The digits a caller keyed after a `collect` (`call.digits`), for a mode that collects;
    /// `None` for one that never does.
    fn digits(&self, _store: &Store, _call: Call, _app: &App, _now: i64) -> Option<Result<Prepared, store::Error>> {
        None
    }

    /// Whether the customer's server is asked before the script runs (X mode's Block callin,
    /// `x::ask`), its reply or failure handed to the script.
    fn asks_customer(&self) -> bool {
        false
    }
}

/// Every mode's route.
const ROUTES: [&dyn ModeRoute; 4] = [&axb::AxbRoute, &ax::AxRoute, &axe::AxeRoute, &x::XRoute];

fn route_of(mode: Mode) -> Option<&'static dyn ModeRoute> {
    ROUTES.into_iter().find(|route| route.mode() == mode)
}

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
    /// The app's rule-set version whose answer the call took (`on_x_callin`, `on_x_fallback`,
    /// `on_decision`), if one did.
    pub ruleset_version: Option<String>,
    /// The script failed or broke an invariant and the fallback was used.
    pub fallback: bool,
    /// The X's area code (the CDR's `areaCode`), when the X is one of privnum's.
    pub area_code: Option<String>,
}

impl Routed {
    /// A decision the host made without a script (no binding, no user data).
    pub(crate) fn by_host(decision: Decision, app: Option<Arc<App>>) -> Self {
        Routed {
            decision,
            app,
            binding: None,
            user_data: None,
            script_version: None,
            ruleset_version: None,
            fallback: false,
            area_code: None,
        }
    }
}

/// What a mode's route hands to the script runner.
pub(crate) struct Prepared {
    /// The script file and handler that decide.
    pub(crate) script: (&'static str, &'static str),
    pub(crate) call: Call,
    /// What the decision may do: `Decision::check` enforces it.
    pub(crate) allowance: Allowance,
    /// The `userData` this call's events and CDR carry.
    pub(crate) user_data: Option<String>,
    /// The rule-set version that answered for the customer's server (X mode).
    pub(crate) ruleset_version: Option<String>,
}

/// Decides a callin. `now` is privnum's clock: whether a binding is still active is privnum's
/// judgement, not the switch's (`call.time` is only recorded).
pub async fn decide_callin(
    store: &Store,
    scripts: &Arc<ScriptHost>,
    metrics: &Metrics,
    customer: Customer<'_>,
    call: &CallIn,
    now: i64,
) -> Result<Routed, store::Error> {
    let number = store.apps().number(&call.called)?;
    let app = match &number {
        Some(number) => store.apps().get(&number.app_key)?,
        None => None,
    };
    let (Some(number), Some(app)) = (number, app) else {
        return Ok(Routed::by_host(Decision::release(state::APP_NOT_FOUND, None), None));
    };
    let (app, cleared) = tones::playable(store, app);
    let area_code = Some(number.area_code.clone());
    let by_host = |code| {
        let decision = Decision::release(code, tones::close_tone(&app));
        tones::count_skipped_tones(metrics, &app, &cleared, &decision);
        Ok(Routed { area_code: area_code.clone(), ..Routed::by_host(decision, Some(app.clone())) })
    };
    if matches!(number.status, NumberStatus::Paused | NumberStatus::Unavailable) {
        return by_host(state::X_UNAVAILABLE);
    }
    let script_call = Call::new(&call.caller, &call.called, &call.session_id, now, app.clone());
    let Some(route) = route_of(app.mode) else { return by_host(state::SERVICE_TYPE_MISMATCH) };
    let mut prepared = route.callin(store, script_call, &app, now)?;
    if route.asks_customer() {
        x::ask((store, scripts), customer, metrics, &app, call, &mut prepared, now).await;
    }
    Ok(Routed { area_code, ..run(store, scripts, metrics, (app, &cleared), prepared).await })
}

/// Decides a call after the caller entered `digits` (the switch's collect; AXE). The session
/// must be collecting; the caller checks that.
pub async fn decide_digits(
    store: &Store,
    scripts: &Arc<ScriptHost>,
    metrics: &Metrics,
    session: &Session,
    digits: &str,
    now: i64,
) -> Result<Routed, store::Error> {
    let app = match &session.app_key {
        Some(app_key) => store.apps().get(app_key)?,
        None => None,
    };
    // The app was removed while its caller keyed digits.
    let Some(app) = app else {
        return Ok(Routed::by_host(Decision::release(state::SERVICE_EXCEPTION, None), None));
    };
    let (app, cleared) = tones::playable(store, app);
    let mut call = Call::new(&session.caller, &session.x_number, &session.session_id, now, app.clone());
    call.digits = digits.into();
    match route_of(app.mode).and_then(|route| route.digits(store, call, &app, now)) {
        Some(prepared) => Ok(run(store, scripts, metrics, (app, &cleared), prepared?).await),
        // Only a mode that collects opens a collecting session; one that changed mode meanwhile
        // gets the service exception.
        None => {
            let decision = Decision::release(state::SERVICE_EXCEPTION, tones::close_tone(&app));
            Ok(Routed::by_host(decision, Some(app)))
        }
    }
}

/// Runs a mode's handler on the active version and enforces the invariants (the tones named
/// included); a failure or a violation gets the fallback (8020 after the close tone). `app` is the
/// app as the call sees it, with the tone settings `playable` cleared.
async fn run(
    store: &Store,
    scripts: &Arc<ScriptHost>,
    metrics: &Metrics,
    (app, cleared): (Arc<App>, &tones::Cleared),
    prepared: Prepared,
) -> Routed {
    let Prepared { script, call, allowance, mut user_data, mut ruleset_version } = prepared;
    let binding = call.binding.clone();
    let (caller, x_number, session_id, now) =
        (call.caller.clone(), call.called.clone(), call.session_id.clone(), call.now);
    let set: Arc<ScriptSet> = scripts.active();
    let key = call_key(scripts, &app.app_key, script, &call);
    let decision = match scripts.run_pooled::<_, Decision>(&app.app_key, key, set.clone(), script, call).await {
        Ok(decision) => match decision.check(&allowance).and_then(|()| tones::approved_tones(store, &app, &decision)) {
            Ok(()) => Some(decision),
            Err(reason) => {
                scripts.report_violation(&set, script, &reason);
                None
            }
        },
        // Already counted and reported by the host.
        Err(_) => None,
    };
    let fallback = decision.is_none();
    let mut decision = decision.unwrap_or_else(|| Decision::release(state::SERVICE_EXCEPTION, tones::close_tone(&app)));
    tones::apply_recording_notice(&mut decision, &app, binding.as_ref(), metrics);
    if !fallback && app.mode != Mode::X {
        let decided = ruleset::Decided {
            app: &app,
            caller: &caller,
            x_number: &x_number,
            session_id: &session_id,
            subscription_id: binding.as_ref().map(Binding::subscription_id),
            decision: &decision,
            user_data: user_data.as_deref(),
            allowance: &allowance,
        };
        if let Some((tightened, version)) = ruleset::tightened(store, scripts, decided, now).await {
            if let Some(tightened) = tightened {
                decision = tightened.decision;
                user_data = tightened.user_data;
            }
            ruleset_version = Some(version);
        }
    }
    tones::count_skipped_tones(metrics, &app, cleared, &decision);
    let script_version = Some(set.version.to_string());
    Routed { decision, app: Some(app), binding, user_data, script_version, ruleset_version, fallback, area_code: None }
}

/// What names a call's input to the pool's suspect list: the app, the handler, and what varies
/// per call that the script reads (caller, X, digits; the binding follows from them; in X mode,
/// the reply's callee or operation, or the failure's kind).
fn call_key(scripts: &ScriptHost, app_key: &str, (file, function): (&str, &str), call: &Call) -> u64 {
    let asked = match (call.reply.as_deref(), call.failure.as_deref()) {
        (Some(XReply::Connect(connect)), _) => connect.callee.as_str(),
        (Some(reply), _) => reply.operation(),
        (None, Some(failure)) => failure.kind(),
        (None, None) => "",
    };
    scripts.input_key(&[app_key, file, function, &call.caller, &call.called, &call.digits, asked])
}
