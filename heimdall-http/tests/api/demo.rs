//! The README's first command: `heimdall demo` prints a working superadmin token and calls that work.

use serde_json::json;

use crate::support::{Api, Process, secret};

#[tokio::test]
async fn the_demo_runs_the_admin_flow_it_prints() {
    let mut demo = Process::spawn(&["demo", "--port", "0"], &[], Some("Stop with Ctrl-C"));
    let banner = demo.stdout.join("\n");
    assert!(banner.contains("NOT FOR PRODUCTION"), "{banner}");
    assert!(banner.contains("127.0.0.1"), "{banner}");
    let token = |name: &str| {
        let line = demo
            .stdout
            .iter()
            .find(|l| l.contains(&format!("export {name}=")))
            .expect("a token line");
        secret(line.split_once('=').unwrap().1.trim())
    };
    let (admin, alice) = (token("ADMIN_TOKEN"), token("ALICE_TOKEN"));
    let api = Api::new(&demo.base);

    // The calls the banner shows, in order.
    api.post("/api/v1/groups", &admin, json!({"name": "go:course:editor"}))
        .await
        .expect(201);
    api.post(
        "/api/v1/groups/go:course:editor/members",
        &admin,
        json!({"subject": "alice"}),
    )
    .await
    .expect(201);
    api.post(
        "/api/v1/mappings",
        &admin,
        json!({"method": "POST", "path_pattern": "/courses/*", "action": "course:create", "owner_group": "go:course:editor"}),
    )
    .await
    .expect(201);
    let found = api
        .get("/api/v1/mappings?method=POST&path=/courses/123", &alice)
        .await
        .expect(200);
    assert_eq!(found.body["action"], "course:create");
    let user = api.get("/api/v1/users/alice", &alice).await.expect(200);
    assert_eq!(user.body["groups"], json!(["go:course:editor"]));
    let why = api
        .post(
            "/api/v1/explain",
            &admin,
            json!({"subject": "alice", "method": "POST", "path": "/courses/123"}),
        )
        .await
        .expect(200);
    assert_eq!(why.body["decided_by"], "builtin");
    // The demo is a plain user's too: alice may not create groups.
    api.post("/api/v1/groups", &alice, json!({"name": "go:alice"}))
        .await
        .error(403, "forbidden");

    assert!(demo.stop().success());
    assert!(demo.log().contains("NOT FOR PRODUCTION"));
}
