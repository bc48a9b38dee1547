//! The admin console at `/console`: server-rendered pages (askama templates in `templates/console/`, one
//! stylesheet, no script) for the people who administer access, signed in through the identity provider.
//!
//! - **Sign-in**: OpenID Connect's authorization code flow with PKCE ([`oidc`]); the access token the provider
//!   issues is verified and provisioned exactly as the REST API does, and the console keeps only a session:
//!   a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` unless the console is reached on
//!   loopback), pointing at the caller in a bounded in-memory store that forgets it after
//!   [`ConsoleOptions::session_ttl`] or at sign-out.
//! - **Changes** are HTML form posts carrying the session's CSRF token, read by one extractor ([`Posted`]);
//!   a post without it (or with another session's) is refused with 403 and changes nothing. A cross-site post carries no cookie at all
//!   (`SameSite=Strict`) and is sent to sign in.
//! - **Every action goes through the facade with the signed-in caller**, as the REST API's handlers do: the
//!   console has no authorization logic and no SQL of its own; a refusal is shown with the facade's message.
//! - **Headers**: a strict Content-Security-Policy (no inline script or style, nothing from elsewhere, no
//!   framing), `no-store` caching, `nosniff`, `same-origin` referrers.

mod keys;
mod mappings;
mod oidc;
mod pages;
mod roles;
mod sync;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use heimdall_core::AdminScope;
use heimdall_core::model::Caller;
use moka::sync::Cache;

pub use oidc::OidcConfig;
use oidc::{Oidc, PendingSignIn};
pub(crate) use oidc::{challenge as pkce_challenge, random_token};

use super::AppState;

/// The session cookie's name.
const COOKIE: &str = "heimdall_console";
/// Most sessions held at once (the oldest unused go first beyond it).
const MAX_SESSIONS: u64 = 10_000;
/// Most sign-ins in progress held at once, and how long one may take.
const MAX_PENDING: u64 = 10_000;
const PENDING_TTL: Duration = Duration::from_secs(600);

/// The console's settings.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The identity provider and the console's own address.
    pub oidc: OidcConfig,
    /// How long a session lasts from sign-in.
    pub session_ttl: Duration,
}

/// A signed-in user: who, their CSRF token, and when the session ends.
#[derive(Debug)]
struct Session {
    caller: Caller,
    csrf: String,
    expires: Instant,
}

/// The console's state: the identity provider, the sessions and the sign-ins in progress.
pub struct Console {
    oidc: Oidc,
    session_ttl: Duration,
    sessions: Cache<String, Arc<Session>>,
    pending: Cache<String, PendingSignIn>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("oidc", &self.oidc)
            .field("sessions", &self.sessions.entry_count())
            .finish_non_exhaustive()
    }
}

impl Console {
    /// The console of `options`.
    ///
    /// # Errors
    ///
    /// A configuration error for unusable URLs (see [`Oidc::new`]).
    pub fn new(options: ConsoleOptions) -> heimdall_core::Result<Console> {
        Ok(Console {
            oidc: Oidc::new(options.oidc)?,
            session_ttl: options.session_ttl,
            sessions: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_live(options.session_ttl)
                .build(),
            pending: Cache::builder()
                .max_capacity(MAX_PENDING)
                .time_to_live(PENDING_TTL)
                .build(),
        })
    }

    /// The `Set-Cookie` value that holds `id` (or, with `None`, removes the cookie).
    fn cookie(&self, id: Option<&str>) -> HeaderValue {
        let secure = if self.oidc.loopback() { "" } else { "; Secure" };
        let value = match id {
            Some(id) => format!(
                "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                self.session_ttl.as_secs()
            ),
            None => format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
        };
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The live session named by the request's cookie, if any.
    fn session(&self, headers: &HeaderMap) -> Option<(String, Arc<Session>)> {
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))?
            .to_owned();
        let session = self.sessions.get(&id)?;
        if session.expires <= Instant::now() {
            self.sessions.invalidate(&id);
            return None;
        }
        Some((id, session))
    }
}

/// The signed-in user of a console request, with what they administer (read afresh on every request, so a
/// right granted or taken away shows at once); without a live session, the browser is sent to sign in.
pub(crate) struct SignedIn {
    caller: Caller,
    csrf: String,
    session: String,
    scope: AdminScope,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let console = state.console().ok_or_else(not_configured)?;
        let Some((session, s)) = console.session(&parts.headers) else {
            return Err(Redirect::to("/console").into_response());
        };
        let scope = state
            .heimdall()
            .admin_scope(&s.caller)
            .await
            .map_err(|e| pages::facade_error(&e))?;
        Ok(SignedIn {
            caller: s.caller.clone(),
            csrf: s.csrf.clone(),
            session,
            scope,
        })
    }
}

impl SignedIn {
    /// Whether `token` is this session's CSRF token (compared in constant time).
    fn csrf_ok(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        self.csrf.as_bytes().ct_eq(token.as_bytes()).into()
    }

    /// Refuses a page of groups and mappings to a caller who administers none: a plain user sees their own
    /// access only.
    fn refusal_unless_administering(&self) -> Option<Response> {
        if self.scope.administers() {
            return None;
        }
        Some(pages::refused_page(
            self,
            "You administer no groups or mappings: the console shows you your own access.",
            ("/console/me", "My access"),
        ))
    }

    /// Refuses a page that only superadmins see (roles, API keys, the audit log, sync status).
    fn refusal_unless_superadmin(&self, what: &str) -> Option<Response> {
        if self.scope.is_superadmin() {
            return None;
        }
        Some(pages::refused_page(
            self,
            &format!("Only superadmins see {what}."),
            self.start_page(),
        ))
    }

    /// Where this user starts: the groups they administer, or their own access.
    fn start_page(&self) -> (&'static str, &'static str) {
        if self.scope.administers() {
            ("/console/groups", "Back to your groups")
        } else {
            ("/console/me", "My access")
        }
    }
}

/// The answer when the server runs without a console.
fn not_configured() -> Response {
    pages::error_page(
        StatusCode::NOT_FOUND,
        "The console is not configured on this server (set CONSOLE_OIDC_ISSUER and CONSOLE_URL).",
        None,
    )
}

/// The console's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(home))
        .route("/console/signin", get(sign_in))
        .route("/console/callback", get(callback))
        .route("/console/signout", post(sign_out))
        .route("/console/static/console.css", get(pages::stylesheet))
        .merge(pages::routes())
        .merge(roles::routes())
        .merge(mappings::routes())
        .merge(keys::routes())
        .merge(sync::routes())
}

/// The headers every console answer carries.
pub(crate) async fn security_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let console = request.uri().path().starts_with("/console");
    let mut response = next.run(request).await;
    if console {
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// `/console`: the signed-in user's start page (the groups they administer, or their own access), or the
/// sign-in page.
async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(console) = state.console() else {
        return not_configured();
    };
    let Some((_, session)) = console.session(&headers) else {
        return pages::sign_in_page();
    };
    match state.heimdall().admin_scope(&session.caller).await {
        Ok(scope) if scope.administers() => Redirect::to("/console/groups").into_response(),
        Ok(_) => Redirect::to("/console/me").into_response(),
        Err(e) => pages::facade_error(&e),
    }
}

/// Sends the browser to the identity provider.
async fn sign_in(State(state): State<AppState>) -> Response {
    let Some(console) = state.console() else {
        return not_configured();
    };
    let started = async {
        let key = random_token(24)?;
        let (url, pending) = console.oidc.start(&key).await?;
        console.pending.insert(key, pending);
        Ok::<_, heimdall_core::Error>(url)
    };
    match started.await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => pages::facade_error(&e),
    }
}

#[derive(serde::Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// The identity provider sends the browser back here with a code: it becomes a session.
async fn callback(State(state): State<AppState>, query: axum::extract::Query<CallbackQuery>) -> Response {
    let Some(console) = state.console() else {
        return not_configured();
    };
    let again = Some(("/console/signin", "Sign in again"));
    if let Some(error) = &query.error {
        let error: String = error.chars().filter(char::is_ascii_graphic).take(64).collect();
        return pages::error_page(
            StatusCode::UNAUTHORIZED,
            &format!("The identity provider did not sign you in ({error})."),
            again,
        );
    }
    let (Some(key), Some(code)) = (&query.state, &query.code) else {
        return pages::error_page(StatusCode::BAD_REQUEST, "The sign-in answer is incomplete.", again);
    };
    // Single use: a replayed answer finds nothing.
    let Some(pending) = console.pending.remove(key) else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired or was already used.",
            again,
        );
    };
    let signed_in = async {
        let token = console.oidc.exchange(code, &pending).await?;
        let verifier = state.verifier().ok_or_else(|| {
            heimdall_core::Error::new(
                heimdall_core::ErrorKind::Unauthenticated,
                "this server verifies no tokens (KEYCLOAK_JWKS_URL is not set)",
            )
        })?;
        state.heimdall().authenticate(verifier, &token).await
    };
    let caller = match signed_in.await {
        Ok(caller) => caller,
        Err(e) => return pages::facade_error(&e),
    };
    let (id, csrf) = match (random_token(32), random_token(32)) {
        (Ok(id), Ok(csrf)) => (id, csrf),
        (Err(e), _) | (_, Err(e)) => return pages::facade_error(&e),
    };
    tracing::info!(subject = %caller.subject(), "signed in to the console");
    console.sessions.insert(
        id.clone(),
        Arc::new(Session {
            caller,
            csrf,
            expires: Instant::now() + console.session_ttl,
        }),
    );
    let mut response = Redirect::to("/console").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, console.cookie(Some(&id)));
    response
}

/// The CSRF token of a posted form.
#[derive(serde::Deserialize)]
struct CsrfToken {
    #[serde(default)]
    csrf: String,
}

/// A change posted from a console form: the signed-in user, and the form (`T`, read from the
/// `application/x-www-form-urlencoded` body) once its `csrf` field has been found to be the session's token.
/// Every change goes through it, so none can skip the check: a post without the token, or with another
/// session's, is refused (403) before any handler runs, and changes nothing.
pub(crate) struct Posted<T> {
    user: SignedIn,
    form: T,
}

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let user = SignedIn::from_request_parts(&mut parts, state).await?;
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let token = serde_urlencoded::from_bytes::<CsrfToken>(&bytes).map(|t| t.csrf);
        if !is_form || !token.is_ok_and(|t| user.csrf_ok(&t)) {
            return Err(pages::csrf_refused());
        }
        let form = serde_urlencoded::from_bytes::<T>(&bytes).map_err(|e| {
            pages::error_page(
                StatusCode::BAD_REQUEST,
                &format!("The form could not be read ({e}): nothing was changed."),
                Some(user.start_page()),
            )
        })?;
        Ok(Posted { user, form })
    }
}

/// A form that carries nothing but the CSRF token (checked by [`Posted`]).
#[derive(serde::Deserialize)]
pub(crate) struct Nothing {}

/// Ends the session.
async fn sign_out(State(state): State<AppState>, Posted { user, .. }: Posted<Nothing>) -> Response {
    let Some(console) = state.console() else {
        return not_configured();
    };
    console.sessions.invalidate(&user.session);
    let mut response = Redirect::to("/console").into_response();
    response.headers_mut().insert(header::SET_COOKIE, console.cookie(None));
    response
}

/// `s` as a query value.
pub(crate) fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|q| q.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}
