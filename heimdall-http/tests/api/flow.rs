//! The spec's whole flow over HTTP, with PostgreSQL, the real Cerbos, `heimdall serve` and `heimdall worker`
//! as the spec's two containers.

use std::time::{Duration, Instant};

use heimdall_core::pdp::Decision;
use heimdall_core::test_utils::TestDatabase;
use heimdall_core::test_utils::cerbos::{Cerbos, eventually};
use serde_json::{Value, json};

use crate::support::{Api, Idp, Process, cerbos_env, secret, token};

/// Reads the change feed until the next `versions` event, and returns its data.
pub(crate) async fn next_event(resp: &mut reqwest::Response, buffer: &mut String) -> Value {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if event.lines().any(|l| l == "event: versions") {
                let data = event.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                return serde_json::from_str(data).unwrap();
            }
            continue;
        }
        let chunk = resp.chunk().await.unwrap().expect("the feed ended");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_spec_flow_end_to_end() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    cerbos.install_admin_pack().await;
    let idp = Idp::start().await;
    let static_token = secret("static-token-of-the-flow-test-0123456789");
    let mut env = idp.env();
    env.extend(cerbos_env(&cerbos));
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    env.push(("STATIC_API_TOKEN", static_token.clone()));
    env.push(("SYNC_RETRY_INTERVAL_SECONDS", "1".to_owned()));
    let mut server = Process::serve(&env);
    let mut worker = Process::spawn(&["worker"], &env, None);
    let api = Api::new(&server.base);
    let root = token("root");
    let client = cerbos.client();

    // A NUL in a description (PostgreSQL's text cannot hold one) is invalid input, not a 500 (found by
    // schemathesis), and the refused attempt is still audited.
    api.post(
        "/api/v1/roles",
        &root,
        json!({"name": "go:nul", "description": "a\u{0}b"}),
    )
    .await
    .error(400, "invalid_input");
    api.post("/api/v1/groups", &root, json!({"name": "go:\u{0}"}))
        .await
        .error(400, "invalid_input");
    let audited = api
        .get("/api/v1/audit?actor=root&operation=create_role", &root)
        .await
        .expect(200);
    assert_eq!(audited.body[0]["result"]["outcome"], "invalid", "{}", audited.text);

    // The role and what it allows, the group and its role.
    api.post("/api/v1/roles", &root, json!({"name": "go:course:editor"}))
        .await
        .expect(201);
    api.call(
        "PUT",
        "/api/v1/roles/go:course:editor/permissions/course:create",
        Some(&root),
        Some(json!({"effect": "allow"})),
    )
    .await
    .expect(200);
    let g = api
        .post(
            "/api/v1/groups",
            &root,
            json!({"name": "go:course:editor", "description": "Course editors"}),
        )
        .await
        .expect(201);
    assert_eq!(g.body["name"], "go:course:editor");
    api.post(
        "/api/v1/groups/go:course:editor/roles",
        &root,
        json!({"role": "go:course:editor"}),
    )
    .await
    .expect(201);

    // Add a member: 201, then 200; percent-encoded group names are the same group.
    let added = api
        .post(
            "/api/v1/groups/go:course:editor/members",
            &root,
            json!({"subject": "alice"}),
        )
        .await
        .expect(201);
    assert_eq!(
        added.body,
        json!({"status": "member_added", "group": "go:course:editor", "subject": "alice"})
    );
    let again = api
        .post(
            "/api/v1/groups/go%3Acourse%3Aeditor/members",
            &root,
            json!({"subject": "alice"}),
        )
        .await
        .expect(200);
    assert_eq!(again.body["status"], "already_member");

    // The worker pushed alice's principal policy: Cerbos now allows her course:create.
    eventually(&client, "alice", "course:create", Decision::Allow).await;

    // A mapping, the adapter's lookup (static token), the export with its ETag, and the change feed.
    let m = api
        .post(
            "/api/v1/mappings",
            &root,
            json!({"method": "POST", "path_pattern": "/courses/*", "action": "course:create", "owner_group": "go:course:editor"}),
        )
        .await
        .expect(201);
    let id = m.body["id"].as_i64().unwrap();
    let found = api
        .get("/api/v1/mappings?path=/courses/123&method=POST", &static_token)
        .await
        .expect(200);
    assert_eq!(
        found.body,
        json!({"mapping_id": id, "action": "course:create", "path_pattern": "/courses/*", "owner_group": "go:course:editor", "params": {}})
    );
    api.get("/api/v1/mappings?path=/nothing/here&method=POST", &static_token)
        .await
        .error(404, "not_found");
    api.get("/api/v1/mappings?path=/courses/a%252Fb&method=POST", &static_token)
        .await
        .error(400, "invalid_input");

    let export = api.get("/api/v1/mappings/export", &static_token).await.expect(200);
    let etag = export.header("etag").unwrap().to_owned();
    assert_eq!(export.body["mappings"].as_array().unwrap().len(), 1);
    assert_eq!(etag, format!("\"m{}\"", export.body["version"]));
    let resp = api
        .http
        .get(format!("{}/api/v1/mappings/export", api.base))
        .bearer_auth(&static_token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 304);

    let mut feed = api
        .http
        .get(format!("{}/api/v1/changes/stream", api.base))
        .bearer_auth(&static_token)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    let mut buffer = String::new();
    let first = next_event(&mut feed, &mut buffer).await;
    assert_eq!(first["mapping_version"], export.body["version"]);
    let changed = Instant::now();
    api.post(
        "/api/v1/mappings",
        &root,
        json!({"method": "GET", "path_pattern": "/courses/:id", "action": "course:read", "owner_group": "go:course:editor"}),
    )
    .await
    .expect(201);
    let next = tokio::time::timeout(Duration::from_secs(1), next_event(&mut feed, &mut buffer))
        .await
        .expect("the feed tells a subscriber within a second");
    assert!(
        next["mapping_version"].as_i64() > first["mapping_version"].as_i64(),
        "{next}"
    );
    eprintln!("change feed latency: {:?}", changed.elapsed());
    let export2 = api.get("/api/v1/mappings/export", &static_token).await.expect(200);
    assert_ne!(export2.header("etag").unwrap(), etag);
    assert_eq!(export2.body["version"], next["mapping_version"]);

    // The user, then removing the member: Cerbos denies again.
    let alice = api.get("/api/v1/users/alice", &root).await.expect(200);
    assert_eq!(alice.body["groups"], json!(["go:course:editor"]));
    assert_eq!(alice.body["roles"], json!(["go:course:editor"]));
    api.delete("/api/v1/groups/go:course:editor/members/alice", &root)
        .await
        .expect(204);
    eventually(&client, "alice", "course:create", Decision::Deny).await;
    let alice = api.get("/api/v1/users/alice", &root).await.expect(200);
    assert_eq!(alice.body["groups"], json!([]));

    // Readiness sees both dependencies; the open feed does not hold up a graceful stop.
    let ready = api.call("GET", "/readyz", None, None).await.expect(200);
    assert_eq!(ready.body["cerbos"], "ok");
    assert_eq!(ready.body["database"], "ok");
    drop(feed);
    assert!(worker.stop().success(), "{}", worker.log());
    assert!(server.stop().success(), "{}", server.log());
}

/// A request that takes too long is answered 503 with the JSON body; on SIGTERM the server lets a request in
/// flight finish before it exits. The slow request is a reconciliation while Cerbos is frozen (SIGSTOP: it
/// accepts connections and answers nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_graceful_shutdown() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut env = idp.env();
    // The built-in PDP decides; only the reconciliation talks to Cerbos.
    env.extend(
        cerbos_env(&cerbos)
            .into_iter()
            .filter(|(k, _)| *k != "CERBOS_CHECK_URL"),
    );
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    let root = token("root");

    // A 1 s limit: the frozen Cerbos makes the reconciliation overrun it.
    let mut short = env.clone();
    short.push(("HEIMDALL_REQUEST_TIMEOUT_SECONDS", "1".to_owned()));
    let mut server = Process::serve(&short);
    let api = Api::new(&server.base);
    api.post("/api/v1/reconcile/push-to-cerbos", &root, json!({}))
        .await
        .expect(200);
    api.post("/api/v1/reconcile/push-to-cerbos", &token("alice"), json!({}))
        .await
        .error(403, "forbidden");
    cerbos.pause(true);
    let started = Instant::now();
    let r = api
        .post("/api/v1/reconcile/push-to-cerbos", &root, json!({}))
        .await
        .error(503, "timeout");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(r.header("x-request-id").is_some());
    cerbos.pause(false);
    assert!(server.stop().success());

    // SIGTERM while a reconciliation waits on the frozen Cerbos: it finishes (200) once Cerbos thaws, and
    // only then does the server exit.
    let mut server = Process::serve(&env);
    let api = Api::new(&server.base);
    cerbos.pause(true);
    let in_flight = {
        let (api, root) = (api.clone(), root.clone());
        tokio::spawn(async move { api.post("/api/v1/reconcile/push-to-cerbos", &root, json!({})).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = server.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(server.running(), "the server exited with a request in flight");
    cerbos.pause(false);
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(server.stop().success(), "{}", server.log());
}
