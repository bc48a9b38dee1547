//! Every admin endpoint's success path, end to end: listing and paging, roles and permissions, group and
//! user roles, management rights with a path scope (and a manager acting inside it), mappings read, replaced
//! and deleted.

use heimdall_core::test_utils::TestDatabase;
use serde_json::json;

use crate::support::{Api, Idp, Process, token};

#[tokio::test]
async fn every_admin_endpoint_round_trips() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut env = idp.env();
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    let mut server = Process::serve(&env);
    let api = Api::new(&server.base);
    let root = token("root");

    // Groups: create three, list by prefix, page through.
    for name in ["go:a", "go:b", "rmi:c"] {
        api.post(
            "/api/v1/groups",
            &root,
            json!({"name": name, "description": format!("group {name}")}),
        )
        .await
        .expect(201);
    }
    let page = api.get("/api/v1/groups?prefix=go:&limit=1", &root).await.expect(200);
    assert_eq!(page.body["items"][0]["name"], "go:a");
    assert_eq!(page.body["next"], "go:a");
    let page = api
        .get("/api/v1/groups?prefix=go:&limit=1&after=go:a", &root)
        .await
        .expect(200);
    assert_eq!(page.body["items"][0]["name"], "go:b");
    let last = api.get("/api/v1/groups?prefix=go:&after=go:b", &root).await.expect(200);
    assert_eq!(last.body, json!({"items": [], "next": null}));
    assert_eq!(
        api.get("/api/v1/groups/go%3Aa", &root).await.expect(200).body["description"],
        "group go:a"
    );

    // Roles and permissions.
    api.post("/api/v1/roles", &root, json!({"name": "go:editor"}))
        .await
        .expect(201);
    api.post("/api/v1/roles", &root, json!({"name": "go:viewer"}))
        .await
        .expect(201);
    let roles = api.get("/api/v1/roles?limit=1000", &root).await.expect(200);
    let names: Vec<_> = roles.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert!(
        names.contains(&json!("go:editor")) && names.contains(&json!("go:viewer")),
        "{names:?}"
    );
    api.call(
        "PUT",
        "/api/v1/roles/go:editor/permissions/course:edit",
        Some(&root),
        Some(json!({"effect": "allow"})),
    )
    .await
    .expect(200);
    api.call(
        "PUT",
        "/api/v1/roles/go:editor/permissions/course:delete",
        Some(&root),
        Some(json!({"effect": "deny"})),
    )
    .await
    .expect(200);
    let perms = api.get("/api/v1/roles/go:editor/permissions", &root).await.expect(200);
    assert_eq!(perms.body.as_array().unwrap().len(), 2, "{}", perms.text);
    api.delete("/api/v1/roles/go:editor/permissions/course:delete", &root)
        .await
        .expect(204);
    assert_eq!(
        api.get("/api/v1/roles/go:editor/permissions", &root)
            .await
            .expect(200)
            .body,
        json!([{"role": "go:editor", "action": "course:edit", "effect": "allow"}])
    );

    // Group roles, members, user roles.
    api.post("/api/v1/groups/go:a/roles", &root, json!({"role": "go:editor"}))
        .await
        .expect(201);
    let again = api
        .post("/api/v1/groups/go:a/roles", &root, json!({"role": "go:editor"}))
        .await
        .expect(200);
    assert_eq!(again.body["status"], "already_assigned");
    assert_eq!(
        api.get("/api/v1/groups/go:a/roles", &root).await.expect(200).body,
        json!(["go:editor"])
    );
    for subject in ["bob", "carol"] {
        api.post("/api/v1/groups/go:a/members", &root, json!({"subject": subject}))
            .await
            .expect(201);
    }
    let members = api.get("/api/v1/groups/go:a/members?limit=1", &root).await.expect(200);
    assert_eq!(members.body, json!({"items": ["bob"], "next": "bob"}));
    api.post("/api/v1/users/carol/roles", &root, json!({"role": "go:viewer"}))
        .await
        .expect(201);
    let carol = api.get("/api/v1/users/carol", &root).await.expect(200);
    assert_eq!(carol.body["roles"], json!(["go:editor", "go:viewer"]));
    api.delete("/api/v1/users/carol/roles/go:viewer", &root)
        .await
        .expect(204);
    api.delete("/api/v1/groups/go:a/roles/go:editor", &root)
        .await
        .expect(204);
    assert_eq!(
        api.get("/api/v1/users/carol", &root).await.expect(200).body["roles"],
        json!([])
    );

    // A management right with a path scope: members of go:a manage go:b and its mappings under /b/**.
    let right = api
        .post(
            "/api/v1/management-rights",
            &root,
            json!({"manager_group": "go:a", "target_pattern": "go:b", "path_scope": "/b/**"}),
        )
        .await
        .expect(201);
    assert_eq!(right.body["path_scope"], "/b/**");
    let listed = api
        .get("/api/v1/management-rights?manager_group=go:a", &root)
        .await
        .expect(200);
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    let bob = token("bob");
    api.post("/api/v1/groups/go:b/members", &bob, json!({"subject": "dave"}))
        .await
        .expect(201);
    api.post("/api/v1/groups/rmi:c/members", &bob, json!({"subject": "dave"}))
        .await
        .error(403, "forbidden");
    let m = api
        .post(
            "/api/v1/mappings",
            &bob,
            json!({"method": "GET", "path_pattern": "/b/items/:id", "action": "item:read", "owner_group": "go:b"}),
        )
        .await
        .expect(201);
    api.post(
        "/api/v1/mappings",
        &bob,
        json!({"method": "GET", "path_pattern": "/c/items", "action": "item:read", "owner_group": "go:b"}),
    )
    .await
    .error(403, "forbidden");
    // Nor may he take requests from a mapping he may not edit (issue 18.3): 403 naming it.
    let ops = api
        .post(
            "/api/v1/mappings",
            &root,
            json!({"method": "GET", "path_pattern": "/b/ops/:id", "action": "ops:read"}),
        )
        .await
        .expect(201);
    let refused = api
        .post(
            "/api/v1/mappings",
            &bob,
            json!({"method": "GET", "path_pattern": "/b/ops/restart", "action": "ops:restart", "owner_group": "go:b"}),
        )
        .await
        .error(403, "forbidden");
    let named = format!("would shadow mapping {} (GET /b/ops/:id)", ops.body["id"]);
    assert!(refused.text.contains(&named), "{}", refused.text);
    api.delete(&format!("/api/v1/mappings/{}", ops.body["id"]), &root)
        .await
        .expect(204);
    let id = m.body["id"].as_i64().unwrap();

    // Mappings: read, list, replace, delete.
    assert_eq!(
        api.get(&format!("/api/v1/mappings/{id}"), &root).await.expect(200).body["action"],
        "item:read"
    );
    let replaced = api
        .call(
            "PUT",
            &format!("/api/v1/mappings/{id}"),
            Some(&bob),
            Some(json!({"method": "ANY", "path_pattern": "/b/items/:id", "action": "item:use", "owner_group": "go:b", "description": "any method"})),
        )
        .await
        .expect(200);
    assert_eq!(replaced.body["method"], "ANY");
    let list = api.get("/api/v1/mappings?limit=10", &root).await.expect(200);
    assert_eq!(list.body["items"][0]["action"], "item:use");
    let hit = api
        .get("/api/v1/mappings?path=/b/items/9&method=DELETE", &root)
        .await
        .expect(200);
    assert_eq!(hit.body["params"], json!({"id": "9"}));
    // The lookup takes the method exactly as received: methods are upper-case tokens, `delete` is refused;
    // and so is a needless escape (`%40` for `@`, sent percent-encoded once more as a query value).
    for lookup in [
        "/api/v1/mappings?path=/b/items/9&method=delete",
        "/api/v1/mappings?path=/b/items/9&method=Delete",
        "/api/v1/mappings?path=/b/items/%2540me&method=DELETE",
    ] {
        let refused = api.get(lookup, &root).await.error(400, "invalid_input");
        let message = refused.body["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(
            message.contains("invalid_method") || message.contains("needless_percent_escape"),
            "{lookup}: {message}"
        );
    }
    api.delete(&format!("/api/v1/mappings/{id}"), &bob).await.expect(204);
    api.get(&format!("/api/v1/mappings/{id}"), &root)
        .await
        .error(404, "not_found");

    // Removing what was made.
    api.delete(&format!("/api/v1/management-rights/{}", right.body["id"]), &root)
        .await
        .expect(204);
    api.post("/api/v1/groups/go:b/members", &bob, json!({"subject": "erin"}))
        .await
        .error(403, "forbidden");
    api.delete("/api/v1/groups/go:a/members/carol", &root).await.expect(204);
    api.delete("/api/v1/groups/rmi:c", &root).await.expect(204);
    api.delete("/api/v1/roles/go:viewer", &root).await.expect(204);
    api.get("/api/v1/groups/rmi:c", &root).await.error(404, "not_found");

    assert!(server.stop().success());
}
