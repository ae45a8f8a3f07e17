//! Provisioning over HTTP, for every mode: one set of handlers (bind `POST`, modify `PUT`, unbind
//! `DELETE`, query `GET`) serving each mode's path through its [`ProvisioningApi`].
//!
//! A mode's file (`axb.rs`, `ax.rs`, `axe.rs`) says how its requests reach the store and how its
//! answers read; the flow is here, once: parse (the mode's [`Provisioning`]), check the tones the
//! request names (each must be an approved tone of the app: `1010002 Invalid request.<file> does
//! not exist`), apply on a blocking thread under the writer lock, wait until it is on disk, then
//! answer. GET and DELETE read the query string; real clients also send it again as a JSON body,
//! which is ignored.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::{get, MethodRouter};
use serde_json::{Map, Value};

use super::auth::{ApiMode, AppOf};
use super::error::{success, AppError};
use super::request::{query_object, JsonBody};
use super::AppState;
use crate::config::Config;
use crate::domain::binding::Recorded;
use crate::domain::settings::PreVoice;
use crate::domain::{App, Fields, Provisioning};
use crate::store::{Bindings, OpError};

/// The binding type of a mode's API.
pub type BindingOf<M> = <<M as ProvisioningApi>::Mode as Provisioning>::Binding;
type BindOf<M> = <<M as ProvisioningApi>::Mode as Provisioning>::Bind;
type ModifyOf<M> = <<M as ProvisioningApi>::Mode as Provisioning>::Modify;
type UnbindOf<M> = <<M as ProvisioningApi>::Mode as Provisioning>::Unbind;
type QueryOf<M> = <<M as ProvisioningApi>::Mode as Provisioning>::Query;

/// A mode's provisioning API: how its parsed requests are applied and its answers written.
/// Implemented once per mode, on the mode's [`ApiMode`] marker, in the mode's own file.
pub trait ProvisioningApi: ApiMode + Send + Sync + 'static {
    /// The mode's requests and their parsing.
    type Mode: Provisioning;
    /// What an unbind removed.
    type Removed: Send + 'static;
    /// What a query found.
    type Found;

    /// Makes the binding a bind asks for (runs under the store's writer lock).
    fn bind(
        bindings: &Bindings,
        app: &App,
        request: &BindOf<Self>,
        now: i64,
        config: &Config,
    ) -> Result<BindingOf<Self>, OpError>;
    /// Changes the binding a modify names (runs under the store's writer lock).
    fn modify(bindings: &Bindings, app: &App, request: &ModifyOf<Self>, now: i64) -> Result<BindingOf<Self>, OpError>;
    /// Removes what an unbind names (runs under the store's writer lock).
    fn unbind(bindings: &Bindings, app: &App, target: &UnbindOf<Self>, now: i64) -> Result<Self::Removed, OpError>;
    /// Answers a query (a read: no lock).
    fn query(bindings: &Bindings, app: &App, query: &QueryOf<Self>, now: i64) -> Result<Self::Found, OpError>;

    /// A binding as a bind or modify answers it, and as a query lists it.
    fn binding_fields(binding: &BindingOf<Self>, now: i64) -> Map<String, Value>;
    /// An unbind's answer.
    fn removed_fields(removed: Self::Removed) -> Map<String, Value>;
    /// A query's answer.
    fn found_fields(found: &Self::Found, now: i64) -> Map<String, Value>;
}

/// The four provisioning methods of mode `M`'s path.
pub fn routes<M: ProvisioningApi>() -> MethodRouter<AppState> {
    get(bindings_query::<M>).post(bindings_create::<M>).put(bindings_modify::<M>).delete(bindings_delete::<M>)
}

pub async fn bindings_create<M: ProvisioningApi>(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<M>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let request = M::Mode::parse_bind(&Fields::new(&body), &app)?;
    let (now, config) = (state.clock.now(), state.config.clone());
    let (app, binding) = state
        .write(move |store| {
            store.tones().check(&app.app_key, M::Mode::bind_tones(&request))?;
            let binding = M::bind(store.bindings(), &app, &request, now, &config)?;
            Ok((app, binding))
        })
        .await?;
    state.store.durable().await?;
    warn_if_unannounced(&state, &app, &binding);
    Ok(success(M::binding_fields(&binding, now)))
}

pub async fn bindings_modify<M: ProvisioningApi>(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<M>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let request = M::Mode::parse_modify(&Fields::new(&body))?;
    let now = state.clock.now();
    let records = M::Mode::modify_records(&request);
    let (app, binding) = state
        .write(move |store| {
            store.tones().check(&app.app_key, M::Mode::modify_tones(&request))?;
            let binding = M::modify(store.bindings(), &app, &request, now)?;
            Ok((app, binding))
        })
        .await?;
    state.store.durable().await?;
    if records {
        warn_if_unannounced(&state, &app, &binding);
    }
    Ok(success(M::binding_fields(&binding, now)))
}

pub async fn bindings_delete<M: ProvisioningApi>(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<M>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let params = query_object(query.as_deref())?;
    let target = M::Mode::parse_unbind(&Fields::new(&params))?;
    let now = state.clock.now();
    let removed = state.write(move |store| M::unbind(store.bindings(), &app, &target, now)).await?;
    state.store.durable().await?;
    Ok(success(M::removed_fields(removed)))
}

pub async fn bindings_query<M: ProvisioningApi>(
    State(state): State<AppState>,
    AppOf(app, _): AppOf<M>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let params = query_object(query.as_deref())?;
    let query = M::Mode::parse_query(&Fields::new(&params))?;
    let now = state.clock.now();
    let found = M::query(state.store.bindings(), &app, &query, now)?;
    Ok(success(M::found_fields(&found, now)))
}

/// Counts and logs a binding that records with no notice at all (README, Provisioning API,
/// "Recording without `recordHintTone`").
pub(crate) fn warn_if_unannounced(state: &AppState, app: &App, binding: &impl Recorded) {
    if binding.records_without_notice(state.app_has_notice(app)) {
        let subscription_id = binding.subscription_id();
        crate::telemetry::RecordWithoutNotice { app_key: &app.app_key, subscription_id }.emit(&state.metrics);
    }
}

/// Puts the optional settings AXB and AX bindings share: each string only when set (absent
/// values are left out rather than sent as null), and `preVoice` only when it names a tone.
pub(super) fn put_optional<'a>(
    put: &mut impl FnMut(&str, Value),
    strings: impl IntoIterator<Item = (&'a str, &'a Option<String>)>,
    pre_voice: &PreVoice,
) {
    for (name, value) in strings {
        if let Some(value) = value {
            put(name, value.as_str().into());
        }
    }
    let mut tones = Map::new();
    if let Some(tone) = &pre_voice.caller_hint_tone {
        tones.insert("callerHintTone".into(), tone.as_str().into());
    }
    if let Some(tone) = &pre_voice.callee_hint_tone {
        tones.insert("calleeHintTone".into(), tone.as_str().into());
    }
    if !tones.is_empty() {
        put("preVoice", tones.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::auth::{AxApi, AxbApi, AxeApi};

    #[test]
    fn each_api_serves_its_own_modes_requests() {
        assert_eq!(<AxbApi as ApiMode>::MODE, <<AxbApi as ProvisioningApi>::Mode as Provisioning>::MODE);
        assert_eq!(<AxApi as ApiMode>::MODE, <<AxApi as ProvisioningApi>::Mode as Provisioning>::MODE);
        assert_eq!(<AxeApi as ApiMode>::MODE, <<AxeApi as ProvisioningApi>::Mode as Provisioning>::MODE);
    }
}
