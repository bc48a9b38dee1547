//! The console's mappings: listed by owner group or path prefix (filtered on the server, from the mapping
//! snapshot, a page at a time), created with the API's validation: a refused mapping is shown again in its
//! form with the reason beside it.

use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use heimdall_core::ErrorKind;
use heimdall_core::mapping::MappingRule;
use heimdall_core::model::MappingInput;
use serde::Deserialize;

use super::SignedIn;
use super::pages::{Frame, PAGE, csrf_refused, facade_error, render};
use crate::server::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console/mappings", get(mappings).post(create))
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

/// The create form's values, and why they were refused.
#[derive(Deserialize, Default)]
struct NewMapping {
    #[serde(default)]
    csrf: String,
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
}

#[derive(Template)]
#[template(path = "console/mappings.html")]
struct MappingsPage {
    frame: Frame,
    owner: String,
    path: String,
    rows: Vec<Row>,
    next: Option<i64>,
    form: NewMapping,
    refused: Option<String>,
}

async fn page(
    state: &AppState,
    user: &SignedIn,
    filter: Filter,
    form: NewMapping,
    refused: Option<(StatusCode, String)>,
) -> Response {
    let snapshot = match state.heimdall().refresh_mappings().await {
        Ok(s) => s,
        Err(_) => state.heimdall().mapping_snapshot(),
    };
    let after = filter.after.unwrap_or(i64::MIN);
    let mut matching: Vec<&MappingRule> = snapshot
        .rules()
        .iter()
        .filter(|r| r.id > after)
        .filter(|r| filter.owner.is_empty() || r.owner_group.as_ref().is_some_and(|g| g.as_str() == filter.owner))
        .filter(|r| r.pattern.as_str().starts_with(&filter.path))
        .collect();
    // The page: the lowest ids, in order (the rest only tells whether there is a next page).
    let limit = usize::try_from(PAGE).unwrap_or(50);
    if matching.len() > limit {
        matching.select_nth_unstable_by_key(limit, |r| r.id);
    }
    let next = (matching.len() > limit).then_some(());
    matching.truncate(limit);
    matching.sort_unstable_by_key(|r| r.id);
    let next = next.and_then(|()| matching.last().map(|r| r.id));
    let rows: Vec<Row> = matching
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
    let (status, refused) = match refused {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    render(
        status,
        &MappingsPage {
            frame: Frame::from(user),
            owner: filter.owner,
            path: filter.path,
            rows,
            next,
            form,
            refused,
        },
    )
}

async fn mappings(State(state): State<AppState>, user: SignedIn, Query(filter): Query<Filter>) -> Response {
    page(&state, &user, filter, NewMapping::default(), None).await
}

async fn create(State(state): State<AppState>, user: SignedIn, Form(form): Form<NewMapping>) -> Response {
    if !user.csrf_ok(&form.csrf) {
        return csrf_refused();
    }
    let Ok(priority) = (if form.priority.is_empty() {
        Ok(0)
    } else {
        form.priority.trim().parse::<i32>()
    }) else {
        let message = "priority: a whole number, such as 0 or 10".to_owned();
        return page(
            &state,
            &user,
            Filter::default(),
            form,
            Some((StatusCode::BAD_REQUEST, message)),
        )
        .await;
    };
    let input = MappingInput {
        method: form.method.clone(),
        path_pattern: form.path_pattern.clone(),
        action: form.action.clone(),
        owner_group: Some(form.owner_group.clone()).filter(|g| !g.is_empty()),
        priority,
        description: None,
    };
    match state.heimdall().create_mapping(&user.caller, &input).await {
        Ok(m) => Redirect::to(&format!(
            "/console/mappings?path={}",
            urlencode(&m.path_pattern.to_string())
        ))
        .into_response(),
        // Input the API refuses is shown again in its form, with the reason beside it.
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Conflict) => {
            let status = if e.kind() == ErrorKind::Conflict {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            page(
                &state,
                &user,
                Filter::default(),
                form,
                Some((status, e.message().to_owned())),
            )
            .await
        }
        Err(e) => facade_error(&e),
    }
}

/// `s` as a query value.
fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|q| q.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}
