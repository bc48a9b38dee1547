//! The layer's outcomes reach the host's metrics recorder through the `metrics` facade (its own test binary:
//! it installs a global recorder).

// Tests may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use heimdall_adapter::AuthorizeLayer;
use heimdall_core::authorizer::{Authorizer, AuthorizerConfig, MappingSource, SnapshotCell};
use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::mapping::Snapshot;
use http::{Request, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::ServiceExt as _;

#[tokio::test]
async fn outcomes_are_counted_through_the_metrics_facade() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let cell = SnapshotCell::new();
    cell.install(Snapshot::build(Vec::new(), 1).unwrap());
    // No JWKS is reachable: only requests without a token are sent, and they never reach the verifier.
    let authorizer = Authorizer::new(
        TokenVerifier::new(IdentityConfig::new("http://127.0.0.1:9/certs")).unwrap(),
        MappingSource::Cell(cell),
        Arc::new(heimdall_core::pdp::BuiltinPdp),
        AuthorizerConfig::default(),
    );
    let app = axum::Router::new()
        .route("/x", axum::routing::get(|| async { "x" }))
        .layer(AuthorizeLayer::new(authorizer));
    for _ in 0..3 {
        let response = app
            .clone()
            .oneshot(Request::get("/x").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let counted: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "heimdall_adapter_requests_total")
        .map(|(key, _, _, value)| {
            (
                key.key().labels().map(|l| l.value().to_owned()).collect::<Vec<_>>(),
                value,
            )
        })
        .collect();
    assert_eq!(counted, [(vec!["unauthenticated".to_owned()], DebugValue::Counter(3))]);
    let age = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .any(|(key, ..)| key.key().name() == "heimdall_adapter_snapshot_age_seconds");
    assert!(age, "the snapshot's age is reported");
}
