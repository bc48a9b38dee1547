//! Grants on demand (`Decider::OnDemand`): a follower deciding locally fetches a subject's grants from a running
//! heimdall-http on first use (`GET /api/v1/grants?subject=`), once however many requests ask at the same time,
//! holds at most its capacity, and drops a subject when `GET /api/v1/grants/changes` names them, so that a new
//! membership is allowed and a revoked one denied within one change-feed round trip.

use std::time::{Duration, Instant};

use heimdall_core::authorizer::{Authorizer, AuthorizerConfig, Decider, FollowedGrants, RemoteMappings};
use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::test_utils::TestDatabase;
use serde_json::json;

use crate::support::{Api, Idp, Process, secret, token};

/// Most subjects the follower holds.
const CAPACITY: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_on_demand_are_fetched_once_dropped_on_change_and_bounded() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut env = idp.env();
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    let mut server = Process::serve(&env);
    let api = Api::new(&server.base);
    let root = token("root");
    api.course_readers(&root).await;

    // The endpoints: grants:read only, clear 400s.
    let mappings_only = api
        .post(
            "/api/v1/api-keys",
            &root,
            json!({"name": "mappings-only", "scopes": ["mappings:read"]}),
        )
        .await
        .expect(201);
    let mappings_only = secret(mappings_only.body["secret"].as_str().unwrap());
    api.get("/api/v1/grants?subject=alice", &mappings_only)
        .await
        .error(403, "forbidden");
    api.get("/api/v1/grants/changes?since=0", &mappings_only)
        .await
        .error(403, "forbidden");
    let key = api
        .post(
            "/api/v1/api-keys",
            &root,
            json!({"name": "follower", "scopes": ["mappings:read", "grants:read"]}),
        )
        .await
        .expect(201);
    let key = secret(key.body["secret"].as_str().unwrap());
    let nobody = api.get("/api/v1/grants?subject=nobody", &key).await.expect(200);
    assert_eq!(nobody.body["subject"], "nobody");
    assert_eq!(nobody.body["permissions"], json!([]));
    api.get("/api/v1/grants", &key).await.error(400, "invalid_input");
    api.get("/api/v1/grants/changes?since=soon", &key)
        .await
        .error(400, "invalid_input");

    let verifier = TokenVerifier::new(IdentityConfig::new(idp.jwks_url.clone())).unwrap();
    let remote = RemoteMappings {
        poll_interval: Duration::from_secs(5),
        ..RemoteMappings::new(&server.base, &key)
    };
    let (authorizer, follower) = Authorizer::following(
        verifier,
        remote,
        Decider::OnDemand { capacity: CAPACITY },
        AuthorizerConfig::default(),
    )
    .unwrap();
    let Some(FollowedGrants::OnDemand(grants)) = authorizer.local_grants().cloned() else {
        panic!("an on-demand follower holds grants on demand");
    };
    let started = Instant::now();
    while !authorizer.is_ready() || grants.version().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the follower never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = |subject: &str| {
        let (authorizer, bearer) = (authorizer.clone(), token(subject));
        async move {
            match authorizer.authorize("GET", "/courses/1", Some(&bearer)).await {
                Ok(_) => 200,
                Err(r) => r.status,
            }
        }
    };

    // Twenty requests for a subject met for the first time: one fetch.
    let before = grants.fetches();
    let answers = futures_util::future::join_all((0..20).map(|_| status("bob"))).await;
    assert!(answers.iter().all(|s| *s == 403), "{answers:?}");
    assert_eq!(grants.fetches() - before, 1, "single flight");
    // Warm: no fetch.
    assert_eq!(status("bob").await, 403);
    assert_eq!(grants.fetches() - before, 1, "served from the cache");

    // A new membership is allowed, a revoked one denied, within a change-feed round trip.
    let until = |subject: &'static str, expected: u16| {
        let status = &status;
        async move {
            let started = Instant::now();
            loop {
                let got = status(subject).await;
                if got == expected {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "{subject}: still {got}, not {expected}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    until("alice", 403).await;
    api.post("/api/v1/groups/go:readers/members", &root, json!({"subject": "alice"}))
        .await
        .expect(201);
    let took = until("alice", 200).await;
    eprintln!("grants on demand: a new membership was allowed after {took:?}");
    api.delete("/api/v1/groups/go:readers/members/alice", &root)
        .await
        .expect(204);
    let took = until("alice", 403).await;
    assert!(took < Duration::from_secs(1), "the revocation took {took:?}");
    // bob's grants did not change: still cached, not fetched again.
    let fetched = grants.fetches();
    assert_eq!(status("bob").await, 403);
    assert_eq!(grants.fetches(), fetched, "an unchanged subject stays cached");

    // Bounded by the capacity, not by the subjects met.
    for i in 0..(4 * CAPACITY) {
        assert_eq!(status(&format!("visitor-{i}")).await, 403);
    }
    let held = grants.held().await;
    assert!(held <= CAPACITY, "{held} subjects held, capacity {CAPACITY}");

    follower.abort();
    assert!(server.stop().success());
}
