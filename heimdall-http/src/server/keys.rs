//! `/api-keys` (scoped keys for adapters and automation; superadmins only) and `/explain`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use chrono::{DateTime, Utc};
use heimdall_core::model::{ApiKey, ExplainRequest, Explanation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::User;
use super::error::{ApiError, ErrorBody, Json, Path};

/// An API key (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyOut {
    /// Database id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// What it may be used for (`mappings:read`, `grants:read`).
    pub scopes: Vec<String>,
    /// Who created it.
    pub created_by: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked (a revoked key authenticates nothing).
    pub revoked_at: Option<DateTime<Utc>>,
    /// When its use was last recorded (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops authenticating by itself; absent: never.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for ApiKeyOut {
    fn from(k: ApiKey) -> Self {
        ApiKeyOut {
            id: k.id,
            name: k.name.as_str().to_owned(),
            scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_by: k.created_by.map(|s| s.as_str().to_owned()),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
        }
    }
}

/// A new key, with its secret: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewApiKeyOut {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKeyOut,
    /// Present it as `Authorization: Bearer <secret>`. Heimdall keeps only its hash.
    pub secret: String,
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKeyIn {
    /// A unique name (segments of `A-Z a-z 0-9 _ . -` joined by `:`).
    pub name: String,
    /// At least one of `mappings:read`, `grants:read`.
    pub scopes: Vec<String>,
    /// When the key stops authenticating by itself (RFC 3339, in the future); absent: never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Creates an API key (superadmins only). The answer holds the secret, once.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "operations", security(("bearer" = [])),
    request_body = NewApiKeyIn,
    responses(
        (status = 201, description = "Created; the secret is in this answer only", body = NewApiKeyOut),
        (status = 400, description = "Invalid name, scope or expiry", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 409, description = "A key of that name exists", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn create_key(
    State(state): State<AppState>,
    User(caller): User,
    Json(body): Json<NewApiKeyIn>,
) -> Result<(StatusCode, Json<NewApiKeyOut>), ApiError> {
    super::note("create_api_key", &body.name);
    let scopes: Vec<&str> = body.scopes.iter().map(String::as_str).collect();
    let new = state
        .heimdall()
        .create_expiring_api_key(&caller, &body.name, &scopes, body.expires_at)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewApiKeyOut {
            key: new.key.into(),
            secret: new.secret,
        }),
    ))
}

/// Lists API keys, revoked ones too (superadmins only).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "operations", security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys", body = Vec<ApiKeyOut>),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ))]
async fn list_keys(State(state): State<AppState>, User(caller): User) -> Result<Json<Vec<ApiKeyOut>>, ApiError> {
    let keys = state.heimdall().list_api_keys(&caller).await?;
    Ok(Json(keys.into_iter().map(Into::into).collect()))
}

/// Revokes an API key (superadmins only); it stops working at once on this server, and within 5 s on others.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "operations", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn revoke_key(
    State(state): State<AppState>,
    User(caller): User,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    super::note("revoke_api_key", &id.to_string());
    state.heimdall().revoke_api_key(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What to explain: a subject (or a token whose subject it is), a method and a path.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainIn {
    /// The user's subject (give this or `token`).
    #[serde(default)]
    pub subject: Option<String>,
    /// A token of the user (verified; give this or `subject`).
    #[serde(default)]
    pub token: Option<String>,
    /// The request's method.
    pub method: String,
    /// The request's path as received (still percent-encoded); a query string is ignored.
    pub path: String,
}

/// Why a request would be allowed or denied: the canonical path (or why it is rejected), every matching
/// mapping in precedence order and the one that wins, the action, the subject's roles and where each comes
/// from, and the PDP's decision. Superadmins may ask about any path; managers about paths in their scope.
#[utoipa::path(post, path = "/api/v1/explain", tag = "mappings", security(("bearer" = [])),
    request_body = ExplainIn,
    responses(
        (status = 200, description = "The explanation", body = Explanation),
        (status = 400, description = "Invalid input (or both/neither of subject and token)", body = ErrorBody),
        (status = 401, description = "No or bad token (the caller's, or the one to explain)", body = ErrorBody),
        (status = 403, description = "Not allowed to explain this path", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 429, description = "Too many requests (explain counts against the caller's budget)", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
async fn explain(
    State(state): State<AppState>,
    User(caller): User,
    Json(body): Json<ExplainIn>,
) -> Result<Json<Explanation>, ApiError> {
    let subject = match (body.subject, body.token) {
        (Some(s), None) => s,
        (None, Some(t)) => {
            let verifier = state
                .verifier()
                .ok_or_else(|| ApiError::invalid("this server verifies no tokens; give a subject"))?;
            verifier.verify(&t).await?.claims().subject.as_str().to_owned()
        }
        _ => return Err(ApiError::invalid("give exactly one of subject and token")),
    };
    super::note("explain", &subject);
    let request = ExplainRequest {
        subject,
        method: body.method,
        path: body.path,
    };
    Ok(Json(state.heimdall().explain(&caller, &request).await?))
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create_key, list_keys, revoke_key, explain))]
pub(super) struct Api;

pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api-keys", post(create_key).get(list_keys))
        .route("/api-keys/{id}", delete(revoke_key))
        .route("/explain", post(explain))
}
