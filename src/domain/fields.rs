//! Reading request fields the way real clients send them.
//!
//! The reference documents booleans and small enums as strings (`"true"`, `"0"`), but clients in
//! the wild send JSON booleans and numbers just as often, and GET/DELETE parameters arrive as query
//! strings. [`Fields`] reads one JSON object (a body, or a query string turned into one) and accepts
//! every spelling whose meaning is clear, while anything else becomes an [`Invalid`] naming the field.
//! `null` and `""` mean "absent": clients that fill every field of a form send empty strings.

use serde_json::{Map, Value};
use std::fmt;
use std::ops::RangeInclusive;

use super::number::{check_area_code, check_e164};
use super::tone::check_tone_name;

/// A field that is missing, of the wrong type, or out of range. Displays as the text that follows
/// the Huawei API's `Invalid request.` prefix, e.g. `callDirection must be 0, 1 or 2 (got 7)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid { field: field.into(), reason: reason.into() }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.reason)
    }
}

impl std::error::Error for Invalid {}

/// A view of one JSON object with typed, lenient getters. `prefix` names nested objects in errors.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// `""` at the top level, `"preVoice."` inside `preVoice` (an empty String does not allocate).
    prefix: String,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Fields { map, prefix: String::new() }
    }

    /// The object itself.
    pub fn map(&self) -> &'a Map<String, Value> {
        self.map
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    fn present(&self, field: &str) -> Option<&'a Value> {
        match self.map.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(value) => Some(value),
        }
    }

    /// Whether the field was sent as `""` (a modify uses this to clear an optional string).
    pub fn is_empty_string(&self, field: &str) -> bool {
        matches!(self.map.get(field), Some(Value::String(s)) if s.is_empty())
    }

    /// A string field. Numbers are not accepted as strings: the string fields are numbers with
    /// `+`, ids and names, where a JSON number would already have lost information.
    pub fn string(&self, field: &str) -> Result<Option<&'a str>, Invalid> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(Invalid::new(self.name(field), format!("must be a string, not {}", kind(other)))),
        }
    }

    pub fn required_string(&self, field: &str) -> Result<&'a str, Invalid> {
        self.string(field)?.ok_or_else(|| Invalid::new(self.name(field), "is required"))
    }

    /// A string of at most `max` bytes.
    pub fn bounded_string(&self, field: &str, max: usize) -> Result<Option<&'a str>, Invalid> {
        let value = self.string(field)?;
        if let Some(s) = value {
            if s.len() > max {
                return Err(Invalid::new(
                    self.name(field),
                    format!("must be at most {max} characters (got {})", s.len()),
                ));
            }
        }
        Ok(value)
    }

    /// An E.164 phone number with `+`.
    pub fn number(&self, field: &str) -> Result<Option<&'a str>, Invalid> {
        let value = self.string(field)?;
        if let Some(number) = value {
            check_e164(number).map_err(|reason| Invalid::new(self.name(field), reason))?;
        }
        Ok(value)
    }

    pub fn required_number(&self, field: &str) -> Result<&'a str, Invalid> {
        self.number(field)?.ok_or_else(|| Invalid::new(self.name(field), "is required"))
    }

    pub fn area_code(&self, field: &str) -> Result<Option<&'a str>, Invalid> {
        let value = self.string(field)?;
        if let Some(code) = value {
            check_area_code(code).map_err(|reason| Invalid::new(self.name(field), reason))?;
        }
        Ok(value)
    }

    /// A tone file name (syntax only).
    pub fn tone(&self, field: &str) -> Result<Option<&'a str>, Invalid> {
        let value = self.string(field)?;
        if let Some(name) = value {
            check_tone_name(name).map_err(|reason| Invalid::new(self.name(field), reason))?;
        }
        Ok(value)
    }

    /// An integer in `range`, sent as a JSON integer or as a string of digits.
    pub fn integer(&self, field: &str, range: RangeInclusive<i64>) -> Result<Option<i64>, Invalid> {
        let Some(value) = self.present(field) else { return Ok(None) };
        let parsed = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let Some(n) = parsed else {
            return Err(Invalid::new(self.name(field), format!("must be an integer, not {}", shown(value))));
        };
        if !range.contains(&n) {
            return Err(Invalid::new(
                self.name(field),
                format!("must be between {} and {} (got {n})", range.start(), range.end()),
            ));
        }
        Ok(Some(n))
    }

    /// A boolean sent as `"true"`/`"false"` (the Huawei API) or as a JSON boolean.
    pub fn flag(&self, field: &str) -> Result<Option<bool>, Invalid> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => {
                Err(Invalid::new(self.name(field), format!("must be \"true\" or \"false\", not {}", shown(other))))
            }
        }
    }

    /// A `"0"`/`"1"` switch (`areaMatchMode` and friends), also as a JSON number.
    pub fn switch01(&self, field: &str) -> Result<Option<bool>, Invalid> {
        Ok(self.integer(field, 0..=1)?.map(|n| n == 1))
    }

    /// These fields as the object `field` of a larger one: errors name them `field.inner`.
    pub fn nested(self, field: &str) -> Self {
        Fields { prefix: format!("{}{field}.", self.prefix), ..self }
    }

    /// A nested object, read with the same rules; its fields are named `field.inner` in errors.
    pub fn object(&self, field: &str) -> Result<Option<Fields<'a>>, Invalid> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Fields { map, prefix: format!("{}{field}.", self.prefix) })),
            Some(other) => Err(Invalid::new(self.name(field), format!("must be an object, not {}", kind(other)))),
        }
    }

    /// An array of objects, each read with the same rules; their fields are named
    /// `field[i].inner` in errors. `None` when absent.
    pub fn objects(&self, field: &str) -> Result<Option<Vec<Fields<'a>>>, Invalid> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(map) => Ok(Fields { map, prefix: format!("{}{field}[{i}].", self.prefix) }),
                    other => Err(Invalid::new(
                        format!("{}[{i}]", self.name(field)),
                        format!("must be an object, not {}", kind(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(Invalid::new(self.name(field), format!("must be an array, not {}", kind(other)))),
        }
    }

    /// A string field that may be empty (`""` is a value here, not an absent field).
    pub fn string_or_empty(&self, field: &str) -> Result<Option<&'a str>, Invalid> {
        match self.map.get(field) {
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            None | Some(Value::Null) => Ok(None),
            Some(other) => Err(Invalid::new(self.name(field), format!("must be a string, not {}", kind(other)))),
        }
    }

    /// A nested object, or the one object of a one-element array (the Huawei API documents an
    /// object where its own demo sends an array); `None` when absent.
    pub fn object_or_single(&self, field: &str) -> Result<Option<Fields<'a>>, Invalid> {
        match self.present(field) {
            Some(Value::Array(items)) if items.len() == 1 => match &items[0] {
                Value::Object(map) => Ok(Some(Fields { map, prefix: format!("{}{field}.", self.prefix) })),
                other => Err(Invalid::new(self.name(field), format!("must hold an object, not {}", kind(other)))),
            },
            Some(Value::Array(items)) => Err(Invalid::new(
                self.name(field),
                format!("must be an object or a one-element array (got {} elements)", items.len()),
            )),
            _ => self.object(field),
        }
    }

    /// `userData`: 1-256 characters, no braces and no non-ASCII text (docs/compatibility.md: clients
    /// base64-encode anything else).
    pub fn user_data(&self, field: &str) -> Result<Option<&'a str>, Invalid> {
        let value = self.bounded_string(field, 256)?;
        if let Some(data) = value {
            if let Some(bad) = data.chars().find(|c| matches!(c, '{' | '}') || !c.is_ascii() || c.is_ascii_control()) {
                return Err(Invalid::new(
                    self.name(field),
                    format!("must not contain {bad:?}: braces, control characters and non-ASCII text are not allowed (base64-encode them)"),
                ));
            }
        }
        Ok(value)
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short rendering of a bad value for an error message.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 40 {
        format!("{}…", &text[..text.char_indices().nth(40).map_or(text.len(), |(i, _)| i)])
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: &Value) -> Fields<'_> {
        Fields::new(value.as_object().expect("test input is an object"))
    }

    #[test]
    fn flags_accept_strings_and_booleans() {
        let body = json!({"a": "true", "b": false, "c": "TRUE", "d": "yes", "e": ""});
        let f = fields(&body);
        assert_eq!(f.flag("a"), Ok(Some(true)));
        assert_eq!(f.flag("b"), Ok(Some(false)));
        assert_eq!(f.flag("c"), Ok(Some(true)));
        assert_eq!(f.flag("d").unwrap_err().to_string(), "d must be \"true\" or \"false\", not \"yes\"");
        assert_eq!(f.flag("e"), Ok(None));
    }

    #[test]
    fn integers_accept_numbers_and_digit_strings_in_range() {
        let body = json!({"a": 5, "b": "7", "c": 1.5, "d": 9});
        let f = fields(&body);
        assert_eq!(f.integer("a", 0..=9), Ok(Some(5)));
        assert_eq!(f.integer("b", 0..=9), Ok(Some(7)));
        assert_eq!(f.integer("c", 0..=9).unwrap_err().to_string(), "c must be an integer, not 1.5");
        assert_eq!(f.integer("d", 0..=2).unwrap_err().to_string(), "d must be between 0 and 2 (got 9)");
    }

    #[test]
    fn nested_objects_name_their_fields_in_errors() {
        let body = json!({"preVoice": {"callerHintTone": "bad name.wav"}});
        let f = fields(&body);
        let inner = f.object("preVoice").unwrap().unwrap();
        let err = inner.tone("callerHintTone").unwrap_err();
        assert_eq!(err.field, "preVoice.callerHintTone");
    }

    #[test]
    fn user_data_rejects_braces_and_chinese() {
        let body = json!({"a": "order-1", "b": "{x}", "c": "订单", "d": "x".repeat(257)});
        let f = fields(&body);
        assert_eq!(f.user_data("a"), Ok(Some("order-1")));
        assert!(f.user_data("b").is_err());
        assert!(f.user_data("c").is_err());
        assert!(f.user_data("d").is_err());
    }
}

/// Properties of the lenient getters and of every request parser built on them, on generated
/// JSON objects (crate::fuzzing says how many cases and how to run more).
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::domain::{ax, axb, axe, provision, settings, tone};
    use proptest::prelude::*;

    /// The fields the request parsers read, and a few they do not.
    const NAMES: &[&str] = &[
        "approve",
        "areaCode",
        "areaMatchMode",
        "bindExpiredTime",
        "bindNum",
        "callDirection",
        "callbackExpiredTime",
        "callbackNum",
        "callbackTone",
        "calleeHintTone",
        "calleeNum",
        "calleeNumDisplay",
        "callerHintTone",
        "callerNum",
        "cursor",
        "displayNumMode",
        "duration",
        "extendNum",
        "lastMinVoice",
        "limit",
        "maxDuration",
        "origNum",
        "pageIndex",
        "pageSize",
        "preVoice",
        "privateNum",
        "privateNumType",
        "privateSms",
        "reason",
        "recordFlag",
        "recordHintTone",
        "relationNum",
        "revision",
        "subscriptionId",
        "timeUnit",
        "userData",
        "virtualNum",
        "unknown",
    ];

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(NAMES).prop_map(str::to_owned)
    }

    /// Values that are often nearly right: numbers, digit strings, flags, names, and anything.
    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-10i64..=100).prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\+?[0-9]{0,33}".prop_map(Value::from),
            "(true|false|TRUE|0|1|2| 7 |0755|hours|minutes|ring.wav|-1|[a-f0-9]{32})".prop_map(Value::from),
            "[0-9]{13}_[0-9]{1,21}".prop_map(Value::from),
            "[ -~]{0,300}".prop_map(Value::from),
            "\\PC{0,50}".prop_map(Value::from),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(2, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map(name(), inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn body() -> impl Strategy<Value = Map<String, Value>> {
        proptest::collection::btree_map(name(), value(), 0..12).prop_map(|map| map.into_iter().collect())
    }

    /// A refusal names a field (under `prefix`) and says why, and displays as the two.
    fn check_invalid(err: &Invalid, prefix: &str) -> Result<(), TestCaseError> {
        prop_assert!(err.field.starts_with(prefix) && err.field.len() > prefix.len(), "{:?}", err);
        prop_assert!(!err.reason.is_empty(), "{:?}", err);
        prop_assert_eq!(err.to_string(), format!("{} {}", err.field, err.reason));
        prop_assert!(err.reason.chars().count() < 400, "an error that repeats the whole input: {:?}", err);
        Ok(())
    }

    fn checked<T>(result: Result<T, Invalid>, prefix: &str) -> Result<Option<T>, TestCaseError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(err) => check_invalid(&err, prefix).map(|()| None),
        }
    }

    /// Every getter on every field: a value that meets the getter's rule, or a named refusal.
    fn check_getters(f: &Fields<'_>, prefix: &str) -> Result<(), TestCaseError> {
        for field in NAMES {
            let sent = f.map.get(*field);
            if let Some(Some(s)) = checked(f.string(field), prefix)? {
                prop_assert_eq!(Some(&Value::String(s.to_owned())), sent);
            }
            if let Some(Some(n)) = checked(f.number(field), prefix)? {
                prop_assert!(crate::domain::number::check_e164(n).is_ok());
            }
            if let Some(Some(n)) = checked(f.integer(field, -5..=50), prefix)? {
                prop_assert!((-5..=50).contains(&n));
            }
            if let Some(Some(s)) = checked(f.bounded_string(field, 16), prefix)? {
                prop_assert!(s.len() <= 16);
            }
            if let Some(Some(s)) = checked(f.user_data(field), prefix)? {
                let braces = s.contains(['{', '}']);
                let clean = s.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
                prop_assert!(s.len() <= 256 && clean && !braces, "userData {:?}", s);
            }
            checked(f.area_code(field), prefix)?;
            checked(f.tone(field), prefix)?;
            checked(f.flag(field), prefix)?;
            checked(f.switch01(field), prefix)?;
            if let Some(Some(inner)) = checked(f.object(field), prefix)? {
                check_getters(&inner, &format!("{prefix}{field}."))?;
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(256))]

        /// Each getter, on arbitrary objects and objects nested in them.
        #[test]
        fn getters_return_valid_values_or_named_refusals(body in body()) {
            check_getters(&Fields::new(&body), "")?;
        }

        /// Every request parser on arbitrary objects: a request, or a refusal naming a field.
        #[test]
        fn request_parsers_return_requests_or_named_refusals(body in body(), digits in 1u8..=6) {
            let f = Fields::new(&body);
            checked(axb::AxbBindRequest::parse(&f), "")?;
            checked(axb::AxbModifyRequest::parse(&f), "")?;
            checked(axb::AxbUnbind::parse(&f), "")?;
            checked(axb::AxbQuery::parse(&f), "")?;
            checked(ax::AxBindRequest::parse(&f), "")?;
            checked(ax::AxTarget::parse_unbind(&f), "")?;
            checked(ax::AxTarget::parse_modify(&f), "")?;
            checked(ax::AxModifyRequest::parse(&f), "")?;
            checked(ax::AxQuery::parse(&f), "")?;
            checked(ax::TemporaryCalleeRequest::parse(&f), "")?;
            checked(axe::AxeBindRequest::parse(&f, digits), "")?;
            checked(axe::AxeTarget::parse(&f), "")?;
            checked(axe::AxeModifyRequest::parse(&f), "")?;
            checked(axe::AxeQuery::parse(&f), "")?;
            checked(axe::AxeCursorQuery::parse(&f), "")?;
            checked(provision::XSelection::parse(&f, "relationNum"), "")?;
            checked(provision::Page::parse(&f), "")?;
            checked(tone::Review::parse(&f), "")?;
            checked(settings::PreVoice::parse(&f), "")?;
        }

        /// An integer sent as a JSON number or as a string of its digits (spaces around them
        /// allowed) reads as itself when in range, and is refused naming the range when not.
        #[test]
        fn integers_read_back_in_either_spelling(n: i64, low in -100i64..=100, width in 0i64..=1000, as_text: bool, pad in "[ ]{0,2}") {
            let value = if as_text { Value::from(format!("{pad}{n}{pad}")) } else { Value::from(n) };
            let body: Map<String, Value> = [("n".to_owned(), value)].into_iter().collect();
            let range = low..=low + width;
            match Fields::new(&body).integer("n", range.clone()) {
                Ok(read) => prop_assert_eq!(read, Some(n)),
                Err(err) => {
                    prop_assert!(!range.contains(&n));
                    prop_assert_eq!(err.to_string(), format!("n must be between {} and {} (got {n})", range.start(), range.end()));
                }
            }
        }
    }
}
