//! The HTTP surfaces: the Huawei-compatible provisioning API, the admin API, the switch adapter,
//! health, metrics and the OpenAPI document (`openapi.json`, [`ROUTES`]).
//!
//! `app(state)` builds the whole router, so tests drive it in-process with `oneshot` or over a
//! real socket with the same code. Handlers are thin: parse with `domain`, act with `store`, answer
//! with `error::success` or an `AppError`. Every mode's provisioning path is served by the same
//! handlers (`provisioning.rs`) through the mode's `ProvisioningApi` (`axb.rs`, `ax.rs`,
//! `axe.rs`). No handler holds a lock across an `.await`.

pub mod admin;
pub mod admin_calls;
pub mod auth;
pub mod ax;
pub mod axb;
pub mod axe;
pub mod calls;
pub mod console;
pub mod data;
pub mod error;
pub mod listener;
pub mod provisioning;
pub mod request;
pub mod ruleset;
pub mod switch;
pub mod throttle;
pub mod tls;
pub mod tones;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::calls::Switchboard;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::codes;
use crate::script::ScriptHost;
use crate::store::Store;
use crate::telemetry::{self, Metrics, RequestAnswered};
use auth::{AxApi, AxbApi, AxeApi};
use error::{Answered, AppError};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub scripts: Arc<ScriptHost>,
    /// The call flow (the switch adapter, call controls).
    pub switchboard: Switchboard,
    /// Failed authentication, limited per address and app key.
    pub throttle: Arc<throttle::AuthThrottle>,
}

impl AppState {
    /// Whether calls of `app` can fall back on its own recording notice: it names one, and it is
    /// approved.
    pub fn app_has_notice(&self, app: &crate::domain::App) -> bool {
        !app.record_hint_tone.is_empty() && self.store.tones().approved(&app.app_key, &app.record_hint_tone)
    }

    /// Makes the app's calls run its active rule set as the store now has it (after an
    /// activation, a review, a submission under `auto`, a change of the app's limits), on a
    /// blocking thread: it reads the store and compiles.
    pub async fn reload_ruleset(&self, app_key: &str) -> Result<Option<String>, AppError> {
        let (store, scripts, app_key) = (self.store.clone(), self.scripts.clone(), app_key.to_owned());
        match tokio::task::spawn_blocking(move || crate::calls::route::load_active_ruleset(&store, &scripts, &app_key))
            .await
        {
            Ok(result) => Ok(result?),
            Err(err) => Err(AppError::internal(&err)),
        }
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

/// The OpenAPI 3.1 document of every HTTP surface (`openapi.json` at the repository's root),
/// served at `GET /openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// Every (method, path) the router serves, paths as the router and `openapi.json` write them.
/// `tests/it/openapi.rs` holds the three to each other: each of these is routed, every other
/// method of these paths is 405, every `.route(` in `src/http/` is one of these paths, and the
/// document has exactly these operations. A new route goes here and into `openapi.json`.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", AXB_PATH),
    ("POST", AXB_PATH),
    ("PUT", AXB_PATH),
    ("DELETE", AXB_PATH),
    ("GET", AX_PATH),
    ("POST", AX_PATH),
    ("PUT", AX_PATH),
    ("DELETE", AX_PATH),
    ("PUT", AX_CALLEE_PATH),
    ("GET", AXE_PATH),
    ("POST", AXE_PATH),
    ("PUT", AXE_PATH),
    ("DELETE", AXE_PATH),
    ("GET", AXE_CURSOR_PATH),
    ("POST", calls::STOP_PATH),
    ("GET", calls::RECORD_PATH),
    ("PUT", data::DATA_PATH),
    ("GET", data::DATA_PATH),
    ("DELETE", data::DATA_PATH),
    ("POST", ruleset::RULESET_PATH),
    ("GET", ruleset::RULESET_PATH),
    ("PUT", ruleset::RULESET_ACTIVE_PATH),
    ("GET", "/v1/admin/apps"),
    ("GET", "/v1/admin/apps/{app_key}"),
    ("PUT", "/v1/admin/apps/{app_key}"),
    ("DELETE", "/v1/admin/apps/{app_key}"),
    ("GET", "/v1/admin/apps/{app_key}/numbers"),
    ("PUT", "/v1/admin/apps/{app_key}/numbers/{number}"),
    ("DELETE", "/v1/admin/apps/{app_key}/numbers/{number}"),
    ("GET", "/v1/admin/apps/{app_key}/tones"),
    ("PUT", "/v1/admin/apps/{app_key}/tones/{file_name}"),
    ("GET", "/v1/admin/apps/{app_key}/tones/{file_name}"),
    ("POST", "/v1/admin/apps/{app_key}/tones/{file_name}/review"),
    ("GET", "/v1/admin/apps/{app_key}/rulesets"),
    ("PUT", "/v1/admin/apps/{app_key}/rulesets/active"),
    ("POST", "/v1/admin/apps/{app_key}/rulesets/{version}/review"),
    ("GET", "/v1/admin/rulesets/pending"),
    ("GET", "/v1/admin/rulesets/audit"),
    ("GET", "/v1/admin/scripts"),
    ("POST", "/v1/admin/scripts/reload"),
    ("POST", "/v1/admin/scripts/rollback"),
    ("GET", "/v1/admin/pushes"),
    ("GET", "/v1/admin/pushes/dead"),
    ("POST", "/v1/admin/pushes/dead/{id}/redeliver"),
    ("GET", "/v1/admin/calls"),
    ("POST", "/v1/admin/calls/{session_id}/end"),
    ("POST", "/v1/switch/calls"),
    ("POST", "/v1/switch/calls/{session_id}/digits"),
    ("POST", "/v1/switch/calls/{session_id}/events"),
    ("GET", "/v1/switch/calls/{session_id}/cdr"),
    ("GET", "/v1/switch/tones/{app_key}/{file_name}"),
    ("POST", "/v1/switch/echo"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/console"),
    ("GET", "/console/"),
    ("GET", "/console/console.js"),
    ("GET", "/console/console.css"),
];

pub fn app(state: AppState) -> Router {
    let provisioning = Router::new()
        .route(AXB_PATH, provisioning::routes::<AxbApi>())
        .route(AX_PATH, provisioning::routes::<AxApi>())
        .route(AX_CALLEE_PATH, axum::routing::put(ax::temporary_callee_set))
        .route(AXE_PATH, provisioning::routes::<AxeApi>())
        .route(AXE_CURSOR_PATH, get(axe::bindings_query_cursor))
        .route(calls::STOP_PATH, axum::routing::post(calls::calls_stop))
        .route(calls::RECORD_PATH, get(calls::record_link))
        .route(data::DATA_PATH, get(data::data_get).put(data::data_put).delete(data::data_delete))
        .route(ruleset::RULESET_PATH, get(ruleset::ruleset_list).post(ruleset::ruleset_submit))
        .route(ruleset::RULESET_ACTIVE_PATH, axum::routing::put(ruleset::ruleset_activate))
        .layer(middleware::from_fn_with_state(("provisioning", state.clone()), count_results));
    let admin = admin::router().layer(middleware::from_fn_with_state(("admin", state.clone()), count_results));
    Router::new()
        .merge(provisioning)
        .nest("/v1/admin", admin)
        // The switch's path counts its decisions with atomics (no counting layer: it locks).
        .nest("/v1/switch", switch::router())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(console::router())
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

/// 200 `{"status":"ok"}` while the store reads and can make changes durable; 503 otherwise,
/// with the faulted part, its first error and since when (README, "Storage faults").
async fn healthz(State(state): State<AppState>) -> Response {
    if let Some(fault) = state.store.fault() {
        let body = serde_json::json!({
            "status": "store faulted",
            "part": fault.part.name(),
            "error": fault.error,
            "since": fault.since_rfc3339(),
            "seconds": fault.age().as_secs(),
        });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
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
    let pool = state.scripts.pool_status();
    let scripts = telemetry::ScriptCounters {
        active: scripts.active,
        reloads: scripts.reloads,
        rejected: scripts.rejected,
        runtime_errors: scripts.runtime_errors,
        last_reload_failed: scripts.last_error.is_some(),
        pool_threads: pool.threads,
        suspects: pool.suspects,
        strikes: pool.strikes,
        deadline_overrun_max_micros: u64::try_from(pool.deadline_overrun_max.as_micros()).unwrap_or(u64::MAX),
    };
    text.push_str(&telemetry::render_scripts(&scripts));
    text.push_str(&state.scripts.ruleset_runs().render());
    let flushes = state.store.flush_stats();
    let flushes =
        telemetry::FlushCounters { waits: flushes.waits, flushes: flushes.flushes, flush_micros: flushes.flush_micros };
    text.push_str(&telemetry::render_flushes(&flushes));
    let log = state.store.call_log_stats();
    let log = telemetry::CallLogCounters {
        file_bytes: log.file_bytes,
        live_bytes: log.live_bytes,
        push_memory_bytes: log.outbox_memory_bytes,
        pushes_on_disk: log.outbox_on_disk,
        compactions: log.compactions,
        compaction_micros: log.compaction_micros,
    };
    text.push_str(&telemetry::render_call_log(&log));
    let pusher = state.switchboard.pusher().clone();
    match tokio::task::spawn_blocking(move || pusher.report()).await {
        Ok(Ok(lanes)) => text.push_str(&telemetry::render_pushes(&lanes)),
        Ok(Err(err)) => tracing::error!(error = %err, "/metrics: cannot read the push backlog"),
        Err(err) => tracing::error!(error = %err, "/metrics: the push backlog task failed"),
    }
    text.push_str(&telemetry::render_block_states(&state.switchboard.pusher().block_states()));
    let health = state.store.health_stats();
    let health = telemetry::StoreHealthCounters {
        parts: crate::store::StorePart::ALL
            .iter()
            .map(|part| {
                let index = part.index();
                (part.name(), !health.faulted[index], health.faults[index], health.recoveries[index])
            })
            .collect(),
        refused: health.refused,
    };
    text.push_str(&telemetry::render_store_health(&health));
    text.push_str(&format!(
        "# HELP privnum_sessions Calls in memory: under way, or ended less than a minute ago.\n\
         # TYPE privnum_sessions gauge\nprivnum_sessions {}\n",
        state.switchboard.sessions().len()
    ));
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

/// The OpenAPI document, as it is in the repository.
async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI_JSON).into_response()
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
