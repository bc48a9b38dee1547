//! Who is calling: the extractors that turn an `Authorization: Bearer …` header into a caller.
//!
//! - [`User`]: a person (or service account) with a JWT from the identity provider, verified against its JWKS
//!   and provisioned (JIT) on every request. Admin endpoints take only this.
//! - [`Reader`]: what the adapter feeds accept — a user, the deployment's `STATIC_API_TOKEN`, or a scoped API key.
//!
//! Credentials are never logged: the request span records only who the caller turned out to be.
//!
//! Every request these extractors accept takes one unit of its caller's rate-limit budget (mutations also of
//! the caller's mutation budget); a refused credential takes one of the client address's, and is audited by
//! core (bounded per address and minute: see `heimdall_core::FAILURE_AUDIT_ROWS`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use heimdall_core::ErrorKind;
use heimdall_core::model::{ApiKeyPrincipal, ApiKeyScope, Caller};
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::error::ApiError;

fn unauthenticated(message: &'static str) -> heimdall_core::Error {
    heimdall_core::Error::new(ErrorKind::Unauthenticated, message)
}

/// The bearer credential of a request, or why there is none.
fn bearer(parts: &Parts) -> Result<&str, heimdall_core::Error> {
    bearer_in(&parts.headers)
}

/// The bearer credential in `headers`, or why there is none.
pub(crate) fn bearer_in(headers: &axum::http::HeaderMap) -> Result<&str, heimdall_core::Error> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthenticated("missing Authorization: Bearer credential"))?;
    let value = value
        .to_str()
        .map_err(|_| unauthenticated("malformed Authorization header"))?;
    let (scheme, credential) = value
        .split_once(' ')
        .ok_or_else(|| unauthenticated("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || credential.trim().is_empty() {
        return Err(unauthenticated("the Authorization header must use the Bearer scheme"));
    }
    Ok(credential.trim())
}

/// A credential refused before anyone was known: charged to the client's address (429 once its budget is
/// spent) and audited by core as `unauthenticated:<address>`. A database failure stays a 503.
async fn refused(state: &AppState, parts: &Parts, error: heimdall_core::Error) -> ApiError {
    if error.kind() != ErrorKind::Unauthenticated {
        return error.into();
    }
    let ip = super::limits::client_ip(&parts.extensions);
    if let Err(limited) = state.charge_client(ip) {
        return limited;
    }
    let source = super::limits::client_key(ip);
    let source = source.strip_prefix("ip:").unwrap_or(&source);
    let request = super::request_label(parts);
    if let Err(e) = state
        .heimdall()
        .audit_refused_credential(source, &request, &error)
        .await
    {
        tracing::warn!(error = %e, "could not audit a refused credential");
    }
    error.into()
}

/// A verified caller's request: charged to its budgets.
fn charge(state: &AppState, parts: &Parts, caller: &str) -> Result<(), ApiError> {
    state.charge_caller(caller, !matches!(parts.method, Method::GET | Method::HEAD))
}

/// Records who is calling, for the request's access log line.
fn record_actor(actor: &str) {
    super::note_actor(actor);
}

/// A user authenticated by a JWT, provisioned (or refreshed) in the database. Every request passes the
/// per-caller rate limit here; mutations also the mutation limit.
#[derive(Debug, Clone)]
pub struct User(pub Caller);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = match bearer(parts) {
            Ok(token) => token,
            Err(e) => return Err(refused(state, parts, e).await),
        };
        Ok(User(user(state, parts, token).await?))
    }
}

/// The user whose JWT `token` is: verified, charged to the subject's budgets (before anything is written, so
/// that a caller past his budget costs no database write), then provisioned (JIT).
async fn user(state: &AppState, parts: &Parts, token: &str) -> Result<Caller, ApiError> {
    let Some(verifier) = state.verifier() else {
        let e = unauthenticated("this server accepts no user tokens: KEYCLOAK_JWKS_URL is not configured");
        return Err(refused(state, parts, e).await);
    };
    let identity = match verifier.verify(token).await {
        Ok(identity) => identity,
        Err(e) => return Err(refused(state, parts, e).await),
    };
    charge(state, parts, identity.claims().subject.as_str())?;
    let roles: Vec<&str> = identity.roles().iter().map(String::as_str).collect();
    match state.heimdall().provision(identity.claims().clone(), &roles).await {
        Ok(caller) => {
            record_actor(caller.subject().as_str());
            Ok(caller)
        }
        Err(e) => Err(refused(state, parts, e).await),
    }
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
/// token (it may be a user's JWT); an API key without the scope is 403 (audited, and charged to the key).
async fn machine(
    state: &AppState,
    parts: &Parts,
    token: &str,
    scope: ApiKeyScope,
) -> Result<Option<Machine>, ApiError> {
    if token.starts_with(heimdall_core::API_KEY_PREFIX) {
        let key = match state.heimdall().authenticate_api_key(token).await {
            Ok(key) => key,
            Err(e) => return Err(refused(state, parts, e).await),
        };
        record_actor(&key.actor());
        charge(state, parts, &key.actor())?;
        if !key.has_scope(scope) {
            let e = heimdall_core::Error::new(
                ErrorKind::Forbidden,
                format!("this API key lacks the {} scope", scope.as_str()),
            );
            let request = super::request_label(parts);
            if let Err(audit) = state.heimdall().audit_api_key_refusal(&key, &request, &e).await {
                tracing::warn!(error = %audit, "could not audit an API key's refusal");
            }
            return Err(e.into());
        }
        return Ok(Some(Machine::ApiKey(key)));
    }
    if let Some(expected) = state.static_token()
        && bool::from(token.as_bytes().ct_eq(expected.as_bytes()))
    {
        record_actor("static_api_token");
        charge(state, parts, "static_api_token")?;
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
    /// The caller's name in the audit log (and its rate-limit key).
    pub fn actor(&self) -> String {
        match self {
            Reader::User(caller) => caller.subject().as_str().to_owned(),
            Reader::Machine(Machine::StaticToken) => "static_api_token".to_owned(),
            Reader::Machine(Machine::ApiKey(key)) => key.actor(),
        }
    }

    /// Whether `token`, the credential this reader was authenticated with, still holds: an API key not
    /// revoked (core's check, cached for `API_KEY_CACHE_TTL`, at once after a revocation in this process),
    /// a JWT verified again (with the keys cached) and before its `exp`; the static token always. `None` when it
    /// cannot be told now (the database is unreachable).
    pub async fn still_holds(&self, state: &AppState, token: &str) -> Option<bool> {
        let checked = match self {
            Reader::Machine(Machine::StaticToken) => return Some(true),
            Reader::Machine(Machine::ApiKey(_)) => state
                .heimdall()
                .authenticate_api_key(token)
                .await
                .map(|key| key.has_scope(ApiKeyScope::MappingsRead)),
            // Verified again (its key may have left the JWKS), and over at its `exp`: the verifier's leeway is
            // for a new request's clock skew, not for keeping a stream open past the token's end.
            Reader::User(_) => match state.verifier() {
                Some(verifier) => verifier
                    .verify(token)
                    .await
                    .map(|identity| state.heimdall().now().timestamp() < identity.expires_at()),
                None => Ok(false),
            },
        };
        match checked {
            Ok(holds) => Some(holds),
            Err(e) if matches!(e.kind(), ErrorKind::Unauthenticated | ErrorKind::Forbidden) => Some(false),
            Err(_) => None,
        }
    }

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
        let token = match bearer(parts) {
            Ok(token) => token,
            Err(e) => return Err(refused(state, parts, e).await),
        };
        match machine(state, parts, token, ApiKeyScope::MappingsRead).await? {
            Some(m) => Ok(Reader::Machine(m)),
            None => Ok(Reader::User(user(state, parts, token).await?)),
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
        let token = match bearer(parts) {
            Ok(token) => token,
            Err(e) => return Err(refused(state, parts, e).await),
        };
        let Some(m) = machine(state, parts, token, ApiKeyScope::GrantsRead).await? else {
            let e = unauthenticated("the grants export takes an API key with grants:read or the static API token");
            return Err(refused(state, parts, e).await);
        };
        if let Machine::ApiKey(key) = &m {
            note_key_use(state, key, "grants_export", "grants").await;
        }
        Ok(GrantsReader(m))
    }
}
