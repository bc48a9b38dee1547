//! Deciding locally from the grants snapshot gives the same answers as the real Cerbos deciding from the
//! principal policies the push worker wrote, on a table of subjects and actions (allow, deny beating allow,
//! a role given directly, nothing granted, an unknown subject, another resource kind).

use std::sync::Arc;
use std::time::{Duration, Instant};

use heimdall_core::authorizer::{LocalPdp, adapter_check};
use heimdall_core::mapping::{MappingRule, Method, PathPattern};
use heimdall_core::model::{ActionName, Subject};
use heimdall_core::pdp::Decision;
use heimdall_core::sync::{PushWorker, SyncConfig};
use heimdall_core::test_utils::cerbos::Cerbos;
use heimdall_core::test_utils::{TestDatabase, root};
use heimdall_core::{Config, Heimdall};

#[tokio::test]
async fn local_decisions_agree_with_cerbos() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let db = TestDatabase::sqlite();
    let h = Heimdall::builder(Config {
        database_url: db.url.clone(),
        ..Config::default()
    })
    .build()
    .await
    .unwrap();
    let root = root(&h).await;
    for (role, grants) in [
        ("go:reader", &[("course:read", "allow")][..]),
        (
            "go:editor",
            &[
                ("course:read", "allow"),
                ("course:edit", "allow"),
                ("report:view", "allow"),
            ][..],
        ),
        ("go:banned", &[("course:read", "deny"), ("course:edit", "deny")][..]),
    ] {
        h.create_role(&root, role, None).await.unwrap();
        for (action, effect) in grants {
            h.grant_permission(&root, role, action, effect).await.unwrap();
        }
    }
    h.create_group(&root, "go:readers", None).await.unwrap();
    h.assign_group_role(&root, "go:readers", "go:reader").await.unwrap();
    h.create_group(&root, "go:editors", None).await.unwrap();
    h.assign_group_role(&root, "go:editors", "go:editor").await.unwrap();
    h.add_member(&root, "go:readers", "alice").await.unwrap();
    h.add_member(&root, "go:editors", "bob").await.unwrap();
    h.assign_user_role(&root, "bob", "go:banned").await.unwrap();
    h.assign_user_role(&root, "carol", "go:editor").await.unwrap();
    h.add_member(&root, "go:readers", "dave").await.unwrap();
    h.remove_member(&root, "go:readers", "dave").await.unwrap();
    PushWorker::new(h.clone(), Arc::new(cerbos.client()), SyncConfig::default())
        .push_due()
        .await
        .unwrap();

    let local = LocalPdp::new();
    local.install(h.grants_snapshot().await.unwrap());
    let client = cerbos.client();
    let rule = |id: i64, action: &str| MappingRule {
        id,
        method: Method::parse("GET").unwrap(),
        pattern: PathPattern::parse("/x").unwrap(),
        action: ActionName::parse(action).unwrap(),
        owner_group: None,
        priority: 0,
    };
    let actions = ["course:read", "course:edit", "course:delete", "report:view"];
    let subjects = ["alice", "bob", "carol", "dave", "erin", "root"];
    // Cerbos shows pushed policies within milliseconds, not at once: compare until the table agrees.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut table = Vec::new();
        for s in subjects {
            let subject = Subject::parse(s).unwrap();
            for (i, a) in actions.iter().enumerate() {
                let r = rule(i as i64 + 1, a);
                let by_cerbos = adapter_check(&client, &subject, &r).await.unwrap();
                let by_local = adapter_check(local.as_ref(), &subject, &r).await.unwrap();
                table.push((s, *a, by_cerbos, by_local));
            }
        }
        let disagreements: Vec<_> = table.iter().filter(|(_, _, c, l)| c != l).collect();
        if disagreements.is_empty() {
            // And the table is the one meant, not all-deny.
            let allowed: Vec<_> = table
                .iter()
                .filter(|t| t.2 == Decision::Allow)
                .map(|t| (t.0, t.1))
                .collect();
            let mut want = vec![
                ("alice", "course:read"),
                ("bob", "report:view"),
                ("carol", "course:read"),
                ("carol", "course:edit"),
                ("carol", "report:view"),
            ];
            let mut got = allowed.clone();
            want.sort();
            got.sort();
            assert_eq!(got, want);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "local and Cerbos disagree: {disagreements:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
