//! `/mappings`: endpoint → action mappings, and the adapter's lookup (spec §6).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use heimdall_core::model::{Mapping, MappingInput};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Reader, User};
use super::error::{ApiError, ErrorBody, Json, Path, Query};

/// A mapping.
#[derive(Debug, Serialize, ToSchema)]
pub struct MappingOut {
    /// Database id.
    pub id: i64,
    /// HTTP method, or `ANY`.
    pub method: String,
    /// The path pattern: a route pattern (`/courses/:id`, `/files/**`) or, after a leading `~`, a regular
    /// expression matched against the whole percent-encoded path.
    pub path_pattern: String,
    /// The action a matching request needs.
    pub action: String,
    /// The owning group (its managers may change the mapping inside their path scope).
    pub owner_group: Option<String>,
    /// Order among regular-expression mappings that match a request: the lower priority wins, then the
    /// lower id.
    pub priority: i32,
    /// Free text.
    pub description: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<Mapping> for MappingOut {
    fn from(m: Mapping) -> Self {
        MappingOut {
            id: m.id,
            method: m.method.as_str().to_owned(),
            path_pattern: m.path_pattern.as_str().to_owned(),
            action: m.action.as_str().to_owned(),
            owner_group: m.owner_group.map(|g| g.as_str().to_owned()),
            priority: m.priority,
            description: m.description,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A mapping to create, or to replace one with.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingIn {
    /// GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or ANY.
    pub method: String,
    /// A route pattern: literal segments (percent-encoded as a canonical path is), `:name` or `*` (one
    /// segment), `**` (the rest of the path, last only) — `/courses/:id`, `/files/**`, `/a/*/b`; or a regular
    /// expression written with a leading `~` (`~/courses/[0-9]+/admin`: the `regex` crate's syntax, matched
    /// against the whole path as received, still percent-encoded; superadmins only).
    pub path_pattern: String,
    /// The action, such as `course:create`.
    pub action: String,
    /// The owning group.
    #[serde(default)]
    pub owner_group: Option<String>,
    /// Order among regular-expression mappings that match a request: the lower priority wins, then the
    /// lower id (route patterns always come first; superadmins only when not 0).
    #[serde(default)]
    pub priority: i32,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

impl From<MappingIn> for MappingInput {
    fn from(m: MappingIn) -> Self {
        MappingInput {
            method: m.method,
            path_pattern: m.path_pattern,
            action: m.action,
            owner_group: m.owner_group,
            priority: m.priority,
            description: m.description,
        }
    }
}

/// The lookup (with `path`) or the listing (without).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MappingQuery {
    /// Lookup: the request's path as received (percent-encoded again as a query value); the answer is the
    /// mapping it resolves to. Without `path`, the mappings are listed.
    pub path: Option<String>,
    /// Lookup: the request's method, exactly as received (required with `path`; `get` is refused: methods are
    /// case-sensitive upper-case tokens).
    pub method: Option<String>,
    /// Listing: the `next` of the previous page.
    pub after: Option<i64>,
    /// Listing: page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// What a request resolves to (the adapter contract).
#[derive(Debug, Serialize, ToSchema)]
pub struct MappingMatch {
    /// The mapping's id.
    pub mapping_id: i64,
    /// The action the request needs.
    pub action: String,
    /// The pattern that matched.
    pub path_pattern: String,
    /// The mapping's owner.
    pub owner_group: Option<String>,
    /// What the pattern's `:name` segments captured.
    pub params: BTreeMap<String, String>,
}

/// One page of mappings.
#[derive(Debug, Serialize, ToSchema)]
pub struct MappingPage {
    /// The mappings, by id.
    pub items: Vec<MappingOut>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// A lookup's answer or a page of the listing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MappingsAnswer {
    /// With `path`: what the request resolves to.
    Match(MappingMatch),
    /// Without `path`: one page of mappings.
    Page(MappingPage),
}

/// With `path` and `method`: the mapping a request resolves to (404 when none does; 400 for a path that is not
/// canonical or a method that is not an upper-case token, such as `get` — such a request must be refused,
/// never rewritten). Without `path`: every mapping, by id.
/// Accepts a user token, the static API token or an API key with `mappings:read`.
#[utoipa::path(get, path = "/api/v1/mappings", tag = "mappings", security(("bearer" = [])),
    params(MappingQuery),
    responses(
        (status = 200, description = "The match (lookup) or one page (listing)", body = MappingsAnswer),
        (status = 400, description = "A path that is not canonical, a method that is not an upper-case token, or a missing method", body = ErrorBody),
        (status = 401, description = "No or bad credential", body = ErrorBody),
        (status = 403, description = "The API key lacks mappings:read", body = ErrorBody),
        (status = 404, description = "No mapping applies", body = ErrorBody),
    ))]
async fn lookup_or_list(
    State(state): State<AppState>,
    reader: Reader,
    Query(q): Query<MappingQuery>,
) -> Result<Json<MappingsAnswer>, ApiError> {
    let Some(path) = q.path else {
        if q.method.is_some() {
            return Err(ApiError::invalid("method is only for a lookup: give path too"));
        }
        reader.note_use(&state, "mappings_list", "mappings").await;
        let page = state.heimdall().list_mappings(q.after, q.limit).await?;
        return Ok(Json(MappingsAnswer::Page(MappingPage {
            items: page.items.into_iter().map(Into::into).collect(),
            next: page.next,
        })));
    };
    let Some(method) = q.method else {
        return Err(ApiError::invalid("a lookup needs both path and method"));
    };
    if q.after.is_some() || q.limit.is_some() {
        return Err(ApiError::invalid(
            "after and limit are only for the listing (without path)",
        ));
    }
    reader.note_use(&state, "mappings_lookup", "mappings").await;
    let Some(m) = state.heimdall().resolve(&method, &path).await? else {
        return Err(ApiError::not_found("no mapping applies to this method and path"));
    };
    Ok(Json(MappingsAnswer::Match(MappingMatch {
        mapping_id: m.mapping_id,
        action: m.action.as_str().to_owned(),
        path_pattern: m.path_pattern,
        owner_group: m.owner_group.map(|g| g.as_str().to_owned()),
        params: m.params.into_iter().collect(),
    })))
}

/// Creates a mapping. A mapping that matches exactly the requests of an existing one is a conflict (409).
#[utoipa::path(post, path = "/api/v1/mappings", tag = "mappings", security(("bearer" = [])),
    request_body = MappingIn,
    responses(
        (status = 201, description = "Created", body = MappingOut),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such owner group", body = ErrorBody),
        (status = 409, description = "An equivalent mapping exists", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    User(caller): User,
    Json(body): Json<MappingIn>,
) -> Result<Response, ApiError> {
    super::note("create", &body.path_pattern);
    let m = state.heimdall().create_mapping(&caller, &body.into()).await?;
    Ok((StatusCode::CREATED, Json(MappingOut::from(m))).into_response())
}

/// One mapping.
#[utoipa::path(get, path = "/api/v1/mappings/{id}", tag = "mappings", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The mapping's id")),
    responses(
        (status = 200, description = "The mapping", body = MappingOut),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or bad credential", body = ErrorBody),
        (status = 403, description = "The API key lacks mappings:read", body = ErrorBody),
        (status = 404, description = "No such mapping", body = ErrorBody),
    ))]
async fn get_one(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<i64>,
) -> Result<Json<MappingOut>, ApiError> {
    reader.note_use(&state, "mappings_get", "mappings").await;
    Ok(Json(state.heimdall().get_mapping(id).await?.into()))
}

/// Replaces a mapping.
#[utoipa::path(put, path = "/api/v1/mappings/{id}", tag = "mappings", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The mapping's id")),
    request_body = MappingIn,
    responses(
        (status = 200, description = "Replaced", body = MappingOut),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such mapping or owner group", body = ErrorBody),
        (status = 409, description = "An equivalent mapping exists", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn update(
    State(state): State<AppState>,
    User(caller): User,
    Path(id): Path<i64>,
    Json(body): Json<MappingIn>,
) -> Result<Json<MappingOut>, ApiError> {
    super::note("update", &id.to_string());
    Ok(Json(
        state.heimdall().update_mapping(&caller, id, &body.into()).await?.into(),
    ))
}

/// Deletes a mapping.
#[utoipa::path(delete, path = "/api/v1/mappings/{id}", tag = "mappings", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The mapping's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such mapping", body = ErrorBody),
        (status = 429, description = "Too many changes", body = ErrorBody),
    ))]
async fn remove(
    State(state): State<AppState>,
    User(caller): User,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    super::note("remove", &id.to_string());
    state.heimdall().delete_mapping(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(lookup_or_list, create, get_one, update, remove))]
pub(super) struct Api;

pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/mappings", get(lookup_or_list).post(create))
        .route("/mappings/{id}", get(get_one).put(update).delete(remove))
}
