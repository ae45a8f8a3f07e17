//! The customer's call controls (README, Stopping a call, recordings): stop a live call, and get a recording's
//! download link.
//!
//! Stopping a call asks the switch through `switch_control_url` with
//! `{"sessionId","command":"stop"}`. The recording link is a 301 to the signed link
//! `domain::recording::link` makes, three days ahead: the storage in front of the recordings
//! checks it. Only recordings that the switch reported for one of the app's calls get a link.
//!
//! Both go through `calls::Switchboard` (which calls are live, which app a recording is of);
//! this file parses the requests and signs the link.

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Map;

use super::auth::Authenticated;
use super::error::{success, AppError};
use super::request::{query_object, JsonBody};
use super::AppState;
use crate::calls::switchboard::StopError;
use crate::domain::{codes, recording, Fields};

pub const STOP_PATH: &str = "/rest/httpsessions/callStop/v2.0";
pub const RECORD_PATH: &str = "/rest/provision/voice/record/v1.0";

pub async fn calls_stop(
    State(state): State<AppState>,
    auth: Authenticated,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let fields = Fields::new(&body);
    let session_id =
        fields.bounded_string("sessionid", 256)?.ok_or_else(|| AppError::invalid("sessionid", "is required"))?;
    if let Some(signal) = fields.string("signal")? {
        if signal != "call_stop" {
            return Err(AppError::invalid("signal", format!("must be \"call_stop\", not {signal:?}")));
        }
    }
    match state.switchboard.stop(&auth.app.app_key, session_id).await {
        Ok(()) => Ok(success(Map::new())),
        Err(StopError::NotLive(session_id)) => Err(AppError::invalid(
            "sessionid",
            format!("{session_id} is not a call of this app that is still going on"),
        )),
        Err(StopError::NotConfigured) => {
            tracing::error!("a call stop was asked for, but switch_control_url is not configured");
            Err(AppError::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL_ERROR, "Internal system error."))
        }
        Err(StopError::Refused(reason)) => {
            tracing::error!(reason, "the switch did not accept a call stop");
            Err(AppError::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL_ERROR, "Internal system error."))
        }
    }
}

pub async fn record_link(
    State(state): State<AppState>,
    auth: Authenticated,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let params = query_object(query.as_deref())?;
    let fields = Fields::new(&params);
    let domain = fields
        .bounded_string("recordDomain", recording::MAX_DOMAIN_LEN)?
        .ok_or_else(|| AppError::invalid("recordDomain", "is required"))?;
    let file_name = fields.tone("fileName")?.ok_or_else(|| AppError::invalid("fileName", "is required"))?;
    if !recording::is_host(domain) {
        return Err(AppError::invalid("recordDomain", format!("{domain:?} is not a host name")));
    }
    // Only a recording that one of this app's calls reported: a signed link to another app's
    // recording would hand it over.
    if !state.switchboard.is_recording_of(&auth.app.app_key, file_name)? {
        return Err(AppError::invalid("fileName", format!("{file_name} is not a recording of this app's calls")));
    }
    let expires = state.clock.now() + recording::LINK_SECS;
    let location = recording::link(&auth.app.app_secret, &auth.app.app_key, domain, file_name, expires);
    Ok((StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response())
}
