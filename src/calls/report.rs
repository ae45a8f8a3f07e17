//! What privnum tells the customer about a call, in the Huawei API's shapes: call events
//! (`{"eventType","statusInfo"}`) and CDR items (`feeLst[]`); README, "What the customer
//! receives".
//!
//! After the callin, events describe the forwarded leg: `caller` is the X shown to the callee,
//! `called` the real callee (the Huawei API's examples). Times are `yyyy-MM-dd HH:mm:ss` UTC.
//!
//! Each shape is a typed `Serialize` struct, encoded once when its push is made. Invariant: the
//! fields are declared in the order of their names, which is the order customers have always
//! received them in (they were once built as sorted maps), so the bytes on the wire stay the same.

use serde::Serialize;

use super::route::CallIn;
use super::session::{Event, EventKind, Session};
use crate::domain::state::{self, StateCode};
use crate::domain::time::reference_time;
use crate::domain::{Action, Mode};

/// The Huawei `serviceType` of a mode (README, "What the customer receives").
pub fn service_type(mode: Option<Mode>) -> &'static str {
    match mode {
        Some(Mode::Ax) => "003",
        Some(Mode::Axe) => "005",
        _ => "004",
    }
}

/// A call event: one POST to the app's `call_event_url`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEvent<'a> {
    pub event_type: &'static str,
    pub status_info: StatusInfo<'a>,
}

/// A call event's `statusInfo`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusInfo<'a> {
    /// `disconnect`: 1 when the caller hung up, 2 when the callee did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_rel_direction: Option<u8>,
    pub called: &'a str,
    pub caller: &'a str,
    /// `collectInfo`: the digits the caller keyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digit_info: Option<&'a str>,
    /// X mode only: `Block` for the callin whose reply decides the call, `Notify` for the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_mode: Option<&'static str>,
    pub session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_code: Option<StateCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_desc: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<&'a str>,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<&'a str>,
}

impl<'a> StatusInfo<'a> {
    fn new(session: &'a Session, time: i64, (caller, called): (&'a str, &'a str)) -> Self {
        StatusInfo {
            call_rel_direction: None,
            called,
            caller,
            digit_info: None,
            notify_mode: notify_mode(session.mode),
            session_id: &session.session_id,
            state_code: None,
            state_desc: None,
            subscription_id: session.subscription_id.as_deref(),
            timestamp: reference_time(time),
            user_data: session.user_data.as_deref(),
        }
    }
}

/// X mode's later pushes are Notify pushes, and say so; other modes' say nothing.
fn notify_mode(mode: Option<Mode>) -> Option<&'static str> {
    (mode == Some(Mode::X)).then_some("Notify")
}

/// X mode's Block `callin`, sent before there is a session: caller = the real caller, called = X.
pub fn block_callin_event(call: &CallIn) -> CallEvent<'_> {
    let status_info = StatusInfo {
        call_rel_direction: None,
        called: &call.called,
        caller: &call.caller,
        digit_info: None,
        notify_mode: Some("Block"),
        session_id: &call.session_id,
        state_code: None,
        state_desc: None,
        subscription_id: None,
        timestamp: reference_time(call.time),
        user_data: None,
    };
    CallEvent { event_type: "callin", status_info }
}

/// A push body's bytes. (These structs hold only strings and numbers: encoding cannot fail.)
pub fn encode<T: Serialize>(body: &T) -> String {
    serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned())
}

/// `callRelDirection`: 1 when the caller hung up, 2 when the callee did.
fn release_direction(release_side: Option<&str>) -> Option<u8> {
    match release_side {
        Some("caller") => Some(1),
        Some("callee") => Some(2),
        _ => None,
    }
}

/// The first leg: the real caller calling X.
fn first_leg(session: &Session) -> (&str, &str) {
    (&session.caller, &session.x_number)
}

/// `callin`: caller = the real caller, called = X.
pub fn callin_event(session: &Session) -> CallEvent<'_> {
    CallEvent { event_type: "callin", status_info: StatusInfo::new(session, session.started_at, first_leg(session)) }
}

/// `collectInfo` (AXE): the digits the caller keyed, on the first leg (caller → X).
pub fn collect_info_event<'a>(session: &'a Session, digits: &'a str, time: i64) -> CallEvent<'a> {
    let status_info = StatusInfo { digit_info: Some(digits), ..StatusInfo::new(session, time, first_leg(session)) };
    CallEvent { event_type: "collectInfo", status_info }
}

/// `callout`, `alerting`, `answer` or `disconnect` of the forwarded leg.
pub fn leg_event<'a>(session: &'a Session, event: &Event) -> CallEvent<'a> {
    // A call released at routing has no forwarded leg: its disconnect names the first leg.
    let leg = match &session.callee {
        Some(callee) => (session.x_number.as_str(), callee.as_str()),
        None => first_leg(session),
    };
    let mut info = StatusInfo::new(session, event.time, leg);
    if event.kind == EventKind::Disconnect {
        let code = event.state_code.unwrap_or(state::NORMAL);
        info.state_code = Some(code);
        info.state_desc = Some(state::describe(code).unwrap_or(""));
        info.call_rel_direction = release_direction(event.release_side.as_deref());
    }
    let event_type = match event.kind {
        EventKind::Callout => "callout",
        EventKind::Alerting => "alerting",
        EventKind::Answer => "answer",
        EventKind::Disconnect => "disconnect",
    };
    CallEvent { event_type, status_info: info }
}

/// The CDR of an ended call: one `feeLst` item (also the switch's `GET …/cdr` answer).
#[derive(Debug, Serialize)]
pub struct Cdr<'a> {
    #[serde(rename = "appKey")]
    pub app_key: &'a str,
    /// The X's area code.
    #[serde(rename = "areaCode", skip_serializing_if = "Option::is_none")]
    pub area_code: Option<&'a str>,
    #[serde(rename = "bindNum")]
    pub bind_num: &'a str,
    #[serde(rename = "callEndTime")]
    pub call_end_time: String,
    #[serde(rename = "callInTime")]
    pub call_in_time: String,
    /// Reserved in the Huawei API (its outbound-call CDRs); always 0, as in its sample.
    #[serde(rename = "callOutUnaswRsn")]
    pub call_out_unasw_rsn: u32,
    /// 1 when the caller hung up, 2 when the callee did (absent when neither: the platform).
    #[serde(rename = "callRelDirection", skip_serializing_if = "Option::is_none")]
    pub call_rel_direction: Option<u8>,
    #[serde(rename = "calleeNum")]
    pub callee_num: &'a str,
    #[serde(rename = "callerNum")]
    pub caller_num: &'a str,
    /// Why privnum ended the call itself (a stale session).
    #[serde(rename = "closedBy", skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<&'a str>,
    pub direction: u8,
    #[serde(rename = "extendNum", skip_serializing_if = "Option::is_none")]
    pub extend_num: Option<&'a str>,
    #[serde(rename = "failTime")]
    pub fail_time: String,
    #[serde(rename = "fwdAlertingTime")]
    pub fwd_alerting_time: String,
    #[serde(rename = "fwdAnswerTime")]
    pub fwd_answer_time: String,
    #[serde(rename = "fwdDisplayNum")]
    pub fwd_display_num: &'a str,
    #[serde(rename = "fwdDstNum")]
    pub fwd_dst_num: &'a str,
    #[serde(rename = "fwdStartTime")]
    pub fwd_start_time: String,
    #[serde(rename = "fwdUnaswRsn")]
    pub fwd_unasw_rsn: u32,
    #[serde(rename = "hostName")]
    pub host_name: &'a str,
    pub icid: &'a str,
    /// X mode only: `Notify`.
    #[serde(rename = "notifyMode", skip_serializing_if = "Option::is_none")]
    pub notify_mode: Option<&'static str>,
    #[serde(rename = "recordBucketName", skip_serializing_if = "Option::is_none")]
    pub record_bucket_name: Option<&'a str>,
    #[serde(rename = "recordDomain", skip_serializing_if = "Option::is_none")]
    pub record_domain: Option<&'a str>,
    /// A signed link to the recording, when privnum knows its storage (`record_domain`).
    #[serde(rename = "recordFileDownloadUrl", skip_serializing_if = "Option::is_none")]
    pub record_file_download_url: Option<String>,
    #[serde(rename = "recordFlag")]
    pub record_flag: u8,
    #[serde(rename = "recordObjectName", skip_serializing_if = "Option::is_none")]
    pub record_object_name: Option<&'a str>,
    #[serde(rename = "recordStartTime", skip_serializing_if = "Option::is_none")]
    pub record_start_time: Option<&'a str>,
    #[serde(rename = "rulesetVersion", skip_serializing_if = "Option::is_none")]
    pub ruleset_version: Option<&'a str>,
    #[serde(rename = "scriptVersion", skip_serializing_if = "Option::is_none")]
    pub script_version: Option<&'a str>,
    #[serde(rename = "serviceType")]
    pub service_type: &'static str,
    #[serde(rename = "sessionId")]
    pub session_id: &'a str,
    #[serde(rename = "sipStatusCode")]
    pub sip_status_code: u32,
    #[serde(rename = "spId")]
    pub sp_id: &'static str,
    #[serde(rename = "subscriptionId")]
    pub subscription_id: &'a str,
    #[serde(rename = "ulFailReason")]
    pub ul_fail_reason: StateCode,
    #[serde(rename = "userData", skip_serializing_if = "Option::is_none")]
    pub user_data: Option<&'a str>,
}

/// Where the switch's recordings are kept (`record_domain`), with the app that signs a link to
/// one of its calls' recordings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordStorage {
    pub domain: String,
    pub app_key: String,
    pub app_secret: String,
}

/// The CDR (`feeLst` item) of an ended call. `closed_by` explains an end privnum decided itself.
/// With `storage`, a recording is named with its domain and a signed link that works for three
/// days after the call's end (`domain::recording`); without, `recordDomain` is empty.
pub fn cdr<'a>(
    session: &'a Session,
    host_name: &'a str,
    closed_by: Option<&'a str>,
    storage: Option<&'a RecordStorage>,
) -> Cdr<'a> {
    let at = |kind| session.events.iter().find(|event| event.kind == kind).map(|event| event.time);
    let end = session.events.iter().find(|event| event.kind == EventKind::Disconnect);
    let end_time = end.map_or(session.last_seen.max(session.started_at), |event| event.time);
    let state_code = end.and_then(|event| event.state_code).or(session.decision.state_code).unwrap_or(state::NORMAL);
    let answered = at(EventKind::Answer);
    // AXB: 1 = A called X (to B), 0 = B called X (to A), 2 = no binding (abnormal).
    // AX and AXE: 1 = A called out through X, 0 = someone called X (to A), 2 = no binding.
    // X mode: 0 = someone called X and was connected as the customer said, 2 = released.
    let connected = session.decision.action == Action::Connect;
    let direction = match &session.binding_caller_num {
        Some(a) if *a == session.caller => 1,
        Some(_) => 0,
        None if connected && session.mode == Some(Mode::X) => 0,
        None => 2,
    };
    let time = |t: Option<i64>| t.map_or_else(String::new, reference_time);
    let recording = session.recording.as_ref();
    Cdr {
        app_key: session.app_key.as_deref().unwrap_or_default(),
        area_code: session.area_code.as_deref(),
        bind_num: &session.x_number,
        call_end_time: reference_time(end_time),
        call_out_unasw_rsn: 0,
        call_in_time: reference_time(session.started_at),
        call_rel_direction: end.and_then(|event| release_direction(event.release_side.as_deref())),
        callee_num: &session.x_number,
        caller_num: &session.caller,
        closed_by,
        direction,
        extend_num: session.extend_num.as_deref(),
        fail_time: if answered.is_some() { String::new() } else { reference_time(end_time) },
        fwd_alerting_time: time(at(EventKind::Alerting)),
        fwd_answer_time: time(answered),
        fwd_display_num: if connected { &session.x_number } else { "" },
        fwd_dst_num: session.callee.as_deref().unwrap_or_default(),
        fwd_start_time: time(at(EventKind::Callout)),
        fwd_unasw_rsn: end.and_then(|event| event.q850).unwrap_or(0),
        host_name,
        icid: &session.icid,
        notify_mode: notify_mode(session.mode),
        record_bucket_name: recording.map(|_| ""),
        record_domain: recording.map(|_| storage.map_or("", |storage| storage.domain.as_str())),
        record_file_download_url: recording.zip(storage).map(|(recording, storage)| {
            let expires = end_time.saturating_add(crate::domain::recording::LINK_SECS);
            crate::domain::recording::link(
                &storage.app_secret,
                &storage.app_key,
                &storage.domain,
                &recording.object_name,
                expires,
            )
        }),
        record_flag: u8::from(recording.is_some()),
        record_object_name: recording.map(|recording| recording.object_name.as_str()),
        record_start_time: recording.map(|recording| recording.start_time.as_str()),
        ruleset_version: session.ruleset_version.as_deref(),
        script_version: session.script_version.as_deref(),
        service_type: service_type(session.mode),
        session_id: &session.session_id,
        sip_status_code: end.and_then(|event| event.sip_status).unwrap_or(0),
        sp_id: "",
        subscription_id: session.subscription_id.as_deref().unwrap_or_default(),
        ul_fail_reason: state_code,
        user_data: session.user_data.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::session::Recording;
    use crate::domain::Decision;

    fn ended_session() -> Session {
        let event =
            |kind, time| Event { kind, time, release_side: None, state_code: None, q850: None, sip_status: None };
        Session {
            session_id: "s-1".into(),
            icid: "icid-1".into(),
            app_key: Some("app".into()),
            mode: Some(Mode::Axe),
            caller: "+8613800000001".into(),
            x_number: "+8617000000001".into(),
            callee: Some("+8613900000002".into()),
            subscription_id: Some("sub-1".into()),
            binding_caller_num: Some("+8613800000001".into()),
            user_data: Some("order".into()),
            extend_num: Some("1234".into()),
            area_code: Some("0755".into()),
            recording: Some(Recording { object_name: "rec.wav".into(), start_time: "2026-01-02 03:04:05".into() }),
            decision: Decision::connect("+8613900000002"),
            script_version: Some("v1".into()),
            ruleset_version: None,
            count_answered: false,
            started_at: 1_700_000_000,
            events: vec![
                event(EventKind::Callout, 1_700_000_001),
                event(EventKind::Answer, 1_700_000_003),
                Event {
                    release_side: Some("callee".into()),
                    state_code: Some(state::NORMAL),
                    q850: Some(16),
                    sip_status: Some(200),
                    ..event(EventKind::Disconnect, 1_700_000_060)
                },
            ],
            last_seen: 1_700_000_060,
            ended_at: Some(1_700_000_060),
        }
    }

    /// The bytes a value had when it was built as a map: serde_json's maps sort their keys.
    fn as_sorted_map(value: &impl Serialize) -> String {
        serde_json::to_string(&serde_json::to_value(value).unwrap()).unwrap()
    }

    #[test]
    fn every_shape_encodes_as_the_sorted_maps_customers_always_received() {
        let session = ended_session();
        let disconnect = session.events.last().unwrap().clone();
        let shapes = [
            serde_json::to_string(&callin_event(&session)).unwrap(),
            serde_json::to_string(&collect_info_event(&session, "1234", 1_700_000_000)).unwrap(),
            serde_json::to_string(&leg_event(&session, &disconnect)).unwrap(),
            serde_json::to_string(&cdr(&session, "node-1", Some("closed"), None)).unwrap(),
        ];
        let maps = [
            as_sorted_map(&callin_event(&session)),
            as_sorted_map(&collect_info_event(&session, "1234", 1_700_000_000)),
            as_sorted_map(&leg_event(&session, &disconnect)),
            as_sorted_map(&cdr(&session, "node-1", Some("closed"), None)),
        ];
        assert_eq!(shapes, maps);
        assert!(shapes[2].contains(r#""callRelDirection":2,"called":"+8613900000002","caller":"+8617000000001""#));
    }
}
