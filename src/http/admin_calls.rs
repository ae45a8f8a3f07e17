//! Live calls for ops (admin API): list the calls under way, and end one that was left open.
//!
//! | call | body | answer |
//! |---|---|---|
//! | `GET /v1/admin/calls?app=…&limit=…` | | `calls` under way, oldest first, at most `limit` (default 100, at most 1000); `total` live calls matching; `limit` |
//! | `POST /v1/admin/calls/{sessionId}/end` | | `sessionId`, `stateCode` (8020), `switch`: `stopped`, `not_configured` or `refused` (with `switchError`) |
//!
//! Ending a call goes through the switchboard and the ledger like every other change to a call:
//! privnum records a `disconnect` (releaseSide `platform`, `stateCode` 8020) and makes the CDR
//! (`closedBy` says ops ended it), answered once both are in the call log. When
//! `switch_control_url` is set, the switch is first asked to stop the call
//! (`{"sessionId","command":"stop"}`); the call ends in privnum whatever the switch answers.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::admin::{admin_error, one};
use super::auth::Admin;
use super::error::{success, AppError};
use super::request::{query_object, PathParams};
use super::AppState;
use crate::calls::ledger::{EndOutcome, PLATFORM_END_CODE};
use crate::calls::session::{EventKind, Session};
use crate::calls::switchboard::{StopError, SwitchError};
use crate::calls::Durability;
use crate::domain::{codes, Action, Rejection};

/// How many calls one listing shows when the request names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The most calls one listing shows.
pub const MAX_LIMIT: usize = 1000;

/// Where a live call is, by its decision and the switch's events so far.
pub fn call_state(session: &Session) -> &'static str {
    let seen = |kind| session.events.iter().any(|event| event.kind == kind);
    if session.is_collecting() {
        "collecting"
    } else if seen(EventKind::Answer) {
        "answered"
    } else if seen(EventKind::Alerting) {
        "alerting"
    } else if seen(EventKind::Callout) {
        "callout"
    } else if session.decision.action == Action::Connect {
        "connecting"
    } else {
        "decided"
    }
}

fn time(seconds: i64) -> Value {
    chrono::DateTime::from_timestamp(seconds, 0).map_or(Value::Null, |time| time.to_rfc3339().into())
}

fn call_view(session: &Session) -> Value {
    json!({
        "sessionId": session.session_id,
        "appKey": session.app_key,
        "mode": session.mode,
        "x": session.x_number,
        "caller": session.caller,
        "callee": session.callee,
        "extendNum": session.extend_num,
        "subscriptionId": session.subscription_id,
        "startedAt": time(session.started_at),
        "lastSeen": time(session.last_seen),
        "state": call_state(session),
        "scriptVersion": session.script_version,
        "rulesetVersion": session.ruleset_version,
    })
}

pub async fn calls_list(
    _: Admin,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let query = query_object(query.as_deref())?;
    for key in query.keys() {
        if key != "app" && key != "limit" {
            return Err(AppError::invalid(key, "is not a parameter of GET /v1/admin/calls (app, limit)"));
        }
    }
    let app = query.get("app").and_then(Value::as_str).filter(|app| !app.is_empty()).map(str::to_owned);
    let limit = match query.get("limit").and_then(Value::as_str) {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(limit @ 1..=MAX_LIMIT) => limit,
            _ => return Err(AppError::invalid("limit", format!("{text:?} is not a number from 1 to {MAX_LIMIT}"))),
        },
    };
    let switchboard = state.switchboard.clone();
    let (calls, total) = tokio::task::spawn_blocking(move || switchboard.sessions().live(app.as_deref(), limit))
        .await
        .map_err(|err| AppError::internal(&err))?;
    let mut fields = one("calls", calls.iter().map(call_view).collect::<Vec<_>>().into());
    fields.insert("total".into(), total.into());
    fields.insert("limit".into(), limit.into());
    Ok(success(fields))
}

pub async fn calls_end(
    _: Admin,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<String>,
) -> Result<Response, AppError> {
    let not_found = || admin_error(Rejection::NotFound { what: format!("call {session_id}") });
    let session = state.switchboard.sessions().get(&session_id).ok_or_else(not_found)?;
    if session.ended_at.is_some() {
        return Err(already_ended(&session_id));
    }
    // The switch first, while the call is live for it too; privnum ends the call whatever it says.
    let mut fields = one("sessionId", session_id.clone().into());
    let stopped = match &session.app_key {
        Some(app_key) => state.switchboard.stop(app_key, &session_id).await,
        None => Err(StopError::NotLive(session_id.clone())),
    };
    let switch = match stopped {
        Ok(()) => "stopped",
        Err(StopError::NotConfigured) => "not_configured",
        Err(err) => {
            tracing::warn!(session_id = %session_id, error = %err, "the switch did not stop a call ops ended");
            fields.insert("switchError".into(), err.to_string().into());
            "refused"
        }
    };
    fields.insert("switch".into(), switch.into());
    let answered = state.switchboard.end(&session_id).await.map_err(|err| match err {
        SwitchError::Store(err) => AppError::from(err),
        other => AppError::internal(&other),
    })?;
    match answered.answer {
        EndOutcome::UnknownSession => return Err(not_found()),
        EndOutcome::AlreadyEnded => return Err(already_ended(&session_id)),
        EndOutcome::Ended => {}
    }
    match answered.durability {
        Durability::None => {}
        Durability::Calls => state.store.calls().durable().await?,
        Durability::All => state.store.durable().await?,
    }
    tracing::info!(session_id = %session_id, switch, "call ended by ops through the admin API");
    fields.insert("stateCode".into(), PLATFORM_END_CODE.into());
    Ok(success(fields))
}

fn already_ended(session_id: &str) -> AppError {
    AppError::new(StatusCode::CONFLICT, codes::INVALID_REQUEST, format!("call {session_id} has ended already"))
}
