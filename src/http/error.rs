//! `AppError`: every failure of every surface, as an HTTP status and the platform's envelope
//! `{"resultcode","resultdesc"}`.
//!
//! Statuses are the Huawei API's (docs/compatibility.md, Requests and signing): 400 for malformed auth headers, 401 for digest, skew and replay,
//! 403 for invalid requests and business rejections, 413 for oversized bodies, 500 for internal
//! errors. A 500's body says only "Internal system error."; the log says everything. A change
//! refused while the store cannot make it durable is 503 with `1010001` (README, "Storage
//! faults").

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::AuthError;
use crate::domain::codes::{self, ResultCode};
use crate::domain::{Invalid, Rejection};
use crate::store::{self, OpError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    pub status: StatusCode,
    pub code: ResultCode,
    pub desc: String,
}

/// The result code a response carried, left in its extensions for the counting middleware.
#[derive(Debug, Clone, Copy)]
pub struct Answered(pub ResultCode);

impl AppError {
    pub fn new(status: StatusCode, code: ResultCode, desc: impl Into<String>) -> Self {
        AppError { status, code, desc: desc.into() }
    }

    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Invalid::new(field, reason).into()
    }

    pub fn internal(err: &dyn std::error::Error) -> Self {
        tracing::error!(error = %err, "internal error answering a request");
        AppError::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL_ERROR, "Internal system error.")
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl From<Invalid> for AppError {
    fn from(invalid: Invalid) -> Self {
        Rejection::Invalid(invalid).into()
    }
}

impl From<Rejection> for AppError {
    fn from(rejection: Rejection) -> Self {
        let status = match rejection {
            Rejection::InUse { .. } => StatusCode::CONFLICT,
            _ => StatusCode::FORBIDDEN,
        };
        AppError::new(status, rejection.result_code(), rejection.to_string())
    }
}

impl From<store::Error> for AppError {
    fn from(err: store::Error) -> Self {
        match err {
            // Logged once when the fault began (`store::fault`), counted in `/metrics`.
            store::Error::Unavailable(fault) => AppError::store_unavailable(&fault),
            err => AppError::internal(&err),
        }
    }
}

impl AppError {
    /// A change refused because the store cannot make it durable now (a full or failing disk):
    /// 503 with `1010001`, saying what to do. The client may try again; privnum recovers by
    /// itself once the disk takes writes again.
    pub fn store_unavailable(fault: &store::StoreFault) -> Self {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::INTERNAL_ERROR,
            format!(
                "Internal system error: storage cannot make changes durable (since {}); nothing is acknowledged until it recovers, try again later.",
                fault.since_rfc3339()
            ),
        )
    }
}

impl From<OpError> for AppError {
    fn from(err: OpError) -> Self {
        match err {
            OpError::Rejected(rejection) => rejection.into(),
            OpError::Store(err) => err.into(),
        }
    }
}

impl From<AuthError> for AppError {
    fn from(err: AuthError) -> Self {
        let status = if err.is_unauthorized() { StatusCode::UNAUTHORIZED } else { StatusCode::BAD_REQUEST };
        AppError::new(status, err.code, err.desc)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        // Internal errors were logged with their cause where they happened; failed authentication
        // is summarized by `throttle`, and a store fault was logged once when it began: neither
        // is logged a line each.
        let summarized = matches!(
            self.status,
            StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        if self.status != StatusCode::INTERNAL_SERVER_ERROR && !summarized {
            tracing::info!(status = self.status.as_u16(), resultcode = self.code, "request refused: {}", self.desc);
        }
        let mut response =
            (self.status, Json(json!({"resultcode": self.code, "resultdesc": self.desc}))).into_response();
        response.extensions_mut().insert(Answered(self.code));
        response
    }
}

/// A success envelope with the given extra fields.
pub fn success(mut fields: serde_json::Map<String, serde_json::Value>) -> Response {
    fields.insert("resultcode".into(), codes::SUCCESS.into());
    fields.insert("resultdesc".into(), codes::SUCCESS_DESC.into());
    let mut response = Json(serde_json::Value::Object(fields)).into_response();
    response.extensions_mut().insert(Answered(codes::SUCCESS));
    response
}
