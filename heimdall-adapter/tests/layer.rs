//! The layer in front of an axum service, with an embedded Heimdall (SQLite) and the real Cerbos holding the
//! principal policies the push worker wrote: allowed, denied, unmapped, expired token, non-canonical path,
//! a membership revoked while running, and Cerbos stopped while running.

// Tests may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use heimdall_adapter::{AuthorizeLayer, Grant};
use heimdall_core::authorizer::{Authorizer, AuthorizerConfig, MappingSource, Unmapped};
use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::model::MappingInput;
use heimdall_core::sync::{PushWorker, SyncConfig};
use heimdall_core::test_utils::cerbos::Cerbos;
use heimdall_core::test_utils::{TestDatabase, root};
use heimdall_core::{Config, Heimdall};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const JWKS: &str = include_str!("../../heimdall-core/tests/fixtures/jwt/jwks.json");
const RSA: &[u8] = include_bytes!("../../heimdall-core/tests/fixtures/jwt/rsa.pem");

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(subject: &str, exp: i64) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    let claims = json!({"sub": subject, "preferred_username": subject, "iat": now(), "exp": exp});
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(RSA).unwrap()).unwrap()
}

async fn jwks_server() -> String {
    let app = axum::Router::new().route("/certs", axum::routing::get(|| async { JWKS }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/certs")
}

async fn call(app: &axum::Router, method: &str, path: &str, bearer: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let response = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Pushes what the outbox holds to Cerbos (as the worker does).
async fn settle(worker: &PushWorker) {
    worker.push_due().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_allows_denies_and_fails_closed() {
    let Some(mut cerbos) = Cerbos::start_new().await else {
        return;
    };
    cerbos.install_admin_pack().await;
    let db = TestDatabase::sqlite();
    let h = Heimdall::builder(Config {
        database_url: db.url.clone(),
        ..Config::default()
    })
    .build()
    .await
    .unwrap();
    let root = root(&h).await;
    let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), SyncConfig::default());

    h.create_role(&root, "go:reader", None).await.unwrap();
    h.grant_permission(&root, "go:reader", "course:read", "allow")
        .await
        .unwrap();
    h.create_group(&root, "go:readers", None).await.unwrap();
    h.assign_group_role(&root, "go:readers", "go:reader").await.unwrap();
    h.add_member(&root, "go:readers", "alice").await.unwrap();
    let input = MappingInput {
        method: "GET".to_owned(),
        path_pattern: "/courses/:id".to_owned(),
        action: "course:read".to_owned(),
        ..MappingInput::default()
    };
    h.create_mapping(&root, &input).await.unwrap();
    settle(&worker).await;

    let (layer, follower) = AuthorizeLayer::builder()
        .jwks_url(jwks_server().await)
        .embedded(h.clone())
        .pdp(Arc::new(cerbos.client()))
        .config(AuthorizerConfig {
            decision_ttl: Duration::from_secs(60),
            ..AuthorizerConfig::default()
        })
        .build()
        .unwrap();
    assert!(follower.is_none(), "an embedded layer follows nothing");
    let authorizer = layer.authorizer().clone();
    let app = axum::Router::new()
        .route(
            "/courses/{id}",
            axum::routing::get(|request: Request<Body>| async move {
                let grant = request.extensions().get::<Grant>().cloned().unwrap();
                axum::Json(json!({
                    "subject": grant.subject.as_str(), "action": grant.action.map(|a| a.as_str().to_owned()),
                    "params": grant.params, "path": request.uri().path(),
                }))
            }),
        )
        .route("/unmapped", axum::routing::get(|| async { "open" }))
        .layer(layer);
    let alice = token("alice", now() + 600);
    let bob = token("bob", now() + 600);

    // Allowed (Cerbos may take a moment to show the pushed policy), with the grant in the extensions and the
    // path the service sees exactly the one authorised.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = call(&app, "GET", "/courses/7?x=1", Some(&alice)).await;
        if status == StatusCode::OK || Instant::now() > deadline {
            break (status, body);
        }
        // Cerbos shows a pushed policy within milliseconds, not at once: a moved version drops the cached deny.
        authorizer.observe_change_version(now());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"subject": "alice", "action": "course:read", "params": [["id", "7"]], "path": "/courses/7"})
    );

    // Denied, unmapped, unauthenticated, expired, non-canonical.
    let (status, body) = call(&app, "GET", "/courses/7", Some(&bob)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, _) = call(&app, "GET", "/unmapped", Some(&alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "unmapped routes are denied by default");
    let (status, body) = call(&app, "GET", "/courses/7", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    let (status, _) = call(&app, "GET", "/courses/7", Some(&token("alice", now() - 3600))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&app, "GET", "/courses/x/../7", Some(&alice)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_input"))
    );
    let (status, _) = call(&app, "GET", "/courses/%37", Some(&alice)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "needless percent-encoding is refused, not rewritten"
    );

    // Revoked while running: once the change version moves, the cached allow is gone.
    h.remove_member(&root, "go:readers", "alice").await.unwrap();
    settle(&worker).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        authorizer.observe_change_version(h.change_version().await.unwrap());
        let (status, _) = call(&app, "GET", "/courses/8", Some(&alice)).await;
        if status == StatusCode::FORBIDDEN {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice is still allowed after her membership was revoked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Cerbos stopped: no decision means no (503), and it is counted.
    cerbos.stop();
    authorizer.observe_change_version(i64::MAX);
    let (status, body) = call(&app, "GET", "/courses/9", Some(&alice)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );
    assert!(authorizer.stats().pdp_errors >= 1);

    // Gradual rollout: unmapped requests let through and counted.
    let open = Authorizer::new(
        TokenVerifier::new(IdentityConfig::new(jwks_server().await)).unwrap(),
        MappingSource::Embedded(h.clone()),
        Arc::new(cerbos.client()),
        AuthorizerConfig {
            unmapped: Unmapped::AllowAndCount,
            ..AuthorizerConfig::default()
        },
    );
    let app = axum::Router::new()
        .route("/unmapped", axum::routing::get(|| async { axum::Json(json!("open")) }))
        .layer(AuthorizeLayer::new(open.clone()));
    let (status, _) = call(&app, "GET", "/unmapped", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(open.stats().unmapped_allowed, 1);
}

#[tokio::test]
async fn without_a_snapshot_every_request_fails_closed() {
    let verifier = TokenVerifier::new(IdentityConfig::new(jwks_server().await)).unwrap();
    let authorizer = Authorizer::new(
        verifier,
        MappingSource::Cell(heimdall_core::authorizer::SnapshotCell::new()),
        Arc::new(heimdall_core::pdp::BuiltinPdp),
        AuthorizerConfig::default(),
    );
    let refused = authorizer
        .authorize("GET", "/courses/1", Some(&token("alice", now() + 60)))
        .await
        .unwrap_err();
    assert_eq!((refused.status, refused.code), (503, "unavailable"));
    assert_eq!(authorizer.stats().no_snapshot, 1);

    // Configured to let requests through before the first snapshot: authenticated ones pass and are counted;
    // a request without a valid token is still refused.
    let lenient = Authorizer::new(
        TokenVerifier::new(IdentityConfig::new(jwks_server().await)).unwrap(),
        MappingSource::Cell(heimdall_core::authorizer::SnapshotCell::new()),
        Arc::new(heimdall_core::pdp::BuiltinPdp),
        AuthorizerConfig {
            allow_before_snapshot: true,
            ..AuthorizerConfig::default()
        },
    );
    let grant = lenient
        .authorize("GET", "/courses/1", Some(&token("alice", now() + 60)))
        .await
        .unwrap();
    assert_eq!((grant.subject.as_str(), grant.action), ("alice", None));
    assert_eq!(lenient.stats().no_snapshot, 1);
    // Even then, a path or a method a router could read otherwise is refused, not let through.
    for (method, path) in [
        ("GET", "/courses/%2e%2e/admin"),
        ("GET", "/users/%40me"),
        ("get", "/courses/1"),
    ] {
        let refused = lenient
            .authorize(method, path, Some(&token("alice", now() + 60)))
            .await
            .unwrap_err();
        assert_eq!(
            (refused.status, refused.code),
            (400, "invalid_input"),
            "{method} {path}"
        );
    }
    assert_eq!(lenient.stats().no_snapshot, 1);
    let refused = lenient
        .authorize("GET", "/courses/1", Some("garbage"))
        .await
        .unwrap_err();
    assert_eq!(refused.status, 401);
}

#[test]
fn the_builder_names_what_is_wrong() {
    use heimdall_adapter::RemoteMappings;
    let error = |b: heimdall_adapter::AuthorizeLayerBuilder| b.build().unwrap_err().message().to_owned();
    assert!(error(AuthorizeLayer::builder()).contains("jwks_url"));
    assert!(error(AuthorizeLayer::builder().jwks_url("http://127.0.0.1:9/certs")).contains("follow"));
    let bad_url = AuthorizeLayer::builder()
        .jwks_url("http://127.0.0.1:9/certs")
        .follow(RemoteMappings::new("heimdall:8080", "hk_x"));
    assert!(error(bad_url).contains("heimdall:8080"));
    let no_runtime = AuthorizeLayer::builder()
        .jwks_url("http://127.0.0.1:9/certs")
        .follow(RemoteMappings::new("http://127.0.0.1:9", "hk_x"));
    assert!(error(no_runtime).contains("Tokio runtime"));
    let bad_jwks = AuthorizeLayer::builder()
        .jwks_url("not a url")
        .follow(RemoteMappings::new("http://127.0.0.1:9", "hk_x"));
    assert_eq!(bad_jwks.build().unwrap_err().kind(), heimdall_core::ErrorKind::Config);
}
