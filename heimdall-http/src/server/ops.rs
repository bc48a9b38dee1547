//! Operations: `/healthz`, `/readyz`, `/version`, `/metrics`; and the admin endpoints about Heimdall
//! itself: `/api/v1/audit` and `/api/v1/reconcile/push-to-cerbos`.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use heimdall_core::model::{AuditQuery, AuditRecord};
use heimdall_core::sync::{PushWorker, SyncConfig};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::User;
use super::error::{ApiError, ErrorBody, Json, Query};

/// The W3C trace context of a request: taken from its `traceparent` header when it has a valid one, else
/// new. The ids go on the request's log line, so a request can be followed across services.
pub(super) struct TraceIds {
    pub(super) trace_id: String,
    pub(super) span_id: String,
    /// The caller's span, from a valid `traceparent`.
    pub(super) parent_span_id: Option<String>,
}

impl TraceIds {
    pub(super) fn from_request(request: &Request) -> Self {
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && s.bytes().any(|b| b != b'0')
        };
        let parent = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let mut parts = v.split('-');
                let (_version, trace, parent) = (parts.next()?, parts.next()?, parts.next()?);
                (hex(trace, 32) && hex(parent, 16)).then(|| (trace.to_owned(), parent.to_owned()))
            });
        let span = uuid_like();
        match parent {
            Some((trace_id, parent)) => TraceIds {
                trace_id,
                span_id: span[..16].to_owned(),
                parent_span_id: Some(parent),
            },
            None => TraceIds {
                trace_id: uuid_like(),
                span_id: span[..16].to_owned(),
                parent_span_id: None,
            },
        }
    }
}

/// 32 random lowercase hex digits.
fn uuid_like() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the process answers.
    pub status: &'static str,
}

/// The process is up (it checks nothing else).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness, with each dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `ok`, or why not.
    pub database: String,
    /// `ok`, why not, or `not_configured` (the built-in PDP decides).
    pub cerbos: String,
    /// The mapping snapshot's version.
    pub mapping_version: i64,
    /// Seconds since the snapshot was last confirmed against the database.
    pub snapshot_age_seconds: f64,
}

/// Ready to serve: the database answers, and so does Cerbos when one is configured.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is down", body = Readiness),
    ))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let limit = Duration::from_secs(2);
    let database = match tokio::time::timeout(limit, state.heimdall().ping_database()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("unavailable: {}", e.kind()),
        Err(_) => "unavailable: timed out".to_owned(),
    };
    let cerbos = match &state.inner.cerbos {
        None => "not_configured".to_owned(),
        Some(c) => match tokio::time::timeout(limit, c.health()).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(e)) => format!("unavailable: {}", e.kind()),
            Err(_) => "unavailable: timed out".to_owned(),
        },
    };
    let ready = database == "ok" && (cerbos == "ok" || cerbos == "not_configured");
    let snapshot = state.heimdall().mapping_snapshot_status();
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        database,
        cerbos,
        mapping_version: snapshot.version,
        snapshot_age_seconds: snapshot.age.as_secs_f64(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// What is running.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    /// `heimdall`.
    pub name: &'static str,
    /// The release.
    pub version: &'static str,
    /// `postgres` or `sqlite`.
    pub database: &'static str,
    /// `cerbos` or `builtin`.
    pub pdp: &'static str,
}

/// The running release and what it runs on.
#[utoipa::path(get, path = "/version", tag = "operations",
    responses((status = 200, description = "The release", body = VersionInfo)))]
async fn version(State(state): State<AppState>) -> Json<VersionInfo> {
    Json(VersionInfo {
        name: "heimdall",
        version: env!("CARGO_PKG_VERSION"),
        database: state.heimdall().backend(),
        pdp: if state.inner.cerbos.is_some() {
            "cerbos"
        } else {
            "builtin"
        },
    })
}

/// Prometheus metrics (text format). Gauges about the outbox, the snapshot and the identity provider are
/// measured when scraped.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 503, description = "The database could not be asked for the outbox figures", body = ErrorBody),
        (status = 404, description = "Metrics are off in this server", body = ErrorBody),
    ))]
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(handle) = &state.inner.metrics else {
        return Err(ApiError::not_found("metrics are not enabled in this server"));
    };
    let stats = state.heimdall().outbox_stats().await?;
    metrics::gauge!("heimdall_outbox_pending").set(stats.pending as f64);
    metrics::gauge!("heimdall_outbox_failed").set(stats.failed as f64);
    metrics::gauge!("heimdall_outbox_retrying").set(stats.retrying as f64);
    metrics::gauge!("heimdall_outbox_lapsed_claims").set(stats.lapsed_claims as f64);
    let oldest = stats.oldest_pending.map_or(0.0, |t| {
        (state.heimdall().now() - t).num_milliseconds().max(0) as f64 / 1000.0
    });
    metrics::gauge!("heimdall_outbox_oldest_pending_age_seconds").set(oldest);
    let snapshot = state.heimdall().mapping_snapshot_status();
    metrics::gauge!("heimdall_mapping_snapshot_age_seconds").set(snapshot.age.as_secs_f64());
    metrics::gauge!("heimdall_mapping_snapshot_version").set(snapshot.version as f64);
    if let Some(verifier) = state.verifier() {
        let (ok, failed) = verifier.fetch_counts();
        metrics::gauge!("heimdall_jwks_fetches", "result" => "ok").set(ok as f64);
        metrics::gauge!("heimdall_jwks_fetches", "result" => "error").set(failed as f64);
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response())
}

/// Filters and paging of `GET /audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Only rows of this actor (a subject, `system:…` or `api_key:…`).
    pub actor: Option<String>,
    /// Only rows of this operation (`add_member`, …).
    pub operation: Option<String>,
    /// Only rows about this target id.
    pub target_id: Option<String>,
    /// Only rows that succeeded (`true`) or failed (`false`).
    pub success: Option<bool>,
    /// Only rows at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only rows before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Only rows with a smaller id (the last id of the previous page).
    pub before_id: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// One audit row.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditOut {
    /// Row id (pages go by it, newest first).
    pub id: i64,
    /// Who: a subject, `system:…`, `api_key:…` or `unauthenticated:<client address>`.
    pub actor: Option<String>,
    /// What.
    pub operation: String,
    /// On what kind of thing.
    pub target_type: String,
    /// On which.
    pub target_id: String,
    /// The request, as given (bounded).
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    /// The result: on failure, `outcome` is `denied`, `unauthenticated`, `invalid`, `not_found`, `conflict` or
    /// `error`; a row that stands for several failures of one actor (past its bound per minute) has
    /// `"coalesced": true`, their `count` and `last_at`.
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
    /// Whether it was done.
    pub success: bool,
    /// When.
    pub at: DateTime<Utc>,
}

impl From<AuditRecord> for AuditOut {
    fn from(r: AuditRecord) -> Self {
        AuditOut {
            id: r.id,
            actor: r.actor,
            operation: r.operation,
            target_type: r.target_type,
            target_id: r.target_id,
            request: r.request,
            result: r.result,
            success: r.success,
            at: r.at,
        }
    }
}

/// Audit rows, newest first (superadmins only).
#[utoipa::path(get, path = "/api/v1/audit", tag = "operations", security(("bearer" = [])),
    params(AuditFilter),
    responses(
        (status = 200, description = "The rows", body = Vec<AuditOut>),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
    ))]
async fn audit(
    State(state): State<AppState>,
    User(caller): User,
    Query(f): Query<AuditFilter>,
) -> Result<Json<Vec<AuditOut>>, ApiError> {
    let query = AuditQuery {
        actor: f.actor,
        operation: f.operation,
        target_id: f.target_id,
        success: f.success,
        since: f.since,
        until: f.until,
        before_id: f.before_id,
        limit: f.limit,
    };
    let rows = state.heimdall().audit_log(&caller, &query).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// What a reconciliation found and what the push that followed did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileOut {
    /// Users whose policy was compared.
    pub users_checked: usize,
    /// Users queued for a push.
    pub to_push: usize,
    /// Policies queued for deletion.
    pub to_delete: usize,
    /// Policy ids held by policies Heimdall did not write (left alone).
    pub foreign: usize,
    /// Heimdall policies naming no valid subject (left alone).
    pub failed: usize,
    /// Policies pushed.
    pub pushed: usize,
    /// Policies deleted.
    pub deleted: usize,
    /// Pushes that failed and will be retried.
    pub retrying: usize,
    /// Pushes Cerbos rejected.
    pub rejected: usize,
}

/// Compares Cerbos with the database, and pushes what differs now (superadmins only).
#[utoipa::path(post, path = "/api/v1/reconcile/push-to-cerbos", tag = "operations", security(("bearer" = [])),
    responses(
        (status = 200, description = "Done", body = ReconcileOut),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 409, description = "No Cerbos Admin API is configured", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
        (status = 503, description = "Cerbos or the database is unavailable", body = ErrorBody),
    ))]
async fn reconcile(State(state): State<AppState>, User(caller): User) -> Result<Json<ReconcileOut>, ApiError> {
    super::note("reconcile", "cerbos");
    let Some(admin) = state.inner.admin.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "no Cerbos Admin API is configured (CERBOS_ADMIN_URL): nothing to reconcile",
        ));
    };
    let r = state.heimdall().reconcile_as(&caller, admin.as_ref()).await?;
    for (what, n) in [
        ("to_push", r.to_push),
        ("to_delete", r.to_delete),
        ("foreign", r.foreign),
    ] {
        metrics::counter!("heimdall_reconcile_items_total", "kind" => what).increment(n as u64);
    }
    let worker = PushWorker::new(state.heimdall().clone(), admin, SyncConfig::default());
    let p = worker.push_due().await?;
    Ok(Json(ReconcileOut {
        users_checked: r.users_checked,
        to_push: r.to_push,
        to_delete: r.to_delete,
        foreign: r.foreign,
        failed: r.failed,
        pushed: p.pushed,
        deleted: p.deleted,
        retrying: p.retrying,
        rejected: p.rejected,
    }))
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz, version, metrics, audit, reconcile))]
pub(super) struct Api;

pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
}

pub(super) fn api_routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/audit", get(audit))
        .route("/reconcile/push-to-cerbos", post(reconcile))
}
