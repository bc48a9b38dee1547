//! The REST server: routes, shared state, and the layers every request goes through.
//!
//! A handler parses, makes one facade call and converts the result; no SQL, no Cerbos payloads and no
//! policy decisions live here. Layers, outermost first: sensitive headers → request id (a client's kept only
//! when short and printable) → body limit → routing → trace span, JSON log line and metrics (one layer with
//! the next two) → rate limit of requests without a verified caller → timeout → panic catcher → the route.
//! Only the layers after routing (which need the route template) are layered onto each route. What bounds
//! the server's own state is in `limits.rs` and `listen.rs`.

use std::cell::RefCell;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use heimdall_core::Heimdall;
use heimdall_core::identity::TokenVerifier;
use heimdall_core::pdp::CerbosClient;
use heimdall_core::sync::PolicyAdmin;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tracing::Instrument as _;

pub mod auth;
pub mod console;
pub mod error;
pub mod feeds;
pub mod groups;
pub mod keys;
mod limits;
mod listen;
pub mod mappings;
pub mod openapi;
pub mod ops;
pub mod roles;
pub mod users;

pub use feeds::Versions;

/// What the server needs beyond Heimdall itself.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The adapter feeds' shared secret (`STATIC_API_TOKEN`); `None` turns it off.
    pub static_api_token: Option<String>,
    /// Mutations per caller per minute (the burst is the same number); `None`: no limit.
    pub mutations_per_minute: Option<NonZeroU32>,
    /// Requests of any kind per caller (or, without a verified caller, per client address) per minute (the
    /// burst is the same number); `None`: no limit.
    pub requests_per_minute: Option<NonZeroU32>,
    /// Most connections served at once; the next ones wait in the accept queue.
    pub max_connections: usize,
    /// Longest time a connection may take to send a request's header, from its opening or from its previous
    /// response (so also how long an idle keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// Most change-feed streams one caller may hold open (429 beyond).
    pub max_streams_per_caller: usize,
    /// How often an open change-feed stream checks its credential again (closed once it no longer holds).
    pub stream_recheck_interval: Duration,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Longest time a request may take (the change feed's stream is exempt once it started).
    pub request_timeout: Duration,
    /// How often the change feed polls the database for changes made by other processes.
    pub change_poll_interval: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            static_api_token: None,
            mutations_per_minute: NonZeroU32::new(600),
            requests_per_minute: NonZeroU32::new(6000),
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            max_streams_per_caller: 64,
            stream_recheck_interval: Duration::from_secs(1),
            body_limit: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            change_poll_interval: Duration::from_millis(250),
        }
    }
}

/// Everything a handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    heimdall: Heimdall,
    verifier: Option<TokenVerifier>,
    static_token: Option<String>,
    limits: limits::RateLimits,
    streams: limits::StreamSlots,
    /// The Cerbos the server asks (for `/readyz`), when one is configured.
    cerbos: Option<CerbosClient>,
    /// The Cerbos Admin API, for `POST /reconcile/push-to-cerbos`.
    admin: Option<Arc<dyn PolicyAdmin>>,
    versions: watch::Receiver<Versions>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    options: ServerOptions,
    /// Turns true when the server starts shutting down: long-lived streams end then.
    closing: watch::Sender<bool>,
    /// The admin console, when one is configured.
    console: Option<console::Console>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// Builds the server's state.
#[derive(Debug)]
pub struct AppStateBuilder {
    heimdall: Heimdall,
    verifier: Option<TokenVerifier>,
    cerbos: Option<CerbosClient>,
    admin: Option<Arc<dyn PolicyAdmin>>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    options: ServerOptions,
    console: Option<console::ConsoleOptions>,
}

impl AppStateBuilder {
    /// The admin console at `/console` (without one, its pages say it is not configured).
    pub fn console(mut self, console: Option<console::ConsoleOptions>) -> Self {
        self.console = console;
        self
    }

    /// The bearer-token verifier (without one, no user can sign in).
    pub fn verifier(mut self, verifier: Option<TokenVerifier>) -> Self {
        self.verifier = verifier;
        self
    }

    /// The Cerbos PDP the facade asks, checked by `/readyz`.
    pub fn cerbos(mut self, cerbos: Option<CerbosClient>) -> Self {
        self.cerbos = cerbos;
        self
    }

    /// The Cerbos Admin API that `POST /reconcile/push-to-cerbos` reconciles and pushes to.
    pub fn policy_admin(mut self, admin: Option<Arc<dyn PolicyAdmin>>) -> Self {
        self.admin = admin;
        self
    }

    /// The Prometheus recorder's handle that `/metrics` renders.
    pub fn metrics(mut self, metrics: Option<metrics_exporter_prometheus::PrometheusHandle>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Server options.
    pub fn options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    /// The state, and the change watcher's task (it polls the database until the state is dropped).
    pub async fn build(self) -> heimdall_core::Result<AppState> {
        let versions = feeds::watch_versions(self.heimdall.clone(), self.options.change_poll_interval).await?;
        let limits = limits::RateLimits::new(self.options.requests_per_minute, self.options.mutations_per_minute);
        let streams = limits::StreamSlots::new(self.options.max_streams_per_caller.max(1));
        let console = self.console.map(console::Console::new).transpose()?;
        Ok(AppState {
            inner: Arc::new(Inner {
                heimdall: self.heimdall,
                verifier: self.verifier,
                static_token: self.options.static_api_token.clone().filter(|t| !t.is_empty()),
                limits,
                streams,
                cerbos: self.cerbos,
                admin: self.admin,
                versions,
                metrics: self.metrics,
                options: self.options,
                closing: watch::Sender::new(false),
                console,
            }),
        })
    }
}

impl AppState {
    /// Starts building the state of a server in front of `heimdall`.
    pub fn builder(heimdall: Heimdall) -> AppStateBuilder {
        AppStateBuilder {
            heimdall,
            verifier: None,
            cerbos: None,
            admin: None,
            metrics: None,
            options: ServerOptions::default(),
            console: None,
        }
    }

    /// The admin console, when one is configured.
    pub(crate) fn console(&self) -> Option<&console::Console> {
        self.inner.console.as_ref()
    }

    /// The facade.
    pub fn heimdall(&self) -> &Heimdall {
        &self.inner.heimdall
    }

    pub(crate) fn verifier(&self) -> Option<&TokenVerifier> {
        self.inner.verifier.as_ref()
    }

    pub(crate) fn static_token(&self) -> Option<&str> {
        self.inner.static_token.as_deref()
    }

    pub(crate) fn versions(&self) -> watch::Receiver<Versions> {
        self.inner.versions.clone()
    }

    /// Resolves when the server starts shutting down.
    pub(crate) fn closing(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let mut rx = self.inner.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    /// Takes one unit of the budget of `caller` (its audit-log name: a subject, `api_key:<name>`,
    /// `static_api_token`), and of its mutation budget for a `mutation`, or refuses with 429.
    pub(crate) fn charge_caller(&self, caller: &str, mutation: bool) -> Result<(), error::ApiError> {
        note_charged();
        self.inner
            .limits
            .check(limits::Charge::Caller { key: caller, mutation })
    }

    /// Takes one unit of the budget of the client's address (a request without a verified caller), or
    /// refuses with 429.
    pub(crate) fn charge_client(&self, ip: Option<std::net::IpAddr>) -> Result<(), error::ApiError> {
        note_charged();
        self.inner.limits.check(limits::Charge::Client(ip))
    }

    /// A slot for one more change-feed stream of `caller`, or 429.
    pub(crate) fn stream_slot(&self, caller: &str) -> Result<limits::StreamSlot, error::ApiError> {
        self.inner.streams.take(caller)
    }

    pub(crate) fn options(&self) -> &ServerOptions {
        &self.inner.options
    }

    /// Forgets callers whose budget is full again, so the limiters' memory stays small.
    fn trim_limiter(&self) {
        self.inner.limits.trim();
    }
}

/// What the handler learned about a request, for its access log line: who called, what and on what.
#[derive(Debug, Default)]
struct Notes {
    actor: Option<String>,
    operation: Option<String>,
    target: Option<String>,
    /// Whether the request took from a rate-limit budget already.
    charged: bool,
}

tokio::task_local! {
    static NOTES: RefCell<Notes>;
}

/// Names the caller on the request's access log line.
pub(crate) fn note_actor(actor: &str) {
    let _ = NOTES.try_with(|n| n.borrow_mut().actor = Some(actor.to_owned()));
}

/// Records that the request took from a rate-limit budget.
fn note_charged() {
    let _ = NOTES.try_with(|n| n.borrow_mut().charged = true);
}

fn charged() -> bool {
    NOTES.try_with(|n| n.borrow().charged).unwrap_or(false)
}

/// The route template and method of the request being served, as audit and metrics name them (bounded).
pub(crate) fn request_label(parts: &axum::http::request::Parts) -> String {
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    format!("{} {route}", limits::method_label(&parts.method))
}

/// Charges a request without a verified caller to its client address's budget: at once when it carries no
/// credential; otherwise the extractors charge it (to its caller, or to the address when they refuse the
/// credential), and a request that reached none (a public endpoint) is charged after its answer. Then the
/// request gets `timeout` to answer: one that takes longer is answered 503 with the JSON error body (a stream
/// already answered, the change feed, is not cut).
async fn limit_and_time(state: &AppState, request: Request, next: Next) -> Response {
    let credential = request.headers().contains_key(axum::http::header::AUTHORIZATION);
    let ip = limits::client_ip(request.extensions());
    if !credential && let Err(e) = state.charge_client(ip) {
        return axum::response::IntoResponse::into_response(e);
    }
    let response = match tokio::time::timeout(state.inner.options.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(error::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long",
        )),
    };
    if credential
        && !charged()
        && let Err(e) = state.charge_client(ip)
    {
        return axum::response::IntoResponse::into_response(e);
    }
    response
}

/// Names the operation and its target on the request's access log line.
pub(crate) fn note(operation: &str, target: &str) {
    let _ = NOTES.try_with(|n| {
        let mut n = n.borrow_mut();
        n.operation = Some(operation.to_owned());
        n.target = Some(target.to_owned());
    });
}

/// One JSON line per request (method, route template, status, latency, request and trace ids, actor,
/// operation, target) and the request metrics, by route template (never the raw path, whose values are
/// unbounded); inside it the rate limit and the timeout ([`limit_and_time`]). Logs made while the request runs
/// carry its request and trace ids (its span).
async fn access_log(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = limits::method_label(request.method());
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut trace = ops::TraceIds::from_request(&request);
    // Fields as `&str` (recorded as strings), not `%` (formatted through `Display` into a new string each).
    let span = tracing::info_span!(
        "request",
        request_id = request_id.as_str(),
        route = route.as_str(),
        method
    );
    // With an OpenTelemetry exporter, the request's span continues the caller's trace, and the log line
    // names the exported span.
    if let Some(parent) = &trace.parent_span_id {
        crate::telemetry::continue_trace(&span, &trace.trace_id, parent);
    }
    if let Some((trace_id, span_id)) = crate::telemetry::exported_ids(&span) {
        trace.trace_id = trace_id;
        trace.span_id = span_id;
    }
    let started = std::time::Instant::now();
    let (response, notes) = NOTES
        .scope(RefCell::new(Notes::default()), async move {
            let response = limit_and_time(&state, request, next).instrument(span).await;
            (response, NOTES.with(|n| n.take()))
        })
        .await;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    tracing::info!(
        method,
        route = route.as_str(),
        status,
        latency_ms = latency.as_secs_f64() * 1e3,
        request_id = request_id.as_str(),
        trace_id = trace.trace_id.as_str(),
        span_id = trace.span_id.as_str(),
        actor_subject = notes.actor.as_deref(),
        operation = notes.operation.as_deref(),
        target = notes.target.as_deref(),
        "request"
    );
    let labels = [
        ("route", route),
        ("method", method.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!("heimdall_http_requests_total", &labels).increment(1);
    metrics::histogram!("heimdall_http_request_duration_seconds", &labels).record(latency.as_secs_f64());
    response
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route of the API, with the layers around them.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(users::routes())
        .merge(groups::routes())
        .merge(roles::routes())
        .merge(mappings::routes())
        .merge(feeds::routes())
        .merge(keys::routes())
        .merge(ops::api_routes());
    let body_limit = state.inner.options.body_limit;
    // The layers that read the route template (which only routing knows) are layered onto every route, and
    // each of those is cloned for every request, once per method of the route: so there are only two.
    let routed = Router::new()
        .nest("/api/v1", api)
        .merge(ops::routes())
        .merge(openapi::routes())
        .merge(console::routes())
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .with_state(state.clone())
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(error::ApiError::internal())
        }))
        .layer(middleware::from_fn_with_state(state, access_log));
    // The rest wraps the whole router once.
    let outer = tower::ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
            axum::http::header::COOKIE,
        ]))
        .layer(middleware::from_fn(limits::sanitise_request_id))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(middleware::from_fn(console::security_headers))
        .layer(DefaultBodyLimit::max(body_limit))
        .service(routed);
    Router::new().fallback_service(outer)
}

/// Serves the API on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let trimmer = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                state.trim_limiter();
            }
        })
    };
    let closing = state.inner.closing.clone();
    let shutdown = async move {
        shutdown.await;
        // End the change feeds' streams, or the graceful shutdown would wait for them forever.
        closing.send_replace(true);
    };
    let connections = listen::ConnectionLimits {
        max_connections: state.inner.options.max_connections,
        header_read_timeout: state.inner.options.header_read_timeout,
    };
    let result = listen::run(listener, router(state), connections, shutdown).await;
    trimmer.abort();
    result
}
