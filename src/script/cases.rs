//! Script test cases: one JSON file per case in `<script>.cases/` beside the script
//! (`scripts/modes/axb.cases/a-calls-x.json` tests `scripts/modes/axb.rhai`). Each gives the
//! input — the call, optionally the app's settings and the binding — and the expected decision.
//! `privnum test` runs them, and a reload runs them before a new version may go live.
//!
//! ```json
//! {"description": "A calls X: B is called",
//!  "call": {"caller": "+8613800000001", "called": "+8617000000001"},
//!  "binding": {"caller_num": "+8613800000001", "callee_num": "+8613900000002"},
//!  "expect": {"action": "connect", "callee": "+8613900000002"}}
//! ```
//!
//! `expect` lists only what matters: each field it names must equal the decision's (absent
//! optional fields compare as `null`, `record` as `false`, `maxDuration` as `0`).
//!
//! `binding` is read in the vocabulary of the script's mode (`modes/axb.rhai`, `modes/ax.rhai`,
//! `modes/axe.rhai`). AX cases may give `temporary_callee`, AXE cases `callback` and
//! `x_bindings` (default 1), and `on_digits` cases `call.digits`. X-mode cases (`modes/x.rhai`)
//! give the customer's `reply` as its server would send it, or a `failure` kind.
//!
//! Each mode's case binding is one type implementing `CaseBinding`, listed once in
//! `MODE_SCRIPTS` with the script that reads it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::api::{Call, Release};
use super::run::{call_handler, RunError};
use super::set::ScriptSet;
use super::Limits;
use crate::config::AppConfig;
use crate::domain::ax::AxBinding;
use crate::domain::axb::{AxbBinding, CallDirection};
use crate::domain::axe::{AxeBinding, TimeUnit};
use crate::domain::settings::PreVoice;
use crate::domain::{Binding, Mode, XFailure, XReply};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    description: String,
    #[serde(default = "default_handler")]
    handler: String,
    /// The input of call handlers (`on_callin`).
    call: Option<CaseCall>,
    /// The input of `on_release`.
    release: Option<Release>,
    #[serde(default)]
    app: CaseApp,
    /// The binding, in the names the script's mode reads.
    binding: Option<Value>,
    /// AX: the binding's temporary callee, valid now.
    temporary_callee: Option<String>,
    /// AXE: the party of A's valid callback record.
    callback: Option<String>,
    /// AXE: how many bindings X holds.
    #[serde(default = "one")]
    x_bindings: i64,
    /// X mode: the customer's reply to the Block callin, as its server sends it (read by the
    /// host's own parser: an invalid one reaches the script as a failure of kind `invalid`).
    reply: Option<Value>,
    /// X mode: no usable reply, of this kind (`timeout`, `unreachable`, `status`, `invalid`,
    /// `tone`, `failing_fast`).
    failure: Option<String>,
    expect: Map<String, Value>,
}

fn one() -> i64 {
    1
}

fn default_handler() -> String {
    "on_callin".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseCall {
    caller: String,
    called: String,
    #[serde(default = "case_session")]
    session_id: String,
    #[serde(default)]
    now: i64,
    /// `on_digits`: what the caller keyed.
    #[serde(default)]
    digits: String,
}

fn case_session() -> String {
    "case-session".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CaseApp {
    recording: bool,
    record_hint_tone: String,
    close_hint_tone: String,
    extension_digits: Option<u8>,
    extension_prompt: String,
}

/// A mode's binding as its cases write it: the names its script reads.
trait CaseBinding: DeserializeOwned {
    /// The binding on `x_number` (the case call's X), as the call would find it.
    fn into_binding(self, x_number: &str) -> Binding;
}

/// Each mode's script, and how its cases write a binding. A script not listed (`release.rhai`)
/// reads AXB's.
const MODE_SCRIPTS: [(&str, Mode, ReadBinding); 4] = [
    ("modes/axb.rhai", Mode::Axb, read_binding::<AxbCaseBinding>),
    ("modes/ax.rhai", Mode::Ax, read_binding::<AxCaseBinding>),
    ("modes/axe.rhai", Mode::Axe, read_binding::<AxeCaseBinding>),
    ("modes/x.rhai", Mode::X, no_binding),
];

/// Reads a case's binding; an error says why it is not one of the mode's.
type ReadBinding = fn(Value, &str) -> Result<Binding, String>;

fn read_binding<B: CaseBinding>(binding: Value, x_number: &str) -> Result<Binding, String> {
    Ok(serde_json::from_value::<B>(binding).map_err(|err| err.to_string())?.into_binding(x_number))
}

/// X mode stores no binding: a case that gives one tests nothing a call can meet.
fn no_binding(_: Value, _: &str) -> Result<Binding, String> {
    Err("X mode has no bindings: give the customer's \"reply\" or a \"failure\" instead".into())
}

/// The subscription id a case's binding has when the case gives none.
fn case_subscription(id: Option<String>) -> String {
    id.unwrap_or_else(|| "case-subscription".to_owned())
}

/// An AXB binding as a case writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AxbCaseBinding {
    caller_num: String,
    callee_num: String,
    #[serde(default)]
    call_direction: i64,
    #[serde(default)]
    record: bool,
    record_hint_tone: Option<String>,
    #[serde(default)]
    max_duration: i64,
    last_min_voice: Option<String>,
    caller_hint_tone: Option<String>,
    callee_hint_tone: Option<String>,
    user_data: Option<String>,
    subscription_id: Option<String>,
    expires_at: Option<i64>,
}

impl CaseBinding for AxbCaseBinding {
    fn into_binding(self, x_number: &str) -> Binding {
        Binding::Axb(Arc::new(AxbBinding {
            subscription_id: case_subscription(self.subscription_id),
            app_key: "case-app".to_owned(),
            x_number: x_number.to_owned(),
            caller_num: self.caller_num,
            callee_num: self.callee_num,
            call_direction: CallDirection::from_code(self.call_direction).unwrap_or_default(),
            duration_secs: 0,
            created_at: 0,
            clock_start: 0,
            expires_at: self.expires_at,
            record: self.record,
            record_hint_tone: self.record_hint_tone,
            max_duration_min: self.max_duration,
            last_min_voice: self.last_min_voice,
            private_sms: true,
            pre_voice: PreVoice { caller_hint_tone: self.caller_hint_tone, callee_hint_tone: self.callee_hint_tone },
            user_data: self.user_data,
        }))
    }
}

/// An AX binding as a case writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AxCaseBinding {
    orig_num: String,
    #[serde(default)]
    record: bool,
    record_hint_tone: Option<String>,
    #[serde(default)]
    max_duration: i64,
    last_min_voice: Option<String>,
    caller_hint_tone: Option<String>,
    callee_hint_tone: Option<String>,
    user_data: Option<String>,
    subscription_id: Option<String>,
}

impl CaseBinding for AxCaseBinding {
    fn into_binding(self, x_number: &str) -> Binding {
        Binding::Ax(Arc::new(AxBinding {
            subscription_id: case_subscription(self.subscription_id),
            app_key: "case-app".to_owned(),
            x_number: x_number.to_owned(),
            orig_num: self.orig_num,
            created_at: 0,
            record: self.record,
            record_hint_tone: self.record_hint_tone,
            private_sms: true,
            pre_voice: PreVoice { caller_hint_tone: self.caller_hint_tone, callee_hint_tone: self.callee_hint_tone },
            max_duration_min: self.max_duration,
            last_min_voice: self.last_min_voice,
            user_data: self.user_data,
            temporary_callee: None,
        }))
    }
}

/// An AXE binding as a case writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AxeCaseBinding {
    bind_num: String,
    #[serde(default = "first_extension")]
    extend_num: String,
    #[serde(default)]
    record: bool,
    record_hint_tone: Option<String>,
    callback_num: Option<String>,
    callback_tone: Option<String>,
    user_data: Option<String>,
    subscription_id: Option<String>,
    expires_at: Option<i64>,
}

fn first_extension() -> String {
    "0001".to_owned()
}

impl CaseBinding for AxeCaseBinding {
    fn into_binding(self, x_number: &str) -> Binding {
        Binding::Axe(Arc::new(AxeBinding {
            subscription_id: case_subscription(self.subscription_id),
            app_key: "case-app".to_owned(),
            x_number: x_number.to_owned(),
            bind_num: self.bind_num,
            extend_num: self.extend_num,
            record: self.record,
            record_hint_tone: self.record_hint_tone,
            callback_num: self.callback_num,
            callback_tone: self.callback_tone,
            time_unit: TimeUnit::Hours,
            bind_expired_time: 0,
            callback_expired_time: 0,
            created_at: 0,
            clock_start: 0,
            expires_at: self.expires_at,
            user_data: self.user_data,
            seq: 0,
        }))
    }
}

/// The mode whose vocabulary a script's cases use, and how they write a binding.
fn mode_of(script: &str) -> (Mode, ReadBinding) {
    let (_, mode, read) = MODE_SCRIPTS.iter().find(|(path, _, _)| *path == script).unwrap_or(&MODE_SCRIPTS[0]);
    (*mode, *read)
}

/// A case's binding as the script's mode reads it.
fn case_binding(script: &str, binding: Value, x_number: &str) -> Result<Binding, String> {
    let (mode, read) = mode_of(script);
    read(binding, x_number).map_err(|err| format!("binding is not a {mode} binding: {err}"))
}

/// One case's outcome, for `privnum test`.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub path: PathBuf,
    pub description: String,
    /// `None` when the case passed.
    pub failure: Option<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failures: Vec<String>,
    pub results: Vec<CaseResult>,
}

/// Runs every case of every script in the set.
pub fn run_all(engine: &Engine, set: &ScriptSet, limits: &Limits) -> Report {
    let mut report = Report::default();
    for script in set.files() {
        let cases_dir = set.path_of(&format!("{}.cases", script.trim_end_matches(".rhai")));
        let Ok(entries) = std::fs::read_dir(&cases_dir) else { continue };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        paths.sort();
        for path in paths {
            let (description, outcome) = run_case(engine, set, script, &path, limits);
            match &outcome {
                Ok(()) => report.passed += 1,
                Err(message) => report.failures.push(message.clone()),
            }
            report.results.push(CaseResult { path, description, failure: outcome.err() });
        }
    }
    report
}

fn run_case(
    engine: &Engine,
    set: &ScriptSet,
    script: &str,
    path: &Path,
    limits: &Limits,
) -> (String, Result<(), String>) {
    let case: Case = match std::fs::read_to_string(path)
        .map_err(|err| err.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|err| err.to_string()))
    {
        Ok(case) => case,
        Err(err) => return (String::new(), Err(format!("{}: not a valid case: {err}", path.display()))),
    };
    let description = case.description.clone();
    let outcome = match (case.call, case.release) {
        (Some(call), None) => {
            let parts = CaseParts {
                app: case.app,
                binding: case.binding,
                temporary_callee: case.temporary_callee,
                callback: case.callback,
                x_bindings: case.x_bindings,
                reply: case.reply,
                failure: case.failure,
            };
            run_call_case(engine, set, script, &case.handler, call, parts, limits)
        }
        (None, Some(release)) => call_handler::<_, i64>(engine, set, script, &case.handler, release, limits)
            .map(|code| Map::from_iter([("stateCode".to_owned(), Value::from(code))])),
        _ => Err(RunError::new(path.display().to_string(), "give exactly one of \"call\" and \"release\"".into())),
    };
    let outcome = outcome.map_err(|err| format!("{err} (in case {})", path.display())).and_then(|actual| {
        let wrong: Vec<String> = case
            .expect
            .iter()
            .filter(|(field, want)| actual.get(*field).unwrap_or(&Value::Null) != *want)
            .map(|(field, want)| format!("{field}: expected {want}, got {}", actual.get(field).unwrap_or(&Value::Null)))
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {}", path.display(), wrong.join("; ")))
        }
    });
    (description, outcome)
}

/// The parts of a call case besides the call itself.
struct CaseParts {
    app: CaseApp,
    binding: Option<Value>,
    temporary_callee: Option<String>,
    callback: Option<String>,
    x_bindings: i64,
    reply: Option<Value>,
    failure: Option<String>,
}

/// What X mode's script reads of the customer: the reply, or why there was none.
type Asked = (Option<Arc<XReply>>, Option<Arc<XFailure>>);

/// X mode's reply or failure as a case gives it.
fn case_reply(reply: Option<Value>, failure: Option<String>, x_number: &str) -> Result<Asked, String> {
    let failure = match failure.as_deref() {
        None => None,
        Some("timeout") => Some(XFailure::Timeout { ms: 3000 }),
        Some("unreachable") => Some(XFailure::Unreachable("connection refused (in a case)".into())),
        Some("status") => Some(XFailure::Status(500)),
        Some("invalid") => Some(XFailure::Invalid(crate::domain::Invalid::new("reply", "is invalid (in a case)"))),
        Some("tone") => Some(XFailure::Tone { field: "connectInfo.waitVoice", tone: "unapproved.wav".into() }),
        Some("failing_fast") => Some(XFailure::FailingFast),
        Some(other) => {
            return Err(format!(
                "failure {other:?} is not a kind: timeout, unreachable, status, invalid, tone or failing_fast"
            ))
        }
    };
    match (reply, failure) {
        (Some(_), Some(_)) => Err("give at most one of \"reply\" and \"failure\"".into()),
        (Some(reply), None) => match XReply::parse(reply.to_string().as_bytes(), x_number) {
            Ok(reply) => Ok((Some(Arc::new(reply)), None)),
            Err(invalid) => Ok((None, Some(Arc::new(XFailure::Invalid(invalid))))),
        },
        (None, failure) => Ok((None, failure.map(Arc::new))),
    }
}

/// Runs a call handler on a case's call, app and binding; the decision as JSON.
fn run_call_case(
    engine: &Engine,
    set: &ScriptSet,
    script: &str,
    handler: &str,
    call: CaseCall,
    parts: CaseParts,
    limits: &Limits,
) -> Result<Map<String, Value>, RunError> {
    let (mode, _) = mode_of(script);
    let mut app = AppConfig::new("case-app", "", mode);
    app.recording = parts.app.recording;
    app.record_hint_tone = parts.app.record_hint_tone;
    app.close_hint_tone = parts.app.close_hint_tone;
    if let Some(digits) = parts.app.extension_digits {
        app.extension_digits = digits;
    }
    app.extension_prompt = parts.app.extension_prompt;
    let (app, _) = app.into_parts();
    let binding = match parts.binding {
        Some(binding) => Some(
            case_binding(script, binding, &call.called)
                .map_err(|message| RunError::new(set.path_of(script).display().to_string(), message))?,
        ),
        None => None,
    };
    let mut script_call = Call::new(&call.caller, &call.called, &call.session_id, call.now, Arc::new(app));
    script_call.binding = binding;
    script_call.digits = call.digits.into();
    script_call.temporary_callee = parts.temporary_callee.unwrap_or_default().into();
    script_call.callback = parts.callback.unwrap_or_default().into();
    script_call.x_bindings = parts.x_bindings;
    (script_call.reply, script_call.failure) = case_reply(parts.reply, parts.failure, &call.called)
        .map_err(|message| RunError::new(set.path_of(script).display().to_string(), message))?;
    call_handler::<_, crate::domain::Decision>(engine, set, script, handler, script_call, limits).map(|d| full_json(&d))
}

/// The decision as JSON with defaults filled in, so `expect` can name a field that is at its default.
fn full_json(decision: &crate::domain::Decision) -> Map<String, Value> {
    let mut json = match serde_json::to_value(decision) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    json.entry("record").or_insert(Value::Bool(false));
    json.entry("maxDuration").or_insert(Value::from(0));
    json
}
