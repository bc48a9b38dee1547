//! Who is calling: the extractors that turn an `Authorization: Bearer …` header into a caller.
//!
//! - [`User`]: a person (or service account) with a JWT from the identity provider, verified against its JWKS
//!   and provisioned (JIT) on every request. Admin endpoints take only this.
//! - [`Reader`]: what the adapter feeds accept — a user, the deployment's `STATIC_API_TOKEN`, or a scoped API key.
//!
//! Credentials are never logged: the request span records only who the caller turned out to be.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use heimdall_core::model::{ApiKeyPrincipal, ApiKeyScope, Caller};
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::error::ApiError;

/// The bearer credential of a request, or why there is none.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthenticated("missing Authorization: Bearer credential"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
    let (scheme, credential) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthenticated("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || credential.trim().is_empty() {
        return Err(ApiError::unauthenticated(
            "the Authorization header must use the Bearer scheme",
        ));
    }
    Ok(credential.trim())
}

/// Records who is calling, for the request's access log line.
fn record_actor(actor: &str) {
    super::note_actor(actor);
}

/// A user authenticated by a JWT, provisioned (or refreshed) in the database. Mutating requests also pass
/// the per-caller rate limit here.
#[derive(Debug, Clone)]
pub struct User(pub Caller);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        let caller = user(state, token).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            state.check_rate(caller.subject().as_str())?;
        }
        Ok(User(caller))
    }
}

async fn user(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let Some(verifier) = state.verifier() else {
        return Err(ApiError::unauthenticated(
            "this server accepts no user tokens: KEYCLOAK_JWKS_URL is not configured",
        ));
    };
    let caller = state.heimdall().authenticate(verifier, token).await?;
    record_actor(caller.subject().as_str());
    Ok(caller)
}

/// A service's credential: the deployment's `STATIC_API_TOKEN`, or a scoped API key.
#[derive(Debug, Clone)]
pub enum Machine {
    /// The deployment's `STATIC_API_TOKEN`.
    StaticToken,
    /// An API key holding the scope the endpoint needs.
    ApiKey(ApiKeyPrincipal),
}

/// `token` as a machine credential holding `scope`: `Ok(None)` when it is neither an API key nor the static
/// token (it may be a user's JWT); an API key without the scope is 403.
async fn machine(state: &AppState, token: &str, scope: ApiKeyScope) -> Result<Option<Machine>, ApiError> {
    if token.starts_with(heimdall_core::API_KEY_PREFIX) {
        let key = state.heimdall().authenticate_api_key(token).await?;
        record_actor(&key.actor());
        if !key.has_scope(scope) {
            return Err(ApiError::forbidden(format!(
                "this API key lacks the {} scope",
                scope.as_str()
            )));
        }
        return Ok(Some(Machine::ApiKey(key)));
    }
    if let Some(expected) = state.static_token()
        && bool::from(token.as_bytes().ct_eq(expected.as_bytes()))
    {
        record_actor("static_api_token");
        return Ok(Some(Machine::StaticToken));
    }
    Ok(None)
}

/// Who may read the adapter feeds (mapping lookups, the export, the change feed): a user, or a machine
/// credential with `mappings:read`.
#[derive(Debug, Clone)]
pub enum Reader {
    /// A user with a JWT.
    User(Caller),
    /// The static token or an API key with `mappings:read`.
    Machine(Machine),
}

impl Reader {
    /// Audits a use of an API key (at most once per key, operation and minute, by core); other readers
    /// are not audited per read.
    pub async fn note_use(&self, state: &AppState, operation: &str, target: &str) {
        if let Reader::Machine(Machine::ApiKey(key)) = self {
            note_key_use(state, key, operation, target).await;
        }
    }
}

async fn note_key_use(state: &AppState, key: &ApiKeyPrincipal, operation: &str, target: &str) {
    if let Err(e) = state.heimdall().record_api_key_use(key, operation, target).await {
        tracing::warn!(error = %e, "could not record an API key's use");
    }
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        match machine(state, token, ApiKeyScope::MappingsRead).await? {
            Some(m) => Ok(Reader::Machine(m)),
            None => Ok(Reader::User(user(state, token).await?)),
        }
    }
}

/// Who may read the grants export: a machine credential with `grants:read`. It holds every user's
/// permissions, so it is for adapters, not for users' tokens.
#[derive(Debug, Clone)]
pub struct GrantsReader(pub Machine);

impl FromRequestParts<AppState> for GrantsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        let Some(m) = machine(state, token, ApiKeyScope::GrantsRead).await? else {
            return Err(ApiError::unauthenticated(
                "the grants export takes an API key with grants:read or the static API token",
            ));
        };
        if let Machine::ApiKey(key) = &m {
            note_key_use(state, key, "grants_export", "grants").await;
        }
        Ok(GrantsReader(m))
    }
}
