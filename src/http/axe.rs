//! AXE provisioning (`policy-docs/axe.md`) at `/rest/caas/extendnumber/v1.0`: bind (POST), modify
//! (PUT), unbind (DELETE), query with paging (GET), served by [`super::provisioning`]'s handlers
//! through [`ProvisioningApi`]; and AXE's own request, the cursor query (GET) at `…/v2.0`.
//!
//! The Huawei API does not name the query's list; privnum answers `extendNumList`, after the
//! AXB (`relationNumList`) and AX (`privateNumList`) pattern. Every change is on disk before it
//! is acknowledged.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{Map, Value};

use super::auth::{AppOf, AxeApi};
use super::error::{success, AppError};
use super::provisioning::ProvisioningApi;
use super::request::query_object;
use super::AppState;
use crate::config::Config;
use crate::domain::axe::{AxeBindRequest, AxeCursorQuery, AxeMode, AxeModifyRequest, AxeQuery, AxeTarget, Cursor};
use crate::domain::time::reference_time;
use crate::domain::{App, AxeBinding, Fields};
use crate::store::{AxePage, Bindings, OpError};

impl ProvisioningApi for AxeApi {
    type Mode = AxeMode;
    type Removed = AxeBinding;
    type Found = AxePage;

    fn bind(
        bindings: &Bindings,
        app: &App,
        request: &AxeBindRequest,
        now: i64,
        _config: &Config,
    ) -> Result<AxeBinding, OpError> {
        bindings.axe_bind(app, request, now)
    }

    fn modify(bindings: &Bindings, app: &App, request: &AxeModifyRequest, now: i64) -> Result<AxeBinding, OpError> {
        bindings.axe_modify(app, request, now)
    }

    fn unbind(bindings: &Bindings, app: &App, target: &AxeTarget, now: i64) -> Result<AxeBinding, OpError> {
        bindings.axe_unbind(app, target, now)
    }

    fn query(bindings: &Bindings, app: &App, query: &AxeQuery, now: i64) -> Result<AxePage, OpError> {
        bindings.axe_query(app, query, now)
    }

    fn binding_fields(binding: &AxeBinding, _now: i64) -> Map<String, Value> {
        binding_fields(binding)
    }

    fn removed_fields(removed: AxeBinding) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("subscriptionId".into(), removed.subscription_id.into());
        fields.insert("virtualNum".into(), removed.x_number.into());
        fields.insert("extendNum".into(), removed.extend_num.into());
        fields
    }

    fn found_fields(page: &AxePage, _now: i64) -> Map<String, Value> {
        let list: Vec<Value> = page.bindings.iter().map(|binding| Value::Object(binding_fields(binding))).collect();
        let mut fields = Map::new();
        fields.insert("totalCount".into(), page.total.into());
        fields.insert("extendNumList".into(), list.into());
        fields
    }
}

/// `GET …/v2.0?cursor=&limit=&virtualNum=`: the app's bindings in creation order. `cursor` in the
/// answer is where the next page starts; it is absent on the last page. An empty page is a
/// success (the end), unlike v1.0's `1012007`.
pub async fn bindings_query_cursor(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<AxeApi>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let params = query_object(query.as_deref())?;
    let query = AxeCursorQuery::parse(&Fields::new(&params))?;
    let page = state.store.bindings().axe_query_cursor(&app, &query, state.clock.now())?;
    let list: Vec<Value> = page.bindings.iter().map(|binding| Value::Object(binding_fields(binding))).collect();
    let mut fields = Map::new();
    if let Some(next) = page.next {
        fields.insert("cursor".into(), next.to_string().into());
    }
    fields.insert("extendNumList".into(), list.into());
    Ok(success(fields))
}

/// A binding in the Huawei API's vocabulary: booleans and switches as strings, times
/// `yyyy-MM-dd HH:mm:ss` UTC; `cursor` is the binding's place in the v2.0 order.
pub fn binding_fields(binding: &AxeBinding) -> Map<String, Value> {
    let mut fields = Map::new();
    let mut put = |name: &str, value: Value| {
        fields.insert(name.to_owned(), value);
    };
    put("subscriptionId", binding.subscription_id.as_str().into());
    put("bindNum", binding.bind_num.as_str().into());
    put("virtualNum", binding.x_number.as_str().into());
    put("extendNum", binding.extend_num.as_str().into());
    put("displayNumMode", "0".into());
    put("recordFlag", binding.record.to_string().into());
    put("timeUnit", binding.time_unit.code().into());
    put("bindExpiredTime", binding.bind_expired_time.into());
    put("callbackExpiredTime", binding.callback_expired_time.into());
    put("createTime", reference_time(binding.created_at).into());
    put("cursor", Cursor::of(binding).to_string().into());
    if let Some(expires_at) = binding.expires_at {
        put("expireTime", reference_time(expires_at).into());
    }
    for (name, value) in [
        ("recordHintTone", &binding.record_hint_tone),
        ("callbackNum", &binding.callback_num),
        ("callbackTone", &binding.callback_tone),
        ("userData", &binding.user_data),
    ] {
        if let Some(value) = value {
            put(name, value.as_str().into());
        }
    }
    fields
}
