//! The console's roles: the list, a role's permissions (grant, revoke), and a group's roles (assign, remove).

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::SignedIn;
use super::pages::{Frame, PAGE, csrf_refused, facade_error, group_url, render};
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

#[derive(Deserialize)]
struct NewRole {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

async fn create_role(State(state): State<AppState>, user: SignedIn, Form(form): Form<NewRole>) -> Response {
    if !user.csrf_ok(&form.csrf) {
        return csrf_refused();
    }
    let description = Some(form.description.as_str()).filter(|d| !d.is_empty());
    match state
        .heimdall()
        .create_role(&user.caller, &form.name, description)
        .await
    {
        Ok(role) => Redirect::to(&role_url(role.name.as_str())).into_response(),
        Err(e) => facade_error(&e),
    }
}

#[derive(Template)]
#[template(path = "console/role.html")]
struct RolePage {
    frame: Frame,
    name: String,
    permissions: Vec<(String, String)>,
}

async fn role(State(state): State<AppState>, user: SignedIn, Path(name): Path<String>) -> Response {
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
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    effect: String,
}

async fn grant(
    State(state): State<AppState>,
    user: SignedIn,
    Path(name): Path<String>,
    Form(form): Form<PermissionForm>,
) -> Response {
    if !user.csrf_ok(&form.csrf) {
        return csrf_refused();
    }
    let effect = if form.effect.is_empty() { "allow" } else { &form.effect };
    match state
        .heimdall()
        .grant_permission(&user.caller, &name, &form.action, effect)
        .await
    {
        Ok(()) => Redirect::to(&role_url(&name)).into_response(),
        Err(e) => facade_error(&e),
    }
}

async fn revoke(
    State(state): State<AppState>,
    user: SignedIn,
    Path(name): Path<String>,
    Form(form): Form<PermissionForm>,
) -> Response {
    if !user.csrf_ok(&form.csrf) {
        return csrf_refused();
    }
    match state
        .heimdall()
        .revoke_permission(&user.caller, &name, &form.action)
        .await
    {
        Ok(()) => Redirect::to(&role_url(&name)).into_response(),
        Err(e) => facade_error(&e),
    }
}

#[derive(Deserialize)]
struct RoleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
}

async fn assign(
    State(state): State<AppState>,
    user: SignedIn,
    Path(group): Path<String>,
    Form(form): Form<RoleForm>,
) -> Response {
    if !user.csrf_ok(&form.csrf) {
        return csrf_refused();
    }
    match state
        .heimdall()
        .assign_group_role(&user.caller, &group, &form.role)
        .await
    {
        Ok(_) => Redirect::to(&group_url(&group)).into_response(),
        Err(e) => facade_error(&e),
    }
}

async fn unassign(
    State(state): State<AppState>,
    user: SignedIn,
    Path(group): Path<String>,
    Form(form): Form<RoleForm>,
) -> Response {
    if !user.csrf_ok(&form.csrf) {
        return csrf_refused();
    }
    match state
        .heimdall()
        .remove_group_role(&user.caller, &group, &form.role)
        .await
    {
        Ok(()) => Redirect::to(&group_url(&group)).into_response(),
        Err(e) => facade_error(&e),
    }
}
