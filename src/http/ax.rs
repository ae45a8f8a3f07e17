//! AX provisioning (reference §4): bind (POST), modify (PUT), unbind (DELETE) and query (GET) at
//! `/rest/provision/caas/privatenumber/v1.0`, and the temporary callee (PUT) at
//! `/rest/caas/privatenumber/calleenumber/v1.0`.
//!
//! GET and DELETE read the query string (a body sent with them is ignored). Every change is on
//! disk before it is acknowledged.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{Map, Value};

use super::auth::{AppOf, AxApi};
use super::error::{success, AppError};
use super::request::{query_object, JsonBody};
use super::{warn_if_unannounced, AppState};
use crate::domain::ax::{AxBindRequest, AxModifyRequest, AxQuery, AxTarget, TemporaryCalleeRequest};
use crate::domain::time::reference_time;
use crate::domain::{AxBinding, Fields};

pub async fn bindings_create(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<AxApi>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let request = AxBindRequest::parse(&Fields::new(&body))?;
    let now = state.clock.now();
    let (app, binding) = state
        .write(move |store| {
            store.tones().check(&app.app_key, request.settings.tones().into_iter().map(|(_, tone)| tone))?;
            let binding = store.bindings().ax_bind(&app, &request, now)?;
            Ok((app, binding))
        })
        .await?;
    state.store.durable().await?;
    warn_if_unannounced(&state, &app, &binding);
    Ok(success(binding_fields(&binding, now)))
}

pub async fn bindings_modify(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<AxApi>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let request = AxModifyRequest::parse(&Fields::new(&body))?;
    let now = state.clock.now();
    let records = request.changes.record == Some(true);
    let (app, binding) = state
        .write(move |store| {
            store.tones().check(&app.app_key, request.changes.tones().into_iter().map(|(_, tone)| tone))?;
            let binding = store.bindings().ax_modify(&app, &request)?;
            Ok((app, binding))
        })
        .await?;
    state.store.durable().await?;
    if records {
        warn_if_unannounced(&state, &app, &binding);
    }
    Ok(success(binding_fields(&binding, now)))
}

pub async fn bindings_delete(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<AxApi>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let params = query_object(query.as_deref())?;
    let target = AxTarget::parse_unbind(&Fields::new(&params))?;
    let removed = state.write(move |store| store.bindings().ax_unbind(&app, &target)).await?;
    state.store.durable().await?;
    let mut fields = Map::new();
    fields.insert("subscriptionId".into(), removed.subscription_id.into());
    fields.insert("origNum".into(), removed.orig_num.into());
    fields.insert("privateNum".into(), removed.x_number.into());
    Ok(success(fields))
}

pub async fn bindings_query(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<AxApi>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let params = query_object(query.as_deref())?;
    let query = AxQuery::parse(&Fields::new(&params))?;
    let found = state.store.bindings().ax_query(&app, &query)?;
    let now = state.clock.now();
    let list: Vec<Value> = found.iter().map(|binding| Value::Object(binding_fields(binding, now))).collect();
    let mut fields = Map::new();
    fields.insert("totalCount".into(), list.len().into());
    fields.insert("privateNumList".into(), list.into());
    Ok(success(fields))
}

/// `PUT /rest/caas/privatenumber/calleenumber/v1.0`: where A's next calls through X go.
pub async fn temporary_callee_set(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<AxApi>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let request = TemporaryCalleeRequest::parse(&Fields::new(&body))?;
    let now = state.clock.now();
    let binding = state.write(move |store| store.bindings().ax_set_temporary_callee(&app, &request, now)).await?;
    state.store.durable().await?;
    let mut fields = Map::new();
    fields.insert("subscriptionId".into(), binding.subscription_id.as_str().into());
    if let Some(callee) = &binding.temporary_callee {
        fields.insert("calleeNum".into(), callee.number.as_str().into());
        fields.insert("expireTime".into(), reference_time(callee.expires_at).into());
    }
    Ok(success(fields))
}

/// A binding in the reference's vocabulary: booleans as strings, times `yyyy-MM-dd HH:mm:ss` UTC.
/// A temporary callee is listed while it is valid.
pub fn binding_fields(binding: &AxBinding, now: i64) -> Map<String, Value> {
    let mut fields = Map::new();
    let mut put = |name: &str, value: Value| {
        fields.insert(name.to_owned(), value);
    };
    put("subscriptionId", binding.subscription_id.as_str().into());
    put("origNum", binding.orig_num.as_str().into());
    put("privateNum", binding.x_number.as_str().into());
    put("calleeNumDisplay", "0".into());
    put("recordFlag", binding.record.to_string().into());
    put("privateSms", binding.private_sms.to_string().into());
    put("maxDuration", binding.max_duration_min.into());
    put("createTime", reference_time(binding.created_at).into());
    let optional = [
        ("recordHintTone", &binding.record_hint_tone),
        ("lastMinVoice", &binding.last_min_voice),
        ("userData", &binding.user_data),
    ];
    super::axb::put_optional(&mut put, optional, &binding.pre_voice);
    if let Some(callee) = binding.temporary_callee_at(now) {
        put("calleeNum", callee.number.as_str().into());
        put("calleeExpireTime", reference_time(callee.expires_at).into());
    }
    fields
}
