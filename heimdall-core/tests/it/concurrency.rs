//! Concurrency: idempotence and integrity under parallel writers, on PostgreSQL (and SQLite).

use std::collections::HashSet;

use heimdall_core::ErrorKind;
use heimdall_core::model::MembershipChange;
use heimdall_core::test_utils::TestDatabase;

use crate::support::{claims, heimdall, root};

async fn each_backend<F, Fut>(f: F)
where
    F: Fn(TestDatabase) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in TestDatabase::all().await {
        f(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_adds_make_one_membership() {
    each_backend(|db| async move {
        let h = heimdall(&db).await;
        let root = root(&h).await;
        h.create_group(&root, "go:authenticated", None).await.unwrap();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (h, root) = (h.clone(), root.clone());
                tokio::spawn(async move { h.add_member(&root, "go:authenticated", "bob").await })
            })
            .collect();
        let mut added = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(MembershipChange::Added) => added += 1,
                Ok(MembershipChange::AlreadyMember) => {}
                Err(e) => panic!("{}: an add failed: {e}", db.backend),
            }
        }
        assert_eq!(added, 1, "{}: exactly one add creates the membership", db.backend);
        let members = h.group_members("go:authenticated", None, None).await.unwrap();
        assert_eq!(members.items.len(), 1, "{}", db.backend);
        drop(h);
        db.drop_database().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_provisions_make_one_user() {
    each_backend(|db| async move {
        let h = heimdall(&db).await;
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move {
                    let mut c = claims("dave");
                    c.display_name = Some(format!("Dave {}", i % 3));
                    h.provision(c, &[]).await
                })
            })
            .collect();
        let mut ids = HashSet::new();
        for t in tasks {
            ids.insert(
                t.await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{}: {e}", db.backend))
                    .user_id()
                    .unwrap(),
            );
        }
        assert_eq!(ids.len(), 1, "{}: one subject is one user", db.backend);
        drop(h);
        db.drop_database().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deletes_while_adding_leave_no_orphans() {
    each_backend(|db| async move {
        let h = heimdall(&db).await;
        let root = root(&h).await;
        h.create_group(&root, "go:doomed", None).await.unwrap();
        h.create_role(&root, "go:doomed:role", None).await.unwrap();
        h.assign_group_role(&root, "go:doomed", "go:doomed:role").await.unwrap();
        let mut deletes = Vec::new();
        let mut adds = Vec::new();
        for i in 0..50 {
            let (h1, r1) = (h.clone(), root.clone());
            deletes.push(tokio::spawn(async move { h1.delete_group(&r1, "go:doomed").await }));
            let (h2, r2) = (h.clone(), root.clone());
            adds.push(tokio::spawn(async move {
                h2.add_member(&r2, "go:doomed", &format!("user{i}")).await
            }));
        }
        let mut deleted = 0;
        for t in deletes {
            match t.await.unwrap() {
                Ok(()) => deleted += 1,
                Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "{}: {e}", db.backend),
            }
        }
        assert_eq!(deleted, 1, "{}: the group is deleted exactly once", db.backend);
        for t in adds {
            if let Err(e) = t.await.unwrap() {
                assert_eq!(
                    e.kind(),
                    ErrorKind::NotFound,
                    "{}: an add may only find the group gone: {e}",
                    db.backend
                );
            }
        }
        assert_eq!(h.get_group("go:doomed").await.unwrap_err().kind(), ErrorKind::NotFound);
        for i in 0..50 {
            if let Ok(u) = h.get_user(&format!("user{i}")).await {
                assert!(
                    u.groups.is_empty(),
                    "{}: user{i} keeps a membership of a deleted group",
                    db.backend
                );
                assert!(
                    u.roles.is_empty(),
                    "{}: user{i} keeps a role of a deleted group",
                    db.backend
                );
            }
        }
        drop(h);
        db.drop_database().await;
    })
    .await;
}
