//! Binding settings more than one mode shares, and how a request spells them: the tones played
//! before the callee answers (`preVoice`), the longest call, which number the callee sees, and
//! the "absent keeps, `""` clears" rule of optional strings.
//!
//! Invariant: a setting is parsed here once, with the same range and the same field name in every
//! mode that has it; a mode's own module only decides which of these settings it has.

use serde::{Deserialize, Serialize};

use super::fields::{Fields, Invalid};

/// Longest call: 24 hours, in minutes (`maxDuration`).
pub const MAX_CALL_MINUTES: i64 = 1440;

/// Tones played before the callee answers: `callerHintTone` when A calls, `calleeHintTone` when
/// the other side calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoice {
    pub caller_hint_tone: Option<String>,
    pub callee_hint_tone: Option<String>,
}

impl PreVoice {
    pub(crate) fn parse(fields: &Fields<'_>) -> Result<Option<Self>, Invalid> {
        let Some(inner) = fields.object("preVoice")? else { return Ok(None) };
        Ok(Some(PreVoice {
            caller_hint_tone: inner.tone("callerHintTone")?.map(str::to_owned),
            callee_hint_tone: inner.tone("calleeHintTone")?.map(str::to_owned),
        }))
    }
}

/// `maxDuration`: 0 (no limit) to [`MAX_CALL_MINUTES`].
pub(crate) fn max_duration(fields: &Fields<'_>) -> Result<Option<i64>, Invalid> {
    fields.integer("maxDuration", 0..=MAX_CALL_MINUTES)
}

/// Reads an optional string that a modify may clear with `""`: `None` when absent, `Some(None)`
/// when cleared.
pub(crate) fn clearable<'a>(
    fields: &Fields<'a>,
    name: &str,
    read: impl Fn(&Fields<'a>, &str) -> Result<Option<&'a str>, Invalid>,
) -> Result<Option<Option<String>>, Invalid> {
    if fields.is_empty_string(name) {
        return Ok(Some(None));
    }
    Ok(read(fields, name)?.map(|value| Some(value.to_owned())))
}

/// Applies a [`clearable`] change to the setting it names; absent keeps the value.
pub(crate) fn patch(slot: &mut Option<String>, change: &Option<Option<String>>) {
    if let Some(value) = change {
        slot.clone_from(value);
    }
}

/// `calleeNumDisplay` / `displayNumMode`: only `"0"` (show X). Carriers intercept calls that
/// show the real caller (release 8024), so privnum refuses `"1"` at provisioning instead of
/// accepting a setting that calls could never honour (ARCHITECTURE.md, "Real-number display").
pub(crate) fn check_display_is_x(fields: &Fields<'_>, name: &str) -> Result<(), Invalid> {
    match fields.integer(name, 0..=1)? {
        Some(1) => Err(Invalid::new(name, "must be 0 (show X): carriers do not allow showing the real number")),
        _ => Ok(()),
    }
}
