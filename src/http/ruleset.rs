//! Customer rule sets over HTTP (README, "Customer rule sets"; `policy-docs/rulesets.md`).
//!
//! The customer's side, at `/rest/privnum/ruleset/v1.0`, authenticated with the app's own key
//! (AKSK or WSSE), reaching only the app's own versions:
//! - `POST` submits `{"source","cases"?,"note"?}`: checked on a blocking thread (compile,
//!   handlers, cases, the invariant probe); refused with 403 `1010002` naming `line:column`, the
//!   case or the probe's call, or kept as the next version, `pending` (`ruleset_review = "ops"`)
//!   or `active` (`"auto"`);
//! - `GET` lists `{"active","versions":[…]}`;
//! - `PUT …/active` with `{"version"}` activates an approved version (an earlier one: a
//!   rollback), `""` turns the rule set off.
//!
//! Ops' side, under `/v1/admin`: the same listing with sources, the review
//! (`POST /apps/{appKey}/rulesets/{version}/review`, approval activates), activation, what waits
//! for review across apps, and the audit log. Every change is on disk, with its audit entry,
//! before it is answered, and only then do calls run the new version.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::admin::{admin_error, load_app, one};
use super::auth::{Admin, Authenticated};
use super::error::{success, AppError};
use super::request::{query_object, JsonBody, PathParams};
use super::AppState;
use crate::domain::ruleset::{self, AuditAction, AuditEntry, Review, ReviewState, RulesetVersion};
use crate::domain::time::reference_time;
use crate::domain::{App, Fields, Rejection};
use crate::script::ruleset::{check, sha256, CheckContext, PROBE_X};

pub const RULESET_PATH: &str = "/rest/privnum/ruleset/v1.0";
pub const RULESET_ACTIVE_PATH: &str = "/rest/privnum/ruleset/v1.0/active";

/// An X the probe calls: the app's first, or an example when its pool is empty.
fn probe_x(state: &AppState, app_key: &str) -> Result<String, AppError> {
    let numbers = state.store.apps().numbers_of(app_key)?;
    Ok(numbers.first().map_or_else(|| PROBE_X.to_owned(), |n| n.number.clone()))
}

pub async fn ruleset_submit(
    State(state): State<AppState>,
    auth: Authenticated,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let submission = ruleset::parse_submission(&Fields::new(&body))?;
    let app = auth.app.clone();
    let now = state.clock.now();
    let x_number = probe_x(&state, &app.app_key)?;
    let Some(checking) = state.scripts.begin_check(&app.app_key) else {
        let what = "another submission of this app is being checked: submit again when it is answered";
        return Err(Rejection::InUse { what: what.into() }.into());
    };
    let (scripts, store, checked_app) = (state.scripts.clone(), state.store.clone(), app.clone());
    let cases = submission.cases.clone();
    let source = submission.source.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let approved = |tone: &str| store.tones().approved(&checked_app.app_key, tone);
        let on = CheckContext {
            app_key: &checked_app.app_key,
            mode: Some(checked_app.mode),
            x_number,
            approved: &approved,
            settings: checked_app.ruleset,
        };
        check(scripts.ruleset_engine(), &on, &source, &cases)
    })
    .await
    .map_err(|err| AppError::internal(&err))?;
    drop(checking);
    let actor = format!("app:{}", app.app_key);
    let checked = match checked {
        Ok(checked) => checked,
        Err(reason) => {
            let entry = AuditEntry {
                time: now,
                app_key: app.app_key.clone(),
                action: AuditAction::Refused,
                version: String::new(),
                actor,
                detail: ruleset::audit_detail(&reason),
            };
            state.write(move |store| Ok(store.rulesets().refused(&entry)?)).await?;
            state.store.durable().await?;
            tracing::info!(app_key = %app.app_key, "rule set refused: {reason}");
            return Err(Rejection::Ruleset { reason: format!("rule set refused: {reason}") }.into());
        }
    };
    let auto = app.ruleset.review == Review::Auto;
    let version = RulesetVersion {
        app_key: app.app_key.clone(),
        version: String::new(),
        sha256: sha256(&submission.source),
        source: submission.source,
        cases: submission.raw_cases,
        note: submission.note,
        submit_time: now,
        submitter: app.app_key.clone(),
        state: if auto { ReviewState::Approved } else { ReviewState::Pending },
        review_reason: None,
        review_time: auto.then_some(now),
        handlers: checked.ruleset.handlers.clone(),
        cases_passed: checked.cases_passed,
        probe_calls: checked.probe_calls,
    };
    let kept = state.write(move |store| Ok(store.rulesets().submit(version, auto, &actor)?)).await?;
    state.store.durable().await?;
    if auto {
        state.reload_ruleset(&app.app_key).await?;
    }
    tracing::info!(app_key = %app.app_key, version = %kept.version, auto, "rule set kept");
    let mut fields = Map::new();
    fields.insert("version".into(), Value::from(kept.version));
    fields.insert("state".into(), Value::from(if auto { "active" } else { "pending" }));
    fields.insert("casesPassed".into(), Value::from(checked.cases_passed));
    fields.insert("probeCalls".into(), Value::from(checked.probe_calls));
    Ok(success(fields))
}

/// A version as the listings show it (`source` and `cases` for ops only).
fn version_view(version: &RulesetVersion, active: Option<&str>, with_source: bool) -> Value {
    let state = if active == Some(version.version.as_str()) { "active" } else { version.state.name() };
    let mut view = json!({
        "version": version.version,
        "state": state,
        "note": version.note,
        "sha256": version.sha256,
        "submitTime": reference_time(version.submit_time),
        "submitter": version.submitter,
        "handlers": version.handlers.iter().map(|h| h.name()).collect::<Vec<_>>(),
        "casesPassed": version.cases_passed,
        "probeCalls": version.probe_calls,
    });
    if let Some(map) = view.as_object_mut() {
        if let Some(reason) = &version.review_reason {
            map.insert("reviewReason".into(), Value::from(reason.as_str()));
        }
        if let Some(at) = version.review_time {
            map.insert("reviewTime".into(), Value::from(reference_time(at)));
        }
        if with_source {
            map.insert("appKey".into(), Value::from(version.app_key.as_str()));
            map.insert("source".into(), Value::from(version.source.as_str()));
            map.insert("cases".into(), Value::from(version.cases.clone()));
        }
    }
    view
}

fn listing(state: &AppState, app_key: &str, with_source: bool) -> Result<Map<String, Value>, AppError> {
    let active = state.store.rulesets().active_name(app_key)?;
    let versions = state.store.rulesets().versions(app_key)?;
    let views: Vec<Value> = versions.iter().rev().map(|v| version_view(v, active.as_deref(), with_source)).collect();
    let mut fields = one("active", Value::from(active.unwrap_or_default()));
    fields.insert("versions".into(), Value::from(views));
    Ok(fields)
}

pub async fn ruleset_list(State(state): State<AppState>, auth: Authenticated) -> Result<Response, AppError> {
    Ok(success(listing(&state, &auth.app.app_key, false)?))
}

/// The `version` of an activation: a version's name, or `""` for off.
fn requested_version(body: &Map<String, Value>) -> Result<String, AppError> {
    let version = Fields::new(body)
        .string_or_empty("version")?
        .ok_or_else(|| AppError::invalid("version", "is required (\"\" turns the rule set off)"))?;
    Ok(version.to_owned())
}

/// Activates `version` (or turns off), then makes the calls run it.
async fn activate(state: &AppState, app: &App, version: String, actor: String) -> Result<Map<String, Value>, AppError> {
    let (app_key, now) = (app.app_key.clone(), state.clock.now());
    let done = state.write(move |store| store.rulesets().activate(&app_key, &version, &actor, now)).await?;
    state.store.durable().await?;
    state.reload_ruleset(&app.app_key).await?;
    let name = done.active.as_ref().map(|v| v.version.clone()).unwrap_or_default();
    tracing::info!(app_key = %app.app_key, active = %name, previous = done.previous.as_deref().unwrap_or(""), "rule set activation");
    let mut fields = one("active", Value::from(name));
    fields.insert("previous".into(), Value::from(done.previous.unwrap_or_default()));
    Ok(fields)
}

pub async fn ruleset_activate(
    State(state): State<AppState>,
    auth: Authenticated,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let version = requested_version(&body)?;
    let actor = format!("app:{}", auth.app.app_key);
    Ok(success(activate(&state, &auth.app, version, actor).await?))
}

/// `GET /v1/admin/apps/{appKey}/rulesets`: the app's versions with their sources.
pub async fn admin_list(
    _: Admin,
    State(state): State<AppState>,
    PathParams(app_key): PathParams<String>,
) -> Result<Response, AppError> {
    load_app(&state, &app_key)?;
    Ok(success(listing(&state, &app_key, true)?))
}

/// `PUT /v1/admin/apps/{appKey}/rulesets/active`: ops activate, roll back or turn off.
pub async fn admin_activate(
    _: Admin,
    State(state): State<AppState>,
    PathParams(app_key): PathParams<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let app = load_app(&state, &app_key)?;
    let version = requested_version(&body)?;
    activate(&state, &app, version, "ops".to_owned()).await.map(success).map_err(admin_error)
}

/// `POST /v1/admin/apps/{appKey}/rulesets/{version}/review`: `{"approve": true}` approves and
/// activates a pending version (one transaction); `{"approve": false, "reason"}` rejects it.
pub async fn admin_review(
    _: Admin,
    State(state): State<AppState>,
    PathParams((app_key, version)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let app = load_app(&state, &app_key)?;
    let fields = Fields::new(&body);
    let approve = fields.flag("approve")?.ok_or_else(|| AppError::invalid("approve", "is required: true or false"))?;
    let reason = fields.bounded_string("reason", 1024)?.map(str::to_owned);
    if !approve && reason.is_none() {
        return Err(AppError::invalid("reason", "is required when a rule set is rejected: the customer reads it"));
    }
    let now = state.clock.now();
    let (key, name) = (app_key.clone(), version.clone());
    let reviewed = state
        .write(move |store| store.rulesets().review(&key, &name, approve, reason.as_deref(), now))
        .await
        .map_err(admin_error)?;
    state.store.durable().await?;
    if approve {
        state.reload_ruleset(&app.app_key).await?;
    }
    tracing::info!(app_key = %app_key, version = %version, approve, "rule set reviewed");
    let active = state.store.rulesets().active_name(&app_key)?;
    let mut fields = one("version", version_view(&reviewed.version, active.as_deref(), false));
    if approve {
        fields.insert("active".into(), Value::from(reviewed.version.version.clone()));
        fields.insert("previous".into(), Value::from(reviewed.previous.unwrap_or_default()));
    }
    Ok(success(fields))
}

/// `GET /v1/admin/rulesets/pending`: what waits for review, across apps, oldest first.
pub async fn admin_pending(_: Admin, State(state): State<AppState>) -> Result<Response, AppError> {
    let pending = state.store.rulesets().pending()?;
    let views: Vec<Value> = pending.iter().map(|v| version_view(v, None, true)).collect();
    Ok(success(one("rulesets", Value::from(views))))
}

/// `GET /v1/admin/rulesets/audit?app=…&limit=…`: the audit log, newest first (100 entries unless
/// `limit` says otherwise, at most 1000).
pub async fn admin_audit(
    _: Admin,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let params = query_object(query.as_deref())?;
    let fields = Fields::new(&params);
    let app = fields.string_or_empty("app")?.filter(|app| !app.is_empty());
    let limit = match fields.string_or_empty("limit")?.filter(|limit| !limit.is_empty()) {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| AppError::invalid("limit", format!("must be 1 to 1000 (got {text:?})")))?,
    };
    let entries = state.store.rulesets().audit(app, limit)?;
    let views: Vec<Value> = entries
        .iter()
        .map(|entry| {
            json!({
                "time": reference_time(entry.time), "appKey": entry.app_key, "action": entry.action,
                "version": entry.version, "actor": entry.actor, "detail": entry.detail,
            })
        })
        .collect();
    Ok(success(one("entries", Value::from(views))))
}
