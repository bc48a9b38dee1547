//! Explaining decisions: the path check, the candidates in the resolver's order, roles with their sources,
//! the decision (built-in, and by a real Cerbos after a push), and who may ask.

use std::sync::Arc;

use heimdall_core::model::{
    AuditQuery, Caller, DecidedBy, ExplainDecision, ExplainRequest, Explanation, MappingInput, PathCheck, PatternKind,
    RoleGrant, RoleSource,
};
use heimdall_core::sync::PushWorker;
use heimdall_core::test_utils::{TestDatabase, course_editors};
use heimdall_core::{Config, ErrorKind, Heimdall};
use serde_json::json;

use crate::support::caller;
use crate::support::cerbos::Cerbos;
use crate::sync::{drain, eventually, fast};

fn ask(subject: &str, method: &str, path: &str) -> ExplainRequest {
    ExplainRequest {
        subject: subject.to_owned(),
        method: method.to_owned(),
        path: path.to_owned(),
    }
}

fn mapping(method: &str, path: &str, action: &str, owner: Option<&str>, priority: i32) -> MappingInput {
    MappingInput {
        method: method.to_owned(),
        path_pattern: path.to_owned(),
        action: action.to_owned(),
        owner_group: owner.map(str::to_owned),
        priority,
        description: None,
    }
}

fn ids(e: &Explanation) -> Vec<i64> {
    e.candidates.iter().map(|c| c.mapping_id).collect()
}

/// The course-editor fixture (see `course_editors`), bob in the group and also holding its role directly,
/// a manager of `go:%` with the path scope `/go/**`, and these mappings, whose ids are returned in order.
async fn setup(h: &Heimdall) -> (Caller, Vec<i64>) {
    let root = course_editors(h).await;
    h.add_member(&root, "go:course:editor", "bob").await.unwrap();
    h.assign_user_role(&root, "bob", "go:course:editor").await.unwrap();
    h.create_group(&root, "go:admin", None).await.unwrap();
    h.create_management_right(&root, "go:admin", "go:%", Some("/go/**"))
        .await
        .unwrap();
    h.add_member(&root, "go:admin", "mgr").await.unwrap();
    let editors = Some("go:course:editor");
    let mut ids = Vec::new();
    for m in [
        mapping("POST", "/go/courses", "course:create", editors, 0),
        mapping("DELETE", "/go/courses/:id", "course:delete", editors, 0),
        mapping("ANY", "/go/courses/:id", "course:manage", editors, 0),
        mapping("GET", "/go/**", "go:read", None, 0),
        mapping("GET", "~/go/courses/[0-9]+", "course:read", None, 5),
        mapping("GET", "/**", "everything:read", None, 0),
        mapping("ANY", "~/go/.*", "go:any", None, -1),
        mapping("HEAD", "/go/courses/:id", "course:head", None, 0),
    ] {
        ids.push(h.create_mapping(&root, &m).await.unwrap().id);
    }
    (root, ids)
}

#[tokio::test]
async fn explanations_with_the_builtin_pdp_on_every_backend() {
    for db in TestDatabase::all().await {
        explanations_with_the_builtin_pdp(&db).await;
        db.drop_database().await;
    }
}

async fn explanations_with_the_builtin_pdp(db: &TestDatabase) {
    let h = crate::support::heimdall(db).await;
    let (root, m) = setup(&h).await;

    // Allowed: the path, the one candidate, both sources of bob's role, and the role that allows.
    let e = h
        .explain(&root, &ask("bob", "POST", "/go/courses?draft=1"))
        .await
        .unwrap();
    assert_eq!(
        e.path,
        PathCheck::Ok {
            path: "/go/courses".into()
        }
    );
    assert_eq!(ids(&e), [m[0], m[6]]);
    assert_eq!((e.winner, e.action.as_deref()), (Some(m[0]), Some("course:create")));
    assert!(e.known_user);
    assert_eq!(
        e.roles,
        [
            RoleGrant {
                role: "go:course:editor".into(),
                source: RoleSource::Direct,
                group: None
            },
            RoleGrant {
                role: "go:course:editor".into(),
                source: RoleSource::Group,
                group: Some("go:course:editor".into())
            },
        ]
    );
    assert_eq!(
        (e.decision, e.decided_by),
        (ExplainDecision::Allow, Some(DecidedBy::Builtin))
    );
    assert!(e.reason.contains("allowed by role go:course:editor"), "{}", e.reason);
    // As JSON, for the HTTP layer.
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["path"], json!({"status": "ok", "path": "/go/courses"}));
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["decided_by"], "builtin");
    assert_eq!(v["roles"][0], json!({"role": "go:course:editor", "source": "direct"}));
    assert_eq!(v["roles"][1]["group"], "go:course:editor");
    assert_eq!(v["candidates"][0]["kind"], "route");
    assert_eq!(v["candidates"][0]["owner_group"], "go:course:editor");

    // Denied: a deny beats the allow of the same role's other grants.
    let e = h.explain(&root, &ask("bob", "DELETE", "/go/courses/7")).await.unwrap();
    assert_eq!(ids(&e), [m[1], m[2], m[6]]);
    assert_eq!(e.decision, ExplainDecision::Deny);
    assert!(e.reason.contains("denied by role go:course:editor"), "{}", e.reason);

    // Method-specific before ANY, literal before parameter before `**`, routes before regexes, regexes by
    // method class then priority; HEAD consults HEAD, GET, then ANY.
    let e = h.explain(&root, &ask("bob", "GET", "/go/courses/7")).await.unwrap();
    assert_eq!(ids(&e), [m[2], m[3], m[5], m[4], m[6]]);
    assert_eq!(e.candidates[3].kind, PatternKind::Regex);
    assert_eq!(e.decision, ExplainDecision::Deny);
    assert!(e.reason.contains("no role of bob grants course:manage"), "{}", e.reason);
    let e = h.explain(&root, &ask("bob", "HEAD", "/go/courses/7")).await.unwrap();
    assert_eq!(ids(&e), [m[7], m[2], m[3], m[5], m[4], m[6]]);

    // The first candidate is always what resolving answers.
    for (method, path) in [
        ("GET", "/go/courses/7"),
        ("HEAD", "/go/courses/7"),
        ("POST", "/go/courses/7"),
        ("PROPFIND", "/go/courses/7"),
        ("GET", "/go/x/y"),
        ("GET", "/go"),
        ("PUT", "/go/x"),
        ("GET", "/"),
        ("DELETE", "/go/courses/1?x=/y"),
    ] {
        let e = h.explain(&root, &ask("bob", method, path)).await.unwrap();
        let resolved = h.resolve(method, path).await.unwrap().map(|r| r.mapping_id);
        assert_eq!(e.winner, resolved, "{method} {path}");
        assert_eq!(e.candidates.first().map(|c| c.mapping_id), resolved, "{method} {path}");
        assert_eq!(
            e.action,
            h.resolve(method, path).await.unwrap().map(|r| r.action.to_string())
        );
    }

    // No mapping, a rejected path: nobody decides.
    let e = h.explain(&root, &ask("bob", "PUT", "/elsewhere")).await.unwrap();
    assert_eq!(
        (e.decision, e.decided_by, e.winner),
        (ExplainDecision::NoMapping, None, None)
    );
    assert!(e.candidates.is_empty());
    let e = h.explain(&root, &ask("bob", "GET", "/go/../admin")).await.unwrap();
    assert_eq!(
        e.path,
        PathCheck::Rejected {
            reason: "dot_segment".into()
        }
    );
    assert_eq!((e.decision, e.decided_by), (ExplainDecision::RejectedPath, None));
    assert!(e.candidates.is_empty() && e.action.is_none());

    // A method that is not an upper-case token is refused as an adapter refuses it; the path's own check
    // is reported as it is.
    let e = h.explain(&root, &ask("bob", "get", "/go/courses/7")).await.unwrap();
    assert_eq!(
        e.path,
        PathCheck::Ok {
            path: "/go/courses/7".into()
        }
    );
    assert_eq!((e.decision, e.decided_by), (ExplainDecision::RejectedPath, None));
    assert!(e.reason.contains("invalid_method"), "{}", e.reason);
    assert!(e.candidates.is_empty() && e.action.is_none());
    assert_eq!(
        h.resolve("get", "/go/courses/7").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let e = h.explain(&root, &ask("bob", "Get", "/go/%2e%2e/admin")).await.unwrap();
    assert_eq!(
        e.path,
        PathCheck::Rejected {
            reason: "dot_segment".into()
        }
    );
    assert_eq!(e.decision, ExplainDecision::RejectedPath);

    // An unknown subject holds no roles and is denied.
    let e = h.explain(&root, &ask("ghost", "POST", "/go/courses")).await.unwrap();
    assert!(!e.known_user && e.roles.is_empty());
    assert_eq!(e.decision, ExplainDecision::Deny);

    // Invalid input.
    for bad in [
        ask("", "GET", "/x"),
        ask("bob", "GE T", "/x"),
        ask("bob", "", "/x"),
        ask("bob", "GET", &format!("/{}", "a".repeat(10_000))),
    ] {
        let e = h.explain(&root, &bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }

    // Who may ask: a manager inside his path scope, not outside it; a plain user never.
    let mgr = caller(&h, "mgr").await;
    let e = h.explain(&mgr, &ask("bob", "POST", "/go/courses")).await.unwrap();
    assert_eq!(e.decision, ExplainDecision::Allow);
    let e = h.explain(&mgr, &ask("bob", "GET", "/go/%2e%2e/admin")).await.unwrap();
    assert_eq!(
        e.decision,
        ExplainDecision::RejectedPath,
        "a rejection reveals no mapping"
    );
    let bob = caller(&h, "bob").await;
    for (who, path) in [(&mgr, "/admin"), (&mgr, "/gox"), (&mgr, "/go"), (&bob, "/go/courses")] {
        let e = h.explain(who, &ask("bob", "GET", path)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden, "{} {path}", who.subject());
    }
    // Refusals and invalid input are audited; explanations given are not.
    let audited = h
        .audit_log(
            &root,
            &AuditQuery {
                operation: Some("explain".into()),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    let denied: Vec<_> = audited.iter().filter(|r| r.result["outcome"] == "denied").collect();
    assert_eq!(denied.len(), 4, "{audited:?}");
    assert_eq!(audited.len(), 8, "{audited:?}");
    assert!(audited.iter().all(|r| !r.success));
    let admin = denied
        .iter()
        .find(|r| r.request["path"] == "/admin")
        .expect("the refusal of /admin");
    assert_eq!(
        (admin.actor.as_deref(), admin.target_id.as_str()),
        (Some("mgr"), "mapping:explain")
    );
}

#[tokio::test]
async fn explanations_decided_by_cerbos_after_a_push() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    cerbos.install_admin_pack().await;
    let db = TestDatabase::sqlite();
    let h = Heimdall::builder(Config {
        database_url: db.url.clone(),
        ..Config::default()
    })
    .pdp(Arc::new(cerbos.client()))
    .build()
    .await
    .unwrap();
    let (root, m) = setup(&h).await;
    let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast());
    drain(&h, &worker).await;
    eventually(&client, "bob", "course:create", heimdall_core::pdp::Decision::Allow).await;

    let e = h.explain(&root, &ask("bob", "POST", "/go/courses")).await.unwrap();
    assert_eq!(
        (e.winner, e.decision, e.decided_by),
        (Some(m[0]), ExplainDecision::Allow, Some(DecidedBy::Cerbos))
    );
    assert!(e.reason.starts_with("Cerbos allows course:create"), "{}", e.reason);
    let e = h.explain(&root, &ask("bob", "DELETE", "/go/courses/1")).await.unwrap();
    assert_eq!(
        (e.decision, e.decided_by),
        (ExplainDecision::Deny, Some(DecidedBy::Cerbos))
    );
    assert!(!e.reason.contains("pending"), "{}", e.reason);

    // A member whose policy is not pushed yet: Cerbos denies, and the reason says the database would allow.
    h.add_member(&root, "go:course:editor", "carol").await.unwrap();
    let e = h.explain(&root, &ask("carol", "POST", "/go/courses")).await.unwrap();
    assert_eq!(e.decision, ExplainDecision::Deny);
    assert!(
        e.reason.contains("the database would allow it") && e.reason.contains("push may be pending"),
        "{}",
        e.reason
    );
    drain(&h, &worker).await;
    eventually(&client, "carol", "course:create", heimdall_core::pdp::Decision::Allow).await;
    let e = h.explain(&root, &ask("carol", "POST", "/go/courses")).await.unwrap();
    assert_eq!(e.decision, ExplainDecision::Allow);

    // Who may ask is Cerbos' decision too, with the pack.
    let mgr = caller(&h, "mgr").await;
    h.explain(&mgr, &ask("carol", "POST", "/go/courses")).await.unwrap();
    assert_eq!(
        h.explain(&mgr, &ask("carol", "GET", "/elsewhere"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden
    );
}
