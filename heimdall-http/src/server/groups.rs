//! `/groups`, their members and roles, and `/management-rights` (who may manage which groups).
//!
//! Group names contain `:`; in a path they may be sent as is or percent-encoded (`go%3Aadmin`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use heimdall_core::model::{Group, ManagementRight, MembershipChange};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::User;
use super::error::{ApiError, ErrorBody, Json, Path, Query};
use super::roles::{RoleChange, RoleChanged};

/// A group.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupOut {
    /// Database id.
    pub id: i64,
    /// Name, such as `go:course:editor`.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<Group> for GroupOut {
    fn from(g: Group) -> Self {
        GroupOut {
            id: g.id,
            name: g.name.as_str().to_owned(),
            description: g.description,
            created_at: g.created_at,
        }
    }
}

/// A group to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// Segments of `A-Z a-z 0-9 _ . -` joined by `:`, at most 128 bytes.
    pub name: String,
    /// Free text, at most 1024 bytes.
    #[serde(default)]
    pub description: Option<String>,
}

/// One page of groups.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupPage {
    /// The groups, by name.
    pub items: Vec<GroupOut>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Filters and paging of `GET /groups`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GroupQuery {
    /// Only groups whose name starts with this (such as `go:`).
    pub prefix: Option<String>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// Paging of a member list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MemberQuery {
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// One page of members.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberPage {
    /// Subjects, in order.
    pub items: Vec<String>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Whom to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// The user's subject (created if not seen yet).
    pub subject: String,
}

/// What adding a member did.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberAdded {
    /// `member_added`, or `already_member`.
    pub status: &'static str,
    /// The group.
    pub group: String,
    /// The member.
    pub subject: String,
}

/// Creates a group.
#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", security(("bearer" = [])),
    request_body = NewGroup,
    responses(
        (status = 201, description = "Created", body = GroupOut),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 409, description = "A group of that name exists", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn create_group(
    State(state): State<AppState>,
    User(caller): User,
    Json(body): Json<NewGroup>,
) -> Result<(StatusCode, Json<GroupOut>), ApiError> {
    super::note("create_group", &body.name);
    let group = state
        .heimdall()
        .create_group(&caller, &body.name, body.description.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(group.into())))
}

/// Lists groups by name.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", security(("bearer" = [])),
    params(GroupQuery),
    responses(
        (status = 200, description = "One page", body = GroupPage),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
    ))]
async fn list_groups(
    State(state): State<AppState>,
    User(_): User,
    Query(q): Query<GroupQuery>,
) -> Result<Json<GroupPage>, ApiError> {
    let page = state
        .heimdall()
        .list_groups(q.prefix.as_deref(), q.after.as_deref(), q.limit)
        .await?;
    Ok(Json(GroupPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next: page.next,
    }))
}

/// One group.
#[utoipa::path(get, path = "/api/v1/groups/{group}", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path, description = "The group's name")),
    responses(
        (status = 200, description = "The group", body = GroupOut),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    ))]
async fn get_group(
    State(state): State<AppState>,
    User(_): User,
    Path(group): Path<String>,
) -> Result<Json<GroupOut>, ApiError> {
    Ok(Json(state.heimdall().get_group(&group).await?.into()))
}

/// Deletes a group with its memberships, roles and rights (not one that owns mappings: 409).
#[utoipa::path(delete, path = "/api/v1/groups/{group}", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path, description = "The group's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "The group owns mappings", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn delete_group(
    State(state): State<AppState>,
    User(caller): User,
    Path(group): Path<String>,
) -> Result<StatusCode, ApiError> {
    super::note("delete_group", &group);
    state.heimdall().delete_group(&caller, &group).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a member: 201 when added, 200 when the user was a member already.
#[utoipa::path(post, path = "/api/v1/groups/{group}/members", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path, description = "The group's name")),
    request_body = NewMember,
    responses(
        (status = 201, description = "Added", body = MemberAdded),
        (status = 200, description = "Already a member", body = MemberAdded),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn add_member(
    State(state): State<AppState>,
    User(caller): User,
    Path(group): Path<String>,
    Json(body): Json<NewMember>,
) -> Result<(StatusCode, Json<MemberAdded>), ApiError> {
    super::note("add_member", &group);
    let change = state.heimdall().add_member(&caller, &group, &body.subject).await?;
    let (status, word) = match change {
        MembershipChange::Added => (StatusCode::CREATED, "member_added"),
        MembershipChange::AlreadyMember => (StatusCode::OK, "already_member"),
    };
    Ok((
        status,
        Json(MemberAdded {
            status: word,
            group,
            subject: body.subject,
        }),
    ))
}

/// The members of a group.
#[utoipa::path(get, path = "/api/v1/groups/{group}/members", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path, description = "The group's name"), MemberQuery),
    responses(
        (status = 200, description = "One page of subjects", body = MemberPage),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    ))]
async fn list_members(
    State(state): State<AppState>,
    User(_): User,
    Path(group): Path<String>,
    Query(q): Query<MemberQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    let page = state
        .heimdall()
        .group_members(&group, q.after.as_deref(), q.limit)
        .await?;
    Ok(Json(MemberPage {
        items: page.items.iter().map(|s| s.as_str().to_owned()).collect(),
        next: page.next,
    }))
}

/// Removes a member.
#[utoipa::path(delete, path = "/api/v1/groups/{group}/members/{subject}", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path, description = "The group's name"), ("subject" = String, Path, description = "The member")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "Not a member", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn remove_member(
    State(state): State<AppState>,
    User(caller): User,
    Path((group, subject)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    super::note("remove_member", &group);
    state.heimdall().remove_member(&caller, &group, &subject).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The roles a group gives its members.
#[utoipa::path(get, path = "/api/v1/groups/{group}/roles", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path, description = "The group's name")),
    responses(
        (status = 200, description = "Role names", body = Vec<String>),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    ))]
async fn group_roles(
    State(state): State<AppState>,
    User(_): User,
    Path(group): Path<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    let roles = state.heimdall().group_roles(&group).await?;
    Ok(Json(roles.iter().map(|r| r.as_str().to_owned()).collect()))
}

/// Gives a group's members a role: 201 when assigned, 200 when the group had it already.
#[utoipa::path(post, path = "/api/v1/groups/{group}/roles", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path, description = "The group's name")),
    request_body = RoleChange,
    responses(
        (status = 201, description = "Assigned", body = RoleChanged),
        (status = 200, description = "The group had the role already", body = RoleChanged),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such group or role", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn assign_group_role(
    State(state): State<AppState>,
    User(caller): User,
    Path(group): Path<String>,
    Json(body): Json<RoleChange>,
) -> Result<(StatusCode, Json<RoleChanged>), ApiError> {
    super::note("assign_group_role", &group);
    let added = state.heimdall().assign_group_role(&caller, &group, &body.role).await?;
    Ok(RoleChanged::answer(added, "group", &group, &body.role))
}

/// Takes a role from a group.
#[utoipa::path(delete, path = "/api/v1/groups/{group}/roles/{role}", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path, description = "The group's name"), ("role" = String, Path, description = "The role")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "The group does not have the role", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn remove_group_role(
    State(state): State<AppState>,
    User(caller): User,
    Path((group, role)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    super::note("remove_group_role", &group);
    state.heimdall().remove_group_role(&caller, &group, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A management right.
#[derive(Debug, Serialize, ToSchema)]
pub struct RightOut {
    /// Database id.
    pub id: i64,
    /// Members of this group may manage…
    pub manager_group: String,
    /// …the groups matching this SQL `LIKE` pattern (`go:%`)…
    pub target_pattern: String,
    /// …and the route mappings those groups own inside this path scope (`/go/**`); none without one.
    pub path_scope: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<ManagementRight> for RightOut {
    fn from(r: ManagementRight) -> Self {
        RightOut {
            id: r.id,
            manager_group: r.manager_group.as_str().to_owned(),
            target_pattern: r.target_pattern.as_str().to_owned(),
            path_scope: r.path_scope.map(|s| s.as_str().to_owned()),
            created_at: r.created_at,
        }
    }
}

/// A management right to create (superadmins only).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRight {
    /// The managing group.
    pub manager_group: String,
    /// SQL `LIKE` pattern of the managed groups.
    pub target_pattern: String,
    /// Where the managed groups' mappings may lie, such as `/go/**`.
    #[serde(default)]
    pub path_scope: Option<String>,
}

/// Filter of `GET /management-rights`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RightQuery {
    /// Only the rights of this manager group.
    pub manager_group: Option<String>,
}

/// Creates a management right (superadmins only).
#[utoipa::path(post, path = "/api/v1/management-rights", tag = "groups", security(("bearer" = [])),
    request_body = NewRight,
    responses(
        (status = 201, description = "Created", body = RightOut),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such manager group", body = ErrorBody),
        (status = 409, description = "The right exists", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn create_right(
    State(state): State<AppState>,
    User(caller): User,
    Json(body): Json<NewRight>,
) -> Result<(StatusCode, Json<RightOut>), ApiError> {
    super::note("create_right", &body.manager_group);
    let right = state
        .heimdall()
        .create_management_right(
            &caller,
            &body.manager_group,
            &body.target_pattern,
            body.path_scope.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(right.into())))
}

/// Lists management rights.
#[utoipa::path(get, path = "/api/v1/management-rights", tag = "groups", security(("bearer" = [])),
    params(RightQuery),
    responses(
        (status = 200, description = "The rights", body = Vec<RightOut>),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
    ))]
async fn list_rights(
    State(state): State<AppState>,
    User(_): User,
    Query(q): Query<RightQuery>,
) -> Result<Json<Vec<RightOut>>, ApiError> {
    let rights = state
        .heimdall()
        .list_management_rights(q.manager_group.as_deref())
        .await?;
    Ok(Json(rights.into_iter().map(Into::into).collect()))
}

/// Deletes a management right (superadmins only).
#[utoipa::path(delete, path = "/api/v1/management-rights/{id}", tag = "groups", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The right's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such right", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn delete_right(
    State(state): State<AppState>,
    User(caller): User,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    super::note("delete_right", &id.to_string());
    state.heimdall().delete_management_right(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_group,
    list_groups,
    get_group,
    delete_group,
    add_member,
    list_members,
    remove_member,
    group_roles,
    assign_group_role,
    remove_group_role,
    create_right,
    list_rights,
    delete_right
))]
pub(super) struct Api;

pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/groups", post(create_group).get(list_groups))
        .route("/groups/{group}", get(get_group).delete(delete_group))
        .route("/groups/{group}/members", post(add_member).get(list_members))
        .route("/groups/{group}/members/{subject}", delete(remove_member))
        .route("/groups/{group}/roles", post(assign_group_role).get(group_roles))
        .route("/groups/{group}/roles/{role}", delete(remove_group_role))
        .route("/management-rights", post(create_right).get(list_rights))
        .route("/management-rights/{id}", delete(delete_right))
}
