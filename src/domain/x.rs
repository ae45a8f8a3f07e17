//! X mode: no stored binding; the customer's server decides each call in its reply to a Block
//! `callin` push. This is that reply, read and checked (README, "X mode"): `operation` `connect`
//! with `connectInfo`, or `close` with `closeInfo`, each an object or a one-element array (the
//! Huawei API documents an object; its official demo sends an array).
//!
//! What is checked here needs nothing but the reply and the X: field types and ranges,
//! `calleeNum` in E.164, `displayCalleeNum` only the X, `maxDuration` 0-1440, `lastMinVoice`
//! only with a `maxDuration`, `userData` as for bindings. Whether its tones are approved tones of
//! the app is the host's check (it needs the tone registry).

use serde_json::Value;

use super::fields::{Fields, Invalid};
use super::settings::MAX_CALL_MINUTES;

/// The customer's reply to a Block `callin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XReply {
    Connect(ConnectInfo),
    Close(CloseInfo),
}

/// `connectInfo`: whom to call, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// `calleeNum`: the real callee.
    pub callee: String,
    /// `maxDuration` in minutes; 0: no limit.
    pub max_duration: i64,
    pub wait_voice: Option<String>,
    /// `recordFlag`: the customer asks for recording (it also needs the app's `recording`).
    pub record: bool,
    pub record_hint_tone: Option<String>,
    pub last_min_voice: Option<String>,
    pub user_data: Option<String>,
}

/// `closeInfo`: end the call, after a tone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseInfo {
    pub close_hint_tone: Option<String>,
    pub user_data: Option<String>,
}

/// Why a Block `callin` got no usable reply. The kinds are what `modes/x.rhai` sees
/// (`callin.failure.kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XFailure {
    /// No answer within `x_callin_timeout_ms`.
    Timeout { ms: u64 },
    /// No connection (refused, unreachable, TLS failed), or the app has no `callin_url` or
    /// `call_event_url`.
    Unreachable(String),
    /// An answer with a status other than 2xx.
    Status(u16),
    /// A reply that is not a valid Block reply.
    Invalid(Invalid),
    /// A valid reply naming a tone that is not an approved tone of the app.
    Tone { field: &'static str, tone: String },
    /// The app's customer has failed every recent Block push: privnum did not wait this time.
    FailingFast,
}

impl XFailure {
    pub fn kind(&self) -> &'static str {
        match self {
            XFailure::Timeout { .. } => "timeout",
            XFailure::Unreachable(_) => "unreachable",
            XFailure::Status(_) => "status",
            XFailure::Invalid(_) => "invalid",
            XFailure::Tone { .. } => "tone",
            XFailure::FailingFast => "failing_fast",
        }
    }

    /// Whether the customer's server failed to answer at all (as opposed to answering badly).
    pub fn no_answer(&self) -> bool {
        matches!(
            self,
            XFailure::Timeout { .. } | XFailure::Unreachable(_) | XFailure::Status(_) | XFailure::FailingFast
        )
    }
}

impl std::fmt::Display for XFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XFailure::Timeout { ms } => write!(f, "no reply within {ms} ms"),
            XFailure::Unreachable(reason) => write!(f, "{reason}"),
            XFailure::Status(status) => write!(f, "the reply's HTTP status was {status}"),
            XFailure::Invalid(invalid) => write!(f, "invalid reply: {invalid}"),
            XFailure::Tone { field, tone } => {
                write!(f, "{field} names {tone}, which is not an approved tone of the app")
            }
            XFailure::FailingFast => write!(f, "the customer's server failed every recent callin; not waited for"),
        }
    }
}

impl XReply {
    /// Reads a reply body for a call to `x_number`. An error names the field and why.
    pub fn parse(body: &[u8], x_number: &str) -> Result<XReply, Invalid> {
        let value: Value = serde_json::from_slice(body).map_err(|err| {
            let shown = if body.is_empty() { "an empty body".to_owned() } else { format!("not JSON ({err})") };
            Invalid::new("reply", format!("must be a JSON object, got {shown}"))
        })?;
        let Value::Object(map) = &value else {
            return Err(Invalid::new("reply", "must be a JSON object"));
        };
        let fields = Fields::new(map);
        match fields.required_string("operation")? {
            "connect" => {
                let info = fields
                    .object_or_single("connectInfo")?
                    .ok_or_else(|| Invalid::new("connectInfo", "is required"))?;
                Ok(XReply::Connect(ConnectInfo::read(&info, x_number)?))
            }
            "close" => {
                let info = fields.object_or_single("closeInfo")?;
                let close = match info {
                    Some(info) => CloseInfo {
                        close_hint_tone: owned(info.tone("closeHintTone")?),
                        user_data: owned(info.user_data("userData")?),
                    },
                    None => CloseInfo::default(),
                };
                Ok(XReply::Close(close))
            }
            other => Err(Invalid::new("operation", format!("must be \"connect\" or \"close\" (got {other:?})"))),
        }
    }

    /// The tones the reply names, with their fields.
    pub fn tones(&self) -> Vec<(&'static str, &str)> {
        let named: Vec<(&'static str, &Option<String>)> = match self {
            XReply::Connect(info) => vec![
                ("connectInfo.waitVoice", &info.wait_voice),
                ("connectInfo.recordHintTone", &info.record_hint_tone),
                ("connectInfo.lastMinVoice", &info.last_min_voice),
            ],
            XReply::Close(info) => vec![("closeInfo.closeHintTone", &info.close_hint_tone)],
        };
        named.into_iter().filter_map(|(field, tone)| Some((field, tone.as_deref()?))).collect()
    }

    /// The `userData` this call's later events and CDR carry.
    pub fn user_data(&self) -> Option<&str> {
        match self {
            XReply::Connect(info) => info.user_data.as_deref(),
            XReply::Close(info) => info.user_data.as_deref(),
        }
    }

    pub fn operation(&self) -> &'static str {
        match self {
            XReply::Connect(_) => "connect",
            XReply::Close(_) => "close",
        }
    }
}

impl ConnectInfo {
    fn read(info: &Fields<'_>, x_number: &str) -> Result<ConnectInfo, Invalid> {
        let callee = info.required_number("calleeNum")?.to_owned();
        if callee == x_number {
            // The call would come back into this X, and ask again, until the switch gave up.
            return Err(Invalid::new("connectInfo.calleeNum", format!("must not be the X called ({x_number})")));
        }
        if let Some(display) = info.number("displayCalleeNum")? {
            if display != x_number {
                return Err(Invalid::new(
                    "connectInfo.displayCalleeNum",
                    format!("must be the X called ({x_number}), got {display}: the carrier requires X"),
                ));
            }
        }
        let max_duration = info.integer("maxDuration", 0..=MAX_CALL_MINUTES)?.unwrap_or(0);
        let last_min_voice = owned(info.tone("lastMinVoice")?);
        if last_min_voice.is_some() && max_duration == 0 {
            return Err(Invalid::new("connectInfo.lastMinVoice", "needs a maxDuration above 0"));
        }
        Ok(ConnectInfo {
            callee,
            max_duration,
            wait_voice: owned(info.tone("waitVoice")?),
            record: info.flag("recordFlag")?.unwrap_or(false),
            record_hint_tone: owned(info.tone("recordHintTone")?),
            last_min_voice,
            user_data: owned(info.user_data("userData")?),
        })
    }
}

fn owned(value: Option<&str>) -> Option<String> {
    value.map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "+8617000000001";

    fn parse(body: &str) -> Result<XReply, String> {
        XReply::parse(body.as_bytes(), X).map_err(|err| err.to_string())
    }

    #[test]
    fn connect_as_an_object_or_a_one_element_array() {
        let info = r#"{"calleeNum":"+8613900000002","maxDuration":"10","recordFlag":"true","lastMinVoice":"m.wav","userData":"order-1","displayCalleeNum":"+8617000000001"}"#;
        let object = parse(&format!(r#"{{"operation":"connect","connectInfo":{info}}}"#)).unwrap();
        let array = parse(&format!(r#"{{"operation":"connect","connectInfo":[{info}]}}"#)).unwrap();
        assert_eq!(object, array);
        let XReply::Connect(connect) = object else { panic!("not a connect") };
        assert_eq!(connect.callee, "+8613900000002");
        assert_eq!((connect.max_duration, connect.record), (10, true));
        assert_eq!(connect.user_data.as_deref(), Some("order-1"));
        assert_eq!(XReply::Connect(connect).tones(), [("connectInfo.lastMinVoice", "m.wav")]);
    }

    #[test]
    fn close_with_or_without_its_info() {
        let close = parse(r#"{"operation":"close","closeInfo":[{"closeHintTone":"c.wav","userData":"u"}]}"#).unwrap();
        assert_eq!(close.tones(), [("closeInfo.closeHintTone", "c.wav")]);
        assert_eq!(close.user_data(), Some("u"));
        assert_eq!(parse(r#"{"operation":"close"}"#).unwrap(), XReply::Close(CloseInfo::default()));
    }

    #[test]
    fn an_invalid_reply_names_its_field() {
        for (body, named) in [
            ("", "reply"),
            ("[]", "reply"),
            (r#"{"operation":"transfer"}"#, "operation"),
            (r#"{"operation":"connect"}"#, "connectInfo"),
            (r#"{"operation":"connect","connectInfo":[]}"#, "connectInfo"),
            (r#"{"operation":"connect","connectInfo":[{},{}]}"#, "connectInfo"),
            (r#"{"operation":"connect","connectInfo":{"calleeNum":"13900000002"}}"#, "connectInfo.calleeNum"),
            (
                r#"{"operation":"connect","connectInfo":{"calleeNum":"+8613900000002","maxDuration":7200}}"#,
                "connectInfo.maxDuration",
            ),
            (
                r#"{"operation":"connect","connectInfo":{"calleeNum":"+8613900000002","displayCalleeNum":"+8617000000009"}}"#,
                "connectInfo.displayCalleeNum",
            ),
            (
                r#"{"operation":"connect","connectInfo":{"calleeNum":"+8613900000002","lastMinVoice":"m.wav"}}"#,
                "connectInfo.lastMinVoice",
            ),
            (
                r#"{"operation":"connect","connectInfo":{"calleeNum":"+8613900000002","userData":"{x}"}}"#,
                "connectInfo.userData",
            ),
            (
                r#"{"operation":"connect","connectInfo":{"calleeNum":"+8613900000002","waitVoice":"../w.wav"}}"#,
                "connectInfo.waitVoice",
            ),
            (r#"{"operation":"close","closeInfo":"c.wav"}"#, "closeInfo"),
            (r#"{"operation":"connect","connectInfo":{"calleeNum":"+8617000000001"}}"#, "connectInfo.calleeNum"),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.starts_with(named), "{body}: {err}");
        }
    }
}
