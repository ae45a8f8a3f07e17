//! AXB provisioning at `/rest/caas/relationnumber/partners/v1.0` (README, Provisioning API): how
//! AXB's requests reach the store and how its answers read. The handlers are
//! [`super::provisioning`]'s.
//!
//! An unbind answers with every `subscriptionIds` it removed (`relationNum` alone removes every
//! pair on X); a query with `totalCount` over all pages and one page of `relationNumList`.

use serde_json::{json, Map, Value};

use super::auth::AxbApi;
use super::provisioning::{put_optional, ProvisioningApi};
use crate::config::Config;
use crate::domain::axb::{AxbBindRequest, AxbMode, AxbModifyRequest, AxbQuery, AxbUnbind};
use crate::domain::time::reference_time;
use crate::domain::{App, AxbBinding};
use crate::store::{AxbPage, Bindings, OpError};

impl ProvisioningApi for AxbApi {
    type Mode = AxbMode;
    type Removed = Vec<AxbBinding>;
    type Found = AxbPage;

    fn bind(
        bindings: &Bindings,
        app: &App,
        request: &AxbBindRequest,
        now: i64,
        config: &Config,
    ) -> Result<AxbBinding, OpError> {
        bindings.axb_bind(app, request, now, config.axb_max_pairs_per_x)
    }

    fn modify(bindings: &Bindings, app: &App, request: &AxbModifyRequest, now: i64) -> Result<AxbBinding, OpError> {
        bindings.axb_modify(app, request, now)
    }

    fn unbind(bindings: &Bindings, app: &App, target: &AxbUnbind, now: i64) -> Result<Vec<AxbBinding>, OpError> {
        bindings.axb_unbind(app, target, now)
    }

    fn query(bindings: &Bindings, app: &App, query: &AxbQuery, now: i64) -> Result<AxbPage, OpError> {
        bindings.axb_query(app, query, now)
    }

    fn binding_fields(binding: &AxbBinding, _now: i64) -> Map<String, Value> {
        binding_fields(binding)
    }

    fn removed_fields(removed: Vec<AxbBinding>) -> Map<String, Value> {
        let ids: Vec<&str> = removed.iter().map(|binding| binding.subscription_id.as_str()).collect();
        let mut fields = Map::new();
        fields.insert("subscriptionIds".into(), json!(ids));
        fields
    }

    fn found_fields(page: &AxbPage, _now: i64) -> Map<String, Value> {
        let list: Vec<Value> = page.bindings.iter().map(|binding| Value::Object(binding_fields(binding))).collect();
        let mut fields = Map::new();
        fields.insert("totalCount".into(), page.total.into());
        fields.insert("relationNumList".into(), list.into());
        fields
    }
}

/// A binding in the Huawei API's vocabulary: booleans as `"true"`/`"false"` strings, times as
/// `yyyy-MM-dd HH:mm:ss` UTC. Absent optional values are left out rather than sent as null.
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
