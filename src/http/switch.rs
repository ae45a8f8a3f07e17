//! The switch adapter (README, Switch adapter), privnum's own API for the SBC or softswitch:
//! `Authorization: Bearer <switch_token>`.
//!
//! | call | body | answer |
//! |---|---|---|
//! | `POST /v1/switch/calls` | `{"caller","called","sessionId"?,"time"?}` | a decision |
//! | `POST /v1/switch/calls/{sessionId}/digits` | `{"digits"}` | a decision (AXE, after a `collect`) |
//! | `POST /v1/switch/calls/{sessionId}/events` | `{"event","time"?,"releaseSide"?,"stateCode"?,"q850"?,"sipStatus"?,"recording"?,"caller"?,"called"?,"callTime"?}` | `{}` |
//! | `GET /v1/switch/calls/{sessionId}/cdr` | | the CDR of an ended call (kept a minute after the end) |
//! | `GET /v1/switch/tones/{appKey}/{fileName}` | | an approved tone's WAV (`http::tones`) |
//! | `POST /v1/switch/echo` | any JSON | the same JSON (a probe, and the load harness's baseline) |
//!
//! Errors use the provisioning envelope: 400 for a bad body, 401 for a bad token, 404 for an
//! unknown session, 409 for a sessionId that another call uses. Numbers are E.164, a sessionId is
//! printable ASCII, and a recording's `objectName` a file name (the alphabet of tone names), so
//! nothing the switch sends can forge a log line or walk a path. A callin retried with the same
//! sessionId, caller and X hears its decision again; an event reported again is not pushed twice.
//!
//! Handlers here only parse and check requests (every 400 is decided here) and serialize what
//! `calls::Switchboard` answers, after the durability it asks for; the call's flow is the
//! switchboard's.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::has_bearer;
use super::error::AppError;
use super::request::{describe_json_error, read_body, PathParams};
use super::AppState;
use crate::calls::session::{EventKind, Recording};
use crate::calls::switchboard::{CallOrigin, CallReport, EventReport, ReleaseSide, SwitchError};
use crate::calls::{Answered, Durability};
use crate::domain::codes;
use crate::domain::number::check_e164;
use crate::domain::tone::check_tone_name;

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

/// An RFC 3339 time, if one was sent.
fn parse_time(field: &str, time: Option<&str>) -> Result<Option<i64>, AppError> {
    match time {
        None => Ok(None),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.timestamp()))
            .map_err(|_| bad_request(field, format!("{text:?} must be an RFC 3339 time such as 2026-01-02T03:04:05Z"))),
    }
}

async fn calls_create(
    _: Switch,
    State(state): State<AppState>,
    Body(request): Body<CallRequest>,
) -> Result<Response, AppError> {
    check_e164(&request.called).map_err(|reason| bad_request("called", reason))?;
    check_e164(&request.caller).map_err(|reason| bad_request("caller", reason))?;
    if let Some(session_id) = &request.session_id {
        check_session_id(session_id)?;
    }
    let time = parse_time("time", request.time.as_deref())?;
    let report = CallReport { caller: request.caller, called: request.called, session_id: request.session_id, time };
    let answered = state.switchboard.callin(report).await.map_err(switch_error)?;
    answer(&state, answered).await
}

/// Sends an answer once its change is as durable as the switchboard asked.
async fn answer<T: Serialize>(state: &AppState, answered: Answered<T>) -> Result<Response, AppError> {
    match answered.durability {
        Durability::None => {}
        Durability::Calls => state.store.calls().durable().await?,
        Durability::All => state.store.durable().await?,
    }
    Ok(Json(answered.answer).into_response())
}

fn switch_error(err: SwitchError) -> AppError {
    match err {
        SwitchError::UnknownSession(session_id) => unknown_session(&session_id),
        SwitchError::SessionInUse(_) => {
            AppError::new(StatusCode::CONFLICT, codes::INVALID_REQUEST, "Invalid request.sessionId is already in use")
        }
        SwitchError::NotCollecting(session_id) => not_collecting(&session_id),
        SwitchError::NotEnded(session_id) => AppError::new(
            StatusCode::CONFLICT,
            codes::INVALID_REQUEST,
            format!("Invalid request.session {session_id} has not ended"),
        ),
        SwitchError::Store(err) => err.into(),
        SwitchError::Task(err) => AppError::internal(&err),
    }
}

/// The switch's id of a call: 1 to 256 printable ASCII characters (a SIP Call-ID's alphabet), so
/// that it can name the call in a log line, a path and a push as it is.
fn check_session_id(session_id: &str) -> Result<(), AppError> {
    if session_id.is_empty() || session_id.len() > 256 {
        return Err(bad_request("sessionId", "must be 1 to 256 characters"));
    }
    if let Some(bad) = session_id.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(bad_request(
            "sessionId",
            format!("contains {bad:?}; a sessionId is printable ASCII without spaces"),
        ));
    }
    Ok(())
}

/// A `{sessionId}` path segment, checked like a callin's.
struct SessionPath(String);

impl FromRequestParts<AppState> for SessionPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let PathParams(session_id) = PathParams::<String>::from_request_parts(parts, state).await?;
        check_session_id(&session_id)?;
        Ok(SessionPath(session_id))
    }
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
    SessionPath(session_id): SessionPath,
    Body(request): Body<DigitsRequest>,
) -> Result<Response, AppError> {
    let digits = request.digits.trim();
    if digits.len() > MAX_DIGITS_REPORTED || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#') {
        return Err(bad_request("digits", format!("must be at most {MAX_DIGITS_REPORTED} of 0-9, * and #")));
    }
    // An extension is the digits before the caller's closing '#'.
    let digits = digits.trim_end_matches('#').to_owned();
    let answered = state.switchboard.digits(&session_id, digits).await.map_err(switch_error)?;
    answer(&state, answered).await
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
    /// The call's `caller` and `called` (and `callTime`) as in its callin, so that privnum can
    /// rebuild a call a crash made it lose; optional, and used only for a call it does not know.
    caller: Option<String>,
    called: Option<String>,
    call_time: Option<String>,
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
    SessionPath(session_id): SessionPath,
    Body(request): Body<EventRequest>,
) -> Result<Response, AppError> {
    let time = parse_time("time", request.time.as_deref())?;
    if let Some(code) = request.state_code {
        if crate::domain::state::describe(code).is_none() {
            return Err(bad_request(
                "stateCode",
                format!("{code} is not a Huawei release code (docs/compatibility.md, Calls)"),
            ));
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
            check_tone_name(&report.object_name).map_err(|reason| bad_request("recording.objectName", reason))?;
            Some(Recording { start_time: reference_start_time(&report.start_time)?, object_name: report.object_name })
        }
        None => None,
    };
    let call = match (request.caller, request.called) {
        (Some(caller), Some(called)) => {
            check_e164(&caller).map_err(|reason| bad_request("caller", reason))?;
            check_e164(&called).map_err(|reason| bad_request("called", reason))?;
            Some(CallOrigin { caller, called, time: parse_time("callTime", request.call_time.as_deref())? })
        }
        (None, None) => None,
        _ => return Err(bad_request("caller", "and called go together: both name the call, or neither")),
    };
    let report = EventReport {
        call,
        kind: request.event,
        time,
        release_side: request.release_side,
        state_code: request.state_code,
        q850: request.q850,
        sip_status: request.sip_status,
        recording,
    };
    let answered = state.switchboard.event(&session_id, report).await.map_err(switch_error)?;
    answer(&state, answered).await
}

/// Answers with the JSON body it was sent: the switch's probe of the path (token, connection,
/// round trip), and the load harness's baseline for what HTTP alone costs on this server.
async fn echo(_: Switch, Body(body): Body<Value>) -> Response {
    Json(body).into_response()
}

async fn calls_cdr(
    _: Switch,
    State(state): State<AppState>,
    SessionPath(session_id): SessionPath,
) -> Result<Response, AppError> {
    let answered = state.switchboard.cdr(&session_id).map_err(switch_error)?;
    answer(&state, answered).await
}

/// A recording's start as the Huawei API writes it (`yyyy-MM-dd HH:mm:ss` UTC), from RFC 3339 or
/// that format.
fn reference_start_time(text: &str) -> Result<String, AppError> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(crate::domain::time::reference_time(time.timestamp()));
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .map(|_| text.to_owned())
        .map_err(|_| bad_request("recording.startTime", format!("{text:?} must be RFC 3339 or yyyy-MM-dd HH:mm:ss")))
}
