//! One JSON error body for every failure, and the extractors that turn axum's rejections into it.
//!
//! Every error answer is `{"error": {"code": "...", "message": "..."}}`: `code` is stable and machine-readable
//! (see [`ErrorBody`]), `message` is for humans. A 5xx says only that something failed, with the request id
//! to look it up in the logs; the details stay in the logs.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use heimdall_core::ErrorKind;
use serde::Serialize;
use utoipa::ToSchema;

/// The error answer of every endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `invalid_input`, `unprocessable`, `unauthenticated`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `payload_too_large`, `unsupported_media_type`, `rate_limited`,
    /// `unavailable`, `timeout` or `internal`.
    pub code: &'static str,
    /// For humans.
    pub message: String,
}

/// An error answer: a status, a code, a message, and maybe a header (`WWW-Authenticate`, `Retry-After`).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    header: Option<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            header: None,
        }
    }

    /// 401: the credential is missing or was not accepted. Says which scheme to use, never why in detail
    /// beyond the message (which never holds the credential).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        ApiError {
            header: Some((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"heimdall\""),
            )),
            ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
        }
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 429, with the seconds to wait.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        ApiError {
            header: Some((header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)))),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this caller; retry after the time in Retry-After",
            )
        }
    }

    /// 429: the caller holds the most change-feed streams a caller may hold.
    pub fn too_many_streams(max: usize) -> Self {
        ApiError {
            header: Some((header::RETRY_AFTER, HeaderValue::from(1u64))),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("this caller holds {max} change-feed streams already, the most one caller may hold"),
            )
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<heimdall_core::Error> for ApiError {
    fn from(e: heimdall_core::Error) -> Self {
        let (status, code) = match e.kind() {
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            // Lost to concurrent writers more often than the facade retries: nothing changed, send it again.
            ErrorKind::Conflict if e.is_race() => (StatusCode::CONFLICT, "concurrent_change"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ErrorKind::Unauthenticated => return ApiError::unauthenticated(e.message()),
            ErrorKind::Unavailable => {
                tracing::warn!(error = %e, "a dependency is unavailable");
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a service Heimdall depends on is unavailable; try again later",
                );
            }
            _ => {
                tracing::error!(error = %e, "request failed");
                return ApiError::internal();
            }
        };
        ApiError::new(status, code, e.message())
    }
}

impl ApiError {
    /// 500, with nothing of the cause (that goes to the log).
    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details under this response's x-request-id",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some((name, value)) = self.header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let (status, code) = match &r {
            JsonRejection::MissingJsonContentType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            JsonRejection::JsonDataError(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            JsonRejection::BytesRejection(_) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            _ => (StatusCode::BAD_REQUEST, "invalid_input"),
        };
        ApiError::new(status, code, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::invalid(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::invalid(r.body_text())
    }
}

/// `axum::Json`, rejecting with the project's error body.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path`, rejecting with the project's error body.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query`, rejecting with the project's error body.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// The answer for a route that does not exist.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint; see /openapi.json")
}

/// The answer for a method the route does not take.
pub async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /openapi.json",
    )
}
