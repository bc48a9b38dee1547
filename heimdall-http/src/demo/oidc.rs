//! The demo issuer's OpenID Connect endpoints, for the console's sign-in. **Development only**: whoever
//! reaches the page may sign in as any user it lists.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use moka::sync::Cache;
use serde::Deserialize;
use serde_json::json;

use super::DevIssuer;
use crate::server::console::{pkce_challenge, random_token};

/// How long an authorization code may wait for its exchange.
const CODE_TTL: Duration = Duration::from_secs(60);
/// How long the tokens it issues are valid.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// What a code stands for until it is exchanged (once).
#[derive(Clone)]
struct Grant {
    subject: String,
    name: String,
    client_id: String,
    redirect_uri: String,
    challenge: String,
}

#[derive(Clone)]
struct Issuer {
    keys: Arc<DevIssuer>,
    base: String,
    users: Arc<Vec<(String, String)>>,
    codes: Cache<String, Grant>,
}

pub(super) fn routes(keys: Arc<DevIssuer>, base: String, users: Vec<(String, String)>) -> Router {
    let issuer = Issuer {
        keys,
        base,
        users: Arc::new(users),
        codes: Cache::builder().max_capacity(1_000).time_to_live(CODE_TTL).build(),
    };
    Router::new()
        .route("/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/authorize", get(authorize).post(choose))
        .route("/token", post(token))
        .with_state(issuer)
}

async fn jwks(State(issuer): State<Issuer>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        issuer.keys.jwks().to_string(),
    )
        .into_response()
}

async fn discovery(State(issuer): State<Issuer>) -> Response {
    let base = &issuer.base;
    axum::Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks.json"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
    .into_response()
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
}

/// Only the console on this machine may be sent codes.
fn loopback(redirect_uri: &str) -> bool {
    ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
        .iter()
        .any(|p| redirect_uri.starts_with(p))
}

fn refuse(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_owned()).into_response()
}

#[derive(Template)]
#[template(path = "demo/authorize.html")]
struct AuthorizePage<'a> {
    query: &'a AuthorizeQuery,
    users: &'a [(String, String)],
}

/// The sign-in page: pick a user.
async fn authorize(State(issuer): State<Issuer>, Query(query): Query<AuthorizeQuery>) -> Response {
    if query.response_type != "code" || query.code_challenge_method != "S256" || query.code_challenge.is_empty() {
        return refuse("this issuer does the authorization code flow with PKCE (S256) only");
    }
    if !loopback(&query.redirect_uri) {
        return refuse("redirect_uri must be on loopback");
    }
    match (AuthorizePage {
        query: &query,
        users: &issuer.users,
    })
    .render()
    {
        Ok(html) => Html(html).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response(),
    }
}

#[derive(Deserialize)]
struct Choice {
    subject: String,
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: String,
}

/// The user picked: back to the client with a code.
async fn choose(State(issuer): State<Issuer>, Form(choice): Form<Choice>) -> Response {
    let Some((subject, name)) = issuer.users.iter().find(|(s, _)| *s == choice.subject).cloned() else {
        return refuse("no such demo user");
    };
    if !loopback(&choice.redirect_uri) {
        return refuse("redirect_uri must be on loopback");
    }
    let Ok(code) = random_token(24) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    };
    let Ok(mut back) = reqwest::Url::parse(&choice.redirect_uri) else {
        return refuse("redirect_uri is not a URL");
    };
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &choice.state);
    issuer.codes.insert(
        code,
        Grant {
            subject,
            name,
            client_id: choice.client_id,
            redirect_uri: choice.redirect_uri,
            challenge: choice.code_challenge,
        },
    );
    Redirect::to(back.as_str()).into_response()
}

#[derive(Deserialize)]
struct TokenRequest {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    code_verifier: String,
}

fn token_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response()
}

/// A code (once) and its PKCE verifier for an access token.
async fn token(State(issuer): State<Issuer>, Form(request): Form<TokenRequest>) -> Response {
    if request.grant_type != "authorization_code" {
        return token_error("unsupported_grant_type");
    }
    let Some(grant) = issuer.codes.remove(&request.code) else {
        return token_error("invalid_grant");
    };
    if grant.client_id != request.client_id
        || grant.redirect_uri != request.redirect_uri
        || pkce_challenge(&request.code_verifier) != grant.challenge
    {
        return token_error("invalid_grant");
    }
    match issuer.keys.mint(&grant.subject, &grant.name, TOKEN_TTL) {
        Ok(access_token) => axum::Json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL.as_secs(),
        }))
        .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot sign").into_response(),
    }
}
