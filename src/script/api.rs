//! The script API: what a script can read and what it returns. Documented, with an example that
//! runs as a test, in `policy-docs/script-api.md`; keep the two in step.
//!
//! A script reads one value, the `call` passed to its handler, and returns a `Decision`. It cannot
//! reach the store, the network, the disk or the clock: the host gathers what the mode needs
//! (the app, the binding for this caller on this X, the time) before the script runs, so a script
//! is a pure function of its input and its test cases are plain data.
//!
//! Every mode's binding shows scripts the same getters for what all bindings have
//! (`ScriptBinding`: `subscription_id`, `x_number`, `record`, `record_hint_tone`,
//! `user_data`); a mode registers only its own fields, in one function.

use std::sync::Arc;

use rhai::{Dynamic, Engine, ImmutableString, Module};

use crate::domain::binding::Recorded;
use crate::domain::x::{XFailure, XReply};
use crate::domain::{state, App, AxBinding, AxbBinding, AxeBinding, Binding, Decision};

/// A call's release as the switch reported it, for `on_release` to name its `stateCode`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Release {
    /// The Q.850 cause, when the switch gave one.
    pub q850: Option<i64>,
    /// The SIP final status, when the switch gave one.
    pub sip_status: Option<i64>,
    /// `"caller"`, `"callee"`, `"platform"` or `""`.
    pub release_side: String,
    /// The callee rang.
    pub alerted: bool,
    /// The callee answered.
    pub answered: bool,
    /// The caller was still being asked for an AXE extension: there was no callee yet.
    pub collecting: bool,
}

/// The call a handler decides, as scripts see it.
#[derive(Debug, Clone)]
pub struct Call {
    pub caller: ImmutableString,
    /// The X that was dialled.
    pub called: ImmutableString,
    pub session_id: ImmutableString,
    /// Seconds since the Unix epoch, from the host's clock.
    pub now: i64,
    pub app: Arc<App>,
    /// AXB: the active binding that has the caller as A or B on this X. AX: the binding on X.
    /// AXE `on_callin`: the active binding that has the caller as A on X; `on_digits`: the active
    /// binding of the extension entered.
    pub binding: Option<Binding>,
    /// AX: the binding's temporary callee while it is valid; `""` otherwise.
    pub temporary_callee: ImmutableString,
    /// AXE, A calls X: the party of A's valid callback record; `""` otherwise.
    pub callback: ImmutableString,
    /// AXE `on_digits`: the digits the caller entered (`""`: none).
    pub digits: ImmutableString,
    /// How many bindings the dialled X holds (AXE: 0 means the X is not in service).
    pub x_bindings: i64,
    /// X mode: the customer's reply to the Block callin, checked; `None` when there was none.
    pub reply: Option<Arc<XReply>>,
    /// X mode: why there was no usable reply.
    pub failure: Option<Arc<XFailure>>,
}

impl Call {
    /// A call with no mode-specific parts yet; the router fills in what its mode needs.
    pub fn new(caller: &str, called: &str, session_id: &str, now: i64, app: Arc<App>) -> Self {
        Call {
            caller: caller.into(),
            called: called.into(),
            session_id: session_id.into(),
            now,
            app,
            binding: None,
            temporary_callee: ImmutableString::new(),
            callback: ImmutableString::new(),
            digits: ImmutableString::new(),
            x_bindings: 0,
            reply: None,
            failure: None,
        }
    }
}

fn text(value: &str) -> ImmutableString {
    ImmutableString::from(value)
}

fn optional(value: &Option<String>) -> ImmutableString {
    value.as_deref().map_or_else(ImmutableString::new, text)
}

/// `""` from a script means "none".
fn from_script(value: ImmutableString) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

pub(crate) fn register(engine: &mut Engine) {
    register_call(engine);
    register_app(engine);
    register_axb_binding(engine);
    register_ax_binding(engine);
    register_axe_binding(engine);
    register_decision(engine);
    register_release(engine);
    let mut codes = Module::new();
    for (name, code) in state::SCRIPT_NAMES {
        codes.set_var(*name, i64::from(*code));
    }
    engine.register_static_module("state", codes.into());
}

fn register_call(engine: &mut Engine) {
    engine
        .register_type_with_name::<Call>("Call")
        .register_get("caller", |call: &mut Call| call.caller.clone())
        .register_get("called", |call: &mut Call| call.called.clone())
        .register_get("session_id", |call: &mut Call| call.session_id.clone())
        .register_get("now", |call: &mut Call| call.now)
        .register_get("app", |call: &mut Call| call.app.clone())
        .register_get("binding", |call: &mut Call| match call.binding.clone() {
            None => Dynamic::UNIT,
            Some(Binding::Axb(binding)) => Dynamic::from(binding),
            Some(Binding::Ax(binding)) => Dynamic::from(binding),
            Some(Binding::Axe(binding)) => Dynamic::from(binding),
        })
        .register_get("temporary_callee", |call: &mut Call| call.temporary_callee.clone())
        .register_get("callback", |call: &mut Call| call.callback.clone())
        .register_get("digits", |call: &mut Call| call.digits.clone())
        .register_get("x_bindings", |call: &mut Call| call.x_bindings)
        .register_get("reply", |call: &mut Call| call.reply.as_deref().map_or(Dynamic::UNIT, reply_map))
        .register_get("failure", |call: &mut Call| call.failure.as_deref().map_or(Dynamic::UNIT, failure_map));
}

/// X mode's reply as scripts read it: a map with every field (`""`, `0` or `false` when the
/// reply left it out), `operation` first.
fn reply_map(reply: &XReply) -> Dynamic {
    let empty = || Dynamic::from(ImmutableString::new());
    let mut map = rhai::Map::new();
    map.insert("operation".into(), Dynamic::from(text(reply.operation())));
    map.insert("user_data".into(), Dynamic::from(text(reply.user_data().unwrap_or_default())));
    for key in ["callee_num", "wait_voice", "record_hint_tone", "last_min_voice", "close_hint_tone"] {
        map.insert(key.into(), empty());
    }
    map.insert("max_duration".into(), Dynamic::from(0_i64));
    map.insert("record_flag".into(), Dynamic::from(false));
    let mut set = |key: &str, value: Dynamic| {
        map.insert(key.into(), value);
    };
    let shown = |value: &Option<String>| Dynamic::from(text(value.as_deref().unwrap_or_default()));
    match reply {
        XReply::Connect(info) => {
            set("callee_num", Dynamic::from(text(&info.callee)));
            set("max_duration", Dynamic::from(info.max_duration));
            set("wait_voice", shown(&info.wait_voice));
            set("record_flag", Dynamic::from(info.record));
            set("record_hint_tone", shown(&info.record_hint_tone));
            set("last_min_voice", shown(&info.last_min_voice));
        }
        XReply::Close(info) => set("close_hint_tone", shown(&info.close_hint_tone)),
    }
    Dynamic::from_map(map)
}

/// Why X mode's callin got no usable reply: `#{kind, reason}` (`kind`: `timeout`,
/// `unreachable`, `status`, `invalid`, `tone`, `failing_fast`).
fn failure_map(failure: &XFailure) -> Dynamic {
    let mut map = rhai::Map::new();
    map.insert("kind".into(), Dynamic::from(text(failure.kind())));
    map.insert("reason".into(), Dynamic::from(text(&failure.to_string())));
    Dynamic::from_map(map)
}

fn register_app(engine: &mut Engine) {
    engine
        .register_type_with_name::<Arc<App>>("App")
        .register_get("app_key", |app: &mut Arc<App>| text(&app.app_key))
        .register_get("mode", |app: &mut Arc<App>| text(&app.mode.to_string()))
        .register_get("scenario", |app: &mut Arc<App>| text(&app.scenario))
        .register_get("recording", |app: &mut Arc<App>| app.recording)
        .register_get("record_hint_tone", |app: &mut Arc<App>| text(&app.record_hint_tone))
        .register_get("close_hint_tone", |app: &mut Arc<App>| text(&app.close_hint_tone))
        .register_get("extension_digits", |app: &mut Arc<App>| i64::from(app.extension_digits))
        .register_get("extension_prompt", |app: &mut Arc<App>| text(&app.extension_prompt));
}

/// A mode's binding as scripts see it: a Rhai type of its own name, with the getters every
/// binding has.
trait ScriptBinding: Recorded + Send + Sync + 'static {
    /// The type's name in Rhai (and in script errors).
    const TYPE_NAME: &'static str;
    fn x_number(&self) -> &str;
    fn user_data(&self) -> Option<&str>;
}

macro_rules! script_binding {
    ($($binding:ty),*) => {$(
        impl ScriptBinding for $binding {
            const TYPE_NAME: &'static str = stringify!($binding);
            fn x_number(&self) -> &str {
                &self.x_number
            }
            fn user_data(&self) -> Option<&str> {
                self.user_data.as_deref()
            }
        }
    )*};
}

script_binding!(AxbBinding, AxBinding, AxeBinding);

/// Registers `B` with the getters every binding has; the caller adds the mode's own.
fn register_binding<B: ScriptBinding>(engine: &mut Engine) -> &mut Engine {
    fn shown(value: Option<&str>) -> ImmutableString {
        value.map_or_else(ImmutableString::new, text)
    }
    engine
        .register_type_with_name::<Arc<B>>(B::TYPE_NAME)
        .register_get("subscription_id", |b: &mut Arc<B>| text(b.subscription_id()))
        .register_get("x_number", |b: &mut Arc<B>| text(b.x_number()))
        .register_get("record", |b: &mut Arc<B>| b.records())
        .register_get("record_hint_tone", |b: &mut Arc<B>| shown(b.record_hint_tone()))
        .register_get("user_data", |b: &mut Arc<B>| shown(b.user_data()))
}

fn register_axb_binding(engine: &mut Engine) {
    type B = Arc<AxbBinding>;
    register_binding::<AxbBinding>(engine)
        .register_get("caller_num", |b: &mut B| text(&b.caller_num))
        .register_get("callee_num", |b: &mut B| text(&b.callee_num))
        .register_get("call_direction", |b: &mut B| i64::from(b.call_direction.code()))
        .register_get("max_duration", |b: &mut B| b.max_duration_min)
        .register_get("last_min_voice", |b: &mut B| optional(&b.last_min_voice))
        .register_get("caller_hint_tone", |b: &mut B| optional(&b.pre_voice.caller_hint_tone))
        .register_get("callee_hint_tone", |b: &mut B| optional(&b.pre_voice.callee_hint_tone))
        .register_get("expires_at", |b: &mut B| b.expires_at.map_or(Dynamic::UNIT, Dynamic::from));
}

fn register_ax_binding(engine: &mut Engine) {
    type B = Arc<AxBinding>;
    register_binding::<AxBinding>(engine)
        .register_get("orig_num", |b: &mut B| text(&b.orig_num))
        .register_get("max_duration", |b: &mut B| b.max_duration_min)
        .register_get("last_min_voice", |b: &mut B| optional(&b.last_min_voice))
        .register_get("caller_hint_tone", |b: &mut B| optional(&b.pre_voice.caller_hint_tone))
        .register_get("callee_hint_tone", |b: &mut B| optional(&b.pre_voice.callee_hint_tone))
        .register_get("private_sms", |b: &mut B| b.private_sms);
}

fn register_axe_binding(engine: &mut Engine) {
    type B = Arc<AxeBinding>;
    register_binding::<AxeBinding>(engine)
        .register_get("bind_num", |b: &mut B| text(&b.bind_num))
        .register_get("extend_num", |b: &mut B| text(&b.extend_num))
        .register_get("callback_num", |b: &mut B| optional(&b.callback_num))
        .register_get("callback_tone", |b: &mut B| optional(&b.callback_tone))
        .register_get("expires_at", |b: &mut B| b.expires_at.map_or(Dynamic::UNIT, Dynamic::from));
}

fn register_decision(engine: &mut Engine) {
    type D = Decision;
    engine
        .register_type_with_name::<D>("Decision")
        .register_fn("connect", |callee: ImmutableString| Decision::connect(callee.to_string()))
        .register_fn("release", |code: i64| Decision::release(state_code(code), None))
        .register_fn("release", |code: i64, tone: ImmutableString| {
            Decision::release(state_code(code), from_script(tone))
        })
        .register_fn("collect", |prompt: ImmutableString, max_digits: i64| {
            // Out-of-range digit counts become 0, which the host's check names.
            Decision::collect(from_script(prompt), u8::try_from(max_digits).unwrap_or(0))
        })
        .register_get("action", |d: &mut D| text(d.action.as_str()))
        .register_get("prompt", |d: &mut D| optional(&d.prompt))
        .register_get("max_digits", |d: &mut D| i64::from(d.max_digits))
        .register_get_set("timeout_ms", |d: &mut D| d.timeout_ms, |d: &mut D, ms: i64| d.timeout_ms = ms)
        .register_get("callee", |d: &mut D| optional(&d.callee))
        .register_get("state_code", |d: &mut D| {
            d.state_code.map_or(Dynamic::UNIT, |code| Dynamic::from(i64::from(code)))
        })
        .register_get("tone", |d: &mut D| optional(&d.tone))
        .register_get_set("record", |d: &mut D| d.record, |d: &mut D, on: bool| d.record = on)
        .register_get_set(
            "record_hint_tone",
            |d: &mut D| optional(&d.record_hint_tone),
            |d: &mut D, tone: ImmutableString| d.record_hint_tone = from_script(tone),
        )
        .register_get_set(
            "pre_voice",
            |d: &mut D| optional(&d.pre_voice),
            |d: &mut D, tone: ImmutableString| d.pre_voice = from_script(tone),
        )
        .register_get_set(
            "wait_voice",
            |d: &mut D| optional(&d.wait_voice),
            |d: &mut D, tone: ImmutableString| d.wait_voice = from_script(tone),
        )
        .register_get_set(
            "max_duration",
            |d: &mut D| d.max_duration,
            |d: &mut D, minutes: i64| d.max_duration = minutes,
        )
        .register_get_set(
            "last_min_voice",
            |d: &mut D| optional(&d.last_min_voice),
            |d: &mut D, tone: ImmutableString| d.last_min_voice = from_script(tone),
        );
}

fn register_release(engine: &mut Engine) {
    fn optional_int(value: Option<i64>) -> Dynamic {
        value.map_or(Dynamic::UNIT, Dynamic::from)
    }
    engine
        .register_type_with_name::<Release>("Release")
        .register_get("q850", |r: &mut Release| optional_int(r.q850))
        .register_get("sip_status", |r: &mut Release| optional_int(r.sip_status))
        .register_get("release_side", |r: &mut Release| text(&r.release_side))
        .register_get("alerted", |r: &mut Release| r.alerted)
        .register_get("answered", |r: &mut Release| r.answered)
        .register_get("collecting", |r: &mut Release| r.collecting);
}

/// Out-of-range codes become one no table lists, so the host's check names them.
fn state_code(code: i64) -> state::StateCode {
    state::StateCode::try_from(code).unwrap_or(state::StateCode::MAX)
}
