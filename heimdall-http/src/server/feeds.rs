//! What adapters read: the mapping export (with an `ETag`) and the change feed (Server-Sent Events).
//!
//! One background task per server compares the database's change version with what it last saw
//! (every [`ServerOptions::change_poll_interval`](super::ServerOptions)) and publishes the versions on a
//! `watch` channel; every feed subscriber gets the newest versions as they move. So a change made through
//! any replica reaches every subscriber within about one poll interval plus the network.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use futures_util::StreamExt as _;
use heimdall_core::Heimdall;
use heimdall_core::authorizer::{MappingDelta, MappingExport};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Reader;
use super::error::{ApiError, ErrorBody, Json, Query};

/// The versions adapters follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Versions {
    /// Grows with every change to mappings, memberships or grants.
    pub change_version: i64,
    /// The change version of the newest mapping change: the export's version.
    pub mapping_version: i64,
    /// The newest change version whose principal-policy changes (and every earlier one) the push worker has
    /// brought to Cerbos: a follower deciding with Cerbos drops decisions cached before it moved.
    pub pushed_version: i64,
}

/// Starts the task that follows the database's versions; it stops when every receiver is gone.
pub(super) async fn watch_versions(
    heimdall: Heimdall,
    every: Duration,
) -> heimdall_core::Result<watch::Receiver<Versions>> {
    let first = read_versions(&heimdall).await?;
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                break;
            }
            let seen = *tx.borrow();
            match heimdall.change_and_pushed_version().await {
                Ok((change, pushed)) if change == seen.change_version && pushed == seen.pushed_version => {}
                Ok(_) => match read_versions(&heimdall).await {
                    Ok(now) => {
                        tx.send_replace(now);
                    }
                    Err(e) => tracing::warn!(error = %e, "could not read the mapping version"),
                },
                Err(e) => tracing::warn!(error = %e, "could not read the change version"),
            }
        }
    });
    Ok(rx)
}

async fn read_versions(heimdall: &Heimdall) -> heimdall_core::Result<Versions> {
    let (change_version, pushed_version) = heimdall.change_and_pushed_version().await?;
    let mapping_version = heimdall.refresh_mappings().await?.version();
    Ok(Versions {
        change_version,
        mapping_version,
        pushed_version,
    })
}

fn etag(version: i64) -> String {
    format!("\"m{version}\"")
}

/// Every mapping with its version. Answers `304 Not Modified` when `If-None-Match` names the current version.
#[utoipa::path(
    get, path = "/api/v1/mappings/export", tag = "adapters",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every mapping", body = MappingExport,
            headers(("etag" = String, description = "The mapping version"))),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
        (status = 401, description = "No or bad credential", body = ErrorBody),
        (status = 403, description = "The API key lacks mappings:read", body = ErrorBody),
        (status = 503, description = "The database is unreachable", body = ErrorBody),
    )
)]
pub(super) async fn export(
    State(state): State<AppState>,
    reader: Reader,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    reader.note_use(&state, "mappings_export", "mappings").await;
    // Confirm against the database first, so that a replica never exports an older version than the feed
    // announced.
    let snapshot = state.heimdall().refresh_mappings().await?;
    let tag = etag(snapshot.version());
    if let Some(wanted) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok())
        && wanted.split(',').any(|t| t.trim() == tag || t.trim() == "*")
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().insert(header::ETAG, header_value(&tag));
        return Ok(response);
    }
    let mut response = Json(MappingExport::of(&snapshot)).into_response();
    response.headers_mut().insert(header::ETAG, header_value(&tag));
    Ok(response)
}

/// The version a follower holds, for `GET /api/v1/mappings/changes`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// The mapping version the follower holds (its export's or last delta's `version`).
    pub since: i64,
}

/// What changed in the mappings since the follower's version: the mappings created or changed (as they are
/// now), the ids deleted, the version reached and the checksum of the mappings there. A follower applies it
/// instead of loading the whole export (`404` when no delta leads from `since`: then it loads the export).
#[utoipa::path(
    get, path = "/api/v1/mappings/changes", tag = "adapters",
    security(("bearer" = [])),
    params(ChangesQuery),
    responses(
        (status = 200, description = "The changes since `since`", body = MappingDelta),
        (status = 400, description = "`since` missing or not a number", body = ErrorBody),
        (status = 401, description = "No or bad credential", body = ErrorBody),
        (status = 403, description = "The API key lacks mappings:read", body = ErrorBody),
        (status = 404, description = "No delta leads from `since` (a version newer than the server's): load the export", body = ErrorBody),
        (status = 503, description = "The database is unreachable", body = ErrorBody),
    )
)]
pub(super) async fn changes(
    State(state): State<AppState>,
    reader: Reader,
    Query(q): Query<ChangesQuery>,
) -> Result<Json<MappingDelta>, ApiError> {
    reader.note_use(&state, "mappings_changes", "mappings").await;
    match state.heimdall().mapping_delta(q.since).await? {
        Some(delta) => Ok(Json(delta)),
        None => Err(ApiError::not_found(format!(
            "no mapping delta leads from version {}: load /api/v1/mappings/export",
            q.since
        ))),
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// The change feed: a `versions` event at once, then one each time a version moves (keep-alive comments in
/// between). Subscribers reload the export when `mapping_version` moved.
///
/// A caller holds at most `max_streams_per_caller` streams (429 beyond), and each stream checks its
/// credential again every `stream_recheck_interval`: a revoked API key or an expired token ends it.
#[utoipa::path(
    get, path = "/api/v1/changes/stream", tag = "adapters",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A text/event-stream of `versions` events, each data a Versions object",
            content_type = "text/event-stream", body = Versions),
        (status = 503, description = "The database is unreachable", body = ErrorBody),
        (status = 401, description = "No or bad credential", body = ErrorBody),
        (status = 403, description = "The API key lacks mappings:read", body = ErrorBody),
        (status = 429, description = "Too many requests, or too many open streams, from this caller", body = ErrorBody),
    )
)]
pub(super) async fn stream(
    State(state): State<AppState>,
    reader: Reader,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let slot = state.stream_slot(&reader.actor())?;
    reader.note_use(&state, "changes_stream", "mappings").await;
    let token = super::auth::bearer_in(&headers)?.to_owned();
    let ended = {
        let state = state.clone();
        let closing = state.closing();
        let every = state.options().stream_recheck_interval;
        let revoked = async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if reader.still_holds(&state, &token).await == Some(false) {
                    tracing::info!(actor = %reader.actor(), "a change-feed stream's credential no longer holds: closing it");
                    break;
                }
            }
        };
        async move {
            tokio::select! {
                () = closing => {}
                () = revoked => {}
            }
        }
    };
    // The first event is read from the database now, so a new subscriber never starts from a version older
    // than an export it just made; then every newer version the watcher sees.
    let now = read_versions(state.heimdall()).await?;
    let newer = WatchStream::from_changes(state.versions())
        .filter(move |v| std::future::ready(v.change_version > now.change_version));
    let events = futures_util::stream::once(std::future::ready(now))
        .chain(newer)
        .take_until(ended)
        .map(move |v| {
            // The slot is freed when the stream ends.
            let _slot = &slot;
            Ok(Event::default()
                .event("versions")
                .id(v.change_version.to_string())
                .json_data(v)
                .unwrap_or_else(|_| Event::default().comment("unencodable")))
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The current versions, for a poller (the fallback to the stream).
#[utoipa::path(
    get, path = "/api/v1/changes/version", tag = "adapters",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The current versions", body = Versions),
        (status = 503, description = "The database is unreachable", body = ErrorBody),
        (status = 401, description = "No or bad credential", body = ErrorBody),
        (status = 403, description = "The API key lacks mappings:read", body = ErrorBody),
    )
)]
pub(super) async fn version(State(state): State<AppState>, reader: Reader) -> Result<Json<Versions>, ApiError> {
    reader.note_use(&state, "changes_version", "mappings").await;
    Ok(Json(read_versions(state.heimdall()).await?))
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(export, changes, stream, version, grants, subject_grants, grants_changes))]
pub(super) struct Api;

/// Every subject's effective permissions (what the pushed principal policies say) at one change version:
/// what an adapter deciding locally loads. Takes an API key with `grants:read` or the static API token.
#[utoipa::path(
    get, path = "/api/v1/grants/export", tag = "adapters",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every subject's permissions", body = heimdall_core::authorizer::GrantsSnapshot),
        (status = 401, description = "No or bad credential", body = ErrorBody),
        (status = 403, description = "The API key lacks grants:read", body = ErrorBody),
        (status = 503, description = "The database is unreachable", body = ErrorBody),
    )
)]
pub(super) async fn grants(
    State(state): State<AppState>,
    _reader: super::auth::GrantsReader,
) -> Result<Json<heimdall_core::authorizer::GrantsSnapshot>, ApiError> {
    Ok(Json(state.heimdall().grants_snapshot().await?))
}

/// The subject whose grants a follower fetches, for `GET /api/v1/grants`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SubjectQuery {
    /// The subject (the token's `sub`).
    pub subject: String,
}

/// One subject's effective permissions at one change version: what a follower holding grants on demand fetches
/// on the subject's first use (none for a subject Heimdall does not know). Takes `grants:read`.
#[utoipa::path(
    get, path = "/api/v1/grants", tag = "adapters",
    security(("bearer" = [])),
    params(SubjectQuery),
    responses(
        (status = 200, description = "The subject's permissions", body = heimdall_core::authorizer::SubjectGrants),
        (status = 400, description = "`subject` missing or not a subject", body = ErrorBody),
        (status = 401, description = "No or bad credential", body = ErrorBody),
        (status = 403, description = "The API key lacks grants:read", body = ErrorBody),
        (status = 503, description = "The database is unreachable", body = ErrorBody),
    )
)]
pub(super) async fn subject_grants(
    State(state): State<AppState>,
    _reader: super::auth::GrantsReader,
    Query(q): Query<SubjectQuery>,
) -> Result<Json<heimdall_core::authorizer::SubjectGrants>, ApiError> {
    let subject = heimdall_core::model::Subject::parse(q.subject)?;
    Ok(Json(state.heimdall().subject_grants(&subject).await?))
}

/// The change version a follower's grants are current at, for `GET /api/v1/grants/changes`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GrantsSinceQuery {
    /// The change version the follower's grants are current at (the last answer's `version`).
    pub since: i64,
}

/// The subjects whose grants changed after change version `since` (at most 10,000; past that `subjects` is
/// null and a follower drops every subject it holds). Takes `grants:read`.
#[utoipa::path(
    get, path = "/api/v1/grants/changes", tag = "adapters",
    security(("bearer" = [])),
    params(GrantsSinceQuery),
    responses(
        (status = 200, description = "The subjects whose grants changed", body = heimdall_core::authorizer::GrantsChanges),
        (status = 400, description = "`since` missing or not a number", body = ErrorBody),
        (status = 401, description = "No or bad credential", body = ErrorBody),
        (status = 403, description = "The API key lacks grants:read", body = ErrorBody),
        (status = 503, description = "The database is unreachable", body = ErrorBody),
    )
)]
pub(super) async fn grants_changes(
    State(state): State<AppState>,
    _reader: super::auth::GrantsReader,
    Query(q): Query<GrantsSinceQuery>,
) -> Result<Json<heimdall_core::authorizer::GrantsChanges>, ApiError> {
    Ok(Json(state.heimdall().grants_changes(q.since).await?))
}

pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/mappings/export", get(export))
        .route("/mappings/changes", get(changes))
        .route("/changes/stream", get(stream))
        .route("/changes/version", get(version))
        .route("/grants/export", get(grants))
        .route("/grants", get(subject_grants))
        .route("/grants/changes", get(grants_changes))
}
