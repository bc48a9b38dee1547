//! The console's pages: each handler calls the facade with the signed-in caller and renders a template; a
//! change is a form post that redirects back (post/redirect/get). Paging and filtering happen on the server.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use heimdall_core::model::{ExplainRequest, ManagementRight};
use heimdall_core::{Error, ErrorKind};
use serde::Deserialize;

use super::{Posted, SignedIn};
use crate::server::AppState;

/// Items on one page of a list.
pub(super) const PAGE: u32 = 50;

/// The stylesheet, the console's only static file.
const STYLESHEET: &str = include_str!("../../../templates/console/console.css");

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/groups", get(groups).post(create_group))
        .route("/console/groups/{name}", get(group))
        .route("/console/groups/{name}/members", post(add_member))
        .route("/console/groups/{name}/members/remove", post(remove_member))
        .route("/console/try", get(try_request))
}

pub(super) async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLESHEET).into_response()
}

/// What every page's frame shows: who is signed in, the pages their scope opens (the server refuses the
/// others; the menu only reflects that), and the form token for its sign-out button.
pub(super) struct Frame {
    pub(super) subject: String,
    pub(super) csrf: String,
    pub(super) superadmin: bool,
    pub(super) administers: bool,
}

impl From<&SignedIn> for Frame {
    fn from(user: &SignedIn) -> Self {
        Frame {
            subject: user.caller.subject().as_str().to_owned(),
            csrf: user.csrf.clone(),
            superadmin: user.scope.is_superadmin(),
            administers: user.scope.administers(),
        }
    }
}

pub(super) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console/signin.html")]
struct SignInPage;

pub(super) fn sign_in_page() -> Response {
    render(StatusCode::OK, &SignInPage)
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: u16,
    message: &'a str,
    link: Option<(&'a str, &'a str)>,
}

/// A page that says what went wrong, with a way on.
pub(super) fn error_page(status: StatusCode, message: &str, link: Option<(&str, &str)>) -> Response {
    render(
        status,
        &ErrorPage {
            status: status.as_u16(),
            message,
            link,
        },
    )
}

#[derive(Template)]
#[template(path = "console/refused.html")]
struct RefusedPage<'a> {
    frame: Frame,
    message: &'a str,
    link: (&'a str, &'a str),
}

/// A page the signed-in user's scope does not open (403), in the console's frame: the menu and sign-out
/// stay at hand.
pub(super) fn refused_page(user: &SignedIn, message: &str, link: (&str, &str)) -> Response {
    render(
        StatusCode::FORBIDDEN,
        &RefusedPage {
            frame: Frame::from(user),
            message,
            link,
        },
    )
}

/// The answer to a change without the session's CSRF token.
pub(super) fn csrf_refused() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "This form is not from this session (its CSRF token is missing or wrong): nothing was changed.",
        Some(("/console", "Back to the console")),
    )
}

/// A facade error as a page with the status the REST API would answer.
pub(super) fn facade_error(e: &Error) -> Response {
    let (status, message) = match e.kind() {
        ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, e.message().to_owned()),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, e.message().to_owned()),
        ErrorKind::Conflict => (StatusCode::CONFLICT, e.message().to_owned()),
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, format!("You may not do this: {}", e.message())),
        ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, e.message().to_owned()),
        ErrorKind::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "A service Heimdall depends on is unavailable; try again later.".to_owned(),
        ),
        _ => {
            tracing::error!(error = %e, "a console request failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong; the server's log has the details.".to_owned(),
            )
        }
    };
    error_page(status, &message, Some(("/console", "Back to the console")))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "console/groups.html")]
struct GroupsPage {
    frame: Frame,
    /// Only the groups the user manages are listed.
    manager: bool,
    prefix: String,
    groups: Vec<(String, String)>,
    next: Option<String>,
}

/// The groups the user administers (a manager's, those his rights cover), searched by prefix, a page at a time.
async fn groups(State(state): State<AppState>, user: SignedIn, Query(q): Query<ListQuery>) -> Response {
    if let Some(refused) = user.refusal_unless_administering() {
        return refused;
    }
    let prefix = Some(q.prefix.as_str()).filter(|p| !p.is_empty());
    match state
        .heimdall()
        .list_groups_in(&user.scope, prefix, q.after.as_deref(), Some(PAGE))
        .await
    {
        Ok(page) => render(
            StatusCode::OK,
            &GroupsPage {
                frame: Frame::from(&user),
                manager: !user.scope.is_superadmin(),
                prefix: q.prefix,
                groups: page
                    .items
                    .into_iter()
                    .map(|g| (g.name.as_str().to_owned(), g.description.unwrap_or_default()))
                    .collect(),
                next: page.next,
            },
        ),
        Err(e) => facade_error(&e),
    }
}

/// The form that creates a named thing (a group, a role).
#[derive(Deserialize)]
pub(super) struct NewNamed {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    description: String,
}

impl NewNamed {
    /// The description, unless left empty.
    pub(super) fn description(&self) -> Option<&str> {
        Some(self.description.as_str()).filter(|d| !d.is_empty())
    }
}

/// The answer to a change: back to `to` when it was made, else the facade's refusal as a page.
pub(super) fn after_change<T>(result: heimdall_core::Result<T>, to: &str) -> Response {
    match result {
        Ok(_) => Redirect::to(to).into_response(),
        Err(e) => facade_error(&e),
    }
}

async fn create_group(State(state): State<AppState>, Posted { user, form }: Posted<NewNamed>) -> Response {
    let created = state
        .heimdall()
        .create_group(&user.caller, &form.name, form.description())
        .await;
    after_change(created, &group_url(&form.name))
}

/// A group's page address (group names need no escaping in a path: see the name grammar).
pub(super) fn group_url(name: &str) -> String {
    format!("/console/groups/{name}")
}

#[derive(Deserialize)]
struct MembersQuery {
    after: Option<String>,
}

/// A management right as the group page lists it.
struct RightRow {
    manager_group: String,
    target_pattern: String,
    path_scope: String,
}

impl From<ManagementRight> for RightRow {
    fn from(r: ManagementRight) -> Self {
        RightRow {
            manager_group: r.manager_group.to_string(),
            target_pattern: r.target_pattern.to_string(),
            path_scope: r.path_scope.map(|s| s.to_string()).unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/group.html")]
struct GroupPage {
    frame: Frame,
    name: String,
    description: String,
    members: Vec<String>,
    next: Option<String>,
    roles: Vec<String>,
    /// The rights whose pattern covers this group: who manages it.
    managed_by: Vec<RightRow>,
    /// The rights this group's members hold: what they manage.
    holds: Vec<RightRow>,
}

/// A group the user administers: its members (a page at a time), its roles, and the management rights that
/// cover it or that it holds.
async fn group(
    State(state): State<AppState>,
    user: SignedIn,
    Path(name): Path<String>,
    Query(q): Query<MembersQuery>,
) -> Response {
    if let Some(refused) = user.refusal_unless_administering() {
        return refused;
    }
    let h = state.heimdall();
    let read = async {
        let group = h.get_group(&name).await?;
        if !user.scope.covers_group(&group.name) {
            return Ok(None);
        }
        let members = h.group_members(&name, q.after.as_deref(), Some(PAGE)).await?;
        let roles = h.group_roles(&name).await?;
        let rights = h.list_management_rights(None).await?;
        Ok::<_, Error>(Some((group, members, roles, rights)))
    };
    match read.await {
        Ok(None) => refused_page(
            &user,
            &format!("You do not manage group {name}: no management right of yours covers it."),
            ("/console/groups", "Your groups"),
        ),
        Ok(Some((group, members, roles, rights))) => render(
            StatusCode::OK,
            &GroupPage {
                frame: Frame::from(&user),
                description: group.description.unwrap_or_default(),
                members: members.items.into_iter().map(|s| s.as_str().to_owned()).collect(),
                next: members.next,
                roles: roles.into_iter().map(|r| r.as_str().to_owned()).collect(),
                holds: rights
                    .iter()
                    .filter(|r| r.manager_group == group.name)
                    .cloned()
                    .map(RightRow::from)
                    .collect(),
                managed_by: rights
                    .into_iter()
                    .filter(|r| r.target_pattern.matches(&group.name))
                    .map(RightRow::from)
                    .collect(),
                name: group.name.as_str().to_owned(),
            },
        ),
        Err(e) => facade_error(&e),
    }
}

#[derive(Deserialize)]
struct MemberForm {
    #[serde(default)]
    subject: String,
}

async fn add_member(
    State(state): State<AppState>,

    Path(name): Path<String>,
    Posted { user, form }: Posted<MemberForm>,
) -> Response {
    after_change(
        state.heimdall().add_member(&user.caller, &name, &form.subject).await,
        &group_url(&name),
    )
}

async fn remove_member(
    State(state): State<AppState>,

    Path(name): Path<String>,
    Posted { user, form }: Posted<MemberForm>,
) -> Response {
    after_change(
        state.heimdall().remove_member(&user.caller, &name, &form.subject).await,
        &group_url(&name),
    )
}

#[derive(Deserialize)]
struct TryQuery {
    #[serde(default)]
    method: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    subject: String,
}

/// One matching mapping, as the try page lists it.
struct Candidate {
    id: i64,
    method: String,
    pattern: String,
    action: String,
    decides: bool,
}

/// The explanation of a decision, as the try page shows it.
struct Explained {
    decision: String,
    reason: String,
    action: String,
    candidates: Vec<Candidate>,
    roles: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/try.html")]
struct TryPage {
    frame: Frame,
    method: String,
    path: String,
    subject: String,
    explained: Option<Explained>,
}

/// Try a request: the mapping it resolves to, the action, and why the subject is allowed or denied.
async fn try_request(State(state): State<AppState>, user: SignedIn, Query(q): Query<TryQuery>) -> Response {
    if let Some(refused) = user.refusal_unless_administering() {
        return refused;
    }
    let subject = if q.subject.is_empty() {
        user.caller.subject().as_str().to_owned()
    } else {
        q.subject.clone()
    };
    let explained = if q.path.is_empty() {
        None
    } else {
        let request = ExplainRequest {
            subject: subject.clone(),
            method: if q.method.is_empty() {
                "GET".to_owned()
            } else {
                q.method.clone()
            },
            path: q.path.clone(),
        };
        match state.heimdall().explain(&user.caller, &request).await {
            Ok(e) => Some(Explained {
                decision: serde_json::to_value(e.decision)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                reason: e.reason,
                action: e.action.unwrap_or_default(),
                candidates: e
                    .candidates
                    .into_iter()
                    .map(|c| Candidate {
                        decides: Some(c.mapping_id) == e.winner,
                        id: c.mapping_id,
                        method: c.method,
                        pattern: c.path_pattern,
                        action: c.action,
                    })
                    .collect(),
                roles: e
                    .roles
                    .into_iter()
                    .map(|r| match r.group {
                        Some(g) => format!("{} (through {g})", r.role),
                        None => format!("{} (held directly)", r.role),
                    })
                    .collect(),
            }),
            Err(e) => return facade_error(&e),
        }
    };
    render(
        StatusCode::OK,
        &TryPage {
            frame: Frame::from(&user),
            method: if q.method.is_empty() {
                "GET".to_owned()
            } else {
                q.method
            },
            path: q.path,
            subject,
            explained,
        },
    )
}
