//! The pushed version (every change version up to it is in Cerbos, as far as the outbox tells) and the
//! decisions cached against it: an allow Cerbos gave before a revocation's push is not served after the push.

use std::sync::Arc;
use std::time::{Duration, Instant};

use heimdall_core::authorizer::{Authorizer, AuthorizerConfig, MappingSource};
use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::model::MappingInput;
use heimdall_core::pdp::{CerbosClient, CerbosConfig};
use heimdall_core::sync::{PolicyAdmin, PushWorker};
use heimdall_core::test_utils::{TestDatabase, course_editors};
use heimdall_core::{Config, Heimdall};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::support::cerbos::Cerbos;
use crate::support::fake_cerbos::FakeFailingCerbos;
use crate::support::jwks::JwksServer;
use crate::support::{heimdall, root};
use crate::sync::{drain, fast};

/// A worker pushing to a fake Cerbos that accepts everything (what is pushed does not matter here).
fn accepting_worker(h: &Heimdall, fake: &FakeFailingCerbos) -> PushWorker {
    let mut config = CerbosConfig::new(fake.base_url());
    config.admin_password = "fake".to_owned();
    let admin: Arc<dyn PolicyAdmin> = Arc::new(CerbosClient::new(config).unwrap());
    PushWorker::new(h.clone(), admin, fast())
}

#[tokio::test]
async fn the_pushed_version_trails_the_outbox() {
    for db in TestDatabase::all().await {
        let b = db.backend;
        let h = heimdall(&db).await;
        let root = root(&h).await;
        let fake = FakeFailingCerbos::start(Vec::new()).await;
        let worker = accepting_worker(&h, &fake);
        drain(&h, &worker).await;
        let (change, pushed) = h.change_and_pushed_version().await.unwrap();
        assert_eq!(pushed, change, "{b}: nothing waits, everything is pushed");

        // A change that affects a user's policy: its version is not pushed until the worker has run.
        h.create_group(&root, "go:readers", None).await.unwrap();
        h.create_role(&root, "go:reader", None).await.unwrap();
        h.assign_group_role(&root, "go:readers", "go:reader").await.unwrap();
        let (before, _) = h.change_and_pushed_version().await.unwrap();
        h.add_member(&root, "go:readers", "alice").await.unwrap();
        let (change, pushed) = h.change_and_pushed_version().await.unwrap();
        assert!(change > before, "{b}");
        assert_eq!(pushed, before, "{b}: alice's change waits in the outbox");
        // Another change for a waiting user keeps the older version it waits for.
        h.add_member(&root, "go:readers", "bob").await.unwrap();
        h.remove_member(&root, "go:readers", "alice").await.unwrap();
        let (later, pushed) = h.change_and_pushed_version().await.unwrap();
        assert!(later > change, "{b}");
        assert_eq!(pushed, before, "{b}");
        assert_eq!(h.pushed_version_seen(), before, "{b}: what this process read last");

        drain(&h, &worker).await;
        let (change, pushed) = h.change_and_pushed_version().await.unwrap();
        assert_eq!((pushed, change), (later, later), "{b}: all pushed");
        assert_eq!(h.pushed_version_seen(), later, "{b}");
        drop(h);
        db.drop_database().await;
    }
}

/// An authorizer on the embedded facade, deciding with the real Cerbos, caches an allow for two minutes; the
/// membership is revoked and pushed, and within the facade's refresh interval the allow is gone.
#[tokio::test]
async fn an_embedded_authorizer_drops_decisions_when_a_push_completes() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let db = TestDatabase::sqlite();
    let h = Heimdall::builder(Config {
        database_url: db.url.clone(),
        mapping_refresh_interval: Duration::from_millis(100),
        ..Config::default()
    })
    .build()
    .await
    .unwrap();
    let root = course_editors(&h).await;
    h.create_mapping(
        &root,
        &MappingInput {
            method: "POST".to_owned(),
            path_pattern: "/courses".to_owned(),
            action: "course:create".to_owned(),
            ..MappingInput::default()
        },
    )
    .await
    .unwrap();
    h.add_member(&root, "go:course:editor", "alice").await.unwrap();
    let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast());
    drain(&h, &worker).await;
    // The facade reads the pushed version now (not in a background refresh that may land later, and move the
    // cached allow's key while the revocation is already in Cerbos): the allow is cached against it.
    let (change, pushed) = h.change_and_pushed_version().await.unwrap();
    assert_eq!(
        (h.pushed_version_seen(), pushed),
        (change, change),
        "alice's membership is pushed"
    );

    let jwks = JwksServer::start(include_str!("../fixtures/jwt/jwks.json")).await;
    let verifier = TokenVerifier::new(IdentityConfig::new(jwks.url())).unwrap();
    let config = AuthorizerConfig {
        decision_ttl: Duration::from_secs(120),
        ..AuthorizerConfig::default()
    };
    let authorizer = Authorizer::new(
        verifier,
        MappingSource::Embedded(h.clone()),
        Arc::new(cerbos.client()),
        config,
    );
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    let now = chrono::DateTime::timestamp(&heimdall_core::Clock::now(&heimdall_core::SystemClock));
    let token = jsonwebtoken::encode(
        &header,
        &json!({"preferred_username": "alice", "iat": now, "exp": now + 600}),
        &EncodingKey::from_rsa_pem(include_bytes!("../fixtures/jwt/rsa.pem")).unwrap(),
    )
    .unwrap();
    let status = || async {
        match authorizer.authorize("POST", "/courses", Some(&token)).await {
            Ok(_) => 200,
            Err(r) => r.status,
        }
    };
    assert_eq!(status().await, 200, "alice's membership is in Cerbos");

    h.remove_member(&root, "go:course:editor", "alice").await.unwrap();
    let revoked_at = h.change_version().await.unwrap();
    // Until the push, Cerbos still allows (and the cached allow stands), while the facade re-reads the
    // versions every 100 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status().await, 200, "Cerbos holds the old policy until the push");
    assert_eq!(
        h.pushed_version_seen(),
        change,
        "nothing after the revocation is pushed yet"
    );
    drain(&h, &worker).await;
    let pushed = Instant::now();
    while status().await != 403 {
        assert!(
            pushed.elapsed() < Duration::from_secs(3),
            "the allow cached before the revocation was still served {:?} after its push",
            pushed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.pushed_version_seen() >= revoked_at);
    eprintln!("refused {:?} after the push completed", pushed.elapsed());
}
