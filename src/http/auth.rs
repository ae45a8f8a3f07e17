//! Who is calling: the provisioning API's AKSK/WSSE check and the admin API's bearer token.
//!
//! Order of the provisioning checks: header format (400), then app and digest (401 1010010), then
//! `Created` skew (401 1010013), and only then the nonce is remembered, so that forged requests
//! cannot use up a client's nonces. An unknown app key answers exactly like a wrong digest.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use super::error::AppError;
use super::throttle::{ClientAddr, Failure};
use super::AppState;
use crate::auth::{self, constant_time_eq, AuthError};
use crate::domain::{codes, App, Mode, Rejection};

/// A request signed by a known app.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub app: Arc<App>,
}

/// Names the mode of a provisioning API, for [`AppOf`].
pub trait ApiMode {
    const MODE: Mode;
}

/// The AXB API (`/rest/caas/relationnumber/partners/v1.0`).
#[derive(Debug)]
pub struct AxbApi;

impl ApiMode for AxbApi {
    const MODE: Mode = Mode::Axb;
}

/// The AX API (`/rest/provision/caas/privatenumber/v1.0`, `/rest/caas/privatenumber/calleenumber/v1.0`).
#[derive(Debug)]
pub struct AxApi;

impl ApiMode for AxApi {
    const MODE: Mode = Mode::Ax;
}

/// The AXE API (`/rest/caas/extendnumber/v1.0` and `v2.0`).
#[derive(Debug)]
pub struct AxeApi;

impl ApiMode for AxeApi {
    const MODE: Mode = Mode::Axe;
}

/// A request signed by a known app of the API's own mode (1010040 otherwise), checked before the
/// body is read, so a wrong-mode app hears about its mode first.
#[derive(Debug, Clone)]
pub struct AppOf<M>(pub Arc<App>, pub std::marker::PhantomData<M>);

impl<M: ApiMode> FromRequestParts<AppState> for AppOf<M> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Authenticated { app } = Authenticated::from_request_parts(parts, state).await?;
        if app.mode != M::MODE {
            return Err(Rejection::WrongMode { app_key: app.app_key.clone(), app_mode: app.mode, api: M::MODE }.into());
        }
        Ok(AppOf(app, std::marker::PhantomData))
    }
}

/// Whether the request carries `Authorization: Bearer <token>`.
pub fn has_bearer(parts: &Parts, token: &str) -> bool {
    let sent =
        parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    sent.is_some_and(|sent| constant_time_eq(sent.trim().as_bytes(), token.as_bytes()))
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let addr = client_ip(parts);
        let now = std::time::Instant::now();
        throttled(state, addr, None, now)?;
        let header_text = |name: &str| parts.headers.get(name).and_then(|value| value.to_str().ok());
        let credentials = match auth::parse(header_text(header::AUTHORIZATION.as_str()), header_text) {
            Ok(credentials) => credentials,
            Err(err) => {
                state.throttle.failed(addr, None, Failure::Malformed, now);
                return Err(err.into());
            }
        };
        let app_key = Some(credentials.app_key.as_str());
        throttled(state, addr, app_key, now)?;
        match check(state, &credentials) {
            Ok(app) => Ok(Authenticated { app }),
            Err(Refused::Unauthenticated(why, err)) => {
                state.throttle.failed(addr, app_key, why, now);
                Err(err)
            }
            Err(Refused::Other(err)) => Err(err),
        }
    }
}

/// Why [`check`] refused: a failed authentication (counted against the sender), or anything else.
enum Refused {
    Unauthenticated(Failure, AppError),
    Other(AppError),
}

impl Refused {
    /// A refusal for `why` when it is a failed authentication (401), else passed on as it is.
    fn because(why: Failure, err: impl Into<AppError>) -> Refused {
        let err = err.into();
        if err.status == StatusCode::UNAUTHORIZED {
            Refused::Unauthenticated(why, err)
        } else {
            Refused::Other(err)
        }
    }
}

impl From<crate::store::Error> for Refused {
    fn from(err: crate::store::Error) -> Self {
        Refused::Other(err.into())
    }
}

/// Digest, skew, then the nonce, in that order (see the module's notes).
fn check(state: &AppState, credentials: &auth::Credentials) -> Result<Arc<App>, Refused> {
    let Some(app) = state.store.apps().get(&credentials.app_key)? else {
        return Err(Refused::because(Failure::UnknownAppKey, AuthError::invalid_digest()));
    };
    if !credentials.verify(&app.app_secret) {
        return Err(Refused::because(Failure::WrongDigest, AuthError::invalid_digest()));
    }
    credentials
        .check_skew(state.clock.now(), state.config.auth_max_skew_secs)
        .map_err(|err| Refused::because(Failure::Stale, err))?;
    if !state.store.nonces().remember(&app.app_key, &credentials.nonce, credentials.created_at)? {
        return Err(Refused::because(Failure::Replay, AuthError::replay()));
    }
    Ok(app)
}

/// The address a request came from, when it came over a socket.
fn client_ip(parts: &Parts) -> Option<std::net::IpAddr> {
    parts.extensions.get::<ClientAddr>().map(|addr| addr.0.ip())
}

/// 429 while the address or the app key has used up its failed authentications.
fn throttled(
    state: &AppState,
    addr: Option<std::net::IpAddr>,
    app_key: Option<&str>,
    now: std::time::Instant,
) -> Result<(), AppError> {
    state.throttle.check(addr, app_key, now).map_err(|wait| {
        AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::INVALID_DIGEST,
            format!("Too many failed authentications; retry in {} s", wait.as_secs().max(1)),
        )
    })
}

/// A request carrying `Authorization: Bearer <admin_token>`.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let (addr, now) = (client_ip(parts), std::time::Instant::now());
        throttled(state, addr, None, now)?;
        if has_bearer(parts, &state.config.admin_token) {
            return Ok(Admin);
        }
        state.throttle.failed(addr, None, Failure::AdminToken, now);
        Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            codes::INVALID_DIGEST,
            "the admin API needs Authorization: Bearer <admin_token>",
        ))
    }
}
