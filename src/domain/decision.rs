//! What privnum tells the switch to do with a call: connect, collect digits, or release.
//!
//! Scripts build a [`Decision`]; the host then enforces the platform's invariants with
//! [`Decision::check`] before the switch sees it: the callee is a party the mode allows, tone
//! names are well formed, limits are in range and release codes are real reference codes. The
//! display number is not the script's to choose: the host always shows the X.

use serde::{Deserialize, Serialize};

use super::axb::MAX_CALL_MINUTES;
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
    /// Release: the reference `stateCode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_code: Option<StateCode>,
    /// Release: played to the caller before the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tone: Option<String>,
}

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
        }
    }

    /// The platform's invariants. `allowed_callees` are the numbers this mode may connect to.
    pub fn check(&self, allowed_callees: &[&str]) -> Result<(), String> {
        match self.action {
            Action::Connect => {
                let callee = self.callee.as_deref().ok_or("a connect decision needs a callee")?;
                if !allowed_callees.contains(&callee) {
                    return Err(format!("callee {callee} is not a party this call may reach"));
                }
                if !(0..=MAX_CALL_MINUTES).contains(&self.max_duration) {
                    return Err(format!("max_duration {} is outside 0..={MAX_CALL_MINUTES}", self.max_duration));
                }
            }
            Action::Release => {
                let code = self.state_code.ok_or("a release decision needs a state code")?;
                if state::describe(code).is_none() {
                    return Err(format!("state code {code} is not a reference release code"));
                }
            }
            Action::Collect => {}
        }
        for (name, tone) in [
            ("record_hint_tone", &self.record_hint_tone),
            ("pre_voice", &self.pre_voice),
            ("wait_voice", &self.wait_voice),
            ("last_min_voice", &self.last_min_voice),
            ("tone", &self.tone),
        ] {
            if let Some(tone) = tone {
                check_tone_name(tone).map_err(|reason| format!("{name}: {reason}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariants_hold_or_name_the_problem() {
        assert!(Decision::connect("+86139").check(&["+86139"]).is_ok());
        assert!(Decision::connect("+86137").check(&["+86139"]).unwrap_err().contains("+86137"));
        assert!(Decision::release(8014, None).check(&[]).is_ok());
        assert!(Decision::release(1234, None).check(&[]).unwrap_err().contains("1234"));
        let mut long = Decision::connect("+86139");
        long.max_duration = 1441;
        assert!(long.check(&["+86139"]).is_err());
        let mut bad_tone = Decision::release(8014, Some("a b.wav".into()));
        assert!(bad_tone.check(&[]).unwrap_err().starts_with("tone"));
        bad_tone.tone = None;
        assert!(bad_tone.check(&[]).is_ok());
    }
}
