//! `/roles` and what each role lets its holders do (`/roles/{role}/permissions`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use heimdall_core::model::{Role, RolePermission};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::User;
use super::error::{ApiError, ErrorBody, Json, Path, Query};

/// A role.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleOut {
    /// Database id.
    pub id: i64,
    /// Name, such as `go:course:editor`.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
}

impl From<Role> for RoleOut {
    fn from(r: Role) -> Self {
        RoleOut {
            id: r.id,
            name: r.name.as_str().to_owned(),
            description: r.description,
        }
    }
}

/// A role to create (superadmins only).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    /// Segments of `A-Z a-z 0-9 _ . -` joined by `:`, at most 128 bytes.
    pub name: String,
    /// Free text, at most 1024 bytes.
    #[serde(default)]
    pub description: Option<String>,
}

/// Paging of `GET /roles`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RoleQuery {
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// One page of roles.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolePage {
    /// The roles, by name.
    pub items: Vec<RoleOut>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// A role to give (to a group or a user).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// The role's name.
    pub role: String,
}

/// What giving a role did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleChanged {
    /// `role_assigned`, or `already_assigned`.
    pub status: &'static str,
    /// `group` or `user`.
    pub holder_type: &'static str,
    /// The group's name or the user's subject.
    pub holder: String,
    /// The role.
    pub role: String,
}

impl RoleChanged {
    pub(super) fn answer(added: bool, holder_type: &'static str, holder: &str, role: &str) -> (StatusCode, Json<Self>) {
        let (status, word) = if added {
            (StatusCode::CREATED, "role_assigned")
        } else {
            (StatusCode::OK, "already_assigned")
        };
        let body = RoleChanged {
            status: word,
            holder_type,
            holder: holder.to_owned(),
            role: role.to_owned(),
        };
        (status, Json(body))
    }
}

/// A permission of a role.
#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionOut {
    /// The role.
    pub role: String,
    /// The action (its resource kind is the part before the last `:`).
    pub action: String,
    /// `allow` or `deny`.
    pub effect: String,
}

impl From<RolePermission> for PermissionOut {
    fn from(p: RolePermission) -> Self {
        PermissionOut {
            role: p.role.as_str().to_owned(),
            action: p.action.as_str().to_owned(),
            effect: p.effect.as_str().to_owned(),
        }
    }
}

/// The effect to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionChange {
    /// `allow` or `deny`.
    pub effect: String,
}

/// Creates a role (superadmins only).
#[utoipa::path(post, path = "/api/v1/roles", tag = "roles", security(("bearer" = [])),
    request_body = NewRole,
    responses(
        (status = 201, description = "Created", body = RoleOut),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 409, description = "A role of that name exists", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn create_role(
    State(state): State<AppState>,
    User(caller): User,
    Json(body): Json<NewRole>,
) -> Result<(StatusCode, Json<RoleOut>), ApiError> {
    super::note("create_role", &body.name);
    let role = state
        .heimdall()
        .create_role(&caller, &body.name, body.description.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(role.into())))
}

/// Lists roles by name.
#[utoipa::path(get, path = "/api/v1/roles", tag = "roles", security(("bearer" = [])),
    params(RoleQuery),
    responses(
        (status = 200, description = "One page", body = RolePage),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
    ))]
async fn list_roles(
    State(state): State<AppState>,
    User(_): User,
    Query(q): Query<RoleQuery>,
) -> Result<Json<RolePage>, ApiError> {
    let page = state.heimdall().list_roles(q.after.as_deref(), q.limit).await?;
    Ok(Json(RolePage {
        items: page.items.into_iter().map(Into::into).collect(),
        next: page.next,
    }))
}

/// Deletes a role (superadmins only).
#[utoipa::path(delete, path = "/api/v1/roles/{role}", tag = "roles", security(("bearer" = [])),
    params(("role" = String, Path, description = "The role")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such role", body = ErrorBody),
        (status = 409, description = "The role is in use", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn delete_role(
    State(state): State<AppState>,
    User(caller): User,
    Path(role): Path<String>,
) -> Result<StatusCode, ApiError> {
    super::note("delete_role", &role);
    state.heimdall().delete_role(&caller, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a role lets its holders do.
#[utoipa::path(get, path = "/api/v1/roles/{role}/permissions", tag = "roles", security(("bearer" = [])),
    params(("role" = String, Path, description = "The role")),
    responses(
        (status = 200, description = "Its permissions", body = Vec<PermissionOut>),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such role", body = ErrorBody),
    ))]
async fn permissions(
    State(state): State<AppState>,
    User(_): User,
    Path(role): Path<String>,
) -> Result<Json<Vec<PermissionOut>>, ApiError> {
    let perms = state.heimdall().role_permissions(&role).await?;
    Ok(Json(perms.into_iter().map(Into::into).collect()))
}

/// Lets (`allow`) or forbids (`deny`) the role's holders an action (superadmins only). Idempotent.
#[utoipa::path(put, path = "/api/v1/roles/{role}/permissions/{action}", tag = "roles", security(("bearer" = [])),
    params(("role" = String, Path, description = "The role"), ("action" = String, Path, description = "The action, such as `course:create`")),
    request_body = PermissionChange,
    responses(
        (status = 200, description = "Set", body = PermissionOut),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such role", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn set_permission(
    State(state): State<AppState>,
    User(caller): User,
    Path((role, action)): Path<(String, String)>,
    Json(body): Json<PermissionChange>,
) -> Result<Json<PermissionOut>, ApiError> {
    super::note("set_permission", &role);
    state
        .heimdall()
        .grant_permission(&caller, &role, &action, &body.effect)
        .await?;
    Ok(Json(PermissionOut {
        role,
        action,
        effect: body.effect,
    }))
}

/// Removes a permission from a role (superadmins only).
#[utoipa::path(delete, path = "/api/v1/roles/{role}/permissions/{action}", tag = "roles", security(("bearer" = [])),
    params(("role" = String, Path, description = "The role"), ("action" = String, Path, description = "The action")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "The role has no such permission", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn revoke_permission(
    State(state): State<AppState>,
    User(caller): User,
    Path((role, action)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    super::note("revoke_permission", &role);
    state.heimdall().revoke_permission(&caller, &role, &action).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create_role, list_roles, delete_role, permissions, set_permission, revoke_permission))]
pub(super) struct Api;

pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/roles", post(create_role).get(list_roles))
        .route("/roles/{role}", axum::routing::delete(delete_role))
        .route("/roles/{role}/permissions", get(permissions))
        .route(
            "/roles/{role}/permissions/{action}",
            put(set_permission).delete(revoke_permission),
        )
}
