//! AXB bindings: A and B reach each other through X (README, Provisioning API).
//!
//! This module turns a request's fields into a validated request ([`AxbBindRequest`],
//! [`AxbModifyRequest`], [`AxbQuery`], [`AxbUnbind`]) and applies it to an [`AxbBinding`];
//! [`AxbMode`] is AXB's [`Provisioning`]. It knows the Huawei API's ranges, defaults and
//! precedence rules; it does not know where bindings are kept or how X numbers are chosen (the
//! store does that under its writer lock).

use serde::{Deserialize, Serialize};

use super::decision::Allowance;
use super::fields::{Fields, Invalid};
use super::provision::{subscription_id, Page, Provisioning, XSelection};
use super::settings::{self, clearable, patch, PreVoice};
use super::{App, Mode};

/// Longest binding lifetime: 90 days, in seconds.
pub const MAX_DURATION_SECS: i64 = 7_776_000;
/// The reference's default pair capacity of one X.
pub const DEFAULT_MAX_PAIRS_PER_X: u32 = 5000;

/// Which of the two parties may call through X (`callDirection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CallDirection {
    /// `0`: both A→X→B and B→X→A.
    #[default]
    Both,
    /// `1`: only A may call (A→X→B).
    AToB,
    /// `2`: only B may call (B→X→A).
    BToA,
}

impl CallDirection {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(CallDirection::Both),
            1 => Some(CallDirection::AToB),
            2 => Some(CallDirection::BToA),
            _ => None,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            CallDirection::Both => 0,
            CallDirection::AToB => 1,
            CallDirection::BToA => 2,
        }
    }
}

/// One AXB binding as privnum keeps it. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AxbBinding {
    pub subscription_id: String,
    pub app_key: String,
    pub x_number: String,
    /// A (`callerNum`).
    pub caller_num: String,
    /// B (`calleeNum`).
    pub callee_num: String,
    pub call_direction: CallDirection,
    /// The lifetime asked for, in seconds; 0 means permanent.
    pub duration_secs: i64,
    pub created_at: i64,
    /// When the lifetime clock last (re)started: the bind, or a modify that set `duration`.
    pub clock_start: i64,
    pub expires_at: Option<i64>,
    pub record: bool,
    pub record_hint_tone: Option<String>,
    /// 0 means no limit.
    pub max_duration_min: i64,
    /// Kept only while `max_duration_min` is non-zero: the Huawei API says it is only effective then.
    pub last_min_voice: Option<String>,
    pub private_sms: bool,
    pub pre_voice: PreVoice,
    pub user_data: Option<String>,
}

impl AxbBinding {
    /// A binding is active until its expiry; an expired binding behaves as if it did not exist.
    pub fn is_active(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }

    /// The two user numbers on X.
    pub fn parties(&self) -> [&str; 2] {
        [&self.caller_num, &self.callee_num]
    }

    fn set_duration(&mut self, duration_secs: i64, now: i64) {
        self.duration_secs = duration_secs;
        self.clock_start = now;
        self.expires_at = (duration_secs > 0).then_some(now + duration_secs);
    }

    /// Applies a modify (or the settings of a bind). Absent fields keep their values; `duration`
    /// restarts the lifetime clock at `now`.
    pub fn apply(&mut self, changes: &AxbChanges, now: i64) {
        if let Some(caller_num) = &changes.caller_num {
            self.caller_num.clone_from(caller_num);
        }
        if let Some(callee_num) = &changes.callee_num {
            self.callee_num.clone_from(callee_num);
        }
        if let Some(call_direction) = changes.call_direction {
            self.call_direction = call_direction;
        }
        if let Some(duration_secs) = changes.duration_secs {
            self.set_duration(duration_secs, now);
        }
        if let Some(record) = changes.record {
            self.record = record;
        }
        patch(&mut self.record_hint_tone, &changes.record_hint_tone);
        if let Some(max_duration_min) = changes.max_duration_min {
            self.max_duration_min = max_duration_min;
        }
        patch(&mut self.last_min_voice, &changes.last_min_voice);
        if self.max_duration_min == 0 {
            self.last_min_voice = None;
        }
        if let Some(private_sms) = changes.private_sms {
            self.private_sms = private_sms;
        }
        if let Some(pre_voice) = &changes.pre_voice {
            self.pre_voice.clone_from(pre_voice);
        }
        patch(&mut self.user_data, &changes.user_data);
    }

    /// What a call from `caller` may do under this binding: reach the other party if
    /// `callDirection` lets the caller call, record only if the app and the binding both do, and
    /// last no longer than the binding's `maxDuration`.
    pub fn allowance(&self, caller: &str, app: &App) -> Allowance {
        let callee = if caller == self.caller_num && self.call_direction != CallDirection::BToA {
            Some(self.callee_num.clone())
        } else if caller == self.callee_num && self.call_direction != CallDirection::AToB {
            Some(self.caller_num.clone())
        } else {
            None
        };
        Allowance {
            callee,
            may_record: app.recording && self.record,
            max_duration: (self.max_duration_min > 0).then_some(self.max_duration_min),
            collect_digits: None,
        }
    }
}

/// The settable fields of a binding, each `None` when the request did not mention it. Optional
/// strings are `Some(None)` when a modify clears them with `""`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AxbChanges {
    pub caller_num: Option<String>,
    pub callee_num: Option<String>,
    pub call_direction: Option<CallDirection>,
    pub duration_secs: Option<i64>,
    pub record: Option<bool>,
    pub record_hint_tone: Option<Option<String>>,
    pub max_duration_min: Option<i64>,
    pub last_min_voice: Option<Option<String>>,
    pub private_sms: Option<bool>,
    pub pre_voice: Option<PreVoice>,
    pub user_data: Option<Option<String>>,
}

impl AxbChanges {
    /// Every tone these changes name, in the order the Huawei API lists the fields: each must be an
    /// approved tone of the app.
    pub fn tones(&self) -> impl Iterator<Item = &str> {
        fn named(tone: &Option<Option<String>>) -> Option<&str> {
            tone.as_ref().and_then(Option::as_deref)
        }
        let pre_voice = self.pre_voice.as_ref();
        [
            named(&self.record_hint_tone),
            named(&self.last_min_voice),
            pre_voice.and_then(|p| p.caller_hint_tone.as_deref()),
            pre_voice.and_then(|p| p.callee_hint_tone.as_deref()),
        ]
        .into_iter()
        .flatten()
    }

    fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        let call_direction =
            fields.integer("callDirection", 0..=2)?.map(|code| CallDirection::from_code(code).unwrap_or_default());
        Ok(AxbChanges {
            caller_num: fields.number("callerNum")?.map(str::to_owned),
            callee_num: fields.number("calleeNum")?.map(str::to_owned),
            call_direction,
            duration_secs: fields.integer("duration", 0..=MAX_DURATION_SECS)?,
            record: fields.flag("recordFlag")?,
            record_hint_tone: clearable(fields, "recordHintTone", |f, n| f.tone(n))?,
            max_duration_min: settings::max_duration(fields)?,
            last_min_voice: clearable(fields, "lastMinVoice", |f, n| f.tone(n))?,
            private_sms: fields.flag("privateSms")?,
            pre_voice: PreVoice::parse(fields)?,
            user_data: clearable(fields, "userData", |f, n| f.user_data(n))?,
        })
    }
}

/// A validated bind request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxbBindRequest {
    pub x: XSelection,
    pub caller_num: String,
    pub callee_num: String,
    pub settings: AxbChanges,
}

impl AxbBindRequest {
    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        let x = XSelection::parse(fields, "relationNum")?;
        let caller_num = fields.required_number("callerNum")?.to_owned();
        let callee_num = fields.required_number("calleeNum")?.to_owned();
        if caller_num == callee_num {
            return Err(Invalid::new("calleeNum", "must differ from callerNum"));
        }
        if let XSelection::Number(x_number) = &x {
            if *x_number == caller_num || *x_number == callee_num {
                return Err(Invalid::new("relationNum", "must differ from callerNum and calleeNum"));
            }
        }
        let settings = AxbChanges::parse(fields)?;
        Ok(AxbBindRequest { x, caller_num, callee_num, settings })
    }

    /// The binding this request creates on `x_number`.
    pub fn to_binding(&self, subscription_id: String, app_key: &str, x_number: &str, now: i64) -> AxbBinding {
        let mut binding = AxbBinding {
            subscription_id,
            app_key: app_key.to_owned(),
            x_number: x_number.to_owned(),
            caller_num: self.caller_num.clone(),
            callee_num: self.callee_num.clone(),
            call_direction: CallDirection::Both,
            duration_secs: 0,
            created_at: now,
            clock_start: now,
            expires_at: None,
            record: false,
            record_hint_tone: None,
            max_duration_min: 0,
            last_min_voice: None,
            // Absent privateSms means the binding relays SMS (README, Provisioning API).
            private_sms: true,
            pre_voice: PreVoice::default(),
            user_data: None,
        };
        binding.apply(&self.settings, now);
        binding
    }
}

/// A validated modify request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxbModifyRequest {
    pub subscription_id: String,
    pub changes: AxbChanges,
}

impl AxbModifyRequest {
    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        let subscription_id = subscription_id(fields)?.ok_or_else(|| Invalid::new("subscriptionId", "is required"))?;
        Ok(AxbModifyRequest { subscription_id: subscription_id.to_owned(), changes: AxbChanges::parse(fields)? })
    }
}

/// What an unbind removes. `subscriptionId` wins over `relationNum` (README, Provisioning API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxbUnbind {
    Subscription(String),
    /// Every pair on this X.
    AllOnX(String),
}

impl AxbUnbind {
    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        if let Some(id) = subscription_id(fields)? {
            return Ok(AxbUnbind::Subscription(id.to_owned()));
        }
        match fields.number("relationNum")? {
            Some(x_number) => Ok(AxbUnbind::AllOnX(x_number.to_owned())),
            None => Err(Invalid::new("subscriptionId", "or relationNum is required")),
        }
    }
}

/// A validated query. `subscriptionId` wins over the numbers (README, Provisioning API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxbQuery {
    Subscription(String),
    OnX { x_number: String, caller_num: Option<String>, callee_num: Option<String>, page: Page },
}

impl AxbQuery {
    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        if let Some(id) = subscription_id(fields)? {
            return Ok(AxbQuery::Subscription(id.to_owned()));
        }
        let Some(x_number) = fields.number("relationNum")? else {
            return Err(Invalid::new("subscriptionId", "or relationNum is required"));
        };
        Ok(AxbQuery::OnX {
            x_number: x_number.to_owned(),
            caller_num: fields.number("callerNum")?.map(str::to_owned),
            callee_num: fields.number("calleeNum")?.map(str::to_owned),
            page: Page::parse(fields)?,
        })
    }

    /// Whether a binding on the queried X matches the query's numbers.
    pub fn matches(&self, binding: &AxbBinding) -> bool {
        match self {
            AxbQuery::Subscription(id) => &binding.subscription_id == id,
            AxbQuery::OnX { x_number, caller_num, callee_num, .. } => {
                &binding.x_number == x_number
                    && caller_num.as_ref().is_none_or(|a| a == &binding.caller_num)
                    && callee_num.as_ref().is_none_or(|b| b == &binding.callee_num)
            }
        }
    }
}

/// AXB's provisioning requests (README, Provisioning API).
#[derive(Debug, Clone, Copy)]
pub struct AxbMode;

impl Provisioning for AxbMode {
    const MODE: Mode = Mode::Axb;
    type Binding = AxbBinding;
    type Bind = AxbBindRequest;
    type Modify = AxbModifyRequest;
    type Unbind = AxbUnbind;
    type Query = AxbQuery;

    fn parse_bind(fields: &Fields<'_>, _app: &App) -> Result<AxbBindRequest, Invalid> {
        AxbBindRequest::parse(fields)
    }

    fn parse_modify(fields: &Fields<'_>) -> Result<AxbModifyRequest, Invalid> {
        AxbModifyRequest::parse(fields)
    }

    fn parse_unbind(fields: &Fields<'_>) -> Result<AxbUnbind, Invalid> {
        AxbUnbind::parse(fields)
    }

    fn parse_query(fields: &Fields<'_>) -> Result<AxbQuery, Invalid> {
        AxbQuery::parse(fields)
    }

    fn bind_tones(request: &AxbBindRequest) -> Vec<&str> {
        request.settings.tones().collect()
    }

    fn modify_tones(request: &AxbModifyRequest) -> Vec<&str> {
        request.changes.tones().collect()
    }

    fn modify_records(request: &AxbModifyRequest) -> bool {
        request.changes.record == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse_bind(body: Value) -> Result<AxbBindRequest, Invalid> {
        AxbBindRequest::parse(&Fields::new(body.as_object().expect("object")))
    }

    #[test]
    fn relation_num_wins_over_area_code() {
        let request = parse_bind(json!({"relationNum": "+8617000000001", "areaCode": "0755",
            "callerNum": "+8613800000001", "calleeNum": "+8613800000002"}))
        .unwrap();
        assert_eq!(request.x, XSelection::Number("+8617000000001".into()));
    }

    #[test]
    fn bind_defaults_are_the_references() {
        let request =
            parse_bind(json!({"areaCode": "0755", "callerNum": "+8613800000001", "calleeNum": "+8613800000002"}))
                .unwrap();
        assert_eq!(request.x, XSelection::Area { area_code: "0755".into(), lenient: false });
        let binding = request.to_binding("s".into(), "app", "+8617000000001", 100);
        assert_eq!(binding.call_direction, CallDirection::Both);
        assert_eq!(binding.expires_at, None);
        assert!(binding.private_sms);
        assert!(!binding.record);
        assert!(binding.is_active(i64::MAX));
    }

    #[test]
    fn bind_needs_two_distinct_numbers_and_an_x() {
        assert_eq!(
            parse_bind(json!({"callerNum": "+8613800000001", "calleeNum": "+8613800000002"})).unwrap_err().field,
            "relationNum"
        );
        let same =
            parse_bind(json!({"areaCode": "0755", "callerNum": "+8613800000001", "calleeNum": "+8613800000001"}));
        assert_eq!(same.unwrap_err().field, "calleeNum");
    }

    #[test]
    fn modify_restarts_the_clock_and_keeps_absent_fields() {
        let request =
            parse_bind(json!({"areaCode": "0755", "callerNum": "+8613800000001", "calleeNum": "+8613800000002",
            "duration": 60, "userData": "u1", "maxDuration": 5, "lastMinVoice": "m.wav"}))
            .unwrap();
        let mut binding = request.to_binding("s".into(), "app", "+8617000000001", 1000);
        assert_eq!(binding.expires_at, Some(1060));
        assert!(!binding.is_active(1060));

        let modify = AxbModifyRequest::parse(&Fields::new(
            json!({"subscriptionId": "s", "duration": "30"}).as_object().unwrap(),
        ))
        .unwrap();
        binding.apply(&modify.changes, 2000);
        assert_eq!(binding.expires_at, Some(2030));
        assert_eq!(binding.user_data.as_deref(), Some("u1"));
        assert_eq!(binding.last_min_voice.as_deref(), Some("m.wav"));

        let clear = AxbModifyRequest::parse(&Fields::new(
            json!({"subscriptionId": "s", "userData": "", "maxDuration": 0}).as_object().unwrap(),
        ))
        .unwrap();
        binding.apply(&clear.changes, 2001);
        assert_eq!(binding.user_data, None);
        assert_eq!(binding.last_min_voice, None, "lastMinVoice is only kept with a non-zero maxDuration");
        assert_eq!(binding.expires_at, Some(2030), "no duration in the modify: the clock runs on");
    }

    #[test]
    fn subscription_id_wins_in_unbind_and_query() {
        let fields = json!({"subscriptionId": "abc", "relationNum": "+8617000000001"});
        let fields = Fields::new(fields.as_object().unwrap());
        assert_eq!(AxbUnbind::parse(&fields).unwrap(), AxbUnbind::Subscription("abc".into()));
        assert_eq!(AxbQuery::parse(&fields).unwrap(), AxbQuery::Subscription("abc".into()));
    }
}
