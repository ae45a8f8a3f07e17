//! What privnum tells the customer about a call, in the reference's shapes: call events
//! (`{"eventType","statusInfo"}`, §9) and CDR items (`feeLst[]`, §10).
//!
//! After the callin, events describe the forwarded leg: `caller` is the X shown to the callee,
//! `called` the real callee (the reference's examples). Times are `yyyy-MM-dd HH:mm:ss` UTC.

use serde_json::{json, Map, Value};

use super::session::{Event, EventKind, Session};
use crate::domain::time::reference_time;
use crate::domain::{state, Action, Mode};

/// The reference's `serviceType` of a mode (CONTRACT §5).
pub fn service_type(mode: Option<Mode>) -> &'static str {
    match mode {
        Some(Mode::Ax) => "003",
        Some(Mode::Axe) => "005",
        _ => "004",
    }
}

fn status_info(session: &Session, time: i64) -> Map<String, Value> {
    let mut info = Map::new();
    info.insert("timestamp".into(), reference_time(time).into());
    info.insert("sessionId".into(), session.session_id.as_str().into());
    if let Some(id) = &session.subscription_id {
        info.insert("subscriptionId".into(), id.as_str().into());
    }
    if let Some(data) = &session.user_data {
        info.insert("userData".into(), data.as_str().into());
    }
    info
}

/// `callin`: caller = the real caller, called = X.
pub fn callin_event(session: &Session) -> Value {
    let mut info = status_info(session, session.started_at);
    info.insert("caller".into(), session.caller.as_str().into());
    info.insert("called".into(), session.x_number.as_str().into());
    json!({"eventType": "callin", "statusInfo": info})
}

/// `collectInfo` (AXE): the digits the caller keyed, on the first leg (caller → X).
pub fn collect_info_event(session: &Session, digits: &str, time: i64) -> Value {
    let mut info = status_info(session, time);
    info.insert("caller".into(), session.caller.as_str().into());
    info.insert("called".into(), session.x_number.as_str().into());
    info.insert("digitInfo".into(), digits.into());
    json!({"eventType": "collectInfo", "statusInfo": info})
}

/// `callout`, `alerting`, `answer` or `disconnect` of the forwarded leg.
pub fn leg_event(session: &Session, event: &Event) -> Value {
    let mut info = status_info(session, event.time);
    // A call released at routing has no forwarded leg: its disconnect names the first leg.
    match &session.callee {
        Some(callee) => {
            info.insert("caller".into(), session.x_number.as_str().into());
            info.insert("called".into(), callee.as_str().into());
        }
        None => {
            info.insert("caller".into(), session.caller.as_str().into());
            info.insert("called".into(), session.x_number.as_str().into());
        }
    }
    if event.kind == EventKind::Disconnect {
        let code = event.state_code.unwrap_or(state::NORMAL);
        info.insert("stateCode".into(), code.into());
        info.insert("stateDesc".into(), state::describe(code).unwrap_or("").into());
        if let Some(side) = event.release_side.as_deref() {
            let direction = match side {
                "caller" => Some(1),
                "callee" => Some(2),
                _ => None,
            };
            if let Some(direction) = direction {
                info.insert("callRelDirection".into(), direction.into());
            }
        }
    }
    let kind = match event.kind {
        EventKind::Callout => "callout",
        EventKind::Alerting => "alerting",
        EventKind::Answer => "answer",
        EventKind::Disconnect => "disconnect",
    };
    json!({"eventType": kind, "statusInfo": info})
}

/// The CDR (`feeLst` item) of an ended call. `closed_by` explains an end privnum decided itself.
pub fn cdr(session: &Session, host_name: &str, closed_by: Option<&str>) -> Value {
    let at = |kind| session.events.iter().find(|event| event.kind == kind).map(|event| event.time);
    let end = session.events.iter().find(|event| event.kind == EventKind::Disconnect);
    let end_time = end.map_or(session.last_seen.max(session.started_at), |event| event.time);
    let state_code = end.and_then(|event| event.state_code).or(session.decision.state_code).unwrap_or(state::NORMAL);
    let answered = at(EventKind::Answer);
    // AXB: 1 = A called X (to B), 0 = B called X (to A), 2 = no binding (abnormal).
    // AX and AXE: 1 = A called out through X, 0 = someone called X (to A), 2 = no binding.
    let direction = match (&session.binding_caller_num, session.decision.action) {
        (Some(a), _) if *a == session.caller => 1,
        (Some(_), _) => 0,
        (None, _) => 2,
    };
    let time = |t: Option<i64>| t.map_or(Value::from(""), |t| reference_time(t).into());
    let mut fields = Map::new();
    let mut put = |name: &str, value: Value| {
        fields.insert(name.to_owned(), value);
    };
    put("direction", direction.into());
    put("spId", "".into());
    put("appKey", session.app_key.clone().unwrap_or_default().into());
    put("icid", session.icid.as_str().into());
    put("bindNum", session.x_number.as_str().into());
    put("sessionId", session.session_id.as_str().into());
    put("subscriptionId", session.subscription_id.clone().unwrap_or_default().into());
    put("callerNum", session.caller.as_str().into());
    put("calleeNum", session.x_number.as_str().into());
    let connected = session.decision.action == Action::Connect;
    put("fwdDisplayNum", if connected { session.x_number.as_str().into() } else { "".into() });
    put("fwdDstNum", session.callee.clone().unwrap_or_default().into());
    put("callInTime", reference_time(session.started_at).into());
    put("fwdStartTime", time(at(EventKind::Callout)));
    put("fwdAlertingTime", time(at(EventKind::Alerting)));
    put("fwdAnswerTime", time(answered));
    put("callEndTime", reference_time(end_time).into());
    put("fwdUnaswRsn", end.and_then(|event| event.q850).unwrap_or(0).into());
    put("failTime", if answered.is_some() { "".into() } else { reference_time(end_time).into() });
    put("ulFailReason", state_code.into());
    put("sipStatusCode", end.and_then(|event| event.sip_status).unwrap_or(0).into());
    put("recordFlag", u8::from(session.recording.is_some()).into());
    if let Some(recording) = &session.recording {
        put("recordStartTime", recording.start_time.as_str().into());
        put("recordObjectName", recording.object_name.as_str().into());
        put("recordBucketName", "".into());
        put("recordDomain", "".into());
    }
    put("serviceType", service_type(session.mode).into());
    put("hostName", host_name.into());
    if let Some(data) = &session.user_data {
        put("userData", data.as_str().into());
    }
    if let Some(extend_num) = &session.extend_num {
        put("extendNum", extend_num.as_str().into());
    }
    if let Some(version) = &session.script_version {
        put("scriptVersion", version.as_str().into());
    }
    if let Some(reason) = closed_by {
        put("closedBy", reason.into());
    }
    Value::Object(fields)
}
