//! The platform's result codes, in one table.
//!
//! Every `resultcode` privnum answers with is named here, so that a code is never a bare literal
//! elsewhere and a reader can see the whole vocabulary at once. The values and meanings are the
//! Huawei Cloud PrivateNumber API's (README, Provisioning API).

/// A provisioning result code: the string the client branches on.
pub type ResultCode = &'static str;

pub const SUCCESS: ResultCode = "0";
/// Internal system error (HTTP 500). The body never says more; the log does.
pub const INTERNAL_ERROR: ResultCode = "1010001";
/// Invalid request: a bad or missing parameter, named in `resultdesc`.
pub const INVALID_REQUEST: ResultCode = "1010002";
/// Wrong digest, unknown app key, or a replayed nonce (HTTP 401).
pub const INVALID_DIGEST: ResultCode = "1010010";
/// `Created` too far from the server's clock (HTTP 401).
pub const TIME_OUT_LIMIT: ResultCode = "1010013";
/// The app may not call this API (it belongs to another mode).
pub const API_NOT_ALLOWED: ResultCode = "1010040";
/// AX: no free X could be allocated (for the requested area code).
pub const INSUFFICIENT_NUMBER_RESOURCES: ResultCode = "1011002";
/// AX: A already holds the maximum number of X numbers (5).
pub const UPPER_LIMIT_EXCEEDED: ResultCode = "1011003";
/// AX: this X is already bound to an A.
pub const RESOURCE_ALREADY_ALLOCATED: ResultCode = "1011005";
/// The X number is not in this app's pool.
pub const NUMBER_NOT_APPLIED: ResultCode = "1012001";
/// No binding matched (unbind, modify, query).
pub const RECORD_NOT_FOUND: ResultCode = "1012007";
/// No free X could be allocated for the requested area code.
pub const INSUFFICIENT_RESOURCES: ResultCode = "1012008";
/// This X already holds the maximum number of AXB pairs.
pub const MAX_RESOURCES_EXCEEDED: ResultCode = "1012009";
/// A user number already appears on this X.
pub const NUMBER_ALREADY_BOUND: ResultCode = "1012010";
/// `recordFlag` asked for, but the app has recording disabled.
pub const RECORDING_NOT_ENABLED: ResultCode = "1012012";
/// A number is blacklisted or the X is not in a status that allows binding.
pub const ABNORMAL_NUMBER_STATUS: ResultCode = "1012102";

/// AXE: no free extension on the X, or the requested `extendNum` is taken.
pub const NO_IDLE_EXTENSION: ResultCode = "1020167";

/// `Authorization` header missing.
pub const AUTHORIZATION_MISSING: ResultCode = "1023006";
pub const REALM_MISSING: ResultCode = "1023007";
pub const PROFILE_MISSING: ResultCode = "1023008";
pub const REALM_INVALID: ResultCode = "1023009";
pub const PROFILE_INVALID: ResultCode = "1023010";
pub const TYPE_INVALID: ResultCode = "1023011";
pub const TYPE_MISSING: ResultCode = "1023012";
/// The `Authorization` scheme is neither `AKSK` nor `WSSE`.
pub const SCHEME_INVALID: ResultCode = "1023013";
pub const X_WSSE_MISSING: ResultCode = "1023026";
pub const WSSE_USERNAME_MISSING: ResultCode = "1023027";
pub const WSSE_NONCE_MISSING: ResultCode = "1023028";
pub const WSSE_CREATED_MISSING: ResultCode = "1023029";
pub const WSSE_DIGEST_MISSING: ResultCode = "1023030";
/// `Created` is not a UTC timestamp such as `2018-02-12T15:30:20Z`.
pub const CREATED_FORMAT_INVALID: ResultCode = "1023031";
pub const X_AKSK_MISSING: ResultCode = "1023033";
pub const AKSK_USERNAME_MISSING: ResultCode = "1023034";
pub const AKSK_NONCE_MISSING: ResultCode = "1023035";
pub const AKSK_CREATED_MISSING: ResultCode = "1023036";
pub const AKSK_DIGEST_MISSING: ResultCode = "1023037";

/// The `resultdesc` that goes with [`SUCCESS`].
pub const SUCCESS_DESC: &str = "Success";
