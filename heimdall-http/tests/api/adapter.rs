//! An adapter's mapping snapshot follows a running heimdall-http (core's `follow_export`): loaded from the
//! export, kept fresh by the change feed, kept while heimdall-http is down, and refreshed again after it is
//! restarted.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use heimdall_core::authorizer::{RemoteMappings, SnapshotCell, follow_export};
use heimdall_core::mapping::Resolution;
use heimdall_core::test_utils::TestDatabase;
use serde_json::json;

use crate::support::{Api, Idp, Process, secret, token};

/// Waits (at most `limit`) until the cell resolves `GET path` to `action`.
async fn until_resolves(cell: &SnapshotCell, path: &str, action: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if let Some(s) = cell.get()
            && let Resolution::Matched(m) = s.resolve("GET", path)
            && m.action().as_str() == action
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{path} did not resolve to {action} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_follows_heimdall_http_through_a_restart() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let static_token = secret("static-token-of-the-adapter-test-xyz");
    let mut env = idp.env();
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    env.push(("STATIC_API_TOKEN", static_token.clone()));
    let mut server = Process::serve(&env);
    let api = Api::new(&server.base);
    let root = token("root");
    let mapping = |path: &str, action: &str| json!({"method": "GET", "path_pattern": path, "action": action});
    api.post("/api/v1/mappings", &root, mapping("/a/:id", "a:read"))
        .await
        .expect(201);

    let cell = SnapshotCell::new();
    let heard = Arc::new(AtomicI64::new(0));
    let remote = RemoteMappings {
        poll_interval: Duration::from_secs(2),
        ..RemoteMappings::new(&server.base, &static_token)
    };
    let follower = {
        let (cell, heard) = (cell.clone(), heard.clone());
        tokio::spawn(follow_export(remote, cell, None, move |v| {
            heard.fetch_max(v.change_version, Ordering::SeqCst);
        }))
    };
    until_resolves(&cell, "/a/1", "a:read", Duration::from_secs(10)).await;

    // A change reaches the snapshot through the feed within a second.
    api.post("/api/v1/mappings", &root, mapping("/b/:id", "b:read"))
        .await
        .expect(201);
    let took = until_resolves(&cell, "/b/1", "b:read", Duration::from_secs(1)).await;
    eprintln!("mapping change reached the adapter's snapshot in {took:?}");
    // It came as a delta: one whole export at the start, then only what changed.
    let (exports, deltas) = cell.loads();
    assert_eq!(
        (exports, deltas),
        (1, 1),
        "the follower's loads: (whole exports, deltas)"
    );
    // The delta itself: the new mapping, the version reached, the checksum of the mappings there.
    let at = cell.get().unwrap().version();
    let before_b = api
        .get(&format!("/api/v1/mappings/changes?since={}", at - 1), &static_token)
        .await
        .expect(200);
    assert_eq!(before_b.body["version"], at);
    assert_eq!(
        before_b.body["upserts"][0]["path_pattern"], "/b/:id",
        "{}",
        before_b.text
    );
    assert_eq!(before_b.body["removed"], json!([]));
    assert_eq!(
        before_b.body["checksum"],
        format!("{:016x}", cell.get().unwrap().checksum())
    );
    assert!(
        before_b.text.len() < 2048,
        "one change is {} bytes",
        before_b.text.len()
    );
    api.get(&format!("/api/v1/mappings/changes?since={}", at + 1), &static_token)
        .await
        .error(404, "not_found");
    api.get("/api/v1/mappings/changes", &static_token)
        .await
        .error(400, "invalid_input");
    let version = api.get("/api/v1/changes/version", &static_token).await.expect(200).body["change_version"]
        .as_i64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while heard.load(Ordering::SeqCst) < version {
        assert!(Instant::now() < deadline, "the change version was not passed on");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // heimdall-http goes away: the last good snapshot keeps answering, and its age grows.
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    assert!(server.stop().success());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    until_resolves(&cell, "/b/2", "b:read", Duration::from_millis(10)).await;
    assert!(cell.age().unwrap() >= Duration::from_millis(1000), "{:?}", cell.age());

    // Back on the same port (the same database): changes flow again.
    let mut env = env.clone();
    env.push(("PORT", port));
    let mut server = Process::serve(&env);
    let api = Api::new(&server.base);
    api.post("/api/v1/mappings", &root, mapping("/c/:id", "c:read"))
        .await
        .expect(201);
    until_resolves(&cell, "/c/1", "c:read", Duration::from_secs(10)).await;
    let (exports, deltas) = cell.loads();
    assert_eq!(exports, 1, "the restart needed no whole export (its ETag matched)");
    assert!(deltas >= 2, "deltas applied: {deltas}");

    follower.abort();
    assert!(server.stop().success());
}

/// An authorizer deciding locally from heimdall-http's grants export: a new membership is allowed, and a
/// revoked one denied, within one change-feed round trip; no Cerbos is involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_decisions_follow_the_grants_export() {
    use heimdall_core::authorizer::{Authorizer, AuthorizerConfig, Decider};
    use heimdall_core::identity::{IdentityConfig, TokenVerifier};

    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut env = idp.env();
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    let mut server = Process::serve(&env);
    let api = Api::new(&server.base);
    let root = token("root");
    api.course_readers(&root).await;
    // Only an API key with grants:read (or the static token) reads the grants.
    let mappings_only = api
        .post(
            "/api/v1/api-keys",
            &root,
            json!({"name": "mappings-only", "scopes": ["mappings:read"]}),
        )
        .await
        .expect(201);
    let mappings_only = secret(mappings_only.body["secret"].as_str().unwrap());
    api.get("/api/v1/grants/export", &mappings_only)
        .await
        .error(403, "forbidden");
    api.get("/api/v1/grants/export", &root)
        .await
        .error(401, "unauthenticated");
    let key = api
        .post(
            "/api/v1/api-keys",
            &root,
            json!({"name": "adapter", "scopes": ["mappings:read", "grants:read"]}),
        )
        .await
        .expect(201);
    let key = secret(key.body["secret"].as_str().unwrap());

    let verifier = TokenVerifier::new(IdentityConfig::new(idp.jwks_url.clone())).unwrap();
    let remote = RemoteMappings {
        poll_interval: Duration::from_secs(5),
        ..RemoteMappings::new(&server.base, &key)
    };
    let (authorizer, follower) =
        Authorizer::following(verifier, remote, Decider::Local, AuthorizerConfig::default()).unwrap();
    let alice = token("alice");
    let decide = |expected: u16| {
        let (authorizer, alice) = (authorizer.clone(), alice.clone());
        async move {
            let started = Instant::now();
            loop {
                let status = match authorizer.authorize("GET", "/courses/1", Some(&alice)).await {
                    Ok(_) => 200,
                    Err(r) => r.status,
                };
                if status == expected {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "still {status}, not {expected}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    decide(403).await;
    api.post("/api/v1/groups/go:readers/members", &root, json!({"subject": "alice"}))
        .await
        .expect(201);
    let took = decide(200).await;
    eprintln!("a new membership was allowed locally after {took:?}");
    api.delete("/api/v1/groups/go:readers/members/alice", &root)
        .await
        .expect(204);
    let took = decide(403).await;
    assert!(took < Duration::from_secs(1), "the revocation took {took:?}");
    follower.abort();
    assert!(server.stop().success());
}

/// A follower whose credential heimdall-http refuses (here: its API key is revoked while it follows) stops
/// asking, says so (`credential_refused`, readiness false) and stays closed: every request is refused, also
/// the ones its last snapshot could have decided. The same follower configured with `allow_before_snapshot`
/// lets requests through only until its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_credential_is_refused_stays_closed() {
    use heimdall_core::authorizer::{Authorizer, AuthorizerConfig, Decider};
    use heimdall_core::identity::{IdentityConfig, TokenVerifier};

    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut env = idp.env();
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    let server = Process::serve(&env);
    let api = Api::new(&server.base);
    let root = token("root");
    api.post(
        "/api/v1/mappings",
        &root,
        json!({"method": "GET", "path_pattern": "/courses/:id", "action": "course:read"}),
    )
    .await
    .expect(201);
    let key = api
        .post(
            "/api/v1/api-keys",
            &root,
            json!({"name": "follower", "scopes": ["mappings:read", "grants:read"]}),
        )
        .await
        .expect(201);
    let key_id = key.body["id"].as_i64().unwrap();
    let key = secret(key.body["secret"].as_str().unwrap());
    let verifier = || TokenVerifier::new(IdentityConfig::new(idp.jwks_url.clone())).unwrap();
    let remote = RemoteMappings {
        poll_interval: Duration::from_millis(500),
        ..RemoteMappings::new(&server.base, &key)
    };
    let (authorizer, follower) =
        Authorizer::following(verifier(), remote, Decider::Local, AuthorizerConfig::default()).unwrap();
    let started = Instant::now();
    while !authorizer.is_ready() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the follower never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alice = token("alice");
    assert_eq!(
        authorizer
            .authorize("GET", "/courses/1", Some(&alice))
            .await
            .unwrap_err()
            .status,
        403,
        "decided while the credential works"
    );
    api.delete(&format!("/api/v1/api-keys/{key_id}"), &root)
        .await
        .expect(204);
    let started = Instant::now();
    while authorizer.credential_refused().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the follower did not notice its revoked credential"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !authorizer.is_ready(),
        "readiness is false once the credential is refused"
    );
    let refusal = authorizer
        .authorize("GET", "/courses/1", Some(&alice))
        .await
        .unwrap_err();
    assert_eq!((refusal.status, refusal.code), (503, "unavailable"), "{refusal:?}");
    // It stopped asking: the follower task ended by itself.
    let started = Instant::now();
    while !follower.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the follower keeps retrying"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // allow_before_snapshot lasts until its deadline, no longer: a follower that never gets a snapshot.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = RemoteMappings::new(format!("http://127.0.0.1:{port}"), "hk_nothing");
    let lenient = AuthorizerConfig {
        allow_before_snapshot: true,
        before_snapshot_deadline: Duration::from_millis(400),
        ..AuthorizerConfig::default()
    };
    let (lenient, task) = Authorizer::following(verifier(), nowhere, Decider::Local, lenient).unwrap();
    let grant = lenient.authorize("GET", "/courses/1", Some(&alice)).await.unwrap();
    assert_eq!(
        (grant.action, grant.mapping_id),
        (None, None),
        "let through, unchecked, before the deadline"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refusal = lenient.authorize("GET", "/courses/1", Some(&alice)).await.unwrap_err();
    assert_eq!(
        refusal.status, 503,
        "past the deadline, no snapshot means no: {refusal:?}"
    );
    task.abort();
}

/// A cached decision is never older than what Cerbos enforces: a follower deciding with Cerbos keeps allows
/// for a long `decision_ttl`, a membership is revoked, and requests keep coming while the push worker brings
/// the change to Cerbos (so an allow Cerbos gives before the push lands may be cached meanwhile). Once the
/// feed reports the pushed version past the revocation, no request is allowed, from the cache or otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cached_allow_outlives_the_push_of_a_revocation() {
    use heimdall_core::authorizer::{Authorizer, AuthorizerConfig, Decider};
    use heimdall_core::identity::{IdentityConfig, TokenVerifier};
    use heimdall_core::test_utils::cerbos::Cerbos;

    use crate::support::cerbos_env;

    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    cerbos.install_admin_pack().await;
    let idp = Idp::start().await;
    let mut env = idp.env();
    env.extend(cerbos_env(&cerbos));
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    env.push(("SYNC_RETRY_INTERVAL_SECONDS", "1".to_owned()));
    let server = Process::serve(&env);
    let _worker = Process::spawn(&["worker"], &env, None);
    let api = Api::new(&server.base);
    let root = token("root");
    api.course_readers(&root).await;
    api.post("/api/v1/groups/go:readers/members", &root, json!({"subject": "alice"}))
        .await
        .expect(201);
    let key = api
        .post(
            "/api/v1/api-keys",
            &root,
            json!({"name": "follower", "scopes": ["mappings:read"]}),
        )
        .await
        .expect(201);
    let key = secret(key.body["secret"].as_str().unwrap());

    let pdp = Arc::new(cerbos.client()) as Arc<dyn heimdall_core::pdp::Pdp>;
    let config = AuthorizerConfig {
        decision_ttl: Duration::from_secs(120),
        ..AuthorizerConfig::default()
    };
    let remote = RemoteMappings {
        poll_interval: Duration::from_secs(5),
        ..RemoteMappings::new(&server.base, &key)
    };
    let verifier = TokenVerifier::new(IdentityConfig::new(idp.jwks_url.clone())).unwrap();
    let (authorizer, follower) = Authorizer::following(verifier, remote, Decider::Pdp(pdp), config).unwrap();
    let alice = token("alice");
    let status = |authorizer: Authorizer, alice: String| async move {
        match authorizer.authorize("GET", "/courses/1", Some(&alice)).await {
            Ok(_) => 200,
            Err(r) => r.status,
        }
    };
    // The membership's push lands: allowed, and that allow is cached.
    let started = Instant::now();
    while status(authorizer.clone(), alice.clone()).await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the membership never reached Cerbos"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    api.delete("/api/v1/groups/go:readers/members/alice", &root)
        .await
        .expect(204);
    let revoked_at = api.get("/api/v1/changes/version", &key).await.expect(200).body["change_version"]
        .as_i64()
        .unwrap();
    // Ask all along, while the push is on its way: an allow may be cached in that window.
    let started = Instant::now();
    let mut allowed_meanwhile = 0;
    while authorizer.pushed_version().is_none_or(|p| p < revoked_at) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the feed never reported the push of version {revoked_at} (heard {:?})",
            authorizer.pushed_version()
        );
        if status(authorizer.clone(), alice.clone()).await == 200 {
            allowed_meanwhile += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "pushed version {revoked_at} heard after {:?}; {allowed_meanwhile} requests allowed before",
        started.elapsed()
    );
    for _ in 0..20 {
        assert_eq!(
            status(authorizer.clone(), alice.clone()).await,
            403,
            "allowed after the revocation's push completed"
        );
    }
    follower.abort();
}
