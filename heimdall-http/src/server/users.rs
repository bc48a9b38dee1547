//! `/users`: who someone is, their groups and roles; direct (user) roles.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use heimdall_core::model::UserDetails;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::User;
use super::error::{ApiError, ErrorBody, Json, Path};
use super::roles::{RoleChange, RoleChanged};

/// A user with their groups and effective roles.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    /// Database id.
    pub id: i64,
    /// The subject (from the token's `preferred_username`, else `sub`).
    pub subject: String,
    /// From the token's `name`.
    pub display_name: Option<String>,
    /// From the token's `email`.
    pub email: Option<String>,
    /// Groups the user is a member of.
    pub groups: Vec<String>,
    /// Effective roles: the roles of the user's groups and the user's direct roles.
    pub roles: Vec<String>,
    /// When the user was first seen.
    pub created_at: DateTime<Utc>,
    /// When the user was last seen (refreshed at most once a minute).
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl From<UserDetails> for UserOut {
    fn from(d: UserDetails) -> Self {
        UserOut {
            id: d.user.id,
            subject: d.user.subject.as_str().to_owned(),
            display_name: d.user.display_name,
            email: d.user.email,
            groups: d.groups.iter().map(|g| g.as_str().to_owned()).collect(),
            roles: d.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            created_at: d.user.created_at,
            last_seen_at: d.user.last_seen_at,
        }
    }
}

/// The caller, as provisioned from their token.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserOut),
        (status = 401, description = "No or bad token", body = ErrorBody),
    ))]
async fn me(State(state): State<AppState>, User(caller): User) -> Result<Json<UserOut>, ApiError> {
    Ok(Json(state.heimdall().get_user(caller.subject().as_str()).await?.into()))
}

/// A user, their groups and effective roles. Any signed-in user may ask.
#[utoipa::path(get, path = "/api/v1/users/{subject}", tag = "users", security(("bearer" = [])),
    params(("subject" = String, Path, description = "The user's subject (percent-encode reserved characters)")),
    responses(
        (status = 200, description = "The user", body = UserOut),
        (status = 400, description = "Not a valid subject", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
async fn get_user(
    State(state): State<AppState>,
    User(_): User,
    Path(subject): Path<String>,
) -> Result<Json<UserOut>, ApiError> {
    Ok(Json(state.heimdall().get_user(&subject).await?.into()))
}

/// Gives a user a role directly (superadmins only). 201 when assigned, 200 when the user had it already.
#[utoipa::path(post, path = "/api/v1/users/{subject}/roles", tag = "users", security(("bearer" = [])),
    params(("subject" = String, Path, description = "The user's subject")),
    request_body = RoleChange,
    responses(
        (status = 201, description = "Assigned", body = RoleChanged),
        (status = 200, description = "The user had the role already", body = RoleChanged),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such role", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn assign_user_role(
    State(state): State<AppState>,
    User(caller): User,
    Path(subject): Path<String>,
    Json(body): Json<RoleChange>,
) -> Result<(StatusCode, Json<RoleChanged>), ApiError> {
    super::note("assign_user_role", &subject);
    let added = state.heimdall().assign_user_role(&caller, &subject, &body.role).await?;
    Ok(RoleChanged::answer(added, "user", &subject, &body.role))
}

/// Takes a directly given role from a user (superadmins only).
#[utoipa::path(delete, path = "/api/v1/users/{subject}/roles/{role}", tag = "users", security(("bearer" = [])),
    params(("subject" = String, Path, description = "The user's subject"), ("role" = String, Path, description = "The role")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "The user does not have the role", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn remove_user_role(
    State(state): State<AppState>,
    User(caller): User,
    Path((subject, role)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    super::note("remove_user_role", &subject);
    state.heimdall().remove_user_role(&caller, &subject, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(me, get_user, assign_user_role, remove_user_role))]
pub(super) struct Api;

pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/users/me", get(me))
        .route("/users/{subject}", get(get_user))
        .route("/users/{subject}/roles", post(assign_user_role))
        .route("/users/{subject}/roles/{role}", delete(remove_user_role))
}
