//! Reading requests: bodies (at most 64 KiB, JSON objects) and query strings, both as the JSON
//! object that [`crate::domain::Fields`] reads.
//!
//! Query strings are decoded with `+` kept as a plus sign: the Huawei API asks clients to send
//! `%2B`, but a raw `+` in a phone number can only mean a plus, never a space.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use super::error::AppError;
use crate::domain::codes;

/// The largest request body accepted (README, Provisioning API: 413 above it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a request body may take to arrive after its head: set by [`super::app`] from
/// `http_body_timeout_secs`, as a request extension, so every body reader finds it.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub std::time::Duration);

/// The body timeout of a router built without one (tests driving a bare handler).
const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A request body that is a JSON object.
#[derive(Debug)]
pub struct JsonBody(pub Map<String, Value>);

fn too_large(limit: usize) -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        codes::INVALID_REQUEST,
        format!("Invalid request.body is larger than {limit} bytes"),
    )
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = AppError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, AppError> {
        parse_object(&read_body(request).await?).map(JsonBody)
    }
}

/// Reads a body of at most [`MAX_BODY_BYTES`].
pub async fn read_body(request: Request) -> Result<axum::body::Bytes, AppError> {
    read_body_up_to(request, MAX_BODY_BYTES).await
}

/// Reads a body of at most `limit` bytes: refused at once when `Content-Length` says more, and cut
/// off when a chunked body grows past it.
pub async fn read_body_up_to(request: Request, limit: usize) -> Result<axum::body::Bytes, AppError> {
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large(limit));
    }
    let timeout = request.extensions().get::<BodyTimeout>().map_or(DEFAULT_BODY_TIMEOUT, |timeout| timeout.0);
    match tokio::time::timeout(timeout, read_limited(request.into_body(), limit)).await {
        Ok(read) => read,
        Err(_) => Err(AppError::new(
            StatusCode::REQUEST_TIMEOUT,
            codes::INVALID_REQUEST,
            format!("Invalid request.body did not arrive within {} s", timeout.as_secs_f64()),
        )),
    }
}

async fn read_limited(body: Body, limit: usize) -> Result<axum::body::Bytes, AppError> {
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let length_limit =
            std::error::Error::source(&err).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if length_limit || err.to_string().contains("length limit") {
            too_large(limit)
        } else {
            AppError::invalid("body", format!("could not be read: {err}"))
        }
    })
}

/// Parses a body that must be a JSON object; errors name the line and column.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, AppError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::invalid("body", "is empty; a JSON object is required"));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AppError::invalid("body", "must be a JSON object")),
        Err(err) => Err(describe_json_error(&err)),
    }
}

/// A JSON error as `1010002`: bad syntax names the line and column; a body of the wrong shape
/// says what serde found (a missing or unknown field, a wrong type).
pub fn describe_json_error(err: &serde_json::Error) -> AppError {
    let place = format!("line {}, column {}", err.line(), err.column());
    match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            AppError::invalid("body", format!("is not valid JSON ({place}: {err})"))
        }
        _ => {
            let text = err.to_string();
            let what = text.split(" at line ").next().unwrap_or(&text);
            AppError::invalid("body", format!("has {what} ({place})"))
        }
    }
}

/// Path parameters, with a malformed path answered in the contract's envelope (400).
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(PathParams(params)),
            Err(rejection) => Err(AppError::new(
                StatusCode::BAD_REQUEST,
                codes::INVALID_REQUEST,
                format!("Invalid request.path {}", rejection.body_text()),
            )),
        }
    }
}

/// Turns `a=1&b=%2B86` into `{"a":"1","b":"+86"}`. The first occurrence of a key wins.
pub fn query_object(query: Option<&str>) -> Result<Map<String, Value>, AppError> {
    let mut map = Map::new();
    for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            percent_decode_str(text)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| AppError::invalid(key, "is not valid UTF-8 after percent-decoding"))
        };
        let (key, value) = (decode(key)?, decode(value)?);
        map.entry(key).or_insert(Value::String(value));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_signs_survive_query_decoding() {
        let map = query_object(Some("relationNum=%2B8617000000001&callerNum=+8613800000001&pageSize=20&pageSize=30"))
            .unwrap();
        assert_eq!(map["relationNum"], "+8617000000001");
        assert_eq!(map["callerNum"], "+8613800000001");
        assert_eq!(map["pageSize"], "20");
    }

    #[test]
    fn bodies_must_be_objects() {
        assert!(parse_object(b"{\"a\":1}").is_ok());
        assert!(parse_object(b"[1]").unwrap_err().desc.contains("JSON object"));
        assert!(parse_object(b"").unwrap_err().desc.contains("empty"));
        let err = parse_object(b"{\"a\":\n}").unwrap_err();
        assert!(err.desc.contains("line 2"), "{}", err.desc);
    }
}
