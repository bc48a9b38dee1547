//! What the layer authorises is the path the inner service routes: a request target without a path
//! (authority-form `CONNECT`, asterisk-form `OPTIONS *`) is refused with 400 instead of being authorised as
//! `/`; an absolute-form target is authorised on its path, which is what axum routes; a method that is not
//! an upper-case token and a path with a needless escape are refused. The authorizer here lets every
//! unmapped request through (an empty snapshot, `Unmapped::AllowAndCount`), so that anything refused is
//! refused for its target or method alone.

// Tests may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use heimdall_adapter::AuthorizeLayer;
use heimdall_core::authorizer::{Authorizer, AuthorizerConfig, MappingSource, SnapshotCell, Unmapped};
use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::mapping::Snapshot;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const JWKS: &str = include_str!("../../heimdall-core/tests/fixtures/jwt/jwks.json");
const RSA: &[u8] = include_bytes!("../../heimdall-core/tests/fixtures/jwt/rsa.pem");

fn token() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    let claims = json!({"sub": "alice", "preferred_username": "alice", "iat": now, "exp": now + 600});
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(RSA).unwrap()).unwrap()
}

async fn jwks_server() -> String {
    let app = axum::Router::new().route("/certs", axum::routing::get(|| async { JWKS }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/certs")
}

/// An axum service behind the layer, answering with the path it routed.
async fn service() -> axum::Router {
    let cell = SnapshotCell::new();
    cell.install(Snapshot::build(Vec::new(), 1).unwrap());
    let authorizer = Authorizer::new(
        TokenVerifier::new(IdentityConfig::new(jwks_server().await)).unwrap(),
        MappingSource::Cell(cell),
        Arc::new(heimdall_core::pdp::BuiltinPdp),
        AuthorizerConfig {
            unmapped: Unmapped::AllowAndCount,
            ..AuthorizerConfig::default()
        },
    );
    axum::Router::new()
        .fallback(|uri: http::Uri| async move { format!("routed {}", uri.path()) })
        .layer(AuthorizeLayer::new(authorizer))
}

async fn call(app: &axum::Router, method: &str, target: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(target)
        .header("authorization", format!("Bearer {}", token()))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&bytes).into_owned();
    match serde_json::from_str::<Value>(&body) {
        Ok(v) => (status, v["error"]["message"].as_str().unwrap_or_default().to_owned()),
        Err(_) => (status, body),
    }
}

#[tokio::test]
async fn targets_without_a_path_are_refused_not_authorised_as_the_root() {
    let app = service().await;
    // The control: an origin-form target is let through (unmapped, allowed and counted).
    assert_eq!(
        call(&app, "GET", "/courses/1").await,
        (StatusCode::OK, "routed /courses/1".to_owned())
    );
    assert_eq!(
        call(&app, "CONNECT", "/courses/1").await.0,
        StatusCode::OK,
        "extended CONNECT has a path"
    );
    for (method, target) in [
        ("CONNECT", "example.com:443"),
        ("CONNECT", "127.0.0.1:8080"),
        ("OPTIONS", "*"),
        ("GET", "example.com:80"),
    ] {
        let (status, message) = call(&app, method, target).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {target}: {message}");
        assert!(message.contains("path_not_absolute"), "{method} {target}: {message}");
    }
}

#[tokio::test]
async fn an_absolute_form_target_is_authorised_on_the_path_axum_routes() {
    let app = service().await;
    assert_eq!(
        call(&app, "GET", "http://example.com/courses/1?x=1").await,
        (StatusCode::OK, "routed /courses/1".to_owned())
    );
    // Its path is checked like any other.
    let (status, message) = call(&app, "GET", "http://example.com/courses/%2e%2e/admin").await;
    assert_eq!(
        (status, message.contains("dot_segment")),
        (StatusCode::BAD_REQUEST, true),
        "{message}"
    );
    let (status, message) = call(&app, "GET", "https://example.com/users/%40me").await;
    assert_eq!(
        (status, message.contains("needless")),
        (StatusCode::BAD_REQUEST, true),
        "{message}"
    );
    // An empty path is the root (RFC 9110 §4.2.3): the http crate reads it as '/', and so does axum.
    assert_eq!(
        call(&app, "GET", "http://example.com").await,
        (StatusCode::OK, "routed /".to_owned())
    );
}

#[tokio::test]
async fn methods_and_paths_a_decoding_router_reads_otherwise_are_refused() {
    let app = service().await;
    for (method, target, reason) in [
        ("get", "/courses/1", "invalid_method"),
        ("Get", "/courses/1", "invalid_method"),
        ("post", "/v1/jobs:purge", "invalid_method"),
        ("POST", "/v1/jobs%3Apurge", "needless_percent_escape"),
        ("GET", "/users/%40me", "needless_percent_escape"),
        ("GET", "/a/b%2Bc", "needless_percent_escape"),
    ] {
        let (status, message) = call(&app, method, target).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {target}: {message}");
        assert!(message.contains(reason), "{method} {target}: {message}");
    }
    assert_eq!(call(&app, "POST", "/v1/jobs:purge").await.0, StatusCode::OK);
    assert_eq!(call(&app, "PROPFIND", "/users/@me").await.0, StatusCode::OK);
}

/// The token cache finds a token only as exactly the string that was verified: once a good token is cached,
/// the same token with its signature's last character changed, or cut short, or with a byte appended, is
/// verified afresh and refused.
#[tokio::test]
async fn a_cached_token_is_found_only_as_itself() {
    let app = service().await;
    let good = token();
    let with = |bearer: String| {
        let app = app.clone();
        async move {
            let request = Request::builder()
                .uri("/courses/1")
                .header("authorization", format!("Bearer {bearer}"))
                .body(Body::empty())
                .unwrap();
            app.oneshot(request).await.unwrap().status()
        }
    };
    assert_eq!(with(good.clone()).await, StatusCode::OK, "the good token, now cached");
    let last = good.chars().last().unwrap();
    let flipped = format!("{}{}", &good[..good.len() - 1], if last == 'A' { 'B' } else { 'A' });
    for forged in [flipped, good[..good.len() - 1].to_owned(), format!("{good}A")] {
        assert_eq!(with(forged).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(with(good).await, StatusCode::OK);
}
