//! API keys end to end: created by a superadmin (secret shown once), used on the adapter feeds, listed
//! without the secret, every use attributable in the audit log, revoked; the static token; and explain.

use heimdall_core::test_utils::TestDatabase;
use serde_json::json;

use crate::support::{Api, Idp, Process, secret, token};

#[tokio::test]
async fn api_keys_static_token_and_explain() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let static_token = secret("static-token-of-the-keys-test-abcdefgh");
    let mut env = idp.env();
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    env.push(("STATIC_API_TOKEN", static_token.clone()));
    let mut server = Process::serve(&env);
    let api = Api::new(&server.base);
    let root = token("root");
    let alice = token("alice");

    api.post("/api/v1/groups", &root, json!({"name": "go:team"}))
        .await
        .expect(201);
    api.post(
        "/api/v1/mappings",
        &root,
        json!({"method": "GET", "path_pattern": "/go/courses/:id", "action": "course:read", "owner_group": "go:team"}),
    )
    .await
    .expect(201);

    // Only superadmins make keys; a bad scope changes nothing.
    api.post(
        "/api/v1/api-keys",
        &alice,
        json!({"name": "adapter", "scopes": ["mappings:read"]}),
    )
    .await
    .error(403, "forbidden");
    api.post(
        "/api/v1/api-keys",
        &root,
        json!({"name": "adapter", "scopes": ["mappings:write"]}),
    )
    .await
    .error(400, "invalid_input");
    assert_eq!(api.get("/api/v1/api-keys", &root).await.expect(200).body, json!([]));
    let created = api
        .post(
            "/api/v1/api-keys",
            &root,
            json!({"name": "adapter", "scopes": ["mappings:read"]}),
        )
        .await
        .expect(201);
    let key = secret(created.body["secret"].as_str().unwrap());
    assert!(key.starts_with("hk_"));
    let id = created.body["id"].as_i64().unwrap();
    let grants_only = api
        .post(
            "/api/v1/api-keys",
            &root,
            json!({"name": "grants-only", "scopes": ["grants:read"]}),
        )
        .await
        .expect(201);
    let grants_key = secret(grants_only.body["secret"].as_str().unwrap());
    api.post(
        "/api/v1/api-keys",
        &root,
        json!({"name": "adapter", "scopes": ["mappings:read"]}),
    )
    .await
    .error(409, "conflict");

    // The key reads the feeds; it is not a user: admin endpoints refuse it.
    let found = api
        .get("/api/v1/mappings?path=/go/courses/7&method=GET", &key)
        .await
        .expect(200);
    assert_eq!(found.body["params"], json!({"id": "7"}));
    api.get("/api/v1/mappings/export", &key).await.expect(200);
    api.get("/api/v1/changes/version", &key).await.expect(200);
    api.get("/api/v1/groups", &key).await.error(401, "unauthenticated");
    api.get("/api/v1/mappings/export", &grants_key)
        .await
        .error(403, "forbidden");
    api.get("/api/v1/mappings/export", &static_token).await.expect(200);
    api.get("/api/v1/mappings/export", "static-token-but-wrong")
        .await
        .error(401, "unauthenticated");

    // Listed without the secret; its use is in the audit log under its name.
    let listed = api.get("/api/v1/api-keys", &root).await.expect(200);
    assert!(!listed.text.contains(&key[3..]), "the list shows the secret");
    assert_eq!(listed.body[0]["name"], "adapter");
    let uses = api.get("/api/v1/audit?actor=api_key:adapter", &root).await.expect(200);
    let ops: Vec<_> = uses
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request"]["operation"].clone())
        .collect();
    assert!(
        ops.contains(&json!("mappings_lookup")) && ops.contains(&json!("mappings_export")),
        "{}",
        uses.text
    );
    let all = api.get("/api/v1/audit?limit=1000", &root).await.expect(200);
    assert!(!all.text.contains(&key[3..]), "the audit log holds the secret");

    // Revoked: refused at once.
    api.delete(&format!("/api/v1/api-keys/{id}"), &alice)
        .await
        .error(403, "forbidden");
    api.delete(&format!("/api/v1/api-keys/{id}"), &root).await.expect(204);
    api.get("/api/v1/mappings/export", &key)
        .await
        .error(401, "unauthenticated");
    let listed = api.get("/api/v1/api-keys", &root).await.expect(200);
    assert!(listed.body[0]["revoked_at"].is_string(), "{}", listed.text);

    // Explain: why alice may not GET /go/courses/7 (no role), then with the role and the permission.
    let why = api
        .post(
            "/api/v1/explain",
            &root,
            json!({"subject": "alice", "method": "GET", "path": "/go/courses/7?x=1"}),
        )
        .await
        .expect(200);
    assert_eq!(why.body["decision"], "deny", "{}", why.text);
    assert_eq!(why.body["action"], "course:read");
    assert_eq!(why.body["candidates"][0]["path_pattern"], "/go/courses/:id");
    api.post("/api/v1/roles", &root, json!({"name": "go:reader"}))
        .await
        .expect(201);
    api.call(
        "PUT",
        "/api/v1/roles/go:reader/permissions/course:read",
        Some(&root),
        Some(json!({"effect": "allow"})),
    )
    .await
    .expect(200);
    api.post("/api/v1/groups/go:team/roles", &root, json!({"role": "go:reader"}))
        .await
        .expect(201);
    api.post("/api/v1/groups/go:team/members", &root, json!({"subject": "alice"}))
        .await
        .expect(201);
    let why = api
        .post(
            "/api/v1/explain",
            &root,
            json!({"token": alice, "method": "GET", "path": "/go/courses/7"}),
        )
        .await
        .expect(200);
    assert_eq!(why.body["decision"], "allow", "{}", why.text);
    assert_eq!(
        why.body["roles"],
        json!([{"role": "go:reader", "source": "group", "group": "go:team"}])
    );
    let rejected = api
        .post(
            "/api/v1/explain",
            &root,
            json!({"subject": "alice", "method": "GET", "path": "/go/x/../courses/7"}),
        )
        .await
        .expect(200);
    assert_eq!(rejected.body["decision"], "rejected_path");
    api.post(
        "/api/v1/explain",
        &alice,
        json!({"subject": "alice", "method": "GET", "path": "/go/courses/7"}),
    )
    .await
    .error(403, "forbidden");
    api.post(
        "/api/v1/explain",
        &root,
        json!({"method": "GET", "path": "/go/courses/7"}),
    )
    .await
    .error(400, "invalid_input");

    assert!(server.stop().success());
}
