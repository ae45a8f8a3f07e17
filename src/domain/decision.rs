//! What privnum tells the switch to do with a call: connect, collect digits, or release.
//!
//! Scripts build a [`Decision`]; the host then enforces the platform's invariants with
//! [`Decision::check`] before the switch sees it: the callee is a party the mode allows, tone
//! names are well formed, limits are in range and release codes are real Huawei codes. The
//! display number is not the script's to choose: the host always shows the X.

use serde::{Deserialize, Serialize};

use super::settings::MAX_CALL_MINUTES;
use super::state::{self, StateCode};
use super::tone::check_tone_name;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Connect,
    Collect,
    Release,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Connect => "connect",
            Action::Collect => "collect",
            Action::Release => "release",
        }
    }
}

/// A decision as a script makes it. Fields that do not apply to the action stay at their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub action: Action,
    /// Connect: the real number to call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub record: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_hint_tone: Option<String>,
    /// Played to the caller before the callee answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_voice: Option<String>,
    /// A custom ring-back tone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_voice: Option<String>,
    /// Minutes from answer; 0 means no limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_duration: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_min_voice: Option<String>,
    /// Release: the Huawei `stateCode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_code: Option<StateCode>,
    /// Release: played to the caller before the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tone: Option<String>,
    /// Collect: the prompt asking the caller for the extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Collect: how many digits to collect.
    #[serde(default, skip_serializing_if = "is_zero_u8")]
    pub max_digits: u8,
    /// Collect: how long the switch waits for the digits before it reports an empty input.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout_ms: i64,
}

fn is_zero_u8(value: &u8) -> bool {
    *value == 0
}

/// How long the switch waits for an extension unless the script says otherwise.
pub const DEFAULT_COLLECT_TIMEOUT_MS: i64 = 10_000;
/// The shortest and longest digit wait a script may ask for: a caller needs a second or more to
/// key one digit, and a minute of silence is a caller who has gone.
pub const COLLECT_TIMEOUT_MS: std::ops::RangeInclusive<i64> = 1_000..=60_000;

fn is_false(value: &bool) -> bool {
    !value
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

impl Decision {
    pub fn connect(callee: impl Into<String>) -> Self {
        Decision { callee: Some(callee.into()), ..Decision::empty(Action::Connect) }
    }

    pub fn release(state_code: StateCode, tone: Option<String>) -> Self {
        Decision { state_code: Some(state_code), tone, ..Decision::empty(Action::Release) }
    }

    /// Ask the caller for `max_digits` digits after `prompt` (AXE extensions).
    pub fn collect(prompt: Option<String>, max_digits: u8) -> Self {
        Decision { prompt, max_digits, timeout_ms: DEFAULT_COLLECT_TIMEOUT_MS, ..Decision::empty(Action::Collect) }
    }

    fn empty(action: Action) -> Self {
        Decision {
            action,
            callee: None,
            record: false,
            record_hint_tone: None,
            pre_voice: None,
            wait_voice: None,
            max_duration: 0,
            last_min_voice: None,
            state_code: None,
            tone: None,
            prompt: None,
            max_digits: 0,
            timeout_ms: 0,
        }
    }

    /// Every tone the decision names, with its field.
    pub fn tones(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("record_hint_tone", &self.record_hint_tone),
            ("pre_voice", &self.pre_voice),
            ("wait_voice", &self.wait_voice),
            ("last_min_voice", &self.last_min_voice),
            ("tone", &self.tone),
            ("prompt", &self.prompt),
        ]
        .into_iter()
        .filter_map(|(name, tone)| tone.as_deref().map(|tone| (name, tone)))
    }

    /// The platform's invariants: what `allowance` permits this call, valid tones and codes.
    pub fn check(&self, allowance: &Allowance) -> Result<(), String> {
        match self.action {
            Action::Connect => {
                let callee = self.callee.as_deref().ok_or("a connect decision needs a callee")?;
                if allowance.callee.as_deref() != Some(callee) {
                    return Err(format!("callee {callee} is not a party this call may reach"));
                }
                if self.record && !allowance.may_record {
                    return Err("record is on, but the app or the binding does not record".to_owned());
                }
                let most = allowance.max_duration.unwrap_or(MAX_CALL_MINUTES);
                let least = i64::from(allowance.max_duration.is_some());
                if !(least..=most).contains(&self.max_duration) {
                    return Err(format!("max_duration {} is outside {least}..={most}", self.max_duration));
                }
            }
            Action::Release => {
                let code = self.state_code.ok_or("a release decision needs a state code")?;
                if state::describe(code).is_none() {
                    return Err(format!("state code {code} is not a Huawei release code"));
                }
            }
            Action::Collect => {
                let Some(digits) = allowance.collect_digits else {
                    return Err("this call may not collect digits: only a third party calling an AXE X may".to_owned());
                };
                if self.max_digits != digits {
                    return Err(format!("max_digits {} is not the app's extension_digits {digits}", self.max_digits));
                }
                if !COLLECT_TIMEOUT_MS.contains(&self.timeout_ms) {
                    return Err(format!(
                        "timeout_ms {} is outside {}..={}",
                        self.timeout_ms,
                        COLLECT_TIMEOUT_MS.start(),
                        COLLECT_TIMEOUT_MS.end()
                    ));
                }
            }
        }
        for (name, tone) in self.tones() {
            check_tone_name(tone).map_err(|reason| format!("{name}: {reason}"))?;
        }
        Ok(())
    }
}

/// What the mode and the binding permit one call: a script may tighten a decision within this,
/// never go beyond it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowance {
    /// The one number this call may be connected to; `None`: no connect at all.
    pub callee: Option<String>,
    pub may_record: bool,
    /// The longest call in minutes, when the binding limits it.
    pub max_duration: Option<i64>,
    /// AXE: the call may collect an extension of this many digits; `None`: no collect.
    pub collect_digits: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(callee: &str) -> Allowance {
        Allowance { callee: Some(callee.into()), ..Allowance::default() }
    }

    #[test]
    fn invariants_hold_or_name_the_problem() {
        assert!(Decision::connect("+86139").check(&allow("+86139")).is_ok());
        assert!(Decision::connect("+86137").check(&allow("+86139")).unwrap_err().contains("+86137"));
        assert!(Decision::connect("+86139").check(&Allowance::default()).is_err());
        assert!(Decision::release(8014, None).check(&Allowance::default()).is_ok());
        assert!(Decision::release(1234, None).check(&Allowance::default()).unwrap_err().contains("1234"));
        let mut long = Decision::connect("+86139");
        long.max_duration = 1441;
        assert!(long.check(&allow("+86139")).is_err());
        let mut bad_tone = Decision::release(8014, Some("a b.wav".into()));
        assert!(bad_tone.check(&Allowance::default()).unwrap_err().starts_with("tone"));
        bad_tone.tone = None;
        assert!(bad_tone.check(&Allowance::default()).is_ok());
    }

    #[test]
    fn a_script_may_tighten_but_not_loosen_the_binding() {
        let limited = Allowance { callee: Some("+86139".into()), max_duration: Some(10), ..Allowance::default() };
        let mut decision = Decision::connect("+86139");
        assert!(decision.check(&limited).is_err(), "0 (unlimited) exceeds a 10-minute binding");
        decision.max_duration = 5;
        assert!(decision.check(&limited).is_ok());
        decision.max_duration = 11;
        assert!(decision.check(&limited).is_err());
        decision.max_duration = 5;
        decision.record = true;
        assert!(decision.check(&limited).unwrap_err().contains("record"));
    }

    #[test]
    fn only_an_axe_third_party_call_collects_and_with_the_apps_digits() {
        let collecting = Allowance { collect_digits: Some(4), ..Allowance::default() };
        let mut collect = Decision::collect(Some("ext.wav".into()), 4);
        assert!(collect.check(&collecting).is_ok());
        assert!(collect.check(&Allowance::default()).unwrap_err().contains("collect"));
        collect.max_digits = 3;
        assert!(collect.check(&collecting).unwrap_err().contains("extension_digits"));
        collect.max_digits = 4;
        collect.timeout_ms = 500;
        assert!(collect.check(&collecting).unwrap_err().contains("timeout_ms"));
        collect.timeout_ms = 5_000;
        collect.prompt = Some("bad prompt.wav".into());
        assert!(collect.check(&collecting).unwrap_err().starts_with("prompt"));
    }
}
