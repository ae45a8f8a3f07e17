//! AX provisioning (`policy-docs/ax.md`): bind (POST), modify (PUT), unbind (DELETE) and query
//! (GET) at `/rest/provision/caas/privatenumber/v1.0`, served by [`super::provisioning`]'s
//! handlers through [`ProvisioningApi`]; and AX's own request, the temporary callee (PUT) at
//! `/rest/caas/privatenumber/calleenumber/v1.0`.
//!
//! An unbind answers with the one binding it removed; a query with every match in
//! `privateNumList` (an A holds at most five). Every change is on disk before it is acknowledged.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Map, Value};

use super::auth::{AppOf, AxApi};
use super::error::{success, AppError};
use super::provisioning::{put_optional, ProvisioningApi};
use super::request::JsonBody;
use super::AppState;
use crate::config::Config;
use crate::domain::ax::{AxBindRequest, AxMode, AxModifyRequest, AxQuery, AxTarget, TemporaryCalleeRequest};
use crate::domain::time::reference_time;
use crate::domain::{App, AxBinding, Fields};
use crate::store::{Bindings, OpError};

impl ProvisioningApi for AxApi {
    type Mode = AxMode;
    type Removed = AxBinding;
    type Found = Vec<AxBinding>;

    fn bind(
        bindings: &Bindings,
        app: &App,
        request: &AxBindRequest,
        now: i64,
        _config: &Config,
    ) -> Result<AxBinding, OpError> {
        bindings.ax_bind(app, request, now)
    }

    fn modify(bindings: &Bindings, app: &App, request: &AxModifyRequest, _now: i64) -> Result<AxBinding, OpError> {
        bindings.ax_modify(app, request)
    }

    fn unbind(bindings: &Bindings, app: &App, target: &AxTarget, _now: i64) -> Result<AxBinding, OpError> {
        bindings.ax_unbind(app, target)
    }

    fn query(bindings: &Bindings, app: &App, query: &AxQuery, _now: i64) -> Result<Vec<AxBinding>, OpError> {
        bindings.ax_query(app, query)
    }

    fn binding_fields(binding: &AxBinding, now: i64) -> Map<String, Value> {
        binding_fields(binding, now)
    }

    fn removed_fields(removed: AxBinding) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("subscriptionId".into(), removed.subscription_id.into());
        fields.insert("origNum".into(), removed.orig_num.into());
        fields.insert("privateNum".into(), removed.x_number.into());
        fields
    }

    fn found_fields(found: &Vec<AxBinding>, now: i64) -> Map<String, Value> {
        let list: Vec<Value> = found.iter().map(|binding| Value::Object(binding_fields(binding, now))).collect();
        let mut fields = Map::new();
        fields.insert("totalCount".into(), list.len().into());
        fields.insert("privateNumList".into(), list.into());
        fields
    }
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

/// A binding in the Huawei API's vocabulary: booleans as strings, times `yyyy-MM-dd HH:mm:ss` UTC.
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
    put_optional(&mut put, optional, &binding.pre_voice);
    if let Some(callee) = binding.temporary_callee_at(now) {
        put("calleeNum", callee.number.as_str().into());
        put("calleeExpireTime", reference_time(callee.expires_at).into());
    }
    fields
}
