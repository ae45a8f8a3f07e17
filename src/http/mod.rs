//! The HTTP surfaces: the Huawei-compatible provisioning API, the admin API, health and metrics.
//!
//! `app(state)` builds the whole router, so tests drive it in-process with `oneshot` or over a
//! real socket with the same code. Handlers are thin: parse with `domain`, act with `store`, answer
//! with `error::success` or an `AppError`. No handler holds a lock across an `.await`.

pub mod admin;
pub mod auth;
pub mod ax;
pub mod axb;
pub mod axe;
pub mod calls;
pub mod error;
pub mod listener;
pub mod request;
pub mod switch;
pub mod tones;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::calls::ledger::Ledger;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::binding::Recorded;
use crate::domain::codes;
use crate::script::ScriptHost;
use crate::store::Store;
use crate::telemetry::{Metrics, RequestAnswered};
use error::{Answered, AppError};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub scripts: Arc<ScriptHost>,
    pub ledger: Ledger,
}

/// Counts and logs a binding that records with no notice at all (CONTRACT §3).
pub(crate) fn warn_if_unannounced(state: &AppState, app: &crate::domain::App, binding: &impl Recorded) {
    if binding.records_without_notice(state.app_has_notice(app)) {
        let subscription_id = binding.subscription_id();
        crate::telemetry::RecordWithoutNotice { app_key: &app.app_key, subscription_id }.emit(&state.metrics);
    }
}

impl AppState {
    /// Whether calls of `app` can fall back on its own recording notice: it names one, and it is
    /// approved.
    pub fn app_has_notice(&self, app: &crate::domain::App) -> bool {
        !app.record_hint_tone.is_empty() && self.store.tones().approved(&app.app_key, &app.record_hint_tone)
    }

    /// Runs a store change on a blocking thread. Changes queue on the store's writer lock, and a
    /// request waiting there must not hold up one of the few async workers serving everyone else.
    pub async fn write<T, F>(&self, change: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, crate::store::OpError> + Send + 'static,
    {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || change(&store)).await {
            Ok(result) => result.map_err(AppError::from),
            Err(err) => Err(AppError::internal(&err)),
        }
    }
}

pub const AXB_PATH: &str = "/rest/caas/relationnumber/partners/v1.0";
pub const AX_PATH: &str = "/rest/provision/caas/privatenumber/v1.0";
pub const AX_CALLEE_PATH: &str = "/rest/caas/privatenumber/calleenumber/v1.0";
pub const AXE_PATH: &str = "/rest/caas/extendnumber/v1.0";
pub const AXE_CURSOR_PATH: &str = "/rest/caas/extendnumber/v2.0";

pub fn app(state: AppState) -> Router {
    let provisioning = Router::new()
        .route(
            AXB_PATH,
            get(axb::bindings_query).post(axb::bindings_create).put(axb::bindings_modify).delete(axb::bindings_delete),
        )
        .route(
            AX_PATH,
            get(ax::bindings_query).post(ax::bindings_create).put(ax::bindings_modify).delete(ax::bindings_delete),
        )
        .route(AX_CALLEE_PATH, axum::routing::put(ax::temporary_callee_set))
        .route(
            AXE_PATH,
            get(axe::bindings_query).post(axe::bindings_create).put(axe::bindings_modify).delete(axe::bindings_delete),
        )
        .route(AXE_CURSOR_PATH, get(axe::bindings_query_cursor))
        .route(calls::STOP_PATH, axum::routing::post(calls::calls_stop))
        .route(calls::RECORD_PATH, get(calls::record_link))
        .layer(middleware::from_fn_with_state(("provisioning", state.clone()), count_results));
    let admin = admin::router().layer(middleware::from_fn_with_state(("admin", state.clone()), count_results));
    Router::new()
        .merge(provisioning)
        .nest("/v1/admin", admin)
        // The switch's path counts its decisions with atomics (no counting layer: it locks).
        .nest("/v1/switch", switch::router())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::Extension(request::BodyTimeout(std::time::Duration::from_secs(
            state.config.http_body_timeout_secs,
        ))))
        .with_state(state)
}

/// Counts every answer of a surface by its result code.
async fn count_results(
    State((surface, state)): State<(&'static str, AppState)>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let code = response.extensions().get::<Answered>().map_or("none", |answered| answered.0);
    RequestAnswered { surface, code }.emit(&state.metrics);
    response
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.apps().get("") {
        Ok(_) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"}))).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "health check cannot read the store");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "store unreadable"})))
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    let scripts = state.scripts.status();
    text.push_str(&crate::telemetry::render_scripts(&scripts));
    text.push_str(&crate::telemetry::render_flushes(&state.store.flush_stats()));
    text.push_str(&crate::telemetry::render_call_log(&state.store.call_log_stats()));
    text.push_str(&format!(
        "# HELP privnum_sessions Calls in memory: under way, or ended less than a minute ago.\n\
         # TYPE privnum_sessions gauge\nprivnum_sessions {}\n",
        state.ledger.sessions.len()
    ));
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

async fn wrong_method(request: Request) -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::INVALID_REQUEST,
        format!("{} is not a method of {}", request.method(), request.uri().path()),
    )
}

async fn unknown_path(request: Request) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        codes::INVALID_REQUEST,
        format!("no API at {} {}", request.method(), request.uri().path()),
    )
}
