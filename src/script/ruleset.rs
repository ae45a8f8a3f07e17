//! Customer rule sets in the sandbox: the rule-set API, compiling a version, calling a handler,
//! judging what it returned against the platform's invariants, and the check a submission must
//! pass (compile, handlers, the customer's cases, the invariant probe). `policy-docs/rulesets.md`
//! is this module's user guide; keep the two in step.
//!
//! A rule set sees plain maps, not the scripts' types: `event` (the call as the customer's
//! server would see it, plus `appKey` and `now`) and, for `on_decision`, `decision` (the answer
//! as the switch would get it, camelCase). It reads the app's data with `data_get(key)` and
//! nothing else of the store; it has no clock but `event.now` and no IO. Runs on the script pool
//! (`ScriptHost::run_ruleset`), in the app's own queue, within the app's operation budget and
//! deadline (`ruleset_max_operations`, `ruleset_deadline_ms`).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, ImmutableString, Module, Scope, AST};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::engine::{with_budget, OPERATIONS_SPENT};
use super::run::{Failure, RunError};
use crate::domain::ruleset::{self, Case, Handler, Tightened, HANDLERS};
use crate::domain::{state, Decision, Mode, RulesetSettings, XReply};

/// What a rule set reads of its app's state during one run. `Err`: the store failed, and so does
/// the run.
pub trait Reads: Send {
    /// `data_get`: the app's item under `key`.
    fn data(&self, key: &str) -> Result<Option<String>, String>;
    /// `answered_calls`: the app's answered calls between `a` and `b` that ended at or after
    /// `since`.
    fn answered(&self, a: &str, b: &str, since: i64) -> Result<i64, String>;
}

/// The reads of one run.
pub type DataLookup = Box<dyn Reads>;

/// What a key no case names reads, from the cases' items.
type Otherwise = fn(&[(String, String)], &str) -> String;

/// Fixed answers: a case's `data` and `answered`, or the probe's.
struct Fixed {
    data: Vec<(String, String)>,
    answered: Vec<(String, String, i64)>,
    /// What a key no case names reads (`None`: `()`), and a pair no case names counts.
    otherwise: Option<Otherwise>,
    otherwise_answered: i64,
}

impl Reads for Fixed {
    fn data(&self, key: &str) -> Result<Option<String>, String> {
        let given = self.data.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        Ok(given.or_else(|| self.otherwise.map(|value| value(&self.data, key))))
    }

    fn answered(&self, a: &str, b: &str, _since: i64) -> Result<i64, String> {
        let given = self.answered.iter().find(|(x, y, _)| (x == a && y == b) || (x == b && y == a));
        Ok(given.map_or(self.otherwise_answered, |(_, _, count)| *count))
    }
}

thread_local! {
    static DATA: RefCell<Option<DataLookup>> = const { RefCell::new(None) };
}

fn with_data<T>(lookup: DataLookup, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DATA.with(|data| data.borrow_mut().take());
        }
    }
    DATA.with(|data| *data.borrow_mut() = Some(lookup));
    let _reset = Reset;
    f()
}

/// The rule-set API (`policy-docs/rulesets.md`, "What a rule set can call").
pub(crate) fn register(engine: &mut Engine) {
    engine.register_fn("data_get", |key: ImmutableString| -> Result<Dynamic, Box<EvalAltResult>> {
        let read = DATA.with(|data| data.borrow().as_ref().map(|reads| reads.data(&key)));
        match read {
            Some(Ok(Some(value))) => Ok(Dynamic::from(ImmutableString::from(value))),
            Some(Ok(None)) | None => Ok(Dynamic::UNIT),
            Some(Err(reason)) => Err(format!("data_get({key:?}): {reason}").into()),
        }
    });
    engine.register_fn(
        "answered_calls",
        |a: ImmutableString, b: ImmutableString, since: i64| -> Result<i64, Box<EvalAltResult>> {
            let read = DATA.with(|data| data.borrow().as_ref().map(|reads| reads.answered(&a, &b, since)));
            match read {
                Some(Ok(count)) => Ok(count),
                None => Ok(0),
                Some(Err(reason)) => Err(format!("answered_calls({a:?}, {b:?}, {since}): {reason}").into()),
            }
        },
    );
    engine.register_fn("local_time", local_time);
    let mut codes = Module::new();
    for (name, code) in state::SCRIPT_NAMES {
        codes.set_var(*name, i64::from(*code));
    }
    engine.register_static_module("state", codes.into());
}

/// `local_time(now, utc_offset_minutes)`: `#{date: "2026-06-01", hour, minute, weekday,
/// day_start}` (weekday 1 = Monday … 7 = Sunday; `day_start` the Unix time of that local day's
/// 00:00) of Unix time `now` at that offset from UTC (480 for China).
fn local_time(now: i64, offset_minutes: i64) -> rhai::Map {
    use chrono::{Datelike, Timelike};
    let offset = offset_minutes.clamp(-24 * 60, 24 * 60).saturating_mul(60);
    let shifted = now.saturating_add(offset);
    let time = chrono::DateTime::from_timestamp(shifted, 0).unwrap_or_default().naive_utc();
    let mut map = rhai::Map::new();
    map.insert("day_start".into(), Dynamic::from(shifted - shifted.rem_euclid(86_400) - offset));
    map.insert("date".into(), Dynamic::from(ImmutableString::from(time.format("%Y-%m-%d").to_string())));
    map.insert("hour".into(), Dynamic::from(i64::from(time.hour())));
    map.insert("minute".into(), Dynamic::from(i64::from(time.minute())));
    map.insert("weekday".into(), Dynamic::from(i64::from(time.weekday().number_from_monday())));
    map
}

/// One compiled version of an app's rule set.
pub struct Ruleset {
    pub app_key: String,
    /// `v1`, `v2`, …
    pub version: String,
    pub handlers: Vec<Handler>,
    pub settings: RulesetSettings,
    /// It calls `answered_calls`: privnum counts its app's answered calls while it is active.
    pub counts_answered: bool,
    /// The script pool's queue its runs wait in (`ruleset <app>`), named once, not per call.
    pub queue: String,
    ast: AST,
}

impl std::fmt::Debug for Ruleset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ruleset").field("app_key", &self.app_key).field("version", &self.version).finish()
    }
}

impl Ruleset {
    pub fn has(&self, handler: Handler) -> bool {
        self.handlers.contains(&handler)
    }

    /// Where its failures are said to be: `ruleset <app> <version>`.
    pub fn location(&self) -> String {
        format!("ruleset {} {}", self.app_key, self.version)
    }

    /// The run's budget.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.settings.deadline_ms)
    }
}

/// The hex SHA-256 of a source.
pub fn sha256(source: &str) -> String {
    Sha256::digest(source.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compiles `source` and finds its handlers: at least one of [`HANDLERS`], each with its
/// parameter count; a function named like a handler with the wrong count, or an `on_…` function
/// privnum does not call, is refused by name. Errors start with `line:column` where Rhai has one.
pub fn compile(
    engine: &Engine,
    app_key: &str,
    version: &str,
    source: &str,
    settings: RulesetSettings,
) -> Result<Ruleset, String> {
    let mut ast = engine.compile(source).map_err(|err| {
        let at = err.position();
        match (at.line(), at.position()) {
            (Some(line), Some(column)) => format!("{line}:{column}: does not compile: {}", err.err_type()),
            _ => format!("does not compile: {}", err.err_type()),
        }
    })?;
    ast.set_source(format!("ruleset {app_key} {version}"));
    let mut handlers = Vec::new();
    for function in ast.iter_functions() {
        let wanted = HANDLERS.iter().find(|(handler, _)| handler.name() == function.name);
        match wanted {
            Some((handler, params)) if function.params.len() == *params => handlers.push(*handler),
            Some((handler, params)) => {
                return Err(format!(
                    "fn {}({}) must take {params} parameter(s): {}",
                    handler.name(),
                    function.params.join(", "),
                    if *params == 2 { "(event, decision)" } else { "(event)" }
                ))
            }
            None if function.name.starts_with("on_") => {
                return Err(format!(
                    "fn {} is not a handler privnum calls (on_x_callin, on_x_fallback, on_decision): rename it if it is a helper",
                    function.name
                ))
            }
            None => {}
        }
    }
    if handlers.is_empty() {
        return Err(
            "defines no handler: define on_x_callin(event), on_x_fallback(event) or on_decision(event, decision)"
                .into(),
        );
    }
    handlers.sort();
    handlers.dedup();
    // The name in the source is the only way to reach it (`eval` is disabled; a function pointer
    // names it too).
    let counts_answered = source.contains("answered_calls");
    Ok(Ruleset {
        app_key: app_key.to_owned(),
        version: version.to_owned(),
        handlers,
        settings,
        counts_answered,
        queue: format!("ruleset {app_key}"),
        ast,
    })
}

/// Calls `handler` of `ruleset` with `event` (and `decision`), reading data through `data`,
/// stopped at `stop_at` or when its operations are spent. `Ok(None)`: it returned `()`.
pub fn call(
    engine: &Engine,
    ruleset: &Ruleset,
    handler: Handler,
    (event, decision): (&Value, Option<&Value>),
    data: DataLookup,
    stop_at: Instant,
) -> Result<Option<Map<String, Value>>, RunError> {
    let location = ruleset.location();
    let fail = |kind: Failure, message: String, at: String| RunError {
        location: if at.is_empty() { location.clone() } else { format!("{location}:{at}") },
        message,
        kind,
        at: if at.is_empty() { handler.name().to_owned() } else { at },
    };
    let to_dynamic = |value: &Value| {
        rhai::serde::to_dynamic(value)
            .map_err(|err| fail(Failure::Error, format!("cannot pass the input: {err}"), String::new()))
    };
    let event = to_dynamic(event)?;
    let decision = decision.map(to_dynamic).transpose()?;
    let options = CallFnOptions::new().eval_ast(false).rewind_scope(false);
    let mut scope = Scope::new();
    let result = with_data(data, || {
        with_budget(stop_at, ruleset.settings.max_operations, || match decision {
            Some(decision) => engine.call_fn_with_options::<Dynamic>(
                options,
                &mut scope,
                &ruleset.ast,
                handler.name(),
                (event, decision),
            ),
            None => engine.call_fn_with_options::<Dynamic>(options, &mut scope, &ruleset.ast, handler.name(), (event,)),
        })
    });
    let value = result.map_err(|err| {
        let inner = innermost(&err);
        let at = match (inner.position().line(), inner.position().position()) {
            (Some(line), Some(column)) => format!("{line}:{column}"),
            _ => String::new(),
        };
        let (kind, message) = match inner {
            EvalAltResult::ErrorTerminated(token, _)
                if token.clone().into_string().ok().as_deref() == Some(OPERATIONS_SPENT) =>
            {
                (
                    Failure::Limit,
                    format!(
                        "stopped: more than {} operations (ruleset_max_operations)",
                        ruleset.settings.max_operations
                    ),
                )
            }
            EvalAltResult::ErrorTerminated(..) => (
                Failure::Deadline,
                format!("stopped: ran past its deadline of {} ms (ruleset_deadline_ms)", ruleset.settings.deadline_ms),
            ),
            EvalAltResult::ErrorTooManyOperations(..) => (Failure::Limit, "stopped: too many operations".to_owned()),
            EvalAltResult::ErrorStackOverflow(..) => (Failure::Limit, "stopped: calls nested too deep".to_owned()),
            EvalAltResult::ErrorDataTooLarge(what, ..) => {
                (Failure::Limit, format!("stopped: {what} grew past the sandbox limit"))
            }
            other => {
                let text = other.to_string();
                (Failure::Error, text.split(" (line ").next().unwrap_or(&text).to_owned())
            }
        };
        fail(kind, format!("{}: {message}", handler.name()), at)
    })?;
    if value.is_unit() {
        return Ok(None);
    }
    if !value.is_map() {
        let message = format!("{} returned {}, not a map or ()", handler.name(), value.type_name());
        return Err(fail(Failure::Error, message, String::new()));
    }
    match rhai::serde::from_dynamic::<Value>(&value) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(other) => {
            let message = format!("{} returned a map that reads as {other}, not an object", handler.name());
            Err(fail(Failure::Error, message, String::new()))
        }
        Err(err) => {
            let message = format!("{} returned a map privnum cannot read as JSON: {err}", handler.name());
            Err(fail(Failure::Error, message, String::new()))
        }
    }
}

fn innermost(err: &EvalAltResult) -> &EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => innermost(inner),
        other => other,
    }
}

/// What a handler's result means for the call, once judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `()`: the call goes on as without the rule set (X mode: the Block push, or 8020).
    Pass,
    /// X mode: the reply, as if the customer's server had sent it.
    Reply(XReply),
    /// `on_decision`: the decision the call gets.
    Decision(Tightened),
}

/// What a result is checked against: the X of the call, the decision it was given
/// (`on_decision`: as a decision with the call's `userData`, and as the map the handler got),
/// and which tones are approved tones of the app.
pub struct Judged<'a> {
    pub x_number: &'a str,
    pub original: Option<(&'a Decision, Option<&'a str>)>,
    pub given: Option<&'a Value>,
    pub approved: &'a dyn Fn(&str) -> bool,
}

/// The fields of the switch's answer that `on_decision` sees and may not change (the others are
/// the decision's own, which `tighten` judges).
const ANSWER_FIELDS: [&str; 3] = ["display", "sessionId", "subscriptionId"];

/// Judges `result` of `handler` against the platform's invariants: an X-mode reply is read and
/// checked as the customer's server's would be; a decision may only tighten; every tone named is
/// an approved tone of the app. `Err` names what was broken.
pub fn judge(handler: Handler, result: Option<Map<String, Value>>, on: &Judged<'_>) -> Result<Verdict, String> {
    let Some(result) = result else { return Ok(Verdict::Pass) };
    fn unapproved<'f, 't>(
        mut tones: impl Iterator<Item = (&'f str, &'t str)>,
        approved: &dyn Fn(&str) -> bool,
    ) -> Option<String> {
        tones
            .find(|(_, tone)| !approved(tone))
            .map(|(field, tone)| format!("{field} names {tone}, which is not an approved tone of the app"))
    }
    match handler {
        Handler::XCallin | Handler::XFallback => {
            let bytes = serde_json::to_vec(&Value::Object(result)).unwrap_or_default();
            let reply =
                XReply::parse(&bytes, on.x_number).map_err(|invalid| format!("not a valid Block reply: {invalid}"))?;
            let problem = unapproved(reply.tones().into_iter(), on.approved);
            match problem {
                Some(problem) => Err(problem),
                None => Ok(Verdict::Reply(reply)),
            }
        }
        Handler::Decision => {
            let (original, user_data) = on.original.ok_or("on_decision needs the decision it was given")?;
            for field in ANSWER_FIELDS {
                let was = on.given.and_then(|given| given.get(field)).filter(|v| !v.is_null());
                match result.get(field).filter(|v| !v.is_null()) {
                    Some(now) if Some(now) != was => {
                        let was = was.map_or("absent".to_owned(), Value::to_string);
                        return Err(format!("on_decision may not change {field} (was {was}, returned {now})"));
                    }
                    _ => {}
                }
            }
            let tightened = ruleset::tighten(original, user_data, &result)?;
            let problem = unapproved(tightened.decision.tones(), on.approved);
            match problem {
                Some(problem) => Err(problem),
                None => Ok(Verdict::Decision(tightened)),
            }
        }
    }
}

/// A decision as `on_decision` gets it and as a case's `expect` reads it: the switch's camelCase
/// fields, with the call's `userData`.
pub fn decision_value(decision: &Decision, user_data: Option<&str>) -> Value {
    let mut value = serde_json::to_value(decision).unwrap_or_default();
    if let (Some(map), Some(user_data)) = (value.as_object_mut(), user_data) {
        map.insert("userData".into(), Value::from(user_data));
    }
    value
}

/// The X the probe calls when the app has none (offline, or an empty pool).
pub const PROBE_X: &str = "+8617000000001";

/// What a submission is checked against.
pub struct CheckContext<'a> {
    pub app_key: &'a str,
    /// The app's mode, when known (the server): which handlers it will call, and the probe's
    /// decisions. `None` (offline): every handler, every decision.
    pub mode: Option<Mode>,
    /// An X of the app (the probe's `called`).
    pub x_number: String,
    pub approved: &'a dyn Fn(&str) -> bool,
    pub settings: RulesetSettings,
}

/// A version that passed its check.
#[derive(Debug)]
pub struct Checked {
    pub ruleset: Ruleset,
    pub cases_passed: usize,
    pub probe_calls: usize,
}

/// The check a version passes before it is kept: it compiles and defines a handler (the app's
/// mode calls; an X-mode handler in an AXB app is refused), passes every case, and survives the
/// invariant probe. The error is one line naming `line:column`, the case, or the probe's call.
pub fn check(engine: &Engine, on: &CheckContext<'_>, source: &str, cases: &[Case]) -> Result<Checked, String> {
    let ruleset = compile(engine, on.app_key, "(submitted)", source, on.settings)?;
    if let Some(mode) = on.mode {
        let used = |handler: &Handler| handler.x_mode() == (mode == Mode::X);
        if !ruleset.handlers.iter().any(used) {
            let names: Vec<_> = ruleset.handlers.iter().map(|h| h.name()).collect();
            let wanted = if mode == Mode::X { "on_x_callin or on_x_fallback" } else { "on_decision" };
            return Err(format!("defines {} but an {mode} app calls only {wanted}", names.join(", ")));
        }
    }
    for case in cases {
        run_case(engine, &ruleset, on, case).map_err(|why| format!("case {:?}: {why}", case.name))?;
    }
    let probe_calls = probe(engine, &ruleset, on, cases)?;
    Ok(Checked { ruleset, cases_passed: cases.len(), probe_calls })
}

/// Runs every case on a compiled rule set (`privnum ruleset test`): each case's failure, if any.
pub fn run_cases<'c>(
    engine: &Engine,
    ruleset: &Ruleset,
    on: &CheckContext<'_>,
    cases: &'c [Case],
) -> Vec<(&'c Case, Result<(), String>)> {
    cases.iter().map(|case| (case, run_case(engine, ruleset, on, case))).collect()
}

/// What a case gives `data_get` and `answered_calls`.
fn fixed_data(case: &Case) -> DataLookup {
    Box::new(Fixed { data: case.data.clone(), answered: case.answered.clone(), otherwise: None, otherwise_answered: 0 })
}

fn run_case(engine: &Engine, ruleset: &Ruleset, on: &CheckContext<'_>, case: &Case) -> Result<(), String> {
    if !ruleset.has(case.handler) {
        return Err(format!("the rule set defines no {}", case.handler.name()));
    }
    let mut event = case.event.clone();
    event.entry("appKey").or_insert_with(|| Value::from(on.app_key));
    let x_number = event.get("called").and_then(Value::as_str).unwrap_or(&on.x_number).to_owned();
    let original = match &case.decision {
        Some(map) => Some(
            serde_json::from_value::<Decision>(Value::Object(map.clone()))
                .map_err(|err| format!("decision is not a decision: {err}"))?,
        ),
        None => None,
    };
    let user_data = case.decision.as_ref().and_then(|d| d.get("userData")).and_then(Value::as_str);
    let decision = case.decision.clone().map(Value::Object);
    let stop_at = Instant::now() + ruleset.deadline() * CHECK_DEADLINES;
    let event = Value::Object(event);
    let result = call(engine, ruleset, case.handler, (&event, decision.as_ref()), fixed_data(case), stop_at)
        .map_err(|err| err.to_string())?;
    let judged = Judged {
        x_number: &x_number,
        original: original.as_ref().map(|d| (d, user_data)),
        given: decision.as_ref(),
        approved: on.approved,
    };
    let verdict =
        judge(case.handler, result.clone(), &judged).map_err(|why| format!("breaks a platform invariant: {why}"))?;
    let got = match (&verdict, result) {
        (Verdict::Pass, _) => None,
        (Verdict::Decision(tightened), _) => {
            decision_value(&tightened.decision, tightened.user_data.as_deref()).as_object().cloned()
        }
        (Verdict::Reply(_), result) => result,
    };
    match (&case.expect, got) {
        (None, None) => Ok(()),
        (None, Some(got)) => Err(format!("expected (), got {}", Value::Object(got))),
        (Some(expect), None) => Err(format!("expected {}, got ()", Value::Object(expect.clone()))),
        (Some(expect), Some(got)) => ruleset::mismatch(expect, &got).map_or(Ok(()), Err),
    }
}

/// How the probe builds the reads of one kind of data, for each call.
type DataOf<'a> = Box<dyn Fn() -> DataLookup + 'a>;

/// The instants the probe calls at, the same for every check (a version passes or fails
/// whatever the time of its submission): Monday 2026-06-01 00:00:30 UTC (08:00:30 in China),
/// Saturday 2026-06-06 13:00 UTC (21:00 in China), Monday 23:59:59 UTC (07:59:59 in China), and
/// Monday 19:00 UTC (03:00 in China).
const PROBE_TIMES: [i64; 4] = [1_780_272_030, 1_780_750_800, 1_780_358_399, 1_780_340_400];
/// Why the Block push got no answer, for `on_x_fallback`: one per probe instant.
const PROBE_FAILURES: [&str; 4] = ["timeout", "unreachable", "status", "failing_fast"];
/// How many times its deadline a run of the check may take: the check stops a run at its
/// operation budget, which does not depend on the machine, and at this many deadlines, so that a
/// loaded server does not refuse a good version (calls still stop a run at one deadline).
const CHECK_DEADLINES: u32 = 10;
/// The callers: a mobile, a fixed line, a number that is not E.164.
const PROBE_CALLERS: [&str; 3] = ["+8613800000001", "+862012345678", "10086"];

/// Runs each handler on a generated sample of calls (callers, times, data absent, as the cases
/// give it, and present under every key) and judges every result; returns how many calls it made.
/// The first call that fails, runs out of its budget or breaks an invariant refuses the version,
/// naming the call.
pub fn probe(engine: &Engine, ruleset: &Ruleset, on: &CheckContext<'_>, cases: &[Case]) -> Result<usize, String> {
    let case_data: Vec<(String, String)> = cases.iter().flat_map(|case| case.data.iter().cloned()).collect();
    let case_answered: Vec<(String, String, i64)> =
        cases.iter().flat_map(|case| case.answered.iter().cloned()).collect();
    let reads = |otherwise: Option<Otherwise>, otherwise_answered, with_cases: bool| -> DataLookup {
        Box::new(Fixed {
            data: if with_cases { case_data.clone() } else { Vec::new() },
            answered: if with_cases { case_answered.clone() } else { Vec::new() },
            otherwise,
            otherwise_answered,
        })
    };
    let data_kinds: [(&str, DataOf<'_>); 3] = [
        ("no data, no answered calls", Box::new(|| reads(None, 0, false))),
        ("the cases' data", Box::new(|| reads(None, 0, true))),
        ("data under every key, 3 answered calls between any two", Box::new(|| reads(Some(present_value), 3, true))),
    ];
    let decisions = probe_decisions(on);
    let mut calls = 0;
    for handler in ruleset.handlers.iter().copied() {
        if on.mode.is_some_and(|mode| handler.x_mode() != (mode == Mode::X)) {
            continue;
        }
        for (i, now) in PROBE_TIMES.into_iter().enumerate() {
            for caller in PROBE_CALLERS {
                for (data_name, data) in &data_kinds {
                    let mut event = json!({
                        "appKey": on.app_key, "caller": caller, "called": on.x_number,
                        "sessionId": format!("probe-{calls}"), "timestamp": crate::domain::time::reference_time(now), "now": now,
                    });
                    let samples: Vec<Option<(Decision, Option<&str>)>> = match handler {
                        Handler::Decision => {
                            decisions.iter().map(|(d, user_data)| Some((d.clone(), *user_data))).collect()
                        }
                        _ => vec![None],
                    };
                    if let Some(map) = event.as_object_mut() {
                        if handler.x_mode() {
                            map.insert("notifyMode".into(), Value::from("Block"));
                        }
                        if handler == Handler::XFallback {
                            let kind = PROBE_FAILURES[i % PROBE_FAILURES.len()];
                            map.insert("failure".into(), json!({"kind": kind, "reason": "probe"}));
                        }
                    }
                    for original in samples {
                        calls += 1;
                        let decision = original.as_ref().map(|(d, u)| decision_value(d, *u));
                        let shown = || {
                            let decision = decision.as_ref().map(|d| format!(", decision {d}")).unwrap_or_default();
                            format!("the probe's call to {} (event {event}{decision}, {data_name})", handler.name())
                        };
                        let stop_at = Instant::now() + ruleset.deadline() * CHECK_DEADLINES;
                        let result = call(engine, ruleset, handler, (&event, decision.as_ref()), data(), stop_at)
                            .map_err(|err| format!("{}: {}", shown(), err.message))?;
                        let judged = Judged {
                            x_number: &on.x_number,
                            original: original.as_ref().map(|(d, u)| (d, *u)),
                            given: decision.as_ref(),
                            approved: on.approved,
                        };
                        judge(handler, result, &judged)
                            .map_err(|why| format!("{} breaks a platform invariant: {why}", shown()))?;
                    }
                }
            }
        }
    }
    Ok(calls)
}

/// What the probe's "data under every key" reads for `key`: the value the cases give it, else
/// the value of the case key it shares the longest prefix with (`trip:+86137…` reads like the
/// cases' `trip:+86138…`), else `"1"`.
fn present_value(items: &[(String, String)], key: &str) -> String {
    let shared = |k: &str| k.bytes().zip(key.bytes()).take_while(|(a, b)| a == b).count();
    if let Some((_, value)) = items.iter().find(|(k, _)| k == key) {
        return value.clone();
    }
    let best = items.iter().map(|(k, v)| (shared(k), v)).filter(|(n, _)| *n > 0).max_by_key(|(n, _)| *n);
    best.map_or_else(|| "1".to_owned(), |(_, value)| value.clone())
}

/// The decisions `on_decision` is probed with, with the call's `userData`: what the app's mode
/// can give it (a connect with no limit; one limited to 10 minutes, recorded, with `userData`;
/// one limited to a minute, which a cap must not raise; a release; for AXE a collect).
fn probe_decisions(on: &CheckContext<'_>) -> Vec<(Decision, Option<&'static str>)> {
    let plain = Decision::connect("+8613900000002");
    let mut limited = Decision::connect("+8613900000002");
    limited.max_duration = 10;
    limited.record = true;
    let mut short = Decision::connect("+8613900000002");
    short.max_duration = 1;
    let release = Decision::release(state::INVALID_AXB_CALL, None);
    let mut decisions = vec![(plain, None), (limited, Some("order-1")), (short, None), (release, None)];
    if on.mode.is_none_or(|mode| mode == Mode::Axe) {
        decisions.push((Decision::collect(None, 4), None));
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ruleset::parse_case;
    use crate::domain::Fields;

    fn engine() -> Engine {
        super::super::engine::build_for_rulesets(&super::super::Limits::default())
    }

    fn context(mode: Option<Mode>) -> CheckContext<'static> {
        CheckContext {
            app_key: "app",
            mode,
            x_number: "+8617000000001".into(),
            approved: &|tone| tone == "ok.wav",
            settings: RulesetSettings::default(),
        }
    }

    fn cases(values: Value) -> Vec<Case> {
        let list = values.as_array().cloned().unwrap_or_default();
        list.iter()
            .enumerate()
            .map(|(i, case)| parse_case(&Fields::new(case.as_object().unwrap()), i).unwrap())
            .collect()
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let err = check(&engine(), &context(None), "fn on_decision(e, d) {\n  let x = ;\n}", &[]).unwrap_err();
        assert!(err.starts_with("2:11: does not compile"), "{err}");
    }

    #[test]
    fn handlers_are_known_by_name_and_arity() {
        let refused = |source: &str| check(&engine(), &context(None), source, &[]).unwrap_err();
        assert!(refused("fn helper() { 1 }").contains("defines no handler"));
        assert!(refused("fn on_decision(e) { () }").contains("2 parameter"));
        assert!(refused("fn on_call(e) { () }").contains("not a handler"));
        let axb = check(&engine(), &context(Some(Mode::Axb)), "fn on_x_callin(e) { () }", &[]).unwrap_err();
        assert!(axb.contains("AXB app calls only on_decision"), "mode-aware: {axb}");
        let checked = check(&engine(), &context(None), "fn on_x_callin(e) { () }\nfn helper() { 1 }", &[]).unwrap();
        assert_eq!(checked.ruleset.handlers, vec![Handler::XCallin]);
        assert!(checked.probe_calls > 0);
    }

    #[test]
    fn cases_prove_what_the_handler_returns() {
        let source = include_str!("../../examples/rulesets/trip-partner.rhai");
        let good = cases(json!([
            {"description": "a trip", "handler": "on_x_callin", "event": {"caller": "+8613800000001", "called": "+8617000000001"},
             "data": {"trip:+8613800000001": "+8613900000002"},
             "expect": {"operation": "connect", "connectInfo": {"calleeNum": "+8613900000002", "maxDuration": 10}}},
            {"description": "no trip", "handler": "on_x_callin", "event": {"caller": "+8613800000009"}, "expect": null}
        ]));
        let checked = check(&engine(), &context(Some(Mode::X)), source, &good).unwrap();
        assert_eq!(checked.cases_passed, 2);
        let wrong =
            cases(json!([{"description": "wrong", "handler": "on_x_callin", "event": {"caller": "+8613800000009"},
            "expect": {"operation": "close"}}]));
        let err = check(&engine(), &context(Some(Mode::X)), source, &wrong).unwrap_err();
        assert!(err.starts_with("case \"wrong\": expected"), "{err}");
    }

    #[test]
    fn the_probe_refuses_what_breaks_an_invariant_or_its_budget() {
        let refused = |source: &str| check(&engine(), &context(Some(Mode::Axb)), source, &[]).unwrap_err();
        // Only with data present: the cases would not have found it.
        let reroute = r#"fn on_decision(e, d) { if data_get("vip") != () { d.callee = "+8613700000000"; } d }"#;
        let err = refused(reroute);
        assert!(err.contains("probe") && err.contains("callee") && err.contains("every key"), "{err}");
        assert_eq!(
            present_value(&[("trip:+86138".into(), "+86139".into()), ("x".into(), "y".into())], "trip:+86137"),
            "+86139"
        );
        assert_eq!(present_value(&[], "vip"), "1");
        let err = refused("fn on_decision(e, d) { loop {} }");
        assert!(err.contains("operations"), "{err}");
        let err = refused(r#"fn on_decision(e, d) { #{action: "release", stateCode: 8014, tone: "nope.wav"} }"#);
        assert!(err.contains("not an approved tone"), "{err}");
        let err = refused(r#"fn on_decision(e, d) { let n = data_get("n"); n.len() }"#);
        assert!(err.contains("no data"), "a run-time error with data absent is named: {err}");
        let ok = r#"fn on_decision(e, d) {
            if local_time(e.now, 480).hour < 8 { return #{action: "release", stateCode: state::INVALID_AXB_CALL, tone: "ok.wav"}; }
            ()
        }"#;
        assert!(check(&engine(), &context(Some(Mode::Axb)), ok, &[]).is_ok());
    }

    #[test]
    fn local_time_reads_a_unix_time_at_an_offset() {
        // 2026-06-01T00:00:30Z is 08:00:30 in China, a Monday.
        let time = local_time(1_780_272_030, 480);
        assert_eq!(time["hour"].as_int().unwrap(), 8);
        assert_eq!(time["weekday"].as_int().unwrap(), 1);
        assert_eq!(time["date"].clone().into_string().unwrap(), "2026-06-01");
    }
}
