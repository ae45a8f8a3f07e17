//! Customer data (README, "Customer data"): the app's server stores items that its rule sets
//! read, at `/rest/privnum/data/v1.0`, authenticated with the app's own key (AKSK or WSSE):
//! `PUT` stores a batch (`{"items":[{"key","value","ttl"?}]}`), `GET ?key=` reads one item,
//! `DELETE ?key=` removes it. An app reaches only its own items. A stored batch is on disk
//! before it is acknowledged.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{Map, Value};

use super::auth::Authenticated;
use super::error::{success, AppError};
use super::request::{query_object, JsonBody};
use super::AppState;
use crate::domain::time::reference_time;
use crate::domain::{data, Fields, Rejection};

pub const DATA_PATH: &str = "/rest/privnum/data/v1.0";

/// The `key` of a `GET` or `DELETE` query.
fn query_key(query: Option<&str>) -> Result<String, AppError> {
    let params = query_object(query)?;
    Ok(data::parse_key(&Fields::new(&params))?.to_owned())
}

fn not_found(key: &str) -> AppError {
    Rejection::NotFound { what: format!("no data item {key:?} (never stored, deleted or expired)") }.into()
}

pub async fn data_put(
    State(state): State<AppState>,
    auth: Authenticated,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let now = state.clock.now();
    let items = data::parse_put(&Fields::new(&body), now)?;
    let (app_key, max) = (auth.app.app_key.clone(), state.config.data_max_items_per_app);
    let stored = state.write(move |store| store.data().put(&app_key, &items, max)).await?;
    state.store.durable().await?;
    let mut fields = Map::new();
    fields.insert("stored".into(), Value::from(stored));
    Ok(success(fields))
}

pub async fn data_get(
    State(state): State<AppState>,
    auth: Authenticated,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let key = query_key(query.as_deref())?;
    let item = state.store.data().get(&auth.app.app_key, &key, state.clock.now())?.ok_or_else(|| not_found(&key))?;
    let mut fields = Map::new();
    fields.insert("key".into(), Value::from(item.key));
    fields.insert("value".into(), Value::from(item.value));
    if let Some(at) = item.expires_at {
        fields.insert("expireTime".into(), Value::from(reference_time(at)));
    }
    Ok(success(fields))
}

pub async fn data_delete(
    State(state): State<AppState>,
    auth: Authenticated,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let key = query_key(query.as_deref())?;
    let (app_key, now) = (auth.app.app_key.clone(), state.clock.now());
    let lookup = key.clone();
    let removed = state.write(move |store| Ok(store.data().delete(&app_key, &lookup, now)?)).await?;
    if !removed {
        return Err(not_found(&key));
    }
    state.store.durable().await?;
    Ok(success(Map::new()))
}
