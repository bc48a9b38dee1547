//! The console's sync status (the outbox, pushes that failed for good, the mapping snapshot, Cerbos'
//! reachability, the last reconciliation; a reconcile button, which the facade allows superadmins only) and a
//! user's page (their groups and roles, as `GET /api/v1/users/{subject}` shows them, and the actions those
//! roles allow or deny, as a follower holds them).

use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use heimdall_core::model::AuditQuery;
use heimdall_core::sync::{PushWorker, SyncConfig};

use super::pages::{Frame, facade_error, render};
use super::{Nothing, Posted, SignedIn};
use crate::server::AppState;

/// How long the page waits for Cerbos' health check.
const CERBOS_HEALTH_WAIT: Duration = Duration::from_secs(2);

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/sync", get(sync))
        .route("/console/sync/reconcile", post(reconcile))
        .route("/console/me", get(me))
        .route("/console/users/{subject}", get(user))
}

#[derive(Template)]
#[template(path = "console/sync.html")]
struct SyncPage {
    frame: Frame,
    pending: i64,
    retrying: i64,
    failed: i64,
    lapsed: i64,
    oldest: String,
    failures: Vec<(String, String)>,
    mapping_version: i64,
    snapshot_age: String,
    cerbos: String,
    last_reconcile: String,
    admin_configured: bool,
    cerbos_configured: bool,
    report: Option<String>,
}

async fn sync_page(state: &AppState, user: &SignedIn, report: Option<String>) -> Response {
    let h = state.heimdall();
    let read = async { Ok::<_, heimdall_core::Error>((h.outbox_stats().await?, h.outbox_failures().await?)) };
    let (stats, failures) = match read.await {
        Ok(x) => x,
        Err(e) => return facade_error(&e),
    };
    let oldest = stats.oldest_pending.map_or_else(
        || "none pending".to_owned(),
        |t| format!("{} s", (h.now() - t).num_seconds().max(0)),
    );
    let snapshot = h.mapping_snapshot_status();
    let cerbos = match &state.inner.cerbos {
        None => "not configured (the built-in PDP decides)".to_owned(),
        Some(c) => match tokio::time::timeout(CERBOS_HEALTH_WAIT, c.health()).await {
            Ok(Ok(())) => "reachable".to_owned(),
            Ok(Err(e)) => format!("unreachable: {}", e.message()),
            Err(_) => format!("no answer within {} s", CERBOS_HEALTH_WAIT.as_secs()),
        },
    };
    // The audit log is for those the facade lets read it; others see that they may not.
    let last = h
        .audit_log(
            &user.caller,
            &AuditQuery {
                operation: Some("reconcile".to_owned()),
                limit: Some(1),
                ..AuditQuery::default()
            },
        )
        .await;
    let last_reconcile = match last {
        Ok(rows) => rows.first().map_or_else(
            || "never asked through Heimdall".to_owned(),
            |r| {
                let outcome = if r.success { "done" } else { "refused or failed" };
                format!(
                    "{} by {} ({outcome})",
                    r.at.format("%Y-%m-%d %H:%M:%S UTC"),
                    r.actor.as_deref().unwrap_or("?")
                )
            },
        ),
        Err(e) => format!("not shown: {}", e.message()),
    };
    render(
        StatusCode::OK,
        &SyncPage {
            frame: Frame::from(user),
            pending: stats.pending,
            retrying: stats.retrying,
            failed: stats.failed,
            lapsed: stats.lapsed_claims,
            oldest,
            failures,
            mapping_version: snapshot.version,
            snapshot_age: format!("{:.1} s", snapshot.age.as_secs_f64()),
            cerbos,
            last_reconcile,
            admin_configured: state.inner.admin.is_some(),
            cerbos_configured: state.inner.admin.is_some() || state.inner.cerbos.is_some(),
            report,
        },
    )
}

async fn sync(State(state): State<AppState>, user: SignedIn) -> Response {
    if let Some(refused) = user.refusal_unless_superadmin("sync status") {
        return refused;
    }
    sync_page(&state, &user, None).await
}

/// Reconciles (the facade allows superadmins only, and audits it) and pushes what it queued.
async fn reconcile(State(state): State<AppState>, Posted { user, .. }: Posted<Nothing>) -> Response {
    let Some(admin) = state.inner.admin.clone() else {
        return facade_error(&heimdall_core::Error::new(
            heimdall_core::ErrorKind::Conflict,
            "no Cerbos Admin API is configured (CERBOS_ADMIN_URL): nothing to reconcile",
        ));
    };
    let done = async {
        let r = state.heimdall().reconcile_as(&user.caller, admin.as_ref()).await?;
        let p = PushWorker::new(state.heimdall().clone(), admin, SyncConfig::default())
            .push_due()
            .await?;
        Ok::<_, heimdall_core::Error>(format!(
            "Reconciled: {} users checked, {} to push, {} to delete, {} foreign; pushed {}, deleted {}.",
            r.users_checked, r.to_push, r.to_delete, r.foreign, p.pushed, p.deleted
        ))
    };
    match done.await {
        Ok(report) => sync_page(&state, &user, Some(report)).await,
        Err(e) => facade_error(&e),
    }
}

async fn me(user: SignedIn) -> Response {
    Redirect::to(&format!("/console/users/{}", segment(user.caller.subject().as_str()))).into_response()
}

/// `s` as one path segment: every byte but the unreserved ones percent-encoded.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Template)]
#[template(path = "console/user.html")]
struct UserPage {
    frame: Frame,
    subject: String,
    name: String,
    groups: Vec<String>,
    roles: Vec<String>,
    /// The actions their roles allow or deny: (action, effect), by action (a deny beats any allow).
    actions: Vec<(String, String)>,
}

async fn user(State(state): State<AppState>, user: SignedIn, Path(subject): Path<String>) -> Response {
    if subject != user.caller.subject().as_str()
        && let Some(refused) = user.refusal_unless_superadmin("other users' access")
    {
        return refused;
    }
    let h = state.heimdall();
    let read = async {
        let details = h.get_user(&subject).await?;
        let grants = h.subject_grants(&details.user.subject).await?;
        Ok::<_, heimdall_core::Error>((details, grants))
    };
    match read.await {
        Ok((details, grants)) => {
            // One line an action: a deny from any role beats the allows of the others.
            let mut effects = std::collections::BTreeMap::new();
            for p in grants.permissions {
                let effect = effects.entry(p.action).or_insert_with(|| p.effect.clone());
                if p.effect == "deny" {
                    *effect = p.effect;
                }
            }
            let actions: Vec<(String, String)> = effects.into_iter().collect();
            render(
                StatusCode::OK,
                &UserPage {
                    frame: Frame::from(&user),
                    subject: details.user.subject.to_string(),
                    name: details.user.display_name.unwrap_or_default(),
                    groups: details.groups.iter().map(ToString::to_string).collect(),
                    roles: details.roles.iter().map(ToString::to_string).collect(),
                    actions,
                },
            )
        }
        Err(e) => facade_error(&e),
    }
}
