//! The admin API under `/v1/admin` (bearer `admin_token`): apps and their X-number pools.
//!
//! | call | body | answer |
//! |---|---|---|
//! | `GET /v1/admin/apps` | | `apps`: every app (secrets left out) |
//! | `GET /v1/admin/apps/{appKey}` | | `app`, `numbers` |
//! | `PUT /v1/admin/apps/{appKey}` | an app as in `[[apps]]` (JSON) | `app` |
//! | `DELETE /v1/admin/apps/{appKey}` | | refused (409) while it has numbers |
//! | `GET /v1/admin/apps/{appKey}/numbers` | | `numbers` with their binding counts |
//! | `PUT /v1/admin/apps/{appKey}/numbers/{number}` | `{"area_code","sms"?,"status"?}` | `number` |
//! | `DELETE /v1/admin/apps/{appKey}/numbers/{number}` | | refused (409) while it holds bindings |
//! | `…/apps/{appKey}/tones…` | | the tone registry: see `http::tones` |
//! | `…/apps/{appKey}/rulesets…`, `/rulesets/pending`, `/rulesets/audit` | | customer rule sets: see `http::ruleset` |
//! | `GET /v1/admin/scripts` | | `scripts`: active version, files, earlier versions, last error |
//! | `POST /v1/admin/scripts/reload` | | `outcome`: `reloaded`, `unchanged` or `rolled_back` (with `error`) |
//! | `POST /v1/admin/scripts/rollback` | | `version` now active; 409 when there is no earlier version |
//! | `GET /v1/admin/pushes` | | `pushes`: per app and kind, waiting, oldest age, in flight, delivered, retried, buried, backing off |
//! | `GET /v1/admin/pushes/dead` | | `pushes` whose retries are used up, oldest first |
//! | `POST /v1/admin/pushes/dead/{id}/redeliver` | | puts one back at the end of its lane with fresh retries |
//! | `GET /v1/admin/calls`, `POST /v1/admin/calls/{sessionId}/end` | | live calls, and ending one: see `http::admin_calls` |

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Map, Value};

use super::auth::Admin;
use super::error::{success, AppError};
use super::request::{JsonBody, PathParams};
use super::AppState;
use super::{admin_calls, ruleset, tones};
use crate::config::{AppConfig, NumberConfig};
use crate::domain::{App, Rejection, XNumber};
use crate::script::ReloadOutcome;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/apps", get(apps_list))
        .route("/apps/{app_key}", get(apps_show).put(apps_put).delete(apps_delete))
        .route("/apps/{app_key}/numbers", get(numbers_list))
        .route("/apps/{app_key}/numbers/{number}", put(numbers_put).delete(numbers_delete))
        .route("/apps/{app_key}/tones", get(tones::list))
        .route("/apps/{app_key}/tones/{file_name}", put(tones::upload).get(tones::audio_for_review))
        .route("/apps/{app_key}/tones/{file_name}/review", post(tones::review))
        .route("/apps/{app_key}/rulesets", get(ruleset::admin_list))
        .route("/apps/{app_key}/rulesets/active", put(ruleset::admin_activate))
        .route("/apps/{app_key}/rulesets/{version}/review", post(ruleset::admin_review))
        .route("/rulesets/pending", get(ruleset::admin_pending))
        .route("/rulesets/audit", get(ruleset::admin_audit))
        .route("/scripts", get(scripts_show))
        .route("/scripts/reload", post(scripts_reload))
        .route("/scripts/rollback", post(scripts_rollback))
        .route("/pushes", get(pushes_show))
        .route("/pushes/dead", get(pushes_dead))
        .route("/pushes/dead/{id}/redeliver", post(pushes_redeliver))
        .route("/calls", get(admin_calls::calls_list))
        .route("/calls/{session_id}/end", post(admin_calls::calls_end))
}

/// Delivery per app and kind: the backlog (counted on a blocking thread) and the counters.
async fn pushes_show(_: Admin, State(state): State<AppState>) -> Result<Response, AppError> {
    let pusher = state.switchboard.pusher().clone();
    let lanes =
        tokio::task::spawn_blocking(move || pusher.report()).await.map_err(|err| AppError::internal(&err))??;
    let list = serde_json::to_value(lanes).map_err(|err| AppError::internal(&err))?;
    Ok(success(one("pushes", list)))
}

async fn pushes_dead(_: Admin, State(state): State<AppState>) -> Result<Response, AppError> {
    let pushes = state.store.calls().dead_pushes()?;
    let list = serde_json::to_value(pushes).map_err(|err| AppError::internal(&err))?;
    Ok(success(one("pushes", list)))
}

async fn pushes_redeliver(
    _: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<u64>,
) -> Result<Response, AppError> {
    let revived = state.store.calls().revive(id, state.switchboard.pusher().now_ms()).await?;
    let Some(push) = revived else {
        return Err(admin_error(Rejection::NotFound { what: format!("dead push {id}") }));
    };
    // The lane is in the call log, the dead letter it leaves in sled.
    state.store.durable().await?;
    state.switchboard.pusher().wake(&push.app_key, push.lane);
    tracing::info!(old_id = id, new_id = push.id, app_key = %push.app_key, "push put back for redelivery");
    Ok(success(one("id", push.id.into())))
}

async fn scripts_show(_: Admin, State(state): State<AppState>) -> Result<Response, AppError> {
    let status = serde_json::to_value(state.scripts.status()).map_err(|err| AppError::internal(&err))?;
    Ok(success(one("scripts", status)))
}

async fn scripts_reload(_: Admin, State(state): State<AppState>) -> Result<Response, AppError> {
    let scripts = state.scripts.clone();
    let outcome =
        tokio::task::spawn_blocking(move || scripts.reload()).await.map_err(|err| AppError::internal(&err))?;
    let mut fields = Map::new();
    match outcome {
        ReloadOutcome::Reloaded { version } => {
            fields.insert("outcome".into(), "reloaded".into());
            fields.insert("version".into(), version.to_string().into());
        }
        ReloadOutcome::Unchanged { version } => {
            fields.insert("outcome".into(), "unchanged".into());
            fields.insert("version".into(), version.to_string().into());
        }
        ReloadOutcome::RolledBack { error, active } => {
            fields.insert("outcome".into(), "rolled_back".into());
            fields.insert("version".into(), active.to_string().into());
            fields.insert("error".into(), error.into());
        }
    }
    Ok(success(fields))
}

async fn scripts_rollback(_: Admin, State(state): State<AppState>) -> Result<Response, AppError> {
    match state.scripts.rollback() {
        Some(version) => Ok(success(one("version", version.to_string().into()))),
        None => Err(Rejection::InUse { what: "there is no earlier script version to roll back to".into() }.into()),
    }
}

/// Admin lookups of a missing thing are 404, not the provisioning API's 403.
pub(super) fn admin_error(err: impl Into<AppError>) -> AppError {
    let err = err.into();
    if err.code == crate::domain::codes::RECORD_NOT_FOUND {
        err.with_status(StatusCode::NOT_FOUND)
    } else {
        err
    }
}

pub(super) fn one(name: &str, value: Value) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(name.to_owned(), value);
    fields
}

async fn apps_list(_: Admin, State(state): State<AppState>) -> Result<Response, AppError> {
    let apps: Vec<Value> = state.store.apps().all()?.iter().map(app_view).collect();
    Ok(success(one("apps", apps.into())))
}

pub(super) fn load_app(state: &AppState, app_key: &str) -> Result<Arc<App>, AppError> {
    state.store.apps().get(app_key)?.ok_or_else(|| admin_error(Rejection::NotFound { what: format!("app {app_key}") }))
}

async fn apps_show(
    _: Admin,
    State(state): State<AppState>,
    PathParams(app_key): PathParams<String>,
) -> Result<Response, AppError> {
    let app = load_app(&state, &app_key)?;
    let mut fields = one("app", app_view(&app));
    fields.insert("numbers".into(), numbers_view(&state, &app_key)?);
    Ok(success(fields))
}

async fn apps_put(
    _: Admin,
    State(state): State<AppState>,
    PathParams(app_key): PathParams<String>,
    JsonBody(mut body): JsonBody,
) -> Result<Response, AppError> {
    match body.get("app_key") {
        None => {
            body.insert("app_key".into(), app_key.clone().into());
        }
        Some(Value::String(key)) if *key == app_key => {}
        Some(other) => {
            return Err(AppError::invalid("app_key", format!("{other} differs from the path's {app_key:?}")))
        }
    }
    let config: AppConfig =
        serde_json::from_value(Value::Object(body)).map_err(|err| AppError::invalid("body", err.to_string()))?;
    config.validate().map_err(|(key, reason)| AppError::invalid(&key, reason))?;
    let (app, numbers) = config.into_parts();
    let (app, numbers) = state
        .write(move |store| {
            store.apps().upsert(&app, &numbers)?;
            Ok((app, numbers))
        })
        .await
        .map_err(admin_error)?;
    state.store.durable().await?;
    tracing::info!(app_key = %app.app_key, mode = %app.mode, numbers = numbers.len(), "app saved through the admin API");
    crate::calls::route::warn_unapproved_app_tones(&state.store, &app);
    // The active rule set runs within the app's limits as they are now.
    state.reload_ruleset(&app.app_key).await?;
    let warnings = app.push_warnings();
    for warning in &warnings {
        tracing::warn!(app_key = %app.app_key, "{warning}");
    }
    let mut answer = one("app", app_view(&app));
    if !warnings.is_empty() {
        answer.insert("warnings".into(), warnings.into());
    }
    Ok(success(answer))
}

async fn apps_delete(
    _: Admin,
    State(state): State<AppState>,
    PathParams(app_key): PathParams<String>,
) -> Result<Response, AppError> {
    let key = app_key.clone();
    let now = state.clock.now();
    state.write(move |store| store.apps().delete(&key, now)).await.map_err(admin_error)?;
    state.store.durable().await?;
    state.reload_ruleset(&app_key).await?;
    tracing::info!(app_key = %app_key, "app deleted through the admin API");
    Ok(success(Map::new()))
}

async fn numbers_list(
    _: Admin,
    State(state): State<AppState>,
    PathParams(app_key): PathParams<String>,
) -> Result<Response, AppError> {
    load_app(&state, &app_key)?;
    Ok(success(one("numbers", numbers_view(&state, &app_key)?)))
}

async fn numbers_put(
    _: Admin,
    State(state): State<AppState>,
    PathParams((app_key, number)): PathParams<(String, String)>,
    JsonBody(mut body): JsonBody,
) -> Result<Response, AppError> {
    body.entry("number").or_insert_with(|| number.clone().into());
    let config: NumberConfig =
        serde_json::from_value(Value::Object(body)).map_err(|err| AppError::invalid("body", err.to_string()))?;
    if config.number != number {
        return Err(AppError::invalid("number", format!("{:?} differs from the path's {number:?}", config.number)));
    }
    crate::domain::number::check_e164(&config.number).map_err(|reason| AppError::invalid("number", reason))?;
    crate::domain::number::check_area_code(&config.area_code)
        .map_err(|reason| AppError::invalid("area_code", reason))?;
    let x_number = XNumber { number, app_key, area_code: config.area_code, sms: config.sms, status: config.status };
    let x_number = state
        .write(move |store| {
            store.apps().upsert_number(&x_number)?;
            Ok(x_number)
        })
        .await
        .map_err(admin_error)?;
    state.store.durable().await?;
    tracing::info!(app_key = %x_number.app_key, number = %x_number.number, status = ?x_number.status, "number saved through the admin API");
    Ok(success(one("number", number_view(&x_number, state.store.bindings().pairs_on(&x_number.number)?))))
}

async fn numbers_delete(
    _: Admin,
    State(state): State<AppState>,
    PathParams((app_key, number)): PathParams<(String, String)>,
) -> Result<Response, AppError> {
    let (key, x) = (app_key.clone(), number.clone());
    state.write(move |store| store.apps().delete_number(&key, &x)).await.map_err(admin_error)?;
    state.store.durable().await?;
    tracing::info!(app_key = %app_key, number = %number, "number removed through the admin API");
    Ok(success(Map::new()))
}

/// An app as the admin API shows it: its settings without the secret.
fn app_view(app: &App) -> Value {
    let mut value = serde_json::to_value(app).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("app_secret");
    }
    value
}

fn number_view(number: &XNumber, bindings: u32) -> Value {
    json!({
        "number": number.number,
        "area_code": number.area_code,
        "sms": number.sms,
        "status": number.status,
        "bindings": bindings,
    })
}

fn numbers_view(state: &AppState, app_key: &str) -> Result<Value, AppError> {
    let numbers = state.store.apps().numbers_of(app_key)?;
    let views = numbers
        .iter()
        .map(|number| Ok(number_view(number, state.store.bindings().pairs_on(&number.number)?)))
        .collect::<Result<Vec<_>, crate::store::Error>>()?;
    Ok(views.into())
}
