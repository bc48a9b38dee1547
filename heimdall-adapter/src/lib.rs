//! heimdall-adapter: a tower Layer that authorizes every request to a Rust service in-process.
//!
//! The per-request logic is core's [`Authorizer`] (verify the token, refuse a non-canonical path, resolve on
//! the local mapping snapshot, ask the PDP; fail closed); this crate is the tower shell around it:
//! [`AuthorizeLayer`] → [`Authorize`]. A request let through reaches the inner service unchanged — exactly
//! the path that was authorised — with the [`Grant`] (subject, action, mapping, parameters) in its
//! extensions; a refused one is answered with the project's JSON error body
//! (`{"error":{"code":"forbidden","message":"…"}}`, 401 with `WWW-Authenticate: Bearer`).
//!
//! The path authorised is the request target's path and query (`Uri::path_and_query`), which is what the
//! inner service routes on. A target without a path — the authority-form of `CONNECT` (`example.com:443`),
//! the asterisk-form of `OPTIONS` (`*`) — is refused (400, `path_not_absolute`), never authorised as `/`.
//! An absolute-form target (a proxy request, and every HTTP/2 request as hyper gives it) is authorised on
//! its path: the inner service routes on the same path, and mappings do not name hosts.
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

use heimdall_core::Heimdall;
use heimdall_core::authorizer::Source;
pub use heimdall_core::authorizer::{Authorizer, AuthorizerConfig, Decider, Grant, Refusal, RemoteMappings, Unmapped};
use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::pdp::Pdp;
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
        heimdall_core::identity::bearer_token(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
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

/// Configures an [`AuthorizeLayer`] (see [`AuthorizeLayer::builder`]); [`AuthorizeLayerBuilder::build`]
/// checks the whole configuration and names what is wrong.
#[must_use]
pub struct AuthorizeLayerBuilder {
    jwks_url: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    allow_plain_http: bool,
    remote: Option<RemoteMappings>,
    embedded: Option<Heimdall>,
    pdp: Option<Arc<dyn Pdp>>,
    config: AuthorizerConfig,
    extractor: Arc<dyn TokenExtractor>,
}

impl std::fmt::Debug for AuthorizeLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizeLayerBuilder")
            .field("jwks_url", &self.jwks_url)
            .field("remote", &self.remote)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AuthorizeLayerBuilder {
    /// The identity provider's JWKS (required).
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// The `iss` every token must carry.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The `aud` every token must carry.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Accept a JWKS URL over plain `http://` to a host other than loopback (keys fetched so can be swapped on
    /// the way; refused by default). The follower's URL has its own [`RemoteMappings::allow_plain_http`].
    pub fn allow_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// Mappings (and, deciding locally, grants) from a running heimdall-http, with an API key or the static
    /// token. Exclusive with [`AuthorizeLayerBuilder::embedded`].
    pub fn follow(mut self, remote: RemoteMappings) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Mappings read through heimdall-core directly (services sharing Heimdall's database); needs
    /// [`AuthorizeLayerBuilder::pdp`].
    pub fn embedded(mut self, heimdall: Heimdall) -> Self {
        self.embedded = Some(heimdall);
        self
    }

    /// Decide with this PDP (a Cerbos holding the pushed principal policies) instead of locally.
    pub fn pdp(mut self, pdp: Arc<dyn Pdp>) -> Self {
        self.pdp = Some(pdp);
        self
    }

    /// Caches, unmapped routes, the time before the first snapshot, grants on demand when deciding locally.
    pub fn config(mut self, config: AuthorizerConfig) -> Self {
        self.config = config;
        self
    }

    /// Reads the token another way than `Authorization: Bearer`.
    pub fn token_extractor(mut self, extractor: impl TokenExtractor) -> Self {
        self.extractor = Arc::new(extractor);
        self
    }

    /// The layer, and the task that follows heimdall-http (with [`AuthorizeLayerBuilder::follow`]; abort it
    /// to stop). A configuration error names what is missing or wrong.
    pub fn build(self) -> Result<(AuthorizeLayer, Option<tokio::task::JoinHandle<()>>), heimdall_core::Error> {
        let config_error = |m: &str| heimdall_core::Error::new(heimdall_core::ErrorKind::Config, m);
        let jwks = self.jwks_url.ok_or_else(|| config_error("jwks_url is required"))?;
        let verifier = TokenVerifier::new(IdentityConfig {
            issuer: self.issuer,
            audience: self.audience,
            allow_plain_http: self.allow_plain_http,
            ..IdentityConfig::new(jwks)
        })?;
        let source = match (self.remote, self.embedded) {
            (Some(remote), None) => Source::Follow(remote),
            (None, Some(heimdall)) => Source::Embedded(heimdall),
            (None, None) => return Err(config_error("give the mappings' source: follow(...) or embedded(...)")),
            (Some(_), Some(_)) => return Err(config_error("follow(...) and embedded(...) exclude each other")),
        };
        let (authorizer, task) = Authorizer::start(verifier, source, self.pdp, self.config)?;
        let layer = AuthorizeLayer {
            authorizer,
            extractor: self.extractor,
        };
        Ok((layer, task))
    }
}

impl AuthorizeLayer {
    /// Starts configuring a layer.
    pub fn builder() -> AuthorizeLayerBuilder {
        AuthorizeLayerBuilder {
            jwks_url: None,
            issuer: None,
            audience: None,
            allow_plain_http: false,
            remote: None,
            embedded: None,
            pdp: None,
            config: AuthorizerConfig::default(),
            extractor: Arc::new(BearerHeader),
        }
    }

    /// The authorizer (its stats, its snapshot's age, and [`Authorizer::observe_change_version`]).
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

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

/// The path and query the inner service routes on, or `None` when the request target has no path: the
/// authority-form of `CONNECT` (`example.com:443`) and the asterisk-form of `OPTIONS` (`*`), which are
/// refused (400) rather than authorised as some path.
///
/// An absolute-form target (`http://example.com/courses/7`, what a client sends to a proxy, and how hyper
/// gives every HTTP/2 request, built from `:scheme`, `:authority` and `:path`) is authorised on its path:
/// the inner service routes on the same `Uri::path()` (axum does), and the authority plays no part in a
/// mapping. An empty path there (`http://example.com`) is the root, `/` (RFC 9110 §4.2.3), as the http
/// crate and axum read it.
fn origin_form(uri: &http::Uri) -> Option<&str> {
    uri.path_and_query()
        .map(http::uri::PathAndQuery::as_str)
        .filter(|target| target.starts_with('/'))
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
        let extractor = Arc::clone(&self.extractor);
        Box::pin(async move {
            // The token, method and target are borrowed from the request this future owns: nothing is copied.
            let token = extractor.token(request.headers());
            let decided = match origin_form(request.uri()) {
                Some(target) => authorizer.authorize(request.method().as_str(), target, token).await,
                None => Err(Refusal {
                    status: 400,
                    code: "invalid_input",
                    message: "path rejected: path_not_absolute (the request target has no path: authority-form \
                              or asterisk-form)"
                        .to_owned(),
                }),
            };
            if let Some(age) = authorizer.snapshot_age() {
                metrics::gauge!("heimdall_adapter_snapshot_age_seconds").set(age.as_secs_f64());
            }
            metrics::gauge!("heimdall_adapter_ready").set(if authorizer.is_ready() { 1.0 } else { 0.0 });
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
