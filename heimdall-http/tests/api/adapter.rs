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
        tokio::spawn(follow_export(remote, cell, move |v| {
            heard.fetch_max(v, Ordering::SeqCst);
        }))
    };
    until_resolves(&cell, "/a/1", "a:read", Duration::from_secs(10)).await;

    // A change reaches the snapshot through the feed within a second.
    api.post("/api/v1/mappings", &root, mapping("/b/:id", "b:read"))
        .await
        .expect(201);
    let took = until_resolves(&cell, "/b/1", "b:read", Duration::from_secs(1)).await;
    eprintln!("mapping change reached the adapter's snapshot in {took:?}");
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

    follower.abort();
    assert!(server.stop().success());
}
