//! The console's roles: the list, a role's permissions (grant, revoke), and a group's roles (assign, remove).

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::pages::{Frame, NewNamed, PAGE, after_change, facade_error, group_url, render};
use super::{Posted, SignedIn};
use crate::server::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/roles", get(roles).post(create_role))
        .route("/console/roles/{name}", get(role))
        .route("/console/roles/{name}/permissions", post(grant))
        .route("/console/roles/{name}/permissions/revoke", post(revoke))
        .route("/console/groups/{name}/roles", post(assign))
        .route("/console/groups/{name}/roles/remove", post(unassign))
}

fn role_url(name: &str) -> String {
    format!("/console/roles/{name}")
}

#[derive(Deserialize)]
struct After {
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "console/roles.html")]
struct RolesPage {
    frame: Frame,
    roles: Vec<(String, String)>,
    next: Option<String>,
}

async fn roles(State(state): State<AppState>, user: SignedIn, Query(q): Query<After>) -> Response {
    if let Some(refused) = user.refusal_unless_superadmin("roles and their permissions") {
        return refused;
    }
    match state.heimdall().list_roles(q.after.as_deref(), Some(PAGE)).await {
        Ok(page) => render(
            StatusCode::OK,
            &RolesPage {
                frame: Frame::from(&user),
                roles: page
                    .items
                    .into_iter()
                    .map(|r| (r.name.to_string(), r.description.unwrap_or_default()))
                    .collect(),
                next: page.next,
            },
        ),
        Err(e) => facade_error(&e),
    }
}

async fn create_role(State(state): State<AppState>, Posted { user, form }: Posted<NewNamed>) -> Response {
    let created = state
        .heimdall()
        .create_role(&user.caller, &form.name, form.description())
        .await;
    after_change(created, &role_url(&form.name))
}

#[derive(Template)]
#[template(path = "console/role.html")]
struct RolePage {
    frame: Frame,
    name: String,
    permissions: Vec<(String, String)>,
}

async fn role(State(state): State<AppState>, user: SignedIn, Path(name): Path<String>) -> Response {
    if let Some(refused) = user.refusal_unless_superadmin("roles and their permissions") {
        return refused;
    }
    match state.heimdall().role_permissions(&name).await {
        Ok(permissions) => render(
            StatusCode::OK,
            &RolePage {
                frame: Frame::from(&user),
                name,
                permissions: permissions
                    .into_iter()
                    .map(|p| (p.action.to_string(), p.effect.as_str().to_owned()))
                    .collect(),
            },
        ),
        Err(e) => facade_error(&e),
    }
}

#[derive(Deserialize)]
struct PermissionForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    effect: String,
}

async fn grant(
    State(state): State<AppState>,

    Path(name): Path<String>,
    Posted { user, form }: Posted<PermissionForm>,
) -> Response {
    let effect = if form.effect.is_empty() { "allow" } else { &form.effect };
    after_change(
        state
            .heimdall()
            .grant_permission(&user.caller, &name, &form.action, effect)
            .await,
        &role_url(&name),
    )
}

async fn revoke(
    State(state): State<AppState>,

    Path(name): Path<String>,
    Posted { user, form }: Posted<PermissionForm>,
) -> Response {
    after_change(
        state
            .heimdall()
            .revoke_permission(&user.caller, &name, &form.action)
            .await,
        &role_url(&name),
    )
}

#[derive(Deserialize)]
struct RoleForm {
    #[serde(default)]
    role: String,
}

async fn assign(
    State(state): State<AppState>,

    Path(group): Path<String>,
    Posted { user, form }: Posted<RoleForm>,
) -> Response {
    after_change(
        state
            .heimdall()
            .assign_group_role(&user.caller, &group, &form.role)
            .await,
        &group_url(&group),
    )
}

async fn unassign(
    State(state): State<AppState>,

    Path(group): Path<String>,
    Posted { user, form }: Posted<RoleForm>,
) -> Response {
    after_change(
        state
            .heimdall()
            .remove_group_role(&user.caller, &group, &form.role)
            .await,
        &group_url(&group),
    )
}
