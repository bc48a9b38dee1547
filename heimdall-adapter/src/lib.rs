//! heimdall-adapter: a tower Layer that authorizes every request to a Rust service in-process.
//!
//! The per-request logic is core's [`Authorizer`] (verify the token, refuse a non-canonical path, resolve on
//! the local mapping snapshot, ask the PDP; fail closed); this crate is the tower shell around it:
//! [`AuthorizeLayer`] → [`Authorize`]. A request let through reaches the inner service unchanged — exactly
//! the path that was authorised — with the [`Grant`] (subject, action, mapping, parameters) in its
//! extensions; a refused one is answered with the project's JSON error body
//! (`{"error":{"code":"forbidden","message":"…"}}`, 401 with `WWW-Authenticate: Bearer`).
//!
//! Metrics go through the `metrics` facade, so the host service's exporter picks them up:
//! `heimdall_adapter_requests_total{outcome}` (`allowed`, `unmapped_allowed`, or the refusal's code:
//! `unauthenticated`, `invalid_input`, `forbidden`, `unavailable` — a PDP that could not decide counts as
//! `unavailable`) and `heimdall_adapter_snapshot_age_seconds` (how long ago the mapping snapshot was last
//! confirmed).
//!
//! ```no_run
//! # fn demo(authorizer: heimdall_core::authorizer::Authorizer) {
//! use heimdall_adapter::AuthorizeLayer;
//! let app: axum::Router = axum::Router::new()
//!     .route("/courses/{id}", axum::routing::get(|| async { "a course" }))
//!     .layer(AuthorizeLayer::new(authorizer));
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use heimdall_core::authorizer::{Authorizer, Grant, Refusal};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};

/// Finds the bearer token of a request.
pub trait TokenExtractor: Send + Sync + 'static {
    /// The token, without its scheme; `None` when the request carries none.
    fn token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str>;
}

/// `Authorization: Bearer <token>` (the scheme case-insensitive).
#[derive(Debug, Clone, Copy, Default)]
pub struct BearerHeader;

impl TokenExtractor for BearerHeader {
    fn token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }
}

/// The layer: wraps a service in [`Authorize`].
#[derive(Clone)]
pub struct AuthorizeLayer {
    authorizer: Authorizer,
    extractor: Arc<dyn TokenExtractor>,
}

impl std::fmt::Debug for AuthorizeLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("authorizer", &self.authorizer)
            .finish_non_exhaustive()
    }
}

impl AuthorizeLayer {
    /// A layer deciding with `authorizer`, reading `Authorization: Bearer`.
    pub fn new(authorizer: Authorizer) -> Self {
        AuthorizeLayer {
            authorizer,
            extractor: Arc::new(BearerHeader),
        }
    }

    /// Reads the token another way (a cookie, another header).
    pub fn token_extractor(mut self, extractor: impl TokenExtractor) -> Self {
        self.extractor = Arc::new(extractor);
        self
    }
}

impl<S> tower_layer::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            authorizer: self.authorizer.clone(),
            extractor: self.extractor.clone(),
        }
    }
}

/// The service: authorizes, then calls the inner service (see the crate docs).
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    authorizer: Authorizer,
    extractor: Arc<dyn TokenExtractor>,
}

impl<S> std::fmt::Debug for Authorize<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorize")
            .field("authorizer", &self.authorizer)
            .finish_non_exhaustive()
    }
}

/// The answer to a refused request: the project's JSON error body.
fn refusal<B: From<String>>(r: &Refusal) -> Response<B> {
    let body = serde_json::json!({"error": {"code": r.code, "message": r.message}}).to_string();
    let mut response = Response::new(B::from(body));
    *response.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if r.status == 401 {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for Authorize<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The service made ready is the one that must be called; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authorizer = self.authorizer.clone();
        let token = self.extractor.token(request.headers()).map(str::to_owned);
        Box::pin(async move {
            let target = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
            let decided = authorizer
                .authorize(request.method().as_str(), &target, token.as_deref())
                .await;
            if let Some(age) = authorizer.snapshot_age() {
                metrics::gauge!("heimdall_adapter_snapshot_age_seconds").set(age.as_secs_f64());
            }
            match decided {
                Ok(grant) => {
                    let outcome = if grant.action.is_some() {
                        "allowed"
                    } else {
                        "unmapped_allowed"
                    };
                    metrics::counter!("heimdall_adapter_requests_total", "outcome" => outcome).increment(1);
                    request.extensions_mut().insert(grant);
                    inner.call(request).await
                }
                Err(r) => {
                    metrics::counter!("heimdall_adapter_requests_total", "outcome" => r.code).increment(1);
                    Ok(refusal(&r))
                }
            }
        })
    }
}
