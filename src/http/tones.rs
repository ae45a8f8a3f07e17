//! The tone registry over HTTP: upload, review and listing for ops (admin API), and the approved
//! audio for the switch.
//!
//! | call | body | answer |
//! |---|---|---|
//! | `PUT /v1/admin/apps/{appKey}/tones/{fileName}` | the WAV | `fileName`, `state` (`pending`), size, length, `converted`, `serving` |
//! | `POST /v1/admin/apps/{appKey}/tones/{fileName}/review` | `{"approve":true}` or `{"approve":false,"reason":"…"}`, optionally with the `"revision"` judged | the tone; 409 if a newer upload came in |
//! | `GET /v1/admin/apps/{appKey}/tones` | | `tones`: every tone of the app with its state |
//! | `GET /v1/admin/apps/{appKey}/tones/{fileName}` | | for reviewers: the pending upload's audio, else the approved audio (`X-Tone-Revision`, `X-Tone-State`) |
//! | `GET /v1/switch/tones/{appKey}/{fileName}` | | the approved audio (404 until approved) |
//!
//! An upload in any WAV format is converted to the carrier's (A-law, 8000 Hz, mono) on a blocking
//! thread; one already in that format is kept byte for byte.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::admin::{admin_error, load_app, one};
use super::auth::Admin;
use super::error::{success, AppError};
use super::request::{read_body_up_to, JsonBody, PathParams};
use super::switch::Switch;
use super::AppState;
use crate::domain::tone::{check_tone_name, Review, Tone};
use crate::domain::{codes, Fields, Rejection};
use crate::tone;

/// The largest upload accepted before conversion: 2 MB of A-law holds about 262 s, and 262 s of
/// 24-bit 48 kHz stereo (the widest common recording) is about 75 MB. Conversion holds the samples
/// as 32-bit floats, so one upload can take a few hundred MB while it converts.
pub const MAX_UPLOAD_BYTES: usize = 96 * 1024 * 1024;

const WAV: &str = "audio/wav";

fn check_file_name(file_name: &str) -> Result<(), AppError> {
    check_tone_name(file_name).map_err(|reason| AppError::invalid("fileName", reason))
}

/// A tone as the admin API shows it: its record, and whether an approved version plays.
fn tone_fields(tone: &Tone) -> Map<String, Value> {
    let mut fields = match serde_json::to_value(tone) {
        Ok(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    fields.insert("serving".into(), tone.serving().into());
    fields
}

pub async fn upload(
    _: Admin,
    State(state): State<AppState>,
    PathParams((app_key, file_name)): PathParams<(String, String)>,
    request: Request,
) -> Result<Response, AppError> {
    check_file_name(&file_name)?;
    load_app(&state, &app_key)?;
    let body = read_body_up_to(request, MAX_UPLOAD_BYTES).await?;
    let converted = tokio::task::spawn_blocking(move || {
        let converted = tone::to_carrier_format(&body)?;
        let seconds = tone::inspect(&converted.bytes)?.seconds;
        Ok::<_, tone::ToneError>((converted, seconds))
    })
    .await
    .map_err(|err| AppError::internal(&err))?;
    let (converted, seconds) = converted.map_err(|err| {
        AppError::new(StatusCode::FORBIDDEN, codes::INVALID_REQUEST, format!("Invalid request.{file_name}: {err}"))
    })?;
    let (now, name) = (state.clock.now(), file_name.clone());
    let tone = state
        .write(move |store| {
            let tone = store.tones().upload(&app_key, &name, &converted.bytes, seconds, !converted.unchanged, now)?;
            tracing::info!(
                app_key = %app_key, file_name = %name, bytes = tone.bytes, converted = tone.converted,
                "tone uploaded, pending review"
            );
            Ok(tone)
        })
        .await
        .map_err(admin_error)?;
    state.store.durable().await?;
    Ok(success(tone_fields(&tone)))
}

pub async fn review(
    _: Admin,
    State(state): State<AppState>,
    PathParams((app_key, file_name)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    check_file_name(&file_name)?;
    let (review, revision) = Review::parse(&Fields::new(&body))?;
    let now = state.clock.now();
    let tone = state
        .write(move |store| {
            let tone = store.tones().review(&app_key, &file_name, &review, revision, now)?;
            tracing::info!(app_key = %app_key, file_name = %file_name, state = ?tone.state, "tone reviewed");
            Ok(tone)
        })
        .await
        .map_err(admin_error)?;
    state.store.durable().await?;
    Ok(success(tone_fields(&tone)))
}

pub async fn list(
    _: Admin,
    State(state): State<AppState>,
    PathParams(app_key): PathParams<String>,
) -> Result<Response, AppError> {
    load_app(&state, &app_key)?;
    let tones: Vec<Value> =
        state.store.tones().of_app(&app_key)?.iter().map(|tone| Value::Object(tone_fields(tone))).collect();
    Ok(success(one("tones", tones.into())))
}

/// What a reviewer should hear before deciding: the upload waiting for review, else the approved
/// audio. `X-Tone-Revision` names the upload, for the review's `revision`; `X-Tone-State` says
/// whether it is the `pending` or the `approved` one.
pub async fn audio_for_review(
    _: Admin,
    State(state): State<AppState>,
    PathParams((app_key, file_name)): PathParams<(String, String)>,
) -> Result<Response, AppError> {
    check_file_name(&file_name)?;
    match state.store.tones().audio_for_review(&app_key, &file_name)? {
        Some((tone, pending, audio)) => {
            let revision = if pending { Some(tone.revision) } else { tone.serving_revision };
            let headers = [
                (header::CONTENT_TYPE, WAV.to_owned()),
                (header::HeaderName::from_static("x-tone-revision"), revision.unwrap_or_default().to_string()),
                (
                    header::HeaderName::from_static("x-tone-state"),
                    if pending { "pending" } else { "approved" }.to_owned(),
                ),
            ];
            Ok((headers, audio).into_response())
        }
        None => Err(admin_error(Rejection::NotFound { what: format!("tone {file_name} of app {app_key}") })),
    }
}

/// What the switch plays: only approved audio.
pub async fn serve(
    _: Switch,
    State(state): State<AppState>,
    PathParams((app_key, file_name)): PathParams<(String, String)>,
) -> Result<Response, AppError> {
    check_file_name(&file_name)?;
    match state.store.tones().audio(&app_key, &file_name)? {
        Some(audio) => Ok(([(header::CONTENT_TYPE, WAV)], audio).into_response()),
        None => Err(AppError::new(
            StatusCode::NOT_FOUND,
            codes::INVALID_REQUEST,
            format!("Invalid request.{file_name} does not exist: app {app_key} has no approved tone of that name"),
        )),
    }
}
