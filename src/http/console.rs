//! The ops console at `/console` (README, "Ops console"): one HTML page, a stylesheet and a
//! script, compiled into the binary (`include_str!`), with no build step.
//!
//! The page holds no data and is served without a token. It asks the operator for the admin token,
//! keeps it in the tab's `sessionStorage`, and does everything through the admin API with
//! `Authorization: Bearer`: tones waiting for review (their audio, approve and reject), the
//! scripts' status with reload and rollback, pushes (backlog, dead letters and redelivery) and
//! live calls (end one). A strict Content-Security-Policy allows only these files, the admin API
//! and the audio blobs the page makes.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

const HTML: &str = include_str!("../../assets/console/index.html");
const SCRIPT: &str = include_str!("../../assets/console/console.js");
const STYLE: &str = include_str!("../../assets/console/console.css");

/// Only the console's own files, the admin API (same origin) and the tones' audio (blob URLs).
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                      media-src blob:; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
