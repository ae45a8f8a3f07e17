//! What the switch hears back: a decision (README, "Switch adapter"), an event's `{}`, or a CDR.
//!
//! Invariant: the display is always the X, and each action carries only its own fields; the
//! fields are declared in the order of their names, the order the switch has always received
//! them in (the answers were once built as sorted maps).

use serde::Serialize;

use super::report::{cdr, RecordStorage};
use super::route::Routed;
use super::session::Session;
use crate::domain::state::StateCode;
use crate::domain::{Action, Decision};

/// A decision as the switch reads it: camelCase, display always the X.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionAnswer {
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_min_voice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_digits: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_voice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_hint_tone: Option<String>,
    pub session_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_code: Option<StateCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_voice: Option<String>,
}

impl DecisionAnswer {
    /// The answer to a call on `x_number` routed to `routed`.
    pub fn new(session_id: &str, x_number: &str, routed: &Routed) -> Self {
        let subscription_id = routed.binding.as_ref().map(|b| b.subscription_id());
        DecisionAnswer::of(session_id, x_number, &routed.decision, subscription_id, routed.user_data.as_deref())
    }

    /// The answer a session's decision was given with: what a retried callin hears again. The
    /// session keeps every field the answer is made of (`Session::take_decision`).
    pub fn of_session(session: &Session) -> Self {
        DecisionAnswer::of(
            &session.session_id,
            &session.x_number,
            &session.decision,
            session.subscription_id.as_deref(),
            session.user_data.as_deref(),
        )
    }

    fn of(
        session_id: &str,
        x_number: &str,
        decision: &Decision,
        subscription_id: Option<&str>,
        user_data: Option<&str>,
    ) -> Self {
        let mut answer = DecisionAnswer {
            action: decision.action,
            callee: None,
            display: None,
            last_min_voice: None,
            max_digits: None,
            max_duration: None,
            pre_voice: None,
            prompt: None,
            record: None,
            record_hint_tone: None,
            session_id: session_id.to_owned(),
            state_code: None,
            subscription_id: None,
            timeout_ms: None,
            tone: None,
            user_data: None,
            wait_voice: None,
        };
        match decision.action {
            Action::Connect => {
                answer.callee.clone_from(&decision.callee);
                answer.display = Some(x_number.to_owned());
                answer.subscription_id = subscription_id.map(str::to_owned);
                answer.user_data = user_data.map(str::to_owned);
                answer.record = Some(decision.record);
                answer.record_hint_tone.clone_from(&decision.record_hint_tone);
                answer.pre_voice.clone_from(&decision.pre_voice);
                answer.wait_voice.clone_from(&decision.wait_voice);
                answer.max_duration = Some(decision.max_duration);
                answer.last_min_voice = decision.last_min_voice.clone().filter(|_| decision.max_duration > 0);
            }
            Action::Release => {
                answer.state_code = decision.state_code;
                answer.tone.clone_from(&decision.tone);
            }
            Action::Collect => {
                answer.prompt.clone_from(&decision.prompt);
                answer.max_digits = Some(decision.max_digits);
                answer.timeout_ms = Some(decision.timeout_ms);
            }
        }
        answer
    }
}

/// An event's answer: `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventAnswer {}

/// An ended call's CDR, as the switch's `GET …/cdr` returns it: the `feeLst` item its push
/// carries.
#[derive(Debug, Clone)]
pub struct CdrAnswer {
    pub session: Session,
    pub host_name: String,
    pub storage: Option<RecordStorage>,
}

impl Serialize for CdrAnswer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        cdr(&self.session, &self.host_name, None, self.storage.as_ref()).serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::DecisionAnswer;
    use crate::calls::route::Routed;
    use crate::domain::Decision;

    fn routed(decision: Decision) -> Routed {
        let user_data = Some("order".to_owned());
        Routed {
            decision,
            app: None,
            binding: None,
            user_data,
            script_version: None,
            ruleset_version: None,
            fallback: false,
            area_code: None,
        }
    }

    #[test]
    fn each_action_answers_its_own_fields_in_the_order_the_switch_always_received() {
        let mut connect = Decision::connect("+8613900000002");
        connect.max_duration = 30;
        connect.last_min_voice = Some("last.wav".into());
        let answers = [
            (
                connect,
                r#"{"action":"connect","callee":"+8613900000002","display":"+8617000000001","lastMinVoice":"last.wav","maxDuration":30,"record":false,"sessionId":"s-1","userData":"order"}"#,
            ),
            (
                Decision::release(8014, Some("close.wav".into())),
                r#"{"action":"release","sessionId":"s-1","stateCode":8014,"tone":"close.wav"}"#,
            ),
            (
                Decision::collect(Some("ext.wav".into()), 4),
                r#"{"action":"collect","maxDigits":4,"prompt":"ext.wav","sessionId":"s-1","timeoutMs":10000}"#,
            ),
        ];
        for (decision, expected) in answers {
            let answer = DecisionAnswer::new("s-1", "+8617000000001", &routed(decision));
            assert_eq!(serde_json::to_string(&answer).unwrap(), expected);
        }
    }
}
