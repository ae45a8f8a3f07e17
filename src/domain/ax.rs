//! AX bindings: anyone reaches A through A's own X; A reaches a temporary callee
//! (`policy-docs/ax.md`).
//!
//! This module turns requests into validated values ([`AxBindRequest`], [`AxModifyRequest`],
//! [`AxTarget`], [`AxQuery`], [`TemporaryCalleeRequest`]) and knows what a binding allows a call;
//! [`AxMode`] is AX's [`Provisioning`].
//! One X holds one A and an A holds at most [`MAX_X_PER_A`] X numbers; the store keeps those
//! counts under its writer lock. AX bindings never expire; a temporary callee does.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::axe::Callback;
use super::decision::Allowance;
use super::fields::{Fields, Invalid};
use super::provision::{subscription_id, Provisioning, XSelection};
use super::settings::{self, check_display_is_x, clearable, patch, PreVoice};
use super::{App, Mode};

/// One A holds at most this many X numbers (`policy-docs/ax.md`, 1011003).
pub const MAX_X_PER_A: usize = 5;
/// A temporary callee lives 1 s to 3 days (`policy-docs/ax.md`).
pub const TEMPORARY_CALLEE_SECS: RangeInclusive<i64> = 1..=259_200;
/// A temporary callee set without `duration` lives a minute: long enough for A to dial.
pub const DEFAULT_TEMPORARY_CALLEE_SECS: i64 = 60;
/// The only `privateNumType` the Huawei API knows.
const PRIVATE_NUM_TYPE: &str = "mobile-virtual";

/// Where A's own call through X goes, for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemporaryCallee {
    pub number: String,
    pub set_at: i64,
    pub expires_at: i64,
    pub user_data: Option<String>,
}

/// One AX binding as privnum keeps it. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AxBinding {
    pub subscription_id: String,
    pub app_key: String,
    pub x_number: String,
    /// A (`origNum`).
    pub orig_num: String,
    pub created_at: i64,
    pub record: bool,
    pub record_hint_tone: Option<String>,
    pub private_sms: bool,
    /// `callerHintTone` when A calls X, `calleeHintTone` when anyone else does.
    pub pre_voice: PreVoice,
    /// 0 means no limit.
    pub max_duration_min: i64,
    /// Kept only while `max_duration_min` is non-zero.
    pub last_min_voice: Option<String>,
    pub user_data: Option<String>,
    pub temporary_callee: Option<TemporaryCallee>,
}

impl AxBinding {
    /// The temporary callee, while it has not expired.
    pub fn temporary_callee_at(&self, now: i64) -> Option<&TemporaryCallee> {
        self.temporary_callee.as_ref().filter(|callee| now < callee.expires_at)
    }

    /// What a call from `caller` may do: anyone but A reaches A; A reaches the valid temporary
    /// callee, or no one.
    pub fn allowance(&self, caller: &str, app: &App, now: i64) -> Allowance {
        let callee = if caller == self.orig_num {
            self.temporary_callee_at(now).map(|callee| callee.number.clone())
        } else {
            Some(self.orig_num.clone())
        };
        Allowance {
            callee,
            may_record: app.recording && self.record,
            max_duration: (self.max_duration_min > 0).then_some(self.max_duration_min),
            collect_digits: None,
        }
    }

    /// AX memory callback (记忆回呼): the record a call from `caller` to A through X leaves when the
    /// app has it on (`memory_callback_minutes` > 0), valid for that window from `now`. A's own
    /// calls leave none.
    pub fn memory_of_call(&self, app: &App, caller: &str, now: i64) -> Option<Callback> {
        (app.memory_callback_minutes > 0 && caller != self.orig_num).then(|| Callback {
            subscription_id: self.subscription_id.clone(),
            party: caller.to_owned(),
            created_at: now,
            expires_at: Some(now + i64::from(app.memory_callback_minutes) * 60),
        })
    }

    /// The party A's call reaches by memory callback: `record`'s, while its window lasts and it
    /// was made under this binding (a new binding of X, or of another A, starts with none).
    pub fn remembered<'a>(&self, record: &'a Callback, now: i64) -> Option<&'a str> {
        let valid = record.subscription_id == self.subscription_id && record.expires_at.is_some_and(|at| now < at);
        valid.then_some(record.party.as_str())
    }

    /// The `userData` events and CDRs of a call from `caller` carry: A's call to the temporary
    /// callee carries the callee's own `userData` when it was set with one.
    pub fn user_data_for(&self, caller: &str, now: i64) -> Option<String> {
        let temporary = self.temporary_callee_at(now).filter(|_| caller == self.orig_num);
        temporary.and_then(|callee| callee.user_data.clone()).or_else(|| self.user_data.clone())
    }

    /// Applies the settings of a bind or a modify; absent fields keep their values.
    pub fn apply(&mut self, changes: &AxChanges) {
        if let Some(record) = changes.record {
            self.record = record;
        }
        patch(&mut self.record_hint_tone, &changes.record_hint_tone);
        if let Some(private_sms) = changes.private_sms {
            self.private_sms = private_sms;
        }
        if let Some(pre_voice) = &changes.pre_voice {
            self.pre_voice.clone_from(pre_voice);
        }
        if let Some(max_duration_min) = changes.max_duration_min {
            self.max_duration_min = max_duration_min;
        }
        patch(&mut self.last_min_voice, &changes.last_min_voice);
        if self.max_duration_min == 0 {
            self.last_min_voice = None;
        }
        patch(&mut self.user_data, &changes.user_data);
    }
}

/// The settable fields of an AX binding; `None` when the request did not mention them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AxChanges {
    pub record: Option<bool>,
    pub record_hint_tone: Option<Option<String>>,
    pub private_sms: Option<bool>,
    pub pre_voice: Option<PreVoice>,
    pub max_duration_min: Option<i64>,
    pub last_min_voice: Option<Option<String>>,
    pub user_data: Option<Option<String>>,
}

impl AxChanges {
    fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        check_display_is_x(fields, "calleeNumDisplay")?;
        Ok(AxChanges {
            record: fields.flag("recordFlag")?,
            record_hint_tone: clearable(fields, "recordHintTone", |f, n| f.tone(n))?,
            private_sms: fields.flag("privateSms")?,
            pre_voice: PreVoice::parse(fields)?,
            max_duration_min: settings::max_duration(fields)?,
            last_min_voice: clearable(fields, "lastMinVoice", |f, n| f.tone(n))?,
            user_data: clearable(fields, "userData", |f, n| f.user_data(n))?,
        })
    }

    /// Every tone this request names, with its field: the one place to check them all.
    pub fn tones(&self) -> Vec<(&'static str, &str)> {
        let pre_voice = self.pre_voice.as_ref();
        let named: [(&'static str, Option<&String>); 4] = [
            ("recordHintTone", self.record_hint_tone.as_ref().and_then(Option::as_ref)),
            ("lastMinVoice", self.last_min_voice.as_ref().and_then(Option::as_ref)),
            ("preVoice.callerHintTone", pre_voice.and_then(|p| p.caller_hint_tone.as_ref())),
            ("preVoice.calleeHintTone", pre_voice.and_then(|p| p.callee_hint_tone.as_ref())),
        ];
        named.into_iter().filter_map(|(field, tone)| tone.map(|tone| (field, tone.as_str()))).collect()
    }
}

/// A validated AX bind request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxBindRequest {
    pub x: XSelection,
    pub orig_num: String,
    pub settings: AxChanges,
}

impl AxBindRequest {
    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        let orig_num = fields.required_number("origNum")?.to_owned();
        if let Some(kind) = fields.bounded_string("privateNumType", 32)? {
            if kind != PRIVATE_NUM_TYPE {
                return Err(Invalid::new("privateNumType", format!("must be {PRIVATE_NUM_TYPE:?} (got {kind:?})")));
            }
        }
        // privateNum wins over areaCode, as relationNum does in AXB.
        let x = XSelection::parse(fields, "privateNum")?;
        if x.number() == Some(orig_num.as_str()) {
            return Err(Invalid::new("privateNum", "must differ from origNum"));
        }
        Ok(AxBindRequest { x, orig_num, settings: AxChanges::parse(fields)? })
    }

    pub fn to_binding(&self, subscription_id: String, app_key: &str, x_number: &str, now: i64) -> AxBinding {
        let mut binding = AxBinding {
            subscription_id,
            app_key: app_key.to_owned(),
            x_number: x_number.to_owned(),
            orig_num: self.orig_num.clone(),
            created_at: now,
            record: false,
            record_hint_tone: None,
            // Absent privateSms means the binding relays SMS, as in AXB.
            private_sms: true,
            pre_voice: PreVoice::default(),
            max_duration_min: 0,
            last_min_voice: None,
            user_data: None,
            temporary_callee: None,
        };
        binding.apply(&self.settings);
        binding
    }
}

/// Which binding an unbind or modify means: `subscriptionId` wins; otherwise `privateNum` (X holds
/// one A, so X alone names the binding), with `origNum` checked when a modify sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxTarget {
    Subscription(String),
    X { x_number: String, orig_num: Option<String> },
}

impl AxTarget {
    /// The unbind's target. The reference says `origNum` "is not parsed" there: it is not read
    /// at all, so even a malformed one is ignored.
    pub fn parse_unbind(fields: &Fields<'_>) -> Result<Self, Invalid> {
        AxTarget::parse(fields, false)
    }

    pub fn parse_modify(fields: &Fields<'_>) -> Result<Self, Invalid> {
        AxTarget::parse(fields, true)
    }

    fn parse(fields: &Fields<'_>, with_orig_num: bool) -> Result<Self, Invalid> {
        if let Some(id) = subscription_id(fields)? {
            return Ok(AxTarget::Subscription(id.to_owned()));
        }
        let Some(x_number) = fields.number("privateNum")? else {
            return Err(Invalid::new("subscriptionId", "or privateNum is required"));
        };
        let orig_num = if with_orig_num { fields.number("origNum")?.map(str::to_owned) } else { None };
        Ok(AxTarget::X { x_number: x_number.to_owned(), orig_num })
    }

    pub fn describe(&self) -> String {
        match self {
            AxTarget::Subscription(id) => format!("subscriptionId {id}"),
            AxTarget::X { x_number, .. } => format!("no AX binding on privateNum {x_number}"),
        }
    }
}

/// A validated modify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxModifyRequest {
    pub target: AxTarget,
    pub changes: AxChanges,
}

impl AxModifyRequest {
    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        Ok(AxModifyRequest { target: AxTarget::parse_modify(fields)?, changes: AxChanges::parse(fields)? })
    }
}

/// A validated query: `subscriptionId` > `origNum` > `privateNum` (`policy-docs/ax.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxQuery {
    Subscription(String),
    /// Up to five bindings.
    OrigNum(String),
    PrivateNum(String),
}

impl AxQuery {
    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        if let Some(id) = subscription_id(fields)? {
            return Ok(AxQuery::Subscription(id.to_owned()));
        }
        if let Some(orig_num) = fields.number("origNum")? {
            return Ok(AxQuery::OrigNum(orig_num.to_owned()));
        }
        match fields.number("privateNum")? {
            Some(x_number) => Ok(AxQuery::PrivateNum(x_number.to_owned())),
            None => Err(Invalid::new("subscriptionId", "or origNum or privateNum is required")),
        }
    }
}

/// A validated "set temporary callee" request (`policy-docs/ax.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporaryCalleeRequest {
    pub orig_num: String,
    pub x_number: String,
    pub callee_num: String,
    pub duration_secs: i64,
    pub user_data: Option<String>,
}

impl TemporaryCalleeRequest {
    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        let orig_num = fields.required_number("origNum")?.to_owned();
        let x_number = fields.required_number("privateNum")?.to_owned();
        // Service numbers (400, 95xxx) are allowed here; written E.164 they are numbers like any other.
        let callee_num = fields.required_number("calleeNum")?.to_owned();
        if callee_num == orig_num {
            return Err(Invalid::new("calleeNum", "must differ from origNum"));
        }
        if callee_num == x_number {
            return Err(Invalid::new("calleeNum", "must differ from privateNum"));
        }
        let duration_secs = fields.integer("duration", TEMPORARY_CALLEE_SECS)?.unwrap_or(DEFAULT_TEMPORARY_CALLEE_SECS);
        let user_data = fields.user_data("userData")?.map(str::to_owned);
        Ok(TemporaryCalleeRequest { orig_num, x_number, callee_num, duration_secs, user_data })
    }

    pub fn to_callee(&self, now: i64) -> TemporaryCallee {
        TemporaryCallee {
            number: self.callee_num.clone(),
            set_at: now,
            expires_at: now + self.duration_secs,
            user_data: self.user_data.clone(),
        }
    }
}

/// AX's provisioning requests (`policy-docs/ax.md`). The temporary callee, AX's own request, is
/// outside the four every mode has: [`TemporaryCalleeRequest`].
#[derive(Debug, Clone, Copy)]
pub struct AxMode;

impl Provisioning for AxMode {
    const MODE: Mode = Mode::Ax;
    type Binding = AxBinding;
    type Bind = AxBindRequest;
    type Modify = AxModifyRequest;
    type Unbind = AxTarget;
    type Query = AxQuery;

    fn parse_bind(fields: &Fields<'_>, _app: &App) -> Result<AxBindRequest, Invalid> {
        AxBindRequest::parse(fields)
    }

    fn parse_modify(fields: &Fields<'_>) -> Result<AxModifyRequest, Invalid> {
        AxModifyRequest::parse(fields)
    }

    fn parse_unbind(fields: &Fields<'_>) -> Result<AxTarget, Invalid> {
        AxTarget::parse_unbind(fields)
    }

    fn parse_query(fields: &Fields<'_>) -> Result<AxQuery, Invalid> {
        AxQuery::parse(fields)
    }

    fn bind_tones(request: &AxBindRequest) -> Vec<&str> {
        request.settings.tones().into_iter().map(|(_, tone)| tone).collect()
    }

    fn modify_tones(request: &AxModifyRequest) -> Vec<&str> {
        request.changes.tones().into_iter().map(|(_, tone)| tone).collect()
    }

    fn modify_records(request: &AxModifyRequest) -> bool {
        request.changes.record == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn fields(value: &Value) -> Fields<'_> {
        Fields::new(value.as_object().expect("object"))
    }

    fn app() -> App {
        crate::domain::app::tests_support::app("ax-app", crate::domain::Mode::Ax)
    }

    #[test]
    fn private_num_wins_and_one_of_the_two_is_required() {
        let both = json!({"origNum": "+8613800000001", "privateNum": "+8617000000001", "areaCode": "0755"});
        assert_eq!(AxBindRequest::parse(&fields(&both)).unwrap().x, XSelection::Number("+8617000000001".into()));
        let neither = json!({"origNum": "+8613800000001"});
        assert_eq!(AxBindRequest::parse(&fields(&neither)).unwrap_err().field, "privateNum");
        let no_a = json!({"areaCode": "0755"});
        assert_eq!(AxBindRequest::parse(&fields(&no_a)).unwrap_err().field, "origNum");
        let bad_type = json!({"origNum": "+8613800000001", "areaCode": "0755", "privateNumType": "fixed"});
        assert_eq!(AxBindRequest::parse(&fields(&bad_type)).unwrap_err().field, "privateNumType");
    }

    #[test]
    fn the_real_number_is_never_displayed() {
        let real = json!({"origNum": "+8613800000001", "areaCode": "0755", "calleeNumDisplay": "1"});
        assert_eq!(AxBindRequest::parse(&fields(&real)).unwrap_err().field, "calleeNumDisplay");
        let x = json!({"origNum": "+8613800000001", "areaCode": "0755", "calleeNumDisplay": "0"});
        assert!(AxBindRequest::parse(&fields(&x)).is_ok());
    }

    #[test]
    fn temporary_callee_lifetime_is_one_second_to_three_days_default_a_minute() {
        let base = json!({"origNum": "+8613800000001", "privateNum": "+8617000000001", "calleeNum": "+8695555"});
        let request = TemporaryCalleeRequest::parse(&fields(&base)).unwrap();
        assert_eq!(request.duration_secs, 60);
        for (duration, ok) in [(0, false), (1, true), (259_200, true), (259_201, false)] {
            let mut body = base.clone();
            body["duration"] = duration.into();
            assert_eq!(TemporaryCalleeRequest::parse(&fields(&body)).is_ok(), ok, "duration {duration}");
        }
        let mut same = base.clone();
        same["calleeNum"] = "+8613800000001".into();
        assert_eq!(TemporaryCalleeRequest::parse(&fields(&same)).unwrap_err().field, "calleeNum");
    }

    #[test]
    fn others_reach_a_and_a_reaches_the_temporary_callee_until_it_expires() {
        let request = json!({"origNum": "+8613800000001", "privateNum": "+8617000000001", "userData": "shop"});
        let mut binding =
            AxBindRequest::parse(&fields(&request)).unwrap().to_binding("s".into(), "ax-app", "+8617000000001", 0);
        let app = app();
        assert_eq!(binding.allowance("+8613700000009", &app, 0).callee.as_deref(), Some("+8613800000001"));
        assert_eq!(binding.allowance("+8613800000001", &app, 0).callee, None);
        let set = json!({"origNum": "+8613800000001", "privateNum": "+8617000000001", "calleeNum": "+8613900000002",
            "duration": 30, "userData": "order-1"});
        binding.temporary_callee = Some(TemporaryCalleeRequest::parse(&fields(&set)).unwrap().to_callee(100));
        assert_eq!(binding.allowance("+8613800000001", &app, 129).callee.as_deref(), Some("+8613900000002"));
        assert_eq!(binding.user_data_for("+8613800000001", 129).as_deref(), Some("order-1"));
        assert_eq!(binding.user_data_for("+8613700000009", 129).as_deref(), Some("shop"));
        assert_eq!(binding.allowance("+8613800000001", &app, 130).callee, None, "expired at 100 + 30");
    }

    #[test]
    fn query_precedence_is_subscription_then_a_then_x() {
        let all = json!({"subscriptionId": "s", "origNum": "+8613800000001", "privateNum": "+8617000000001"});
        assert_eq!(AxQuery::parse(&fields(&all)).unwrap(), AxQuery::Subscription("s".into()));
        let numbers = json!({"origNum": "+8613800000001", "privateNum": "+8617000000001"});
        assert_eq!(AxQuery::parse(&fields(&numbers)).unwrap(), AxQuery::OrigNum("+8613800000001".into()));
        let unbind = json!({"origNum": "+8613800000009", "privateNum": "+8617000000001"});
        assert_eq!(
            AxTarget::parse_unbind(&fields(&unbind)).unwrap(),
            AxTarget::X { x_number: "+8617000000001".into(), orig_num: None },
            "origNum is not parsed in an unbind"
        );
    }

    #[test]
    fn the_tone_fields_are_listed_in_one_place() {
        let body = json!({"recordHintTone": "r.wav", "lastMinVoice": "m.wav", "maxDuration": 5,
            "preVoice": {"callerHintTone": "a.wav", "calleeHintTone": "b.wav"}});
        let names: Vec<_> = AxChanges::parse(&fields(&body)).unwrap().tones().into_iter().map(|(f, _)| f).collect();
        assert_eq!(names, ["recordHintTone", "lastMinVoice", "preVoice.callerHintTone", "preVoice.calleeHintTone"]);
    }
}
