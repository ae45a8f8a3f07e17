//! The switch adapter (CONTRACT §4), privnum's own API for the SBC or softswitch:
//! `Authorization: Bearer <switch_token>`.
//!
//! | call | body | answer |
//! |---|---|---|
//! | `POST /v1/switch/calls` | `{"caller","called","sessionId"?,"time"?}` | a decision |
//! | `POST /v1/switch/calls/{sessionId}/digits` | `{"digits"}` | a decision (AXE, after a `collect`) |
//! | `POST /v1/switch/calls/{sessionId}/events` | `{"event","time"?,"releaseSide"?,"stateCode"?,"q850"?,"sipStatus"?,"recording"?}` | `{}` |
//! | `GET /v1/switch/calls/{sessionId}/cdr` | | the CDR of an ended call (kept a minute after the end) |
//! | `GET /v1/switch/tones/{appKey}/{fileName}` | | an approved tone's WAV (`http::tones`) |
//! | `POST /v1/switch/echo` | any JSON | the same JSON (a probe, and the load harness's baseline) |
//!
//! Errors use the provisioning envelope: 400 for a bad body, 401 for a bad token, 404 for an
//! unknown session, 409 for a sessionId that is already in use.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::has_bearer;
use super::error::AppError;
use super::request::{describe_json_error, read_body, PathParams};
use super::AppState;
use crate::calls::ledger::DigitsOutcome;
use crate::calls::route::{decide_callin, decide_digits, state_code_for_release, CallIn, Routed};
use crate::calls::session::{Event, EventKind, Recording, Session};
use crate::domain::number::check_e164;
use crate::domain::{codes, Action};
use crate::script::api::Release;
use crate::telemetry::CallinDecided;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/calls", post(calls_create))
        .route("/calls/{session_id}/digits", post(calls_digits))
        .route("/calls/{session_id}/events", post(calls_event))
        .route("/calls/{session_id}/cdr", axum::routing::get(calls_cdr))
        .route("/tones/{app_key}/{file_name}", axum::routing::get(super::tones::serve))
        .route("/echo", post(echo))
}

/// A request carrying `Authorization: Bearer <switch_token>`.
pub struct Switch;

impl FromRequestParts<AppState> for Switch {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if has_bearer(parts, &state.config.switch_token) {
            return Ok(Switch);
        }
        Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            codes::INVALID_DIGEST,
            "the switch API needs Authorization: Bearer <switch_token>",
        ))
    }
}

fn bad_request(field: &str, reason: impl std::fmt::Display) -> AppError {
    AppError::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, format!("Invalid request.{field} {reason}"))
}

/// A JSON body of a known shape, at most 64 KiB. A bad body is 400 here (the switch's API is
/// privnum's own), with the field, line and column.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, AppError> {
        let bytes = read_body(request).await?;
        serde_json::from_slice(&bytes).map(Body).map_err(|err| {
            let status = StatusCode::BAD_REQUEST;
            AppError { status, ..describe_json_error(&err) }
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CallRequest {
    caller: String,
    called: String,
    session_id: Option<String>,
    time: Option<String>,
}

/// An RFC 3339 time, or now when absent.
fn parse_time(field: &str, time: Option<&str>, now: i64) -> Result<i64, AppError> {
    match time {
        None => Ok(now),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp())
            .map_err(|_| bad_request(field, format!("{text:?} must be an RFC 3339 time such as 2026-01-02T03:04:05Z"))),
    }
}

async fn calls_create(
    _: Switch,
    State(state): State<AppState>,
    Body(request): Body<CallRequest>,
) -> Result<Response, AppError> {
    check_e164(&request.called).map_err(|reason| bad_request("called", reason))?;
    if request.caller.is_empty() || request.caller.len() > 32 {
        return Err(bad_request("caller", "must be 1 to 32 characters"));
    }
    let session_id = match request.session_id {
        Some(id) if id.is_empty() || id.len() > 256 => {
            return Err(bad_request("sessionId", "must be 1 to 256 characters"))
        }
        Some(id) => id,
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let now = state.clock.now();
    let time = parse_time("time", request.time.as_deref(), now)?;
    let call = CallIn { session_id, caller: request.caller, called: request.called, time };
    let routed = decide_callin(&state.store, &state.scripts, &state.metrics, &call, now)?;
    CallinDecided { action: routed.decision.action, fallback: routed.fallback }.emit(&state.metrics);
    let answer = decision_json(&call.session_id, &call.called, &routed);
    let released = routed.decision.action == Action::Release;
    let session = Session {
        session_id: call.session_id,
        icid: uuid::Uuid::new_v4().simple().to_string(),
        app_key: routed.app.as_ref().map(|app| app.app_key.clone()),
        mode: routed.app.as_ref().map(|app| app.mode),
        caller: call.caller,
        x_number: call.called,
        callee: routed.decision.callee.clone().filter(|_| !released),
        subscription_id: routed.binding.as_ref().map(|b| b.subscription_id().to_owned()),
        binding_caller_num: routed.binding.as_ref().map(|b| b.a_number().to_owned()),
        user_data: routed.user_data.clone(),
        extend_num: None,
        recording: None,
        decision: routed.decision,
        script_version: routed.script_version,
        started_at: time,
        events: Vec::new(),
        last_seen: now,
        ended_at: released.then_some(now),
    };
    // A connected call's save is only queued, so it opens right here; a released call's save is
    // waited for, on a blocking thread.
    let opened = if released {
        let ledger = state.ledger.clone();
        tokio::task::spawn_blocking(move || ledger.open(session)).await.map_err(|err| AppError::internal(&err))??
    } else {
        state.ledger.open(session)?
    };
    if !opened {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            codes::INVALID_REQUEST,
            "Invalid request.sessionId is already in use",
        ));
    }
    // A call released at routing has its CDR now: it is on disk before the answer. A connect is
    // answered at once (the switch is waiting to ring); its session and callin push are applied
    // by the store's committer right after, and durable with the next flush (README, "Durability").
    if released {
        state.store.calls().durable().await?;
    }
    Ok(Json(answer).into_response())
}

/// The decision as the switch reads it (CONTRACT §4): camelCase, display always the X.
fn decision_json(session_id: &str, x_number: &str, routed: &Routed) -> Value {
    let decision = &routed.decision;
    let mut fields = Map::new();
    fields.insert("sessionId".into(), session_id.into());
    fields.insert("action".into(), decision.action.as_str().into());
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            fields.insert(name.to_owned(), value);
        }
    };
    match decision.action {
        Action::Connect => {
            put("callee", decision.callee.clone().map(Value::from));
            put("display", Some(x_number.into()));
            put("subscriptionId", routed.binding.as_ref().map(|b| b.subscription_id().into()));
            put("userData", routed.user_data.clone().map(Value::from));
            put("record", Some(decision.record.into()));
            put("recordHintTone", decision.record_hint_tone.clone().map(Value::from));
            put("preVoice", decision.pre_voice.clone().map(Value::from));
            put("waitVoice", decision.wait_voice.clone().map(Value::from));
            put("maxDuration", Some(decision.max_duration.into()));
            put("lastMinVoice", decision.last_min_voice.clone().filter(|_| decision.max_duration > 0).map(Value::from));
        }
        Action::Release => {
            put("stateCode", decision.state_code.map(Value::from));
            put("tone", decision.tone.clone().map(Value::from));
        }
        Action::Collect => {
            put("prompt", decision.prompt.clone().map(Value::from));
            put("maxDigits", Some(decision.max_digits.into()));
            put("timeoutMs", Some(decision.timeout_ms.into()));
        }
    }
    Value::Object(fields)
}

fn unknown_session(session_id: &str) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        codes::INVALID_REQUEST,
        format!("Invalid request.sessionId {session_id} is not a known session"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DigitsRequest {
    digits: String,
}

/// Digits longer than any extension are a switch fault, not a caller's typo.
const MAX_DIGITS_REPORTED: usize = 32;

fn not_collecting(session_id: &str) -> AppError {
    AppError::new(
        StatusCode::CONFLICT,
        codes::INVALID_REQUEST,
        format!("Invalid request.session {session_id} is not collecting digits"),
    )
}

/// The caller's extension after a `collect`: decided by `modes/axe.rhai` `on_digits`. The switch
/// reports an empty string when the caller entered nothing before the collect's timeout.
async fn calls_digits(
    _: Switch,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<String>,
    Body(request): Body<DigitsRequest>,
) -> Result<Response, AppError> {
    let digits = request.digits.trim();
    if digits.len() > MAX_DIGITS_REPORTED || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#') {
        return Err(bad_request("digits", format!("must be at most {MAX_DIGITS_REPORTED} of 0-9, * and #")));
    }
    // An extension is the digits before the caller's closing '#'.
    let digits = digits.trim_end_matches('#').to_owned();
    let session = state.ledger.sessions.get(&session_id).ok_or_else(|| unknown_session(&session_id))?;
    if !session.is_collecting() {
        return Err(not_collecting(&session_id));
    }
    let now = state.clock.now();
    let routed = decide_digits(&state.store, &state.scripts, &state.metrics, &session, &digits, now)?;
    CallinDecided { action: routed.decision.action, fallback: routed.fallback }.emit(&state.metrics);
    let answer = decision_json(&session_id, &session.x_number, &routed);
    let (ledger, id) = (state.ledger.clone(), session_id.clone());
    let outcome = tokio::task::spawn_blocking(move || ledger.digits(&id, &digits, &routed, now))
        .await
        .map_err(|err| AppError::internal(&err))??;
    match outcome {
        DigitsOutcome::UnknownSession => return Err(unknown_session(&session_id)),
        DigitsOutcome::NotCollecting => return Err(not_collecting(&session_id)),
        DigitsOutcome::Recorded => {}
    }
    // The switch waited out a prompt already; the callback record or the CDR is on disk before
    // the answer.
    state.store.durable().await?;
    Ok(Json(answer).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventRequest {
    event: EventKind,
    time: Option<String>,
    release_side: Option<ReleaseSide>,
    state_code: Option<u32>,
    q850: Option<u32>,
    sip_status: Option<u32>,
    recording: Option<RecordingReport>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ReleaseSide {
    Caller,
    Callee,
    Platform,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecordingReport {
    object_name: String,
    start_time: String,
}

async fn calls_event(
    _: Switch,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<String>,
    Body(request): Body<EventRequest>,
) -> Result<Response, AppError> {
    let time = parse_time("time", request.time.as_deref(), state.clock.now())?;
    if let Some(code) = request.state_code {
        if crate::domain::state::describe(code).is_none() {
            return Err(bad_request("stateCode", format!("{code} is not a reference state code (reference §14.1)")));
        }
    }
    if request.q850.is_some_and(|cause| cause > 127) {
        return Err(bad_request("q850", "must be a Q.850 cause, 0 to 127"));
    }
    if request.sip_status.is_some_and(|status| !(100..=699).contains(&status)) {
        return Err(bad_request("sipStatus", "must be a SIP status, 100 to 699"));
    }
    let recording = match request.recording {
        Some(report) => {
            Some(Recording { start_time: reference_start_time(&report.start_time)?, object_name: report.object_name })
        }
        None => None,
    };
    let release_side = request.release_side.map(|side| match side {
        ReleaseSide::Caller => "caller",
        ReleaseSide::Callee => "callee",
        ReleaseSide::Platform => "platform",
    });
    let mut state_code = request.state_code;
    if request.event == EventKind::Disconnect && state_code.is_none() {
        let (alerted, answered) =
            state.ledger.sessions.progress(&session_id).ok_or_else(|| unknown_session(&session_id))?;
        let release = Release {
            q850: request.q850.map(i64::from),
            sip_status: request.sip_status.map(i64::from),
            release_side: release_side.unwrap_or_default().to_owned(),
            alerted,
            answered,
            collecting: state.ledger.sessions.collecting(&session_id).unwrap_or(false),
        };
        state_code = Some(state_code_for_release(&state.scripts, release));
    }
    let event = Event {
        kind: request.event,
        time,
        release_side: release_side.map(str::to_owned),
        state_code,
        q850: request.q850,
        sip_status: request.sip_status,
    };
    let (ledger, now, id) = (state.ledger.clone(), state.clock.now(), session_id.clone());
    let files_recording = recording.is_some();
    let recorded = tokio::task::spawn_blocking(move || ledger.record(&id, event, recording, now))
        .await
        .map_err(|err| AppError::internal(&err))??;
    recorded.ok_or_else(|| unknown_session(&session_id))?;
    // The event is acknowledged only once its pushes are on disk (the call log), and the
    // recording it files too (sled).
    if files_recording {
        state.store.durable().await?;
    } else {
        state.store.calls().durable().await?;
    }
    Ok(Json(json!({})).into_response())
}

/// Answers with the JSON body it was sent: the switch's probe of the path (token, connection,
/// round trip), and the load harness's baseline for what HTTP alone costs on this server.
async fn echo(_: Switch, Body(body): Body<Value>) -> Response {
    Json(body).into_response()
}

async fn calls_cdr(
    _: Switch,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<String>,
) -> Result<Response, AppError> {
    let session = state.ledger.sessions.get(&session_id).ok_or_else(|| unknown_session(&session_id))?;
    if session.ended_at.is_none() {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            codes::INVALID_REQUEST,
            format!("Invalid request.session {session_id} has not ended"),
        ));
    }
    Ok(Json(crate::calls::report::cdr(&session, &state.config.node_name, None)).into_response())
}

/// A recording's start as the reference writes it (`yyyy-MM-dd HH:mm:ss` UTC), from RFC 3339 or
/// that format.
fn reference_start_time(text: &str) -> Result<String, AppError> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(crate::domain::time::reference_time(time.timestamp()));
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .map(|_| text.to_owned())
        .map_err(|_| bad_request("recording.startTime", format!("{text:?} must be RFC 3339 or yyyy-MM-dd HH:mm:ss")))
}
