//! Call release codes (`stateCode`; docs/compatibility.md, Calls) that privnum itself decides.
//!
//! Scripts name them through the `state` module (`state::INVALID_AXB_CALL`), the host through
//! these constants; [`describe`] gives the `stateDesc` text and tells a known code from a typo.

pub type StateCode = u32;

/// Normal release after the call was connected.
pub const NORMAL: StateCode = 0;
/// AX binding exists but no temporary callee.
pub const NO_TEMPORARY_CALLEE: StateCode = 8013;
/// No binding, or a caller who is not a party of it (AXB, X).
pub const INVALID_AXB_CALL: StateCode = 8014;
/// The binding's `callDirection` does not allow this caller.
pub const DIRECTION_NOT_ALLOWED: StateCode = 8016;
/// No service permission (includes: no AX binding).
pub const NO_PERMISSION: StateCode = 8018;
/// AXE: A called X, but there is no callback record (and no `callbackNum`).
pub const NO_CALLBACK_RECORD: StateCode = 8019;
/// AXE: the extension entered is not bound on this X, or its binding expired.
pub const EXTENSION_NOT_BOUND: StateCode = 8022;
/// AXE: the dialled X holds no binding of the app.
pub const X_NOT_FOUND: StateCode = 8025;
/// AXE: the caller entered no extension.
pub const EMPTY_EXTENSION: StateCode = 8033;
/// AXE: the caller hung up before entering an extension (before the transfer).
pub const CALLER_HUNG_UP_BEFORE_TRANSFER: StateCode = 7516;
/// Service exception: privnum's fallback when a script fails (see policy-docs).
pub const SERVICE_EXCEPTION: StateCode = 8020;
/// X mode: the customer's reply names a voice file that does not exist (privnum: that is not an
/// approved tone of the app).
pub const X_VOICE_FILE_MISSING: StateCode = 8006;
/// The X belongs to no app.
pub const APP_NOT_FOUND: StateCode = 7100;
/// The X's mode has no routing yet.
pub const SERVICE_TYPE_MISMATCH: StateCode = 7105;
/// The X is paused or unavailable.
pub const X_UNAVAILABLE: StateCode = 8055;
/// Internal error: privnum's release of a callin it cannot record (a storage fault: README,
/// "Storage faults"), apart from a script's failure (8020).
pub const PLATFORM_FAULT: StateCode = 8011;
/// Maximum call duration reached.
pub const MAX_DURATION_REACHED: StateCode = 8010;

pub const CALLER_HUNG_UP_BEFORE_RINGING: StateCode = 7501;
pub const CALLER_HUNG_UP_AFTER_RINGING: StateCode = 7502;
pub const CALL_REFUSED: StateCode = 7504;
pub const ROUTING_FAILURE: StateCode = 7508;
pub const CALLEE_NOT_EXIST: StateCode = 8100;
pub const CALLEE_NO_ANSWER: StateCode = 8101;
pub const CALLEE_BUSY: StateCode = 8102;
pub const CALLEE_UNREACHABLE: StateCode = 8103;
pub const CALLEE_POWERED_OFF: StateCode = 8104;

/// Every Huawei release code (docs/compatibility.md, Calls) with its meaning, in code order.
const TABLE: &[(StateCode, &str)] = &[
    (0, "The user releases the call."),
    (522, "Platform voice ports exhausted."),
    (7001, "Developer-level call-frequency control."),
    (7002, "App-level call-frequency control."),
    (7003, "Display-number call-frequency control."),
    (7004, "Callee blacklist."),
    (7005, "Caller blacklist."),
    (7100, "App info does not exist."),
    (7101, "App has no privacy number resources."),
    (7102, "Other abnormal behaviour."),
    (7105, "Service type mismatch."),
    (7106, "App lacks the privacy-call capability."),
    (7107, "Security-control prompt failed to play."),
    (7108, "User frozen."),
    (7109, "Tenant voice ports exhausted."),
    (7500, "Call prefix restricted."),
    (7501, "Caller hung up before the callee rang."),
    (7502, "Caller hung up after the callee rang."),
    (7503, "Callee rejected."),
    (7504, "Call refused."),
    (7505, "Caller-side network error."),
    (7506, "Callee-side network error."),
    (7507, "No voice file."),
    (7508, "Routing failure."),
    (7516, "Caller hung up before the transfer."),
    (8006, "X-mode voice file does not exist."),
    (8007, "Last-minute tone playback failed."),
    (8008, "Play-and-collect failed."),
    (8010, "Maximum call duration reached."),
    (8011, "Other abnormal behaviour."),
    (8013, "Invalid AX call: no temporary callee."),
    (8014, "Invalid AXB/X call."),
    (8015, "Recording failed."),
    (8016, "Call direction not allowed."),
    (8018, "No service permission."),
    (8019, "Callback record does not exist."),
    (8020, "Service exception."),
    (8022, "Binding missing or expired."),
    (8023, "Fixed-line number not allowed as caller."),
    (8024, "Real-caller display mode not allowed."),
    (8025, "Dialled X does not exist."),
    (8030, "AXYB binding does not exist."),
    (8031, "AXYB: Y allocation failed."),
    (8032, "A number dialled its own bound privacy number."),
    (8033, "Empty extension received."),
    (8035, "Platform connect timeout."),
    (8040, "Other abnormal behaviour."),
    (8041, "Recording failed."),
    (8042, "International inbound restricted."),
    (8043, "International outbound restricted."),
    (8044, "Abnormal call-duration control."),
    (8046, "Abnormal answer-rate control."),
    (8047, "Caller call-frequency control."),
    (8048, "Callee call-frequency control."),
    (8049, "Service-number call-frequency control."),
    (8050, "Call time-window restriction."),
    (8051, "Sub-enterprise suspended."),
    (8055, "X unavailable: call and SMS disabled."),
    (8056, "Test-dial number control."),
    (8057, "Call-direction control."),
    (8100, "Callee number does not exist."),
    (8101, "No answer after ringing."),
    (8102, "Callee busy."),
    (8103, "Callee unreachable."),
    (8104, "Callee powered off."),
    (8105, "Callee out of service."),
    (8139, "Other abnormal behaviour."),
];

/// The `stateDesc` of a code, or `None` for a code the Huawei API does not list.
pub fn describe(code: StateCode) -> Option<&'static str> {
    TABLE.binary_search_by_key(&code, |(c, _)| *c).ok().map(|i| TABLE[i].1)
}

/// The names scripts see in the `state` module, with their codes.
pub const SCRIPT_NAMES: &[(&str, StateCode)] = &[
    ("NORMAL", NORMAL),
    ("NO_TEMPORARY_CALLEE", NO_TEMPORARY_CALLEE),
    ("INVALID_AXB_CALL", INVALID_AXB_CALL),
    ("DIRECTION_NOT_ALLOWED", DIRECTION_NOT_ALLOWED),
    ("NO_PERMISSION", NO_PERMISSION),
    ("NO_CALLBACK_RECORD", NO_CALLBACK_RECORD),
    ("EXTENSION_NOT_BOUND", EXTENSION_NOT_BOUND),
    ("X_NOT_FOUND", X_NOT_FOUND),
    ("EMPTY_EXTENSION", EMPTY_EXTENSION),
    ("CALLER_HUNG_UP_BEFORE_TRANSFER", CALLER_HUNG_UP_BEFORE_TRANSFER),
    ("SERVICE_EXCEPTION", SERVICE_EXCEPTION),
    ("X_VOICE_FILE_MISSING", X_VOICE_FILE_MISSING),
    ("X_UNAVAILABLE", X_UNAVAILABLE),
    ("MAX_DURATION_REACHED", MAX_DURATION_REACHED),
    ("CALLER_HUNG_UP_BEFORE_RINGING", CALLER_HUNG_UP_BEFORE_RINGING),
    ("CALLER_HUNG_UP_AFTER_RINGING", CALLER_HUNG_UP_AFTER_RINGING),
    ("CALL_REFUSED", CALL_REFUSED),
    ("ROUTING_FAILURE", ROUTING_FAILURE),
    ("CALLEE_NOT_EXIST", CALLEE_NOT_EXIST),
    ("CALLEE_NO_ANSWER", CALLEE_NO_ANSWER),
    ("CALLEE_BUSY", CALLEE_BUSY),
    ("CALLEE_UNREACHABLE", CALLEE_UNREACHABLE),
    ("CALLEE_POWERED_OFF", CALLEE_POWERED_OFF),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_names_are_known_codes() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0), "binary search needs code order");
        for (name, code) in SCRIPT_NAMES {
            assert!(describe(*code).is_some(), "{name} = {code} is not in the table");
        }
        assert_eq!(describe(9999), None);
    }
}
