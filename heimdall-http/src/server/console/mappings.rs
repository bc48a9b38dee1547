//! The console's mappings: those in the user's scope (a manager's: owned by his groups, inside his path
//! scope), listed by owner group or pattern prefix a page at a time (the facade's `find_mappings`); created,
//! edited and deleted with the API's validation. A refused mapping is shown again in its form with the
//! reason beside the field it is about, and a link to the mapping it conflicts with or would shadow.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use heimdall_core::model::{Mapping, MappingInput};
use heimdall_core::{Error, ErrorKind, MappingFilter};
use serde::Deserialize;

use super::SignedIn;
use super::pages::{Frame, PAGE, facade_error, refused_page, render};
use super::{Nothing, Posted, urlencode};
use crate::server::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/mappings", get(mappings).post(create))
        .route("/console/mappings/{id}", get(edit).post(update))
        .route("/console/mappings/{id}/delete", post(delete))
}

fn mapping_url(id: i64) -> String {
    format!("/console/mappings/{id}")
}

#[derive(Deserialize, Default)]
struct Filter {
    #[serde(default)]
    owner: String,
    #[serde(default)]
    path: String,
    after: Option<i64>,
}

/// One mapping, as a row.
struct Row {
    id: i64,
    method: String,
    pattern: String,
    action: String,
    owner: String,
    priority: i32,
}

/// A mapping form's values (create or edit).
#[derive(Deserialize, Default)]
struct MappingForm {
    #[serde(default)]
    method: String,
    #[serde(default)]
    path_pattern: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    owner_group: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    description: String,
}

impl From<Mapping> for MappingForm {
    fn from(m: Mapping) -> Self {
        MappingForm {
            method: m.method.to_string(),
            path_pattern: m.path_pattern.to_string(),
            action: m.action.to_string(),
            owner_group: m.owner_group.map(|g| g.to_string()).unwrap_or_default(),
            priority: m.priority.to_string(),
            description: m.description.unwrap_or_default(),
        }
    }
}

impl MappingForm {
    /// The facade's input, or why the priority is not a number.
    fn input(&self) -> Result<MappingInput, Refusal> {
        let priority = if self.priority.trim().is_empty() {
            0
        } else {
            self.priority.trim().parse::<i32>().map_err(|_| Refusal {
                status: StatusCode::BAD_REQUEST,
                field: "priority",
                message: "priority: a whole number, such as 0 or 10".to_owned(),
                mappings: Vec::new(),
            })?
        };
        Ok(MappingInput {
            method: self.method.clone(),
            path_pattern: self.path_pattern.clone(),
            action: self.action.clone(),
            owner_group: Some(self.owner_group.clone()).filter(|g| !g.is_empty()),
            priority,
            description: Some(self.description.clone()).filter(|d| !d.is_empty()),
        })
    }
}

/// Why a mapping form was refused: the status, the field it is about, the message, the mappings it names.
struct Refusal {
    status: StatusCode,
    field: &'static str,
    message: String,
    mappings: Vec<i64>,
}

impl Refusal {
    /// A facade refusal to show in the form: invalid input, a conflict, a forbidden shadow or scope. `None`
    /// for the errors that are no answer about the form (the database unreachable, ...).
    fn of(e: &Error) -> Option<Refusal> {
        let status = match e.kind() {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            _ => return None,
        };
        // A refusal about the mapping as a whole (its scope) stands beside its pattern.
        Some(Refusal {
            status,
            field: e.field().unwrap_or("path_pattern"),
            message: e.message().to_owned(),
            mappings: e.mappings().to_vec(),
        })
    }
}

#[derive(Template)]
#[template(path = "console/mappings.html")]
struct MappingsPage {
    frame: Frame,
    manager: bool,
    owner: String,
    path: String,
    rows: Vec<Row>,
    next: Option<String>,
    form: MappingForm,
    refused: Option<Refusal>,
}

async fn page(
    state: &AppState,
    user: &SignedIn,
    filter: Filter,
    form: MappingForm,
    refused: Option<Refusal>,
) -> Response {
    if let Some(refused) = user.refusal_unless_administering() {
        return refused;
    }
    let some = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    let wanted = MappingFilter {
        owner: some(&filter.owner),
        pattern_prefix: some(&filter.path),
        after: filter.after,
    };
    let found = match state.heimdall().find_mappings(&user.scope, &wanted, Some(PAGE)).await {
        Ok(page) => page,
        Err(e) => return facade_error(&e),
    };
    let rows: Vec<Row> = found
        .items
        .into_iter()
        .map(|r| Row {
            id: r.id,
            method: r.method.to_string(),
            pattern: r.pattern.to_string(),
            action: r.action.to_string(),
            owner: r.owner_group.as_ref().map(ToString::to_string).unwrap_or_default(),
            priority: r.priority,
        })
        .collect();
    render(
        refused.as_ref().map_or(StatusCode::OK, |r| r.status),
        &MappingsPage {
            frame: Frame::from(user),
            manager: !user.scope.is_superadmin(),
            owner: filter.owner,
            path: filter.path,
            rows,
            next: found.next,
            form,
            refused,
        },
    )
}

async fn mappings(State(state): State<AppState>, user: SignedIn, Query(filter): Query<Filter>) -> Response {
    page(&state, &user, filter, MappingForm::default(), None).await
}

async fn create(State(state): State<AppState>, Posted { user, form }: Posted<MappingForm>) -> Response {
    let input = match form.input() {
        Ok(input) => input,
        Err(refused) => return page(&state, &user, Filter::default(), form, Some(refused)).await,
    };
    match state.heimdall().create_mapping(&user.caller, &input).await {
        Ok(m) => Redirect::to(&format!(
            "/console/mappings?path={}",
            urlencode(&m.path_pattern.to_string())
        ))
        .into_response(),
        Err(e) => match Refusal::of(&e) {
            Some(refused) => page(&state, &user, Filter::default(), form, Some(refused)).await,
            None => facade_error(&e),
        },
    }
}

#[derive(Template)]
#[template(path = "console/mapping.html")]
struct MappingPage {
    frame: Frame,
    id: i64,
    form: MappingForm,
    refused: Option<Refusal>,
}

/// The edit page of mapping `id`, if it lies in the user's scope.
async fn edit_page(
    state: &AppState,
    user: &SignedIn,
    id: i64,
    form: Option<MappingForm>,
    refused: Option<Refusal>,
) -> Response {
    if let Some(refused) = user.refusal_unless_administering() {
        return refused;
    }
    let mapping = match state.heimdall().get_mapping(id).await {
        Ok(m) => m,
        Err(e) => return facade_error(&e),
    };
    if !user
        .scope
        .covers_mapping(mapping.owner_group.as_ref(), &mapping.path_pattern)
    {
        return refused_page(
            user,
            &format!(
                "Mapping {id} is not in your scope: it is not owned by a group you manage, inside the path scope \
                 of your right."
            ),
            ("/console/mappings", "Your mappings"),
        );
    }
    render(
        refused.as_ref().map_or(StatusCode::OK, |r| r.status),
        &MappingPage {
            frame: Frame::from(user),
            id,
            form: form.unwrap_or_else(|| MappingForm::from(mapping)),
            refused,
        },
    )
}

async fn edit(State(state): State<AppState>, user: SignedIn, Path(id): Path<i64>) -> Response {
    edit_page(&state, &user, id, None, None).await
}

async fn update(
    State(state): State<AppState>,

    Path(id): Path<i64>,
    Posted { user, form }: Posted<MappingForm>,
) -> Response {
    let input = match form.input() {
        Ok(input) => input,
        Err(refused) => return edit_page(&state, &user, id, Some(form), Some(refused)).await,
    };
    match state.heimdall().update_mapping(&user.caller, id, &input).await {
        Ok(_) => Redirect::to(&mapping_url(id)).into_response(),
        Err(e) => match Refusal::of(&e) {
            Some(refused) => edit_page(&state, &user, id, Some(form), Some(refused)).await,
            None => facade_error(&e),
        },
    }
}

async fn delete(State(state): State<AppState>, Path(id): Path<i64>, Posted { user, .. }: Posted<Nothing>) -> Response {
    match state.heimdall().delete_mapping(&user.caller, id).await {
        Ok(()) => Redirect::to("/console/mappings").into_response(),
        Err(e) => facade_error(&e),
    }
}
