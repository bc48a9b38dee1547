//! Concurrency: idempotence and integrity under parallel writers, on PostgreSQL (and SQLite).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use heimdall_core::model::{Caller, Effect, MembershipChange, Subject};
use heimdall_core::pdp::{Decision, Pdp, Principal, Resource, principal_id};
use heimdall_core::sync::PushWorker;
use heimdall_core::test_utils::TestDatabase;
use heimdall_core::{ErrorKind, Heimdall};

use crate::support::cerbos::Cerbos;
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

/// A small deterministic pseudo-random sequence (xorshift), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

const GROUPS: [&str; 3] = ["go:g0", "go:g1", "go:g2"];
const ROLES: [&str; 4] = ["go:r0", "go:r1", "go:r2", "go:r3"];
const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];
const ACTIONS: [&str; 4] = ["res:a0", "res:a1", "res:a2", "res:a3"];

/// One random mutation; errors a race may rightly produce (not found, conflict) are fine, others are not.
async fn random_mutation(h: &Heimdall, root: &Caller, rng: &mut Rng) -> Result<(), String> {
    let g = GROUPS[rng.below(GROUPS.len())];
    let r = ROLES[rng.below(ROLES.len())];
    let u = USERS[rng.below(USERS.len())];
    let a = ACTIONS[rng.below(ACTIONS.len())];
    let op = rng.below(10);
    let result = match op {
        0 | 1 => h.add_member(root, g, u).await.map(drop),
        2 => h.remove_member(root, g, u).await,
        3 => h.assign_group_role(root, g, r).await.map(drop),
        4 => h.remove_group_role(root, g, r).await,
        5 => h.assign_user_role(root, u, r).await.map(drop),
        6 => h.remove_user_role(root, u, r).await,
        7 => {
            h.grant_permission(root, r, a, if rng.below(4) == 0 { "deny" } else { "allow" })
                .await
        }
        8 => h.revoke_permission(root, r, a).await,
        _ => match rng.below(2) {
            0 => h.delete_group(root, g).await,
            _ => h.create_group(root, g, None).await.map(drop),
        },
    };
    match result {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Conflict) && !e.message().contains("try again") =>
        {
            Ok(())
        }
        Err(e) => Err(format!("op {op} on {g} {r} {u} {a}: {e}")),
    }
}

/// What the database says `user` may do: a deny from any of their roles wins, then an allow.
async fn expected_decision(h: &Heimdall, user: &str, action: &str) -> Decision {
    let Ok(details) = h.get_user(user).await else {
        return Decision::Deny;
    };
    let mut allowed = false;
    for role in &details.roles {
        for p in h.role_permissions(role.as_str()).await.unwrap() {
            if p.action.as_str() == action {
                match p.effect {
                    Effect::Deny => return Decision::Deny,
                    Effect::Allow => allowed = true,
                }
            }
        }
    }
    if allowed { Decision::Allow } else { Decision::Deny }
}

/// Many writers racing over a few groups, roles and users on PostgreSQL, with the push worker running: no
/// mutation fails unexpectedly, and once the worker has drained, every user's decisions in Cerbos are what
/// the database implies, and reconciliation finds nothing to repair.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cerbos_converges_under_concurrent_mutations() {
    const MUTATIONS: usize = 520;
    const WRITERS: usize = 8;
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let h = heimdall(&db).await;
    let root = root(&h).await;
    for g in GROUPS {
        h.create_group(&root, g, None).await.unwrap();
    }
    for (i, r) in ROLES.iter().enumerate() {
        h.create_role(&root, r, None).await.unwrap();
        h.grant_permission(&root, r, ACTIONS[i], if i == 2 { "deny" } else { "allow" })
            .await
            .unwrap();
    }
    let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), crate::sync::fast());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let worker = worker.clone();
        tokio::spawn(async move {
            worker
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (h, root) = (h.clone(), root.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
                let mut unexpected = Vec::new();
                for _ in 0..MUTATIONS / WRITERS {
                    if let Err(e) = random_mutation(&h, &root, &mut rng).await {
                        unexpected.push(e);
                    }
                }
                unexpected
            })
        })
        .collect();
    let mut unexpected = Vec::new();
    for w in writers {
        unexpected.extend(w.await.unwrap());
    }
    assert!(
        unexpected.is_empty(),
        "{} unexpected errors: {unexpected:#?}",
        unexpected.len()
    );
    let _ = stop.send(());
    running.await.unwrap();
    crate::sync::drain(&h, &worker).await;

    let client = cerbos.client();
    let mut mismatches = Vec::new();
    for user in USERS {
        for action in ACTIONS {
            let want = expected_decision(&h, user, action).await;
            let principal = Principal::new(principal_id(&Subject::parse(user).unwrap()), ["user"]);
            let resource = Resource::new("res", "r1");
            // Writes become visible within milliseconds: wait (bounded) for the expected answer.
            let deadline = Instant::now() + Duration::from_secs(5);
            let got = loop {
                let got = client.check(&principal, &resource, &[action]).await.unwrap()[0];
                if got == want || Instant::now() > deadline {
                    break got;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            if got != want {
                mismatches.push(format!("{user} {action}: cerbos {got:?}, database {want:?}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches: {mismatches:#?}",
        mismatches.len()
    );
    let report = h.reconcile(&client).await.unwrap();
    assert!(report.in_sync(), "reconciliation found something to repair: {report:?}");
    drop(h);
    db.drop_database().await;
}
