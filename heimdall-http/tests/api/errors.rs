//! Every error status, in the one JSON body; bad input changes nothing; JIT provisioning; the audit trail of
//! allowed and denied calls; the per-caller rate limit.

use heimdall_core::test_utils::TestDatabase;
use serde_json::json;

use crate::support::{Api, Idp, Process, claims, rs256, token};

#[tokio::test]
async fn errors_jit_audit_and_rate_limits() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut env = idp.env();
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    env.push(("HEIMDALL_BODY_LIMIT_BYTES", "2048".to_owned()));
    env.push(("HEIMDALL_MUTATIONS_PER_MINUTE", "20".to_owned()));
    let mut server = Process::serve(&env);
    let api = Api::new(&server.base);
    let root = token("root");
    let alice = token("alice");

    // JIT: alice exists once she calls; a changed claim refreshes her row.
    api.get("/api/v1/users/alice", &root).await.error(404, "not_found");
    let me = api.get("/api/v1/users/me", &alice).await.expect(200);
    assert_eq!(me.body["subject"], "alice");
    assert_eq!(me.body["display_name"], "Name of alice");
    let mut renamed = claims("alice");
    renamed["name"] = json!("Alice Liddell");
    let me = api.get("/api/v1/users/me", &rs256(&renamed)).await.expect(200);
    assert_eq!(me.body["display_name"], "Alice Liddell");
    assert_eq!(
        api.get("/api/v1/users/alice", &root).await.expect(200).body["display_name"],
        "Alice Liddell"
    );

    // 400: an invalid name; nothing was written.
    api.post("/api/v1/groups", &root, json!({"name": "go::bad"}))
        .await
        .error(400, "invalid_input");
    api.post("/api/v1/groups", &root, json!({"name": "x".repeat(129)}))
        .await
        .error(400, "invalid_input");
    api.get("/api/v1/groups?limit=0", &root)
        .await
        .error(400, "invalid_input");
    api.get("/api/v1/groups?limit=abc", &root)
        .await
        .error(400, "invalid_input");
    api.get("/api/v1/groups?unknown=1", &root)
        .await
        .error(400, "invalid_input");
    api.get("/api/v1/management-rights/not-a-number", &root)
        .await
        .error(405, "method_not_allowed");
    api.delete("/api/v1/management-rights/not-a-number", &root)
        .await
        .error(400, "invalid_input");
    assert_eq!(
        api.get("/api/v1/groups", &root).await.expect(200).body["items"],
        json!([])
    );

    // 415, 422, 413 (and still nothing written).
    let no_type = api
        .http
        .post(format!("{}/api/v1/groups", api.base))
        .bearer_auth(&root)
        .body(r#"{"name":"go:x"}"#)
        .send()
        .await
        .unwrap();
    Api::reply(no_type).await.error(415, "unsupported_media_type");
    api.post("/api/v1/groups", &root, json!({"nam": "go:x"}))
        .await
        .error(422, "unprocessable");
    api.post("/api/v1/groups", &root, json!({"name": 5}))
        .await
        .error(422, "unprocessable");
    let bad_json = api
        .http
        .post(format!("{}/api/v1/groups", api.base))
        .bearer_auth(&root)
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    Api::reply(bad_json).await.error(400, "invalid_input");
    api.post(
        "/api/v1/groups",
        &root,
        json!({"name": "go:big", "description": "d".repeat(4096)}),
    )
    .await
    .error(413, "payload_too_large");
    assert_eq!(
        api.get("/api/v1/groups", &root).await.expect(200).body["items"],
        json!([])
    );

    // 201, then 409 for the same name; 404 for what does not exist; 404/405 for routes.
    api.post("/api/v1/groups", &root, json!({"name": "go:x"}))
        .await
        .expect(201);
    api.post("/api/v1/groups", &root, json!({"name": "go:x"}))
        .await
        .error(409, "conflict");
    api.get("/api/v1/groups/go:nope", &root).await.error(404, "not_found");
    api.get("/api/v1/no/such/route", &root).await.error(404, "not_found");
    api.call("PATCH", "/api/v1/groups", Some(&root), None)
        .await
        .error(405, "method_not_allowed");

    // 403: alice may not create groups; the denial is audited, and so is root's success.
    api.post("/api/v1/groups", &alice, json!({"name": "go:alice"}))
        .await
        .error(403, "forbidden");
    api.get("/api/v1/groups/go:alice", &root).await.error(404, "not_found");
    let denied = api.get("/api/v1/audit?actor=alice", &root).await.expect(200);
    let row = &denied.body[0];
    assert_eq!(row["operation"], "create_group", "{}", denied.text);
    assert_eq!(row["success"], false);
    assert_eq!(row["result"]["outcome"], "denied");
    // Every attempt is audited with its outcome: two invalid, one done, one conflict.
    let rows = api
        .get("/api/v1/audit?actor=root&operation=create_group", &root)
        .await
        .expect(200);
    let outcomes: Vec<_> = rows
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["success"].as_bool().unwrap(),
                r["result"]["outcome"].as_str().unwrap_or("done").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (false, "conflict".to_owned()),
            (true, "done".to_owned()),
            (false, "invalid".to_owned()),
            (false, "invalid".to_owned())
        ],
        "{}",
        rows.text
    );
    assert_eq!(rows.body[1]["target_id"], "group:go:x");
    // By outcome: the one success alone.
    let done = api
        .get("/api/v1/audit?actor=root&operation=create_group&success=true", &root)
        .await
        .expect(200);
    assert_eq!(done.body.as_array().map(Vec::len), Some(1), "{}", done.text);
    assert_eq!(done.body[0]["target_id"], "group:go:x");
    // Only superadmins read the audit log; a page is bounded.
    api.get("/api/v1/audit", &alice).await.error(403, "forbidden");
    api.get("/api/v1/audit?limit=100000", &root)
        .await
        .error(400, "invalid_input");

    // 429 with Retry-After once a caller spends the minute's budget of mutations; other callers go on.
    let spammer = token("spammer");
    let mut limited = None;
    for i in 0..25 {
        let r = api
            .post("/api/v1/groups", &spammer, json!({"name": format!("go:spam{i}")}))
            .await;
        if r.status == 429 {
            limited = Some((i, r));
            break;
        }
        assert_eq!(r.status, 403, "{}", r.text);
    }
    let (i, r) = limited.expect("the rate limit answered 429");
    assert_eq!(i, 20, "the budget is 20 a minute");
    let r = r.error(429, "rate_limited");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    api.post("/api/v1/groups", &root, json!({"name": "go:y"}))
        .await
        .expect(201);
    // Reads are not rate limited.
    api.get("/api/v1/groups", &spammer).await.expect(200);

    assert!(server.stop().success());
}
