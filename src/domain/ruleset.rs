//! Customer rule sets (README, "Customer rule sets"; `policy-docs/rulesets.md`): an app's own
//! Rhai rules, submitted with its keys, checked before they are kept, reviewed per the app's
//! `ruleset_review`, and run by privnum on the app's calls. This module holds what needs no
//! engine: the submission and its cases as a request carries them, the versions and their
//! states, the audit log's entries, and the rule that `on_decision` may only tighten.
//!
//! Compiling, running the cases and the invariant probe are the script host's
//! (`script::ruleset`); keeping versions is the store's (`store::Rulesets`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::decision::{Action, Decision};
use super::fields::{Fields, Invalid};
use super::settings::MAX_CALL_MINUTES;
use super::state::{self, StateCode};
use super::tone::check_tone_name;

/// A rule set's source, at most (the whole request is at most 64 KiB, cases included).
pub const MAX_SOURCE_BYTES: usize = 32 * 1024;
/// Cases one submission may carry.
pub const MAX_CASES: usize = 200;
/// A note's length, in characters.
pub const MAX_NOTE_CHARS: usize = 256;
/// Data items one case may give `data_get`.
pub const MAX_CASE_DATA: usize = 64;

/// The handlers a rule set may define, with their parameter counts. It needs at least one.
pub const HANDLERS: [(Handler, usize); 3] = [(Handler::XCallin, 1), (Handler::XFallback, 1), (Handler::Decision, 2)];

/// A handler privnum calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Handler {
    /// X mode, before the Block `callin` push: a Block reply, or `()` to ask the customer.
    #[serde(rename = "on_x_callin")]
    XCallin,
    /// X mode, when the Block push got no usable reply: a Block reply, or `()` for 8020.
    #[serde(rename = "on_x_fallback")]
    XFallback,
    /// AXB, AX and AXE, after the mode's script: the decision, tightened or as it was.
    #[serde(rename = "on_decision")]
    Decision,
}

impl Handler {
    pub fn name(self) -> &'static str {
        match self {
            Handler::XCallin => "on_x_callin",
            Handler::XFallback => "on_x_fallback",
            Handler::Decision => "on_decision",
        }
    }

    pub fn parse(name: &str) -> Option<Handler> {
        HANDLERS.iter().map(|(handler, _)| *handler).find(|handler| handler.name() == name)
    }

    /// Whether it runs for X-mode calls (else for AXB, AX and AXE calls).
    pub fn x_mode(self) -> bool {
        !matches!(self, Handler::Decision)
    }
}

/// How an app's submitted versions become active (`ruleset_review`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Review {
    /// A checked version waits for ops' review (`pending`).
    #[default]
    Ops,
    /// A checked version is active at once.
    Auto,
}

/// A version's review state. Which version is active is the app's, not the version's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewState {
    /// Waits for ops.
    Pending,
    /// May be made active (approved by ops, or checked under `ruleset_review = "auto"`).
    Approved,
    /// Refused by ops, with their reason; never active.
    Rejected,
}

impl ReviewState {
    pub fn name(self) -> &'static str {
        match self {
            ReviewState::Pending => "pending",
            ReviewState::Approved => "approved",
            ReviewState::Rejected => "rejected",
        }
    }
}

/// One kept version of an app's rule set: everything submitted, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesetVersion {
    pub app_key: String,
    /// `v1`, `v2`, …: per app, in submission order.
    pub version: String,
    pub source: String,
    /// The cases as submitted (they are run again when the version is loaded).
    #[serde(default)]
    pub cases: Vec<Value>,
    /// Of the source, hex.
    pub sha256: String,
    #[serde(default)]
    pub note: String,
    /// Unix seconds.
    pub submit_time: i64,
    /// Who signed the submission: the app's key.
    pub submitter: String,
    pub state: ReviewState,
    /// Why ops rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_reason: Option<String>,
    /// Unix seconds of the review (or of the submission, under `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_time: Option<i64>,
    /// The handlers it defines.
    pub handlers: Vec<Handler>,
    /// What its check proved: the cases it passed and the probe's calls.
    pub cases_passed: usize,
    pub probe_calls: usize,
}

/// What the audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A version passed its check and was kept.
    Submitted,
    /// A submission failed its check; nothing was kept but this entry.
    Refused,
    Approved,
    Rejected,
    Activated,
    /// An earlier version than the active one was made active.
    RolledBack,
    TurnedOff,
}

/// One entry of an app's rule-set audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unix seconds.
    pub time: i64,
    pub app_key: String,
    pub action: AuditAction,
    /// The version concerned (`""` for a refused submission or a turn-off with none active).
    pub version: String,
    /// `app:<key>` for the customer's own keys, `ops` for the admin API.
    pub actor: String,
    /// The check's result, the reviewer's reason, the version replaced.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The most an audit entry's `detail` keeps, in bytes: a refusal names its probe call, whose
/// event can be long, and a customer may submit as often as it likes.
pub const MAX_AUDIT_DETAIL_BYTES: usize = 2048;

/// `detail` as an audit entry keeps it: cut at [`MAX_AUDIT_DETAIL_BYTES`] (on a character
/// boundary), with `…` where it was cut.
pub fn audit_detail(detail: &str) -> String {
    if detail.len() <= MAX_AUDIT_DETAIL_BYTES {
        return detail.to_owned();
    }
    let cut = (0..=MAX_AUDIT_DETAIL_BYTES).rev().find(|at| detail.is_char_boundary(*at)).unwrap_or(0);
    format!("{}…", &detail[..cut])
}

/// A submission as `POST /rest/privnum/ruleset/v1.0` carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub source: String,
    pub cases: Vec<Case>,
    /// The cases as submitted, kept with the version.
    pub raw_cases: Vec<Value>,
    pub note: String,
}

/// One of the customer's cases: a handler, its input, the data `data_get` sees, and what it must
/// return (`policy-docs/rulesets.md`, "Cases").
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// `description`, or `cases[i]`.
    pub name: String,
    pub handler: Handler,
    /// The event the handler gets (for `on_decision`, also its second parameter, `decision`).
    pub event: Map<String, Value>,
    pub decision: Option<Map<String, Value>>,
    /// Key → value; keys not listed read as `()`.
    pub data: Vec<(String, String)>,
    /// `(a, b, count)`: what `answered_calls(a, b, since)` returns for the pair (either order),
    /// whatever `since`; pairs not listed count 0.
    pub answered: Vec<(String, String, i64)>,
    /// `None`: the handler returns `()`. Otherwise every field listed must be in the result
    /// with this value (`null`: absent).
    pub expect: Option<Map<String, Value>>,
}

/// Reads a submission: `source` (1 byte to 32 KiB), `cases` (at most 200), `note` (at most 256
/// characters). Errors name the field (`cases[2].handler`).
pub fn parse_submission(fields: &Fields<'_>) -> Result<Submission, Invalid> {
    let source = fields.string_or_empty("source")?.ok_or_else(|| Invalid::new("source", "is required"))?;
    if source.trim().is_empty() || source.len() > MAX_SOURCE_BYTES {
        return Err(Invalid::new(
            "source",
            format!("must be a Rhai rule set of 1 to {MAX_SOURCE_BYTES} bytes (got {})", source.len()),
        ));
    }
    let note = fields.string_or_empty("note")?.unwrap_or_default();
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(Invalid::new("note", format!("must be at most {MAX_NOTE_CHARS} characters")));
    }
    let raw_cases = match fields.objects("cases")? {
        None => Vec::new(),
        Some(cases) if cases.len() > MAX_CASES => {
            return Err(Invalid::new("cases", format!("must hold at most {MAX_CASES} cases (got {})", cases.len())))
        }
        Some(cases) => cases,
    };
    let cases = raw_cases.iter().enumerate().map(|(i, case)| parse_case(case, i)).collect::<Result<Vec<_>, _>>()?;
    let raw_cases = raw_cases.iter().map(|case| Value::Object(case.map().clone())).collect();
    Ok(Submission { source: source.to_owned(), cases, raw_cases, note: note.to_owned() })
}

/// Reads one case (`cases[i]`; also a file of `privnum ruleset test`).
pub fn parse_case(case: &Fields<'_>, i: usize) -> Result<Case, Invalid> {
    let at = |field: &str| format!("cases[{i}].{field}");
    let name = case
        .string_or_empty("description")?
        .filter(|d| !d.is_empty())
        .map_or_else(|| format!("cases[{i}]"), str::to_owned);
    let handler_name = case.string_or_empty("handler")?.ok_or_else(|| Invalid::new(at("handler"), "is required"))?;
    let handler = Handler::parse(handler_name).ok_or_else(|| {
        Invalid::new(
            at("handler"),
            format!("{handler_name:?} is not a handler: on_x_callin, on_x_fallback or on_decision"),
        )
    })?;
    let event = case.object("event")?.map(|event| event.map().clone()).unwrap_or_default();
    let decision = case.object("decision")?.map(|decision| decision.map().clone());
    match (handler, &decision) {
        (Handler::Decision, None) => return Err(Invalid::new(at("decision"), "is required for on_decision")),
        (Handler::XCallin | Handler::XFallback, Some(_)) => {
            return Err(Invalid::new(at("decision"), format!("is for on_decision only, not {handler_name}")))
        }
        _ => {}
    }
    let mut data = Vec::new();
    if let Some(items) = case.object("data")? {
        for (key, value) in items.map() {
            let Value::String(value) = value else {
                return Err(Invalid::new(at(&format!("data.{key}")), "must be a string (what data_get returns)"));
            };
            data.push((key.clone(), value.clone()));
        }
        if data.len() > MAX_CASE_DATA {
            return Err(Invalid::new(at("data"), format!("must hold at most {MAX_CASE_DATA} items")));
        }
    }
    let mut answered = Vec::new();
    for (j, item) in case.objects("answered")?.unwrap_or_default().iter().enumerate() {
        let field = at(&format!("answered[{j}]"));
        let between = match item.map().get("between") {
            Some(Value::Array(pair)) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => (a.clone(), b.clone()),
                _ => return Err(Invalid::new(format!("{field}.between"), "must be two numbers, as strings")),
            },
            _ => return Err(Invalid::new(format!("{field}.between"), "is required: [a, b]")),
        };
        let count = item
            .integer("count", 0..=1_000_000)?
            .ok_or_else(|| Invalid::new(format!("{field}.count"), "is required"))?;
        answered.push((between.0, between.1, count));
    }
    let expect = match case.map().get("expect") {
        None => return Err(Invalid::new(at("expect"), "is required: an object, or null for ()")),
        Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => return Err(Invalid::new(at("expect"), "must be an object, or null for ()")),
    };
    Ok(Case { name, handler, event, decision, data, answered, expect })
}

/// How a result differs from a case's `expect`: `None` when every field expected is there with
/// its value (`null`: absent).
pub fn mismatch(expect: &Map<String, Value>, got: &Map<String, Value>) -> Option<String> {
    expect.iter().find_map(|(field, want)| {
        let have = got.get(field).unwrap_or(&Value::Null);
        (have != want).then(|| format!("{field}: expected {want}, got {have}"))
    })
}

/// What `on_decision` made of a decision, once the host has checked it only tightens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    pub decision: Decision,
    pub user_data: Option<String>,
}

/// Checks the map `on_decision` returned against the decision it was given (`original`, with
/// the `userData` its call carries) and builds what the call gets. It may only tighten: release
/// (with a code of the release-code table and a well-formed tone), lower `maxDuration`, set
/// `lastMinVoice` (with a limit) or `userData`, turn recording off; anything else changed is a
/// violation, named. A field the map leaves out keeps its value. Whether its tones are approved tones of the app is the host's check.
pub fn tighten(
    original: &Decision,
    user_data: Option<&str>,
    returned: &Map<String, Value>,
) -> Result<Tightened, String> {
    let fields = Fields::new(returned);
    let invalid = |err: Invalid| err.to_string();
    let user_data = match returned.get("userData") {
        None => user_data.map(str::to_owned),
        Some(_) => fields.user_data("userData").map_err(invalid)?.map(str::to_owned),
    };
    let action = match fields.required_string("action").map_err(invalid)? {
        "connect" => Action::Connect,
        "collect" => Action::Collect,
        "release" => Action::Release,
        other => return Err(format!("action {other:?} is not connect, collect or release")),
    };
    if action == Action::Release {
        let code = fields.integer("stateCode", 0..=i64::from(StateCode::MAX)).map_err(invalid)?;
        let code = code.and_then(|code| StateCode::try_from(code).ok()).ok_or("a release needs a stateCode")?;
        if state::describe(code).is_none() {
            return Err(format!("stateCode {code} is not a release code of the reference"));
        }
        let tone = fields.string_or_empty("tone").map_err(invalid)?.filter(|t| !t.is_empty());
        if let Some(tone) = tone {
            check_tone_name(tone).map_err(|reason| format!("tone: {reason}"))?;
        }
        let same = original.action == Action::Release && original.state_code == Some(code);
        let tone = match tone {
            Some(tone) => Some(tone.to_owned()),
            // The same release keeps its tone unless the handler names another.
            None if same => original.tone.clone(),
            None => None,
        };
        return Ok(Tightened { decision: Decision::release(code, tone), user_data });
    }
    if action != original.action {
        return Err(format!(
            "on_decision may only tighten: a {} decision cannot become {}",
            original.action.as_str(),
            action.as_str()
        ));
    }
    // What no tightening changes: the answer's own fields. A field left out (or `()`) keeps its
    // value; one returned with another value is a change.
    let unchanged = |field: &str, was: Option<Value>| -> Result<(), String> {
        match returned.get(field).filter(|v| !v.is_null()) {
            Some(now) if Some(now) != was.as_ref() => {
                let was = was.as_ref().map_or("absent".to_owned(), Value::to_string);
                Err(format!("on_decision may not change {field} (was {was}, returned {now})"))
            }
            _ => Ok(()),
        }
    };
    let text = |value: &Option<String>| value.clone().map(Value::String);
    let mut decision = original.clone();
    if action == Action::Collect {
        unchanged("prompt", text(&original.prompt))?;
        unchanged("maxDigits", Some(Value::from(original.max_digits)))?;
        unchanged("timeoutMs", Some(Value::from(original.timeout_ms)))?;
        return Ok(Tightened { decision, user_data });
    }
    unchanged("callee", text(&original.callee))?;
    unchanged("preVoice", text(&original.pre_voice))?;
    unchanged("waitVoice", text(&original.wait_voice))?;
    if let Some(record) = fields.flag("record").map_err(invalid)? {
        if record && !original.record {
            return Err("on_decision may not turn recording on".to_owned());
        }
        decision.record = record;
    }
    if decision.record {
        unchanged("recordHintTone", text(&original.record_hint_tone))?;
    } else {
        decision.record_hint_tone = None;
    }
    if let Some(minutes) = fields.integer("maxDuration", 0..=MAX_CALL_MINUTES).map_err(invalid)? {
        let limit = if original.max_duration > 0 { original.max_duration } else { MAX_CALL_MINUTES };
        if minutes > limit || (minutes == 0 && original.max_duration > 0) {
            return Err(format!("on_decision may only lower maxDuration: {minutes} is not within 1..={limit}"));
        }
        decision.max_duration = minutes;
    }
    if returned.contains_key("lastMinVoice") {
        decision.last_min_voice =
            fields.string_or_empty("lastMinVoice").map_err(invalid)?.filter(|t| !t.is_empty()).map(str::to_owned);
    }
    if let Some(tone) = &decision.last_min_voice {
        check_tone_name(tone).map_err(|reason| format!("lastMinVoice: {reason}"))?;
        if decision.max_duration == 0 {
            return Err("lastMinVoice needs a maxDuration: the call has no last minute".to_owned());
        }
    }
    Ok(Tightened { decision, user_data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn connect() -> Decision {
        let mut decision = Decision::connect("+8613900000002");
        decision.record = true;
        decision.record_hint_tone = Some("rec.wav".into());
        decision
    }

    #[test]
    fn a_submission_names_each_bad_field() {
        let parse = |body: Value| parse_submission(&Fields::new(&map(body))).map(|_| ()).unwrap_err().field;
        assert_eq!(parse(json!({})), "source");
        assert_eq!(parse(json!({"source": "  "})), "source");
        assert_eq!(parse(json!({"source": "x".repeat(MAX_SOURCE_BYTES + 1)})), "source");
        assert_eq!(parse(json!({"source": "fn on_decision(e, d) { d }", "note": "n".repeat(257)})), "note");
        let case = |case: Value| parse(json!({"source": "1", "cases": [case]}));
        assert_eq!(case(json!({"handler": "on_call", "expect": null})), "cases[0].handler");
        assert_eq!(case(json!({"handler": "on_decision", "expect": null})), "cases[0].decision");
        assert_eq!(case(json!({"handler": "on_x_callin", "decision": {}, "expect": null})), "cases[0].decision");
        assert_eq!(case(json!({"handler": "on_x_callin", "data": {"k": 1}, "expect": null})), "cases[0].data.k");
        assert_eq!(case(json!({"handler": "on_x_callin"})), "cases[0].expect");
        assert_eq!(case(json!({"handler": "on_x_callin", "expect": 3})), "cases[0].expect");
        let ok = parse_submission(&Fields::new(&map(json!({"source": "fn on_x_callin(e) { () }",
            "cases": [{"description": "d", "handler": "on_x_callin", "event": {"caller": "+86"}, "data": {"k": "v"}, "expect": null}]}))))
        .unwrap();
        assert_eq!(ok.cases[0].name, "d");
        assert_eq!(ok.cases[0].data, vec![("k".to_owned(), "v".to_owned())]);
        assert_eq!(ok.raw_cases.len(), 1);
    }

    #[test]
    fn on_decision_may_tighten_a_connect() {
        let got = tighten(
            &connect(),
            None,
            &map(json!({"action": "connect", "callee": "+8613900000002",
            "maxDuration": 10, "lastMinVoice": "last.wav", "userData": "trip-1", "record": false})),
        )
        .unwrap();
        assert_eq!(got.decision.max_duration, 10);
        assert_eq!(got.decision.last_min_voice.as_deref(), Some("last.wav"));
        assert!(!got.decision.record && got.decision.record_hint_tone.is_none(), "recording off drops its tone");
        assert_eq!(got.user_data.as_deref(), Some("trip-1"));
        let released =
            tighten(&connect(), Some("u"), &map(json!({"action": "release", "stateCode": 8014, "tone": "c.wav"})))
                .unwrap();
        assert_eq!(released.decision, Decision::release(8014, Some("c.wav".into())));
        assert_eq!(released.user_data.as_deref(), Some("u"), "the call's userData stays unless changed");
        let same = tighten(
            &connect(),
            None,
            &map(json!({"action": "connect", "callee": "+8613900000002", "record": true, "recordHintTone": "rec.wav"})),
        )
        .unwrap();
        assert_eq!(same.decision, connect());
    }

    #[test]
    fn on_decision_may_not_loosen_or_reroute() {
        let refused = |original: &Decision, returned: Value| tighten(original, None, &map(returned)).unwrap_err();
        assert!(refused(&connect(), json!({"action": "connect", "callee": "+8613700000000"})).contains("callee"));
        let kept = tighten(&connect(), None, &map(json!({"action": "connect", "maxDuration": 3}))).unwrap();
        assert_eq!(
            (kept.decision.callee.as_deref(), kept.decision.max_duration),
            (Some("+8613900000002"), 3),
            "left out: kept"
        );
        assert!(refused(&connect(), json!({"action": "connect", "callee": "+8613900000002", "preVoice": "p.wav"}))
            .contains("preVoice"));
        let mut limited = connect();
        limited.max_duration = 5;
        assert!(refused(&limited, json!({"action": "connect", "callee": "+8613900000002", "maxDuration": 6}))
            .contains("lower"));
        assert!(refused(&limited, json!({"action": "connect", "callee": "+8613900000002", "maxDuration": 0}))
            .contains("lower"));
        let plain = Decision::connect("+8613900000002");
        assert!(refused(&plain, json!({"action": "connect", "callee": "+8613900000002", "record": true}))
            .contains("recording"));
        assert!(refused(&plain, json!({"action": "connect", "callee": "+8613900000002", "lastMinVoice": "m.wav"}))
            .contains("maxDuration"));
        let release = Decision::release(8014, None);
        assert!(refused(&release, json!({"action": "connect", "callee": "+8613900000002"})).contains("cannot become"));
        assert!(refused(&connect(), json!({"action": "release", "stateCode": 1234})).contains("1234"));
        assert!(refused(&connect(), json!({"action": "release"})).contains("stateCode"));
        assert!(
            refused(&connect(), json!({"action": "release", "stateCode": 8014, "tone": "../x.wav"})).contains("tone")
        );
        assert!(
            refused(&connect(), json!({"action": "release", "stateCode": 8014, "userData": "{}"})).contains("userData")
        );
        let collect = Decision::collect(Some("ext.wav".into()), 4);
        assert!(refused(
            &collect,
            json!({"action": "collect", "prompt": "other.wav", "maxDigits": 4, "timeoutMs": 10000})
        )
        .contains("prompt"));
    }

    #[test]
    fn an_audit_detail_is_cut_on_a_character_boundary() {
        assert_eq!(audit_detail("short"), "short");
        let long = "号".repeat(MAX_AUDIT_DETAIL_BYTES);
        let cut = audit_detail(&long);
        assert!(cut.len() <= MAX_AUDIT_DETAIL_BYTES + "…".len() && cut.ends_with('…'), "{}", cut.len());
    }

    #[test]
    fn a_result_matches_the_fields_a_case_expects() {
        let got = map(json!({"action": "release", "stateCode": 8014}));
        assert_eq!(mismatch(&map(json!({"action": "release"})), &got), None);
        assert_eq!(mismatch(&map(json!({"tone": null})), &got), None, "null: absent");
        assert!(mismatch(&map(json!({"stateCode": 8016})), &got).unwrap().contains("stateCode"));
    }
}
