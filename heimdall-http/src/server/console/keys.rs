//! The console's API keys (create with scopes — the secret shown once, in the answer to the creation and
//! never again —, revoke) and the audit log (filtered by actor, operation, target, outcome and time, newest
//! first, a page at a time).

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDateTime, Utc};
use heimdall_core::model::{ApiKeyScope, AuditQuery};
use serde::Deserialize;

use super::pages::{Frame, PAGE, after_change, error_page, facade_error, render};
use super::{Posted, SignedIn};
use crate::server::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/api-keys", get(keys).post(create))
        .route("/console/api-keys/revoke", post(revoke))
        .route("/console/audit", get(audit))
}

/// One key, as a row.
struct KeyRow {
    id: i64,
    name: String,
    scopes: String,
    created_by: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
struct KeysPage {
    frame: Frame,
    keys: Vec<KeyRow>,
    /// The new key's name and secret, right after its creation (the only time it is shown).
    created: Option<(String, String)>,
    /// Every scope a key may have.
    all_scopes: Vec<&'static str>,
}

async fn keys_page(state: &AppState, user: &SignedIn, created: Option<(String, String)>) -> Response {
    match state.heimdall().list_api_keys(&user.caller).await {
        Ok(keys) => render(
            if created.is_some() {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            &KeysPage {
                frame: Frame::from(user),
                keys: keys
                    .into_iter()
                    .map(|k| KeyRow {
                        id: k.id,
                        name: k.name.to_string(),
                        scopes: k.scopes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                        created_by: k.created_by.map(|s| s.to_string()).unwrap_or_default(),
                        revoked: k.revoked_at.is_some(),
                    })
                    .collect(),
                created,
                all_scopes: ApiKeyScope::ALL.iter().map(|s| s.as_str()).collect(),
            },
        ),
        Err(e) => facade_error(&e),
    }
}

async fn keys(State(state): State<AppState>, user: SignedIn) -> Response {
    if let Some(refused) = user.refusal_unless_superadmin("API keys") {
        return refused;
    }
    keys_page(&state, &user, None).await
}

/// The create form: a name and the scopes ticked (`scope` repeated).
async fn create(State(state): State<AppState>, Posted { user, form }: Posted<Vec<(String, String)>>) -> Response {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let scopes: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    match state
        .heimdall()
        .create_api_key(&user.caller, field("name"), &scopes)
        .await
    {
        // The secret is in this answer only: the page is not cached (`no-store`) and nothing stores it.
        Ok(new) => keys_page(&state, &user, Some((new.key.name.to_string(), new.secret))).await,
        Err(e) => facade_error(&e),
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    id: i64,
}

async fn revoke(State(state): State<AppState>, Posted { user, form }: Posted<RevokeForm>) -> Response {
    after_change(
        state.heimdall().revoke_api_key(&user.caller, form.id).await,
        "/console/api-keys",
    )
}

#[derive(Deserialize)]
struct AuditFilter {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    target: String,
    /// `success`, `failure`, or empty for both.
    #[serde(default)]
    outcome: String,
    /// From this time on (UTC, as a `datetime-local` field sends it), and before that one.
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    before: Option<i64>,
}

/// A `datetime-local` field's value (`2026-12-07T21:30`, seconds optional) read as UTC; empty: none.
fn utc_time(field: &str, value: &str) -> Result<Option<DateTime<Utc>>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .into_iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| format!("{field}: a date and time such as 2026-12-07T21:30 (UTC)"))
}

/// One audit row.
struct AuditRow {
    id: i64,
    at: String,
    actor: String,
    operation: String,
    target: String,
    outcome: &'static str,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    frame: Frame,
    actor: String,
    operation: String,
    target: String,
    outcome: String,
    since: String,
    until: String,
    rows: Vec<AuditRow>,
    next: Option<i64>,
}

async fn audit(State(state): State<AppState>, user: SignedIn, Query(f): Query<AuditFilter>) -> Response {
    if let Some(refused) = user.refusal_unless_superadmin("the audit log") {
        return refused;
    }
    let some = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    let success = match f.outcome.as_str() {
        "" => None,
        "success" => Some(true),
        "failure" => Some(false),
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "outcome: success, failure, or empty for both",
                Some(("/console/audit", "The audit log")),
            );
        }
    };
    let (since, until) = match (utc_time("since", &f.since), utc_time("until", &f.until)) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(why), _) | (_, Err(why)) => {
            return error_page(StatusCode::BAD_REQUEST, &why, Some(("/console/audit", "The audit log")));
        }
    };
    let query = AuditQuery {
        actor: some(&f.actor),
        operation: some(&f.operation),
        target_id: some(&f.target),
        success,
        since,
        until,
        before_id: f.before,
        limit: Some(PAGE),
    };
    match state.heimdall().audit_log(&user.caller, &query).await {
        Ok(records) => {
            let full = records.len() >= usize::try_from(PAGE).unwrap_or(50);
            let rows: Vec<AuditRow> = records
                .into_iter()
                .map(|r| AuditRow {
                    id: r.id,
                    at: r.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    actor: r.actor.unwrap_or_default(),
                    operation: r.operation,
                    target: r.target_id,
                    outcome: if r.success { "success" } else { "refused or failed" },
                })
                .collect();
            let next = if full { rows.last().map(|r| r.id) } else { None };
            render(
                StatusCode::OK,
                &AuditPage {
                    frame: Frame::from(&user),
                    actor: f.actor,
                    operation: f.operation,
                    target: f.target,
                    outcome: f.outcome,
                    since: f.since,
                    until: f.until,
                    rows,
                    next,
                },
            )
        }
        Err(e) => facade_error(&e),
    }
}
