//! Business rejections: a request that was well-formed but that the rules refuse.
//!
//! Each variant carries the ids it concerns and knows its Huawei result code, so the HTTP layer
//! only maps variants to statuses and never invents a code.

use super::codes::{self, ResultCode};
use super::fields::Invalid;
use super::{Mode, NumberStatus};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("Invalid request.{0}")]
    Invalid(#[from] Invalid),
    #[error("app {app_key} is an {app_mode} app and may not call the {api} API")]
    WrongMode { app_key: String, app_mode: Mode, api: Mode },
    #[error("Resource of number is not applied: {x_number} is not in this app's pool")]
    NumberNotInPool { x_number: String },
    #[error("Insufficient resources: no free X number {where_}")]
    NoFreeNumber { where_: String },
    #[error("Maximum resources exceeded: {x_number} already holds {max} pairs")]
    PairLimit { x_number: String, max: u32 },
    #[error("Number {number} has been bound on {x_number}")]
    AlreadyBound { number: String, x_number: String },
    #[error("App has not enabled recording: recordFlag needs recording enabled for app {app_key}")]
    RecordingDisabled { app_key: String },
    #[error("Abnormal number status: {x_number} is {status:?}")]
    NumberStatus { x_number: String, status: NumberStatus },
    /// A tone that is not an approved tone of the app (the Huawei API's wording, naming the file;
    /// `waiting` adds why, when an upload of that name waits for review).
    #[error("Invalid request.{file} does not exist{}", if *.waiting { ": it is uploaded and waiting for review" } else { "" })]
    UnknownTone { file: String, waiting: bool },
    #[error("Insufficient number resources: no free X number {where_}")]
    NoFreeAxNumber { where_: String },
    #[error("Exceeded the upper limit: {orig_num} already holds {max} X numbers")]
    XPerALimit { orig_num: String, max: usize },
    #[error("Resource already allocated: {x_number} is already bound to an A number")]
    XAlreadyAllocated { x_number: String },
    #[error("No idle extend number: {what}")]
    NoIdleExtension { what: String },
    #[error("Record does not exist: {what}")]
    NotFound { what: String },
    /// Customer data: the app would hold more items than `data_max_items_per_app`.
    #[error("Maximum resources exceeded: app {app_key} would hold {held} data items, at most {max}")]
    DataLimit { app_key: String, held: u32, max: u32 },
    /// A rule-set submission that failed its check (`reason` names `line:column`, the case or the
    /// probe's call), or a rule-set change its state does not allow.
    #[error("Invalid request.{reason}")]
    Ruleset { reason: String },
    /// An admin change that would orphan or corrupt what depends on it (HTTP 409).
    #[error("{what}")]
    InUse { what: String },
}

impl Rejection {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection::Invalid(Invalid::new(field, reason))
    }

    pub fn result_code(&self) -> ResultCode {
        match self {
            Rejection::Invalid(_) => codes::INVALID_REQUEST,
            Rejection::WrongMode { .. } => codes::API_NOT_ALLOWED,
            Rejection::NumberNotInPool { .. } => codes::NUMBER_NOT_APPLIED,
            Rejection::NoFreeNumber { .. } => codes::INSUFFICIENT_RESOURCES,
            Rejection::PairLimit { .. } => codes::MAX_RESOURCES_EXCEEDED,
            Rejection::AlreadyBound { .. } => codes::NUMBER_ALREADY_BOUND,
            Rejection::RecordingDisabled { .. } => codes::RECORDING_NOT_ENABLED,
            Rejection::NumberStatus { .. } => codes::ABNORMAL_NUMBER_STATUS,
            Rejection::UnknownTone { .. } => codes::INVALID_REQUEST,
            Rejection::NoFreeAxNumber { .. } => codes::INSUFFICIENT_NUMBER_RESOURCES,
            Rejection::XPerALimit { .. } => codes::UPPER_LIMIT_EXCEEDED,
            Rejection::XAlreadyAllocated { .. } => codes::RESOURCE_ALREADY_ALLOCATED,
            Rejection::NoIdleExtension { .. } => codes::NO_IDLE_EXTENSION,
            Rejection::NotFound { .. } => codes::RECORD_NOT_FOUND,
            Rejection::DataLimit { .. } => codes::MAX_RESOURCES_EXCEEDED,
            Rejection::Ruleset { .. } => codes::INVALID_REQUEST,
            Rejection::InUse { .. } => codes::INVALID_REQUEST,
        }
    }
}
