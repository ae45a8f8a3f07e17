//! The customer's call controls (README, Stopping a call, recordings): stop a live call, and get a recording's
//! download link.
//!
//! Stopping a call asks the switch through `switch_control_url` with
//! `{"sessionId","command":"stop"}`. The recording link is a 301 to
//! `https://{recordDomain}/{fileName}?appKey=…&expires=…&signature=…`, where `signature` is
//! base64url(HMAC-SHA256(app secret, "{recordDomain}/{fileName}\n{expires}")) and `expires` is Unix
//! seconds three days ahead: the storage in front of the recordings checks both. Only recordings
//! that the switch reported for one of the app's calls get a link.
//!
//! Both go through `calls::Switchboard` (which calls are live, which app a recording is of);
//! this file parses the requests and signs the link.

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Map;
use sha2::Sha256;

use super::auth::Authenticated;
use super::error::{success, AppError};
use super::request::{query_object, JsonBody};
use super::AppState;
use crate::calls::switchboard::StopError;
use crate::domain::{codes, Fields};

pub const STOP_PATH: &str = "/rest/httpsessions/callStop/v2.0";
pub const RECORD_PATH: &str = "/rest/provision/voice/record/v1.0";

/// How long a recording link works (the Huawei API's three days).
const RECORD_LINK_SECS: i64 = 3 * 24 * 3600;

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

/// The signature of a recording link: it covers the app the link was made for with the file, so
/// a link for one app's recording cannot be turned into another app's by editing `appKey`.
pub fn record_signature(secret: &str, app_key: &str, domain: &str, file_name: &str, expires: i64) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{app_key}\n{domain}/{file_name}\n{expires}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

pub async fn record_link(
    State(state): State<AppState>,
    auth: Authenticated,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let params = query_object(query.as_deref())?;
    let fields = Fields::new(&params);
    let domain =
        fields.bounded_string("recordDomain", 128)?.ok_or_else(|| AppError::invalid("recordDomain", "is required"))?;
    let file_name = fields.tone("fileName")?.ok_or_else(|| AppError::invalid("fileName", "is required"))?;
    let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':');
    if !domain.chars().all(host_char) {
        return Err(AppError::invalid("recordDomain", format!("{domain:?} is not a host name")));
    }
    // Only a recording that one of this app's calls reported: a signed link to another app's
    // recording would hand it over.
    if !state.switchboard.is_recording_of(&auth.app.app_key, file_name)? {
        return Err(AppError::invalid("fileName", format!("{file_name} is not a recording of this app's calls")));
    }
    let expires = state.clock.now() + RECORD_LINK_SECS;
    let signature = record_signature(&auth.app.app_secret, &auth.app.app_key, domain, file_name, expires);
    let location =
        format!("https://{domain}/{file_name}?appKey={}&expires={expires}&signature={signature}", auth.app.app_key);
    Ok((StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response())
}
