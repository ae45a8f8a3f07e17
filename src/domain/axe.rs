//! AXE bindings: many A numbers share one X, each behind an extension E (`policy-docs/axe.md`).
//!
//! A third party dials X, keys E, and reaches the A bound to E; that call leaves a callback record
//! (A ↔ the caller) so that A, dialling X, reaches the caller back. This module parses and
//! validates the requests, applies them to an [`AxeBinding`], and says what each call may do;
//! [`AxeMode`] is AXE's [`Provisioning`]. The store keeps "one E per X" and "one A per X" under
//! its writer lock.

use serde::{Deserialize, Serialize};

use super::decision::Allowance;
use super::fields::{Fields, Invalid};
use super::provision::{subscription_id, Page, Provisioning, XSelection};
use super::settings::{check_display_is_x, clearable, patch};
use super::{App, Mode};

/// The unit of `bindExpiredTime` and `callbackExpiredTime` (`timeUnit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TimeUnit {
    /// `"0"`, the default.
    #[default]
    Hours,
    /// `"1"`.
    Minutes,
}

impl TimeUnit {
    pub fn secs(self, value: i64) -> i64 {
        match self {
            TimeUnit::Hours => value * 3600,
            TimeUnit::Minutes => value * 60,
        }
    }

    /// The longest lifetime in this unit: 30 days (720 h or 43,200 min).
    pub fn max(self) -> i64 {
        match self {
            TimeUnit::Hours => 720,
            TimeUnit::Minutes => 43_200,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            TimeUnit::Hours => "0",
            TimeUnit::Minutes => "1",
        }
    }
}

/// How many extensions an X can hold with `digits` digits: 9, 99, 999 or 9999 (all zeros is not
/// an extension).
pub fn capacity(digits: u8) -> u32 {
    10u32.pow(u32::from(digits.clamp(1, 4))) - 1
}

/// Extension `index` (1-based) written with `digits` digits: `7` → `"0007"`.
pub fn extension(index: u32, digits: u8) -> String {
    format!("{index:0width$}", width = usize::from(digits))
}

/// One AXE binding as privnum keeps it. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AxeBinding {
    pub subscription_id: String,
    pub app_key: String,
    pub x_number: String,
    /// A (`bindNum`).
    pub bind_num: String,
    /// E (`extendNum`), as many digits as the app's `extension_digits` when it was bound.
    pub extend_num: String,
    pub record: bool,
    pub record_hint_tone: Option<String>,
    /// Where A's call goes when there is no callback record. Exclusive with `callback_tone`.
    pub callback_num: Option<String>,
    /// Played to A, who is then released, when there is no callback record.
    pub callback_tone: Option<String>,
    pub time_unit: TimeUnit,
    /// In `time_unit`; 0 = never expires.
    pub bind_expired_time: i64,
    /// In `time_unit`; 0 = a callback record lasts as long as the binding.
    pub callback_expired_time: i64,
    pub created_at: i64,
    /// When the lifetime clock last (re)started: the bind, or a modify that set `bindExpiredTime`.
    pub clock_start: i64,
    pub expires_at: Option<i64>,
    pub user_data: Option<String>,
    /// A store-wide sequence number: with `created_at` it orders the v2.0 cursor query.
    pub seq: u64,
}

/// The last party who reached A through E: A, dialling X, is connected back to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    pub subscription_id: String,
    pub party: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

impl Callback {
    /// Valid while it has not expired and the binding it was made under still stands.
    /// A callback counts only under the binding it names, while that binding is active (with
    /// whatever lifetime the binding has now) and its own lifetime has not run out.
    pub fn is_valid_for(&self, binding: &AxeBinding, now: i64) -> bool {
        self.subscription_id == binding.subscription_id
            && binding.is_active(now)
            && self.expires_at.is_none_or(|at| now < at)
    }
}

impl AxeBinding {
    pub fn is_active(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }

    /// The callback record a call from `party` through E leaves: its own lifetime is
    /// `callbackExpiredTime` (0: none of its own); the binding's is checked when it is used, so a
    /// binding extended later extends its callbacks too.
    pub fn callback_from(&self, party: &str, now: i64) -> Callback {
        let lifetime = self.time_unit.secs(self.callback_expired_time);
        let expires_at = (lifetime > 0).then(|| now + lifetime);
        Callback { subscription_id: self.subscription_id.clone(), party: party.to_owned(), created_at: now, expires_at }
    }

    /// A third party who keyed this binding's E may reach A.
    pub fn allowance_for_extension(&self, app: &App) -> Allowance {
        Allowance {
            callee: Some(self.bind_num.clone()),
            may_record: app.recording && self.record,
            max_duration: None,
            collect_digits: None,
        }
    }

    /// A calling X may reach the valid callback party, or else `callbackNum`.
    pub fn allowance_for_a(&self, callback_party: Option<&str>, app: &App) -> Allowance {
        Allowance {
            callee: callback_party.map(str::to_owned).or_else(|| self.callback_num.clone()),
            may_record: app.recording && self.record,
            max_duration: None,
            collect_digits: None,
        }
    }

    /// Applies a bind's or modify's settings at `now`. Absent fields keep their values; a new
    /// `bindExpiredTime` restarts the lifetime clock. On an error the binding may be partly
    /// changed: callers apply to a copy and drop it (the store and `to_binding` do).
    pub fn apply(&mut self, changes: &AxeChanges, now: i64) -> Result<(), Invalid> {
        if let Some(bind_num) = &changes.bind_num {
            self.bind_num.clone_from(bind_num);
        }
        if let Some(record) = changes.record {
            self.record = record;
        }
        patch(&mut self.record_hint_tone, &changes.record_hint_tone);
        // The two are exclusive: setting one clears the other.
        if let Some(number) = &changes.callback_num {
            self.callback_num.clone_from(number);
            if number.is_some() {
                self.callback_tone = None;
            }
        }
        if let Some(tone) = &changes.callback_tone {
            self.callback_tone.clone_from(tone);
            if tone.is_some() {
                self.callback_num = None;
            }
        }
        if let Some(unit) = changes.time_unit {
            // A lifetime set in the old unit would silently change length: it must be restated.
            let unsent_set = (changes.bind_expired_time.is_none() && self.bind_expired_time != 0)
                || (changes.callback_expired_time.is_none() && self.callback_expired_time != 0);
            if unit != self.time_unit && unsent_set {
                return Err(Invalid::new(
                    "timeUnit",
                    "changes the unit of bindExpiredTime and callbackExpiredTime: send both with it",
                ));
            }
            self.time_unit = unit;
        }
        let max = self.time_unit.max();
        for (name, value) in
            [("bindExpiredTime", changes.bind_expired_time), ("callbackExpiredTime", changes.callback_expired_time)]
        {
            if let Some(value) = value.filter(|value| *value > max) {
                let unit = if self.time_unit == TimeUnit::Hours { "hours" } else { "minutes" };
                return Err(Invalid::new(name, format!("must be between 0 and {max} {unit} (got {value})")));
            }
        }
        if let Some(value) = changes.bind_expired_time {
            self.bind_expired_time = value;
            self.clock_start = now;
            self.expires_at = (value > 0).then(|| now + self.time_unit.secs(value));
        }
        if let Some(value) = changes.callback_expired_time {
            self.callback_expired_time = value;
        }
        patch(&mut self.user_data, &changes.user_data);
        if self.callback_num.as_deref() == Some(self.bind_num.as_str()) {
            return Err(Invalid::new("callbackNum", "must differ from bindNum"));
        }
        Ok(())
    }
}

/// The settable fields of an AXE binding; `None` when the request did not mention them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AxeChanges {
    pub bind_num: Option<String>,
    pub record: Option<bool>,
    pub record_hint_tone: Option<Option<String>>,
    pub callback_num: Option<Option<String>>,
    pub callback_tone: Option<Option<String>>,
    pub time_unit: Option<TimeUnit>,
    pub bind_expired_time: Option<i64>,
    pub callback_expired_time: Option<i64>,
    pub user_data: Option<Option<String>>,
}

impl AxeChanges {
    fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        check_display_is_x(fields, "displayNumMode")?;
        let callback_num = clearable(fields, "callbackNum", |f, n| f.number(n))?;
        let callback_tone = clearable(fields, "callbackTone", |f, n| f.tone(n))?;
        if matches!((&callback_num, &callback_tone), (Some(Some(_)), Some(Some(_)))) {
            return Err(Invalid::new("callbackTone", "cannot be sent with callbackNum: use one or the other"));
        }
        let longest = TimeUnit::Minutes.max();
        Ok(AxeChanges {
            bind_num: fields.number("bindNum")?.map(str::to_owned),
            record: fields.flag("recordFlag")?,
            record_hint_tone: clearable(fields, "recordHintTone", |f, n| f.tone(n))?,
            callback_num,
            callback_tone,
            time_unit: fields
                .switch01("timeUnit")?
                .map(|minutes| if minutes { TimeUnit::Minutes } else { TimeUnit::Hours }),
            // Checked against the unit's own maximum when applied.
            bind_expired_time: fields.integer("bindExpiredTime", 0..=longest)?,
            callback_expired_time: fields.integer("callbackExpiredTime", 0..=longest)?,
            user_data: clearable(fields, "userData", |f, n| f.user_data(n))?,
        })
    }

    /// Every tone this request names, with its field: the one place to check them all.
    pub fn tones(&self) -> Vec<(&'static str, &str)> {
        let mut tones = Vec::new();
        for (field, tone) in [("recordHintTone", &self.record_hint_tone), ("callbackTone", &self.callback_tone)] {
            if let Some(Some(tone)) = tone {
                tones.push((field, tone.as_str()));
            }
        }
        tones
    }
}

/// An extension as a request writes it: 1 to 4 digits, not all zeros; exactly `digits` of them
/// when the app's digit count is known.
fn extension_field<'a>(fields: &Fields<'a>, name: &str, digits: Option<u8>) -> Result<Option<&'a str>, Invalid> {
    let Some(text) = fields.string(name)? else { return Ok(None) };
    let all_digits = !text.is_empty() && text.len() <= 4 && text.bytes().all(|b| b.is_ascii_digit());
    if !all_digits || text.bytes().all(|b| b == b'0') {
        return Err(Invalid::new(name, format!("{text:?} must be 1 to 4 digits, not all zeros (e.g. \"0001\")")));
    }
    if let Some(digits) = digits.filter(|digits| text.len() != usize::from(*digits)) {
        return Err(Invalid::new(
            name,
            format!(
                "{text:?} must have {digits} digits, this app's extension length (1 to {})",
                extension(capacity(digits), digits)
            ),
        ));
    }
    Ok(Some(text))
}

/// A validated AXE bind request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxeBindRequest {
    pub x: XSelection,
    pub bind_num: String,
    /// The requested E; `None`: the store assigns the lowest free one.
    pub extend_num: Option<String>,
    pub settings: AxeChanges,
}

impl AxeBindRequest {
    /// `digits` is the app's `extension_digits`.
    pub fn parse(fields: &Fields<'_>, digits: u8) -> Result<Self, Invalid> {
        let bind_num = fields.required_number("bindNum")?.to_owned();
        let x = XSelection::parse(fields, "virtualNum")?;
        if x.number() == Some(bind_num.as_str()) {
            return Err(Invalid::new("virtualNum", "must differ from bindNum"));
        }
        let extend_num = extension_field(fields, "extendNum", Some(digits))?.map(str::to_owned);
        Ok(AxeBindRequest { x, bind_num, extend_num, settings: AxeChanges::parse(fields)? })
    }

    /// The binding this request makes on X with E; fails when the settings break a rule that
    /// needs the whole binding (a lifetime beyond its unit, `callbackNum` = `bindNum`).
    pub fn to_binding(
        &self,
        subscription_id: String,
        app_key: &str,
        x_number: &str,
        extend_num: &str,
        seq: u64,
        now: i64,
    ) -> Result<AxeBinding, Invalid> {
        let mut binding = AxeBinding {
            subscription_id,
            app_key: app_key.to_owned(),
            x_number: x_number.to_owned(),
            bind_num: self.bind_num.clone(),
            extend_num: extend_num.to_owned(),
            record: false,
            record_hint_tone: None,
            callback_num: None,
            callback_tone: None,
            time_unit: TimeUnit::Hours,
            bind_expired_time: 0,
            callback_expired_time: 0,
            created_at: now,
            clock_start: now,
            expires_at: None,
            user_data: None,
            seq,
        };
        binding.apply(&self.settings, now)?;
        Ok(binding)
    }
}

/// Which binding an unbind or modify means: `subscriptionId` wins, else `virtualNum` + `extendNum`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxeTarget {
    Subscription(String),
    Extension { x_number: String, extend_num: String },
}

impl AxeTarget {
    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        if let Some(id) = subscription_id(fields)? {
            return Ok(AxeTarget::Subscription(id.to_owned()));
        }
        let x_number = fields.number("virtualNum")?;
        let extend_num = extension_field(fields, "extendNum", None)?;
        match (x_number, extend_num) {
            (Some(x_number), Some(extend_num)) => {
                Ok(AxeTarget::Extension { x_number: x_number.to_owned(), extend_num: extend_num.to_owned() })
            }
            (Some(_), None) => Err(Invalid::new("extendNum", "is required with virtualNum")),
            (None, _) => Err(Invalid::new("subscriptionId", "or virtualNum with extendNum is required")),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            AxeTarget::Subscription(id) => format!("subscriptionId {id}"),
            AxeTarget::Extension { x_number, extend_num } => {
                format!("no binding of extendNum {extend_num} on {x_number}")
            }
        }
    }
}

/// A validated modify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxeModifyRequest {
    pub target: AxeTarget,
    pub changes: AxeChanges,
}

impl AxeModifyRequest {
    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        Ok(AxeModifyRequest { target: AxeTarget::parse(fields)?, changes: AxeChanges::parse(fields)? })
    }
}

/// A v1.0 query: one binding, or the bindings on X (one extension, or all, paged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxeQuery {
    Subscription(String),
    OnX { x_number: String, extend_num: Option<String>, page: Page },
}

impl AxeQuery {
    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        if let Some(id) = subscription_id(fields)? {
            return Ok(AxeQuery::Subscription(id.to_owned()));
        }
        let Some(x_number) = fields.number("virtualNum")? else {
            return Err(Invalid::new("subscriptionId", "or virtualNum is required"));
        };
        Ok(AxeQuery::OnX {
            x_number: x_number.to_owned(),
            extend_num: extension_field(fields, "extendNum", None)?.map(str::to_owned),
            page: Page::parse(fields)?,
        })
    }
}

/// A position in the app's bindings: `{13-digit ms}_{sequence}`. Bindings are ordered by the
/// sequence number, which follows the order they were committed; the time is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub created_ms: i64,
    pub seq: u64,
}

impl Cursor {
    /// `"0000000000000_0"`: before every binding.
    pub const START: Cursor = Cursor { created_ms: 0, seq: 0 };

    pub fn parse(text: &str) -> Option<Cursor> {
        let (ms, seq) = text.split_once('_')?;
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if ms.len() != 13 || !digits(ms) || seq.is_empty() || seq.len() > 20 || !digits(seq) {
            return None;
        }
        Some(Cursor { created_ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }

    pub fn of(binding: &AxeBinding) -> Cursor {
        Cursor { created_ms: binding.created_at.saturating_mul(1000), seq: binding.seq }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:013}_{}", self.created_ms, self.seq)
    }
}

/// A v2.0 query: the app's bindings after `cursor`, at most `limit`, optionally on one X.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxeCursorQuery {
    pub cursor: Cursor,
    pub limit: usize,
    pub x_number: Option<String>,
}

impl AxeCursorQuery {
    pub const DEFAULT_LIMIT: i64 = 50;

    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        let cursor = match fields.bounded_string("cursor", 34)? {
            None => Cursor::START,
            Some(text) => Cursor::parse(text).ok_or_else(|| {
                Invalid::new(
                    "cursor",
                    format!("{text:?} must look like 0000000000000_0 (13 digits, _, 1 to 20 digits)"),
                )
            })?,
        };
        let limit = fields.integer("limit", 1..=100)?.unwrap_or(Self::DEFAULT_LIMIT);
        Ok(AxeCursorQuery {
            cursor,
            limit: usize::try_from(limit).unwrap_or(50),
            x_number: fields.number("virtualNum")?.map(str::to_owned),
        })
    }
}

/// AXE's provisioning requests (`policy-docs/axe.md`). The v2.0 cursor query, AXE's own, is
/// outside the four every mode has: [`AxeCursorQuery`].
#[derive(Debug, Clone, Copy)]
pub struct AxeMode;

impl Provisioning for AxeMode {
    const MODE: Mode = Mode::Axe;
    type Binding = AxeBinding;
    type Bind = AxeBindRequest;
    type Modify = AxeModifyRequest;
    type Unbind = AxeTarget;
    type Query = AxeQuery;

    fn parse_bind(fields: &Fields<'_>, app: &App) -> Result<AxeBindRequest, Invalid> {
        AxeBindRequest::parse(fields, app.extension_digits)
    }

    fn parse_modify(fields: &Fields<'_>) -> Result<AxeModifyRequest, Invalid> {
        AxeModifyRequest::parse(fields)
    }

    fn parse_unbind(fields: &Fields<'_>) -> Result<AxeTarget, Invalid> {
        AxeTarget::parse(fields)
    }

    fn parse_query(fields: &Fields<'_>) -> Result<AxeQuery, Invalid> {
        AxeQuery::parse(fields)
    }

    fn bind_tones(request: &AxeBindRequest) -> Vec<&str> {
        request.settings.tones().into_iter().map(|(_, tone)| tone).collect()
    }

    fn modify_tones(request: &AxeModifyRequest) -> Vec<&str> {
        request.changes.tones().into_iter().map(|(_, tone)| tone).collect()
    }

    fn modify_records(request: &AxeModifyRequest) -> bool {
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

    fn bind(body: Value, digits: u8) -> Result<AxeBindRequest, Invalid> {
        AxeBindRequest::parse(&fields(&body), digits)
    }

    #[test]
    fn extensions_have_the_apps_digit_count_and_are_not_all_zeros() {
        let base = json!({"bindNum": "+8613800000001", "virtualNum": "+8617000000001"});
        let with = |ext: &str| {
            let mut body = base.clone();
            body["extendNum"] = ext.into();
            body
        };
        assert_eq!(bind(with("0007"), 4).unwrap().extend_num.as_deref(), Some("0007"));
        assert_eq!(bind(with("7"), 4).unwrap_err().field, "extendNum");
        assert_eq!(bind(with("0000"), 4).unwrap_err().field, "extendNum");
        assert_eq!(bind(with("12a"), 3).unwrap_err().field, "extendNum");
        assert!(bind(with("7"), 1).is_ok());
        assert_eq!(bind(base, 4).unwrap().extend_num, None, "absent: the store assigns one");
        assert_eq!((capacity(1), capacity(4)), (9, 9999));
        assert_eq!(extension(7, 4), "0007");
    }

    #[test]
    fn callback_number_and_tone_are_exclusive() {
        let both = json!({"bindNum": "+8613800000001", "areaCode": "0755", "callbackNum": "+8613900000002",
            "callbackTone": "cb.wav"});
        assert_eq!(bind(both, 4).unwrap_err().field, "callbackTone");
        let request =
            bind(json!({"bindNum": "+8613800000001", "areaCode": "0755", "callbackTone": "cb.wav"}), 4).unwrap();
        let mut binding = request.to_binding("s".into(), "app", "+8617000000001", "0001", 1, 0).unwrap();
        let modify = json!({"subscriptionId": "s", "callbackNum": "+8613900000002"});
        binding.apply(&AxeModifyRequest::parse(&fields(&modify)).unwrap().changes, 5).unwrap();
        assert_eq!((binding.callback_num.as_deref(), binding.callback_tone.as_deref()), (Some("+8613900000002"), None));
        let same = json!({"subscriptionId": "s", "callbackNum": "+8613800000001"});
        assert_eq!(
            binding.apply(&AxeModifyRequest::parse(&fields(&same)).unwrap().changes, 5).unwrap_err().field,
            "callbackNum"
        );
    }

    #[test]
    fn lifetimes_follow_the_time_unit() {
        let hours = bind(
            json!({"bindNum": "+8613800000001", "areaCode": "0755", "bindExpiredTime": 2,
            "callbackExpiredTime": 1}),
            4,
        )
        .unwrap()
        .to_binding("s".into(), "app", "+8617000000001", "0001", 1, 1000)
        .unwrap();
        assert_eq!(hours.expires_at, Some(1000 + 7200));
        assert_eq!(hours.callback_from("+8613700000009", 2000).expires_at, Some(2000 + 3600));
        let minutes = bind(
            json!({"bindNum": "+8613800000001", "areaCode": "0755", "timeUnit": "1",
            "bindExpiredTime": 43_200, "callbackExpiredTime": 5}),
            4,
        )
        .unwrap()
        .to_binding("s".into(), "app", "+8617000000001", "0001", 1, 0)
        .unwrap();
        assert_eq!(minutes.expires_at, Some(43_200 * 60));
        let too_long =
            bind(json!({"bindNum": "+8613800000001", "areaCode": "0755", "bindExpiredTime": 721}), 4).unwrap();
        let err = too_long.to_binding("s".into(), "app", "+8617000000001", "0001", 1, 0).unwrap_err();
        assert_eq!(err.field, "bindExpiredTime");
        let never = bind(json!({"bindNum": "+8613800000001", "areaCode": "0755"}), 4).unwrap();
        let never = never.to_binding("s".into(), "app", "+8617000000001", "0001", 1, 0).unwrap();
        assert!(never.is_active(i64::MAX));
        assert_eq!(never.callback_from("+861", 5).expires_at, None, "0: as long as the binding");
    }

    #[test]
    fn a_new_time_unit_must_restate_the_lifetimes_it_would_change() {
        let request = bind(json!({"bindNum": "+8613800000001", "areaCode": "0755", "bindExpiredTime": 2}), 4).unwrap();
        let mut binding = request.to_binding("s".into(), "app", "+8617000000001", "0001", 1, 0).unwrap();
        let change = |body: Value| AxeModifyRequest::parse(&fields(&body)).unwrap().changes;
        let err = binding.apply(&change(json!({"subscriptionId": "s", "timeUnit": "1"})), 10).unwrap_err();
        assert_eq!(err.field, "timeUnit");
        assert_eq!(binding.expires_at, Some(7200), "a refused change leaves the lifetime as it was");
        binding.apply(&change(json!({"subscriptionId": "s", "timeUnit": "1", "bindExpiredTime": 90})), 10).unwrap();
        assert_eq!((binding.time_unit, binding.expires_at), (TimeUnit::Minutes, Some(10 + 5400)));
    }

    #[test]
    fn a_callback_never_outlives_its_binding_or_survives_a_new_one() {
        let binding = bind(
            json!({"bindNum": "+8613800000001", "areaCode": "0755", "timeUnit": 1,
            "bindExpiredTime": 10, "callbackExpiredTime": 60}),
            4,
        )
        .unwrap()
        .to_binding("s".into(), "app", "+8617000000001", "0001", 1, 0)
        .unwrap();
        let callback = binding.callback_from("+8613700000009", 0);
        assert_eq!(callback.expires_at, Some(3600));
        assert!(callback.is_valid_for(&binding, 599));
        assert!(!callback.is_valid_for(&binding, 600), "the binding ended, and its callbacks with it");
        let extended = AxeBinding { expires_at: Some(10_000), ..binding.clone() };
        assert!(callback.is_valid_for(&extended, 3599), "an extended binding keeps its callbacks");
        assert!(!callback.is_valid_for(&extended, 3600), "until their own lifetime runs out");
        let other = AxeBinding { subscription_id: "t".into(), ..binding.clone() };
        assert!(!callback.is_valid_for(&other, 1));
    }

    #[test]
    fn the_real_number_is_never_displayed() {
        let real = json!({"bindNum": "+8613800000001", "areaCode": "0755", "displayNumMode": "1"});
        assert_eq!(bind(real, 4).unwrap_err().field, "displayNumMode");
    }

    #[test]
    fn cursors_read_and_write_the_references_shape() {
        let cursor = Cursor::parse("1700000000000_42").unwrap();
        assert_eq!(cursor, Cursor { created_ms: 1_700_000_000_000, seq: 42 });
        assert_eq!(cursor.to_string(), "1700000000000_42");
        assert_eq!(Cursor::START.to_string(), "0000000000000_0");
        for bad in ["", "1_1", "170000000000a_1", "1700000000000_", "1700000000000-1"] {
            assert!(Cursor::parse(bad).is_none(), "{bad}");
        }
        let query = json!({"cursor": "nope"});
        assert_eq!(AxeCursorQuery::parse(&fields(&query)).unwrap_err().field, "cursor");
        let query = json!({"limit": 0});
        assert_eq!(AxeCursorQuery::parse(&fields(&query)).unwrap_err().field, "limit");
    }

    #[test]
    fn unbind_and_modify_name_a_binding_by_id_or_x_and_extension() {
        let by_ext = json!({"virtualNum": "+8617000000001", "extendNum": "0001"});
        assert!(matches!(AxeTarget::parse(&fields(&by_ext)).unwrap(), AxeTarget::Extension { .. }));
        let no_ext = json!({"virtualNum": "+8617000000001"});
        assert_eq!(AxeTarget::parse(&fields(&no_ext)).unwrap_err().field, "extendNum");
        let both = json!({"subscriptionId": "s", "virtualNum": "+8617000000001", "extendNum": "0001"});
        assert_eq!(AxeTarget::parse(&fields(&both)).unwrap(), AxeTarget::Subscription("s".into()));
    }
}

/// Properties of the v2.0 query cursor (crate::fuzzing says how many cases and how to run more).
#[cfg(test)]
mod fuzz {
    use super::Cursor;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::fuzzing::config(512))]

        /// parse(format(cursor)) == cursor for every cursor of 13-digit milliseconds.
        #[test]
        fn a_cursor_reads_back_as_written(created_ms in 0i64..=9_999_999_999_999, seq: u64) {
            let cursor = Cursor { created_ms, seq };
            prop_assert_eq!(Cursor::parse(&cursor.to_string()), Some(cursor));
        }

        /// Any text: none, or a cursor that is spelled as the text is (the sequence may have had
        /// leading zeros) and reads back as itself.
        #[test]
        fn any_text_is_a_cursor_spelled_so_or_none(text in "[0-9]{11,14}_[0-9]{0,22}|[0-9_ +-]{0,40}|\\PC{0,30}") {
            if let Some(cursor) = Cursor::parse(&text) {
                let (ms, seq) = text.split_once('_').unwrap();
                let seq = seq.trim_start_matches('0');
                prop_assert_eq!(cursor.to_string(), format!("{ms}_{}", if seq.is_empty() { "0" } else { seq }));
                prop_assert_eq!(Cursor::parse(&cursor.to_string()), Some(cursor));
            }
        }
    }
}
