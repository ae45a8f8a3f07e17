//! AXB provisioning at `/rest/caas/relationnumber/partners/v1.0` (reference §3): bind (POST),
//! modify (PUT), unbind (DELETE), query (GET).
//!
//! GET and DELETE read the query string; real clients also send it again as a JSON body, which is
//! ignored. Every change is flushed to disk before it is acknowledged. Every tone a request names
//! must be an approved tone of the app (`1010002 Invalid request.<file> does not exist`).

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::auth::{AppOf, AxbApi};
use super::error::{success, AppError};
use super::request::{query_object, JsonBody};
use super::{warn_if_unannounced, AppState};
use crate::domain::axb::{AxbQuery, AxbUnbind, BindRequest, ModifyRequest, PreVoice};
use crate::domain::time::reference_time;
use crate::domain::{AxbBinding, Fields};

pub async fn bindings_create(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<AxbApi>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let request = BindRequest::parse(&Fields::new(&body))?;
    let (now, max_pairs) = (state.clock.now(), state.config.axb_max_pairs_per_x);
    let (app, binding) = state
        .write(move |store| {
            store.tones().check(&app.app_key, request.settings.tones())?;
            let binding = store.bindings().axb_bind(&app, &request, now, max_pairs)?;
            Ok((app, binding))
        })
        .await?;
    state.store.durable().await?;
    warn_if_unannounced(&state, &app, &binding);
    Ok(success(binding_fields(&binding)))
}

pub async fn bindings_modify(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<AxbApi>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let request = ModifyRequest::parse(&Fields::new(&body))?;
    let now = state.clock.now();
    let (app, request, binding) = state
        .write(move |store| {
            store.tones().check(&app.app_key, request.changes.tones())?;
            let binding = store.bindings().axb_modify(&app, &request, now)?;
            Ok((app, request, binding))
        })
        .await?;
    state.store.durable().await?;
    if request.changes.record == Some(true) {
        warn_if_unannounced(&state, &app, &binding);
    }
    Ok(success(binding_fields(&binding)))
}

pub async fn bindings_delete(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<AxbApi>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let params = query_object(query.as_deref())?;
    let target = AxbUnbind::parse(&Fields::new(&params))?;
    let now = state.clock.now();
    let removed = state.write(move |store| store.bindings().axb_unbind(&app, &target, now)).await?;
    state.store.durable().await?;
    let ids: Vec<&str> = removed.iter().map(|binding| binding.subscription_id.as_str()).collect();
    let mut fields = Map::new();
    fields.insert("subscriptionIds".into(), json!(ids));
    Ok(success(fields))
}

pub async fn bindings_query(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<AxbApi>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let params = query_object(query.as_deref())?;
    let query = AxbQuery::parse(&Fields::new(&params))?;
    let page = state.store.bindings().axb_query(&app, &query, state.clock.now())?;
    let list: Vec<Value> = page.bindings.iter().map(|binding| Value::Object(binding_fields(binding))).collect();
    let mut fields = Map::new();
    fields.insert("totalCount".into(), page.total.into());
    fields.insert("relationNumList".into(), list.into());
    Ok(success(fields))
}

/// A binding in the reference's vocabulary: booleans as `"true"`/`"false"` strings, times as
/// `yyyy-MM-dd HH:mm:ss` UTC. Absent optional values are left out rather than sent as null.
/// Puts the optional settings AXB and AX bindings share: each string only when set, and
/// `preVoice` only when it names a tone.
pub(super) fn put_optional<'a>(
    put: &mut impl FnMut(&str, Value),
    strings: impl IntoIterator<Item = (&'a str, &'a Option<String>)>,
    pre_voice: &PreVoice,
) {
    for (name, value) in strings {
        if let Some(value) = value {
            put(name, value.as_str().into());
        }
    }
    let mut tones = Map::new();
    if let Some(tone) = &pre_voice.caller_hint_tone {
        tones.insert("callerHintTone".into(), tone.as_str().into());
    }
    if let Some(tone) = &pre_voice.callee_hint_tone {
        tones.insert("calleeHintTone".into(), tone.as_str().into());
    }
    if !tones.is_empty() {
        put("preVoice", tones.into());
    }
}

pub fn binding_fields(binding: &AxbBinding) -> Map<String, Value> {
    let mut fields = Map::new();
    let mut put = |name: &str, value: Value| {
        fields.insert(name.to_owned(), value);
    };
    put("subscriptionId", binding.subscription_id.as_str().into());
    put("relationNum", binding.x_number.as_str().into());
    put("callerNum", binding.caller_num.as_str().into());
    put("calleeNum", binding.callee_num.as_str().into());
    put("callDirection", binding.call_direction.code().into());
    put("duration", binding.duration_secs.into());
    put("recordFlag", binding.record.to_string().into());
    put("maxDuration", binding.max_duration_min.into());
    put("privateSms", binding.private_sms.to_string().into());
    put("createTime", reference_time(binding.created_at).into());
    if let Some(expires_at) = binding.expires_at {
        put("expireTime", reference_time(expires_at).into());
    }
    let optional = [
        ("recordHintTone", &binding.record_hint_tone),
        ("lastMinVoice", &binding.last_min_voice),
        ("userData", &binding.user_data),
    ];
    put_optional(&mut put, optional, &binding.pre_voice);
    fields
}
