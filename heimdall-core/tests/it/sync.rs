//! Principal policies pushed to a real Cerbos through the outbox, reconciliation, and failing closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use heimdall_core::model::Subject;
use heimdall_core::pdp::{CerbosClient, Decision};
use heimdall_core::sync::{PolicyAdmin, PushWorker, SyncConfig};
use heimdall_core::test_utils::{TestDatabase, course_editors};
use heimdall_core::{Config, ErrorKind, Heimdall};

use crate::support::cerbos::{Cerbos, install_postgres_schema};
use crate::support::fake_cerbos::{FakeFailingCerbos, Fault};
use crate::support::{caller, heimdall, root};

/// Short backoffs, so that tests don't wait for production delays.
pub(crate) fn fast() -> SyncConfig {
    SyncConfig {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..SyncConfig::default()
    }
}

pub(crate) use heimdall_core::test_utils::cerbos::{decide, eventually};

/// An admin API client for `fake`.
fn fake_admin(fake: &FakeFailingCerbos, timeout: Duration) -> Arc<dyn PolicyAdmin> {
    let mut config = heimdall_core::pdp::CerbosConfig::new(fake.base_url());
    config.admin_password = "fake".to_owned();
    config.timeout = timeout;
    Arc::new(CerbosClient::new(config).unwrap())
}

/// Pushes what setting up left in the outbox (root's bootstrap) to a fake that never fails.
async fn settle(h: &Heimdall) {
    let fine = FakeFailingCerbos::start(Vec::new()).await;
    drain(
        h,
        &PushWorker::new(h.clone(), fake_admin(&fine, Duration::from_secs(5)), fast()),
    )
    .await;
}

/// Runs the worker until the outbox is empty (bounded).
pub(crate) async fn drain(h: &Heimdall, worker: &PushWorker) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        worker.run_once().await.unwrap();
        let stats = h.outbox_stats().await.unwrap();
        if stats.pending == 0 {
            assert_eq!(stats.failed, 0, "no push may be rejected for good");
            return;
        }
        assert!(Instant::now() < deadline, "the outbox did not drain: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn membership_changes_reach_cerbos() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    cerbos.install_admin_pack().await;
    let db = TestDatabase::sqlite();
    // Admin operations are decided by Cerbos too, with the pack installed.
    let h = Heimdall::builder(Config {
        database_url: db.url.clone(),
        ..Config::default()
    })
    .pdp(Arc::new(cerbos.client()))
    .build()
    .await
    .unwrap();
    course_editors(&h).await;
    let root = caller(&h, "root").await;
    let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast());
    drain(&h, &worker).await; // The bootstrap enqueued root, who has no permissions: a delete.
    assert_eq!(
        decide(&client, "bob@example.com", "course:create").await,
        Decision::Deny
    );

    h.add_member(&root, "go:course:editor", "bob@example.com")
        .await
        .unwrap();
    let report = worker.run_once().await.unwrap();
    assert_eq!((report.claimed, report.pushed), (1, 1), "{report:?}");
    eventually(&client, "bob@example.com", "course:create", Decision::Allow).await;
    assert_eq!(
        decide(&client, "bob@example.com", "course:delete").await,
        Decision::Deny
    );

    h.remove_member(&root, "go:course:editor", "bob@example.com")
        .await
        .unwrap();
    let report = worker.run_once().await.unwrap();
    assert_eq!(
        (report.claimed, report.deleted),
        (1, 1),
        "an empty policy is deleted: {report:?}"
    );
    eventually(&client, "bob@example.com", "course:create", Decision::Deny).await;
    assert!(h.reconcile(&client).await.unwrap().in_sync());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_cerbos_is_down() {
    for db in TestDatabase::all().await {
        let Some(mut cerbos) = Cerbos::start_new().await else {
            return;
        };
        let client = cerbos.client();
        // Admin checks by the built-in PDP; pushes go to Cerbos, which goes away.
        let h = heimdall(&db).await;
        course_editors(&h).await;
        h.create_group(&root(&h).await, "go:other", None).await.unwrap();
        let root = root(&h).await;
        let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast());
        cerbos.kill();

        // 200 membership changes: 150 users join, 30 of them leave again, 20 join a group without permissions.
        for i in 0..150 {
            h.add_member(&root, "go:course:editor", &format!("user{i}"))
                .await
                .unwrap();
        }
        for i in 0..30 {
            h.remove_member(&root, "go:course:editor", &format!("user{i}"))
                .await
                .unwrap();
        }
        for i in 0..20 {
            h.add_member(&root, "go:other", &format!("other{i}")).await.unwrap();
        }
        let report = worker.run_once().await.unwrap();
        assert_eq!(
            report.pushed + report.deleted,
            0,
            "{}: Cerbos is down: {report:?}",
            db.backend
        );
        assert!(report.retrying > 0, "{}: {report:?}", db.backend);
        let stats = h.outbox_stats().await.unwrap();
        assert_eq!(
            stats.pending, 171,
            "{}: every changed user (and root) waits: {stats:?}",
            db.backend
        );
        assert!(stats.retrying > 0 && stats.failed == 0, "{}: {stats:?}", db.backend);

        cerbos.start().await;
        drain(&h, &worker).await;
        for i in [30, 77, 149] {
            eventually(&client, &format!("user{i}"), "course:create", Decision::Allow).await;
        }
        for i in [0, 29] {
            assert_eq!(
                decide(&client, &format!("user{i}"), "course:create").await,
                Decision::Deny
            );
        }
        let held = client.list_heimdall_principal_policies().await.unwrap();
        assert_eq!(
            held.len(),
            120,
            "{}: one policy per member with permissions",
            db.backend
        );
        let r = h.reconcile(&client).await.unwrap();
        assert!(
            r.in_sync(),
            "{}: reconciliation finds zero differences: {r:?}",
            db.backend
        );
        drop(h);
        db.drop_database().await;
    }
}

#[tokio::test]
async fn reconciliation_repairs_drift() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    course_editors(&h).await;
    let root = caller(&h, "root").await;
    for who in ["alice", "bob"] {
        h.add_member(&root, "go:course:editor", who).await.unwrap();
    }
    drain(&h, &PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast())).await;
    eventually(&client, "bob", "course:create", Decision::Allow).await;

    // Behind Heimdall's back: bob's policy disappears, and a policy nobody granted appears.
    let bob = Subject::parse("bob").unwrap();
    client
        .delete_policies(&[heimdall_core::pdp::policy_id(&bob)])
        .await
        .unwrap();
    let ghost = Subject::parse("ghost").unwrap();
    let perms = [(
        "course".to_owned(),
        heimdall_core::model::ActionName::parse("course:create").unwrap(),
        heimdall_core::model::Effect::Allow,
    )];
    client
        .put_policies(&[heimdall_core::pdp::principal_policy(&ghost, &perms).unwrap()])
        .await
        .unwrap();
    eventually(&client, "ghost", "course:create", Decision::Allow).await;
    eventually(&client, "bob", "course:create", Decision::Deny).await;

    let r = h.reconcile(&client).await.unwrap();
    assert_eq!((r.to_push, r.to_delete, r.failed), (1, 1, 0), "{r:?}");
    assert!(r.users_checked >= 3, "{r:?}");
    // Reconciliation writes nothing itself: the worker repairs what it queued.
    drain(&h, &PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast())).await;
    eventually(&client, "bob", "course:create", Decision::Allow).await;
    eventually(&client, "ghost", "course:create", Decision::Deny).await;
    assert!(h.reconcile(&client).await.unwrap().in_sync());
}

#[tokio::test]
async fn mutations_fail_closed_when_the_cerbos_pdp_is_unreachable() {
    let Some(mut cerbos) = Cerbos::start_new().await else {
        return;
    };
    let db = TestDatabase::sqlite();
    // Set up with the built-in PDP, then switch the same database to a Cerbos that is gone.
    let setup = heimdall(&db).await;
    course_editors(&setup).await;
    let mapping = heimdall_core::model::MappingInput {
        method: "GET".into(),
        path_pattern: "/courses".into(),
        action: "course:list".into(),
        ..Default::default()
    };
    let m = setup.create_mapping(&root(&setup).await, &mapping).await.unwrap();
    cerbos.kill();
    let h = Heimdall::builder(Config {
        database_url: db.url.clone(),
        ..Config::default()
    })
    .pdp(Arc::new(cerbos.client()))
    .build()
    .await
    .unwrap();
    let root = caller(&h, "root").await;
    let version = h.change_version().await.unwrap();
    let mut attempts = 0;
    macro_rules! refused {
        ($call:expr) => {{
            attempts += 1;
            let e = $call.await.expect_err("Cerbos is unreachable: the mutation must fail");
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        }};
    }
    refused!(h.create_group(&root, "go:new", None));
    refused!(h.delete_group(&root, "go:course:editor"));
    refused!(h.add_member(&root, "go:course:editor", "bob"));
    refused!(h.remove_member(&root, "go:course:editor", "root"));
    refused!(h.create_role(&root, "go:new", None));
    refused!(h.delete_role(&root, "go:course:editor"));
    refused!(h.assign_group_role(&root, "go:course:editor", "superadmin"));
    refused!(h.remove_group_role(&root, "go:course:editor", "go:course:editor"));
    refused!(h.assign_user_role(&root, "bob", "go:course:editor"));
    refused!(h.remove_user_role(&root, "root", "superadmin"));
    refused!(h.grant_permission(&root, "go:course:editor", "course:read", "allow"));
    refused!(h.revoke_permission(&root, "go:course:editor", "course:create"));
    refused!(h.create_management_right(&root, "go:course:editor", "go:%", None));
    refused!(h.create_mapping(
        &root,
        &heimdall_core::model::MappingInput {
            path_pattern: "/other".into(),
            ..mapping.clone()
        }
    ));
    refused!(h.update_mapping(&root, m.id, &mapping));
    refused!(h.delete_mapping(&root, m.id));

    // Nothing was written...
    assert_eq!(h.change_version().await.unwrap(), version);
    assert!(
        h.list_groups(None, None, None)
            .await
            .unwrap()
            .items
            .iter()
            .all(|g| g.name.as_str() != "go:new")
    );
    assert_eq!(h.get_user("root").await.unwrap().roles.len(), 1);
    assert!(h.get_mapping(m.id).await.is_ok());
    // ...and every attempt is audited as a failure (read back through the built-in PDP).
    let audit = setup
        .audit_log(
            &caller(&setup, "root").await,
            &heimdall_core::model::AuditQuery {
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let failed: Vec<_> = audit
        .iter()
        .filter(|a| !a.success && a.result["error"] == "unavailable")
        .collect();
    assert_eq!(failed.len(), attempts, "{failed:?}");
}

#[tokio::test]
async fn pushes_retry_with_backoff_after_500s_and_timeouts() {
    let fake = FakeFailingCerbos::start(vec![
        Fault::Status500,
        Fault::Hang(Duration::from_secs(2)),
        Fault::Status500,
    ])
    .await;
    let admin = fake_admin(&fake, Duration::from_millis(300));
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    course_editors(&h).await;
    settle(&h).await;
    h.add_member(&caller(&h, "root").await, "go:course:editor", "bob")
        .await
        .unwrap();
    let worker = PushWorker::new(h.clone(), admin, fast());

    let mut rounds = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.outbox_stats().await.unwrap().pending > 0 {
        assert!(
            Instant::now() < deadline,
            "the push never succeeded: {:?} {:?}",
            fake.requests(),
            h.outbox_stats().await
        );
        let r = worker.run_once().await.unwrap();
        if r.claimed > 0 {
            rounds.push((Instant::now(), r));
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let outcomes: Vec<_> = rounds.iter().map(|(_, r)| (r.retrying, r.pushed)).collect();
    assert_eq!(
        outcomes,
        [(1, 0), (1, 0), (1, 0), (0, 1)],
        "three failures, then success"
    );
    // Each retry waited for its backoff: the worker did not claim bob again at once.
    let gaps: Vec<_> = rounds.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps.iter().all(|g| *g >= Duration::from_millis(5)), "{gaps:?}");
    let writes = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT /admin/policy"))
        .count();
    assert_eq!(writes, 4, "each round sent the write once: {:?}", fake.requests());
}

#[tokio::test]
async fn a_rejected_push_is_recorded_and_not_retried() {
    let fake = FakeFailingCerbos::start(vec![Fault::Status400]).await;
    let admin = fake_admin(&fake, Duration::from_secs(5));
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    course_editors(&h).await;
    settle(&h).await;
    let root = caller(&h, "root").await;
    h.add_member(&root, "go:course:editor", "bob").await.unwrap();
    let worker = PushWorker::new(h.clone(), admin.clone(), fast());
    let r = worker.run_once().await.unwrap();
    assert_eq!((r.claimed, r.rejected), (1, 1), "{r:?} {:?}", fake.requests());
    // Fail closed: bob's previous (possibly more permissive) policy is deleted right after the rejection.
    let requests = fake.requests();
    let rejected_at = requests.iter().position(|r| r == "PUT /admin/policy").unwrap();
    assert_eq!(
        requests.get(rejected_at + 1).map(String::as_str),
        Some("POST /admin/policy/delete"),
        "{requests:?}"
    );
    let last_error = h.outbox_failures().await.unwrap();
    assert_eq!(last_error.len(), 1);
    assert_eq!(last_error[0].0, "bob");
    assert!(last_error[0].1.contains("injected rejection"), "{last_error:?}");
    let stats = h.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.failed), (0, 1), "{stats:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        worker.run_once().await.unwrap().claimed,
        0,
        "a rejected push is not retried"
    );
    // A reconciliation hands it back to the worker (and the fake now accepts writes).
    h.reconcile(admin.as_ref()).await.unwrap();
    let stats = h.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.failed), (1, 0), "{stats:?}");
    let r = worker.run_once().await.unwrap();
    assert_eq!((r.claimed, r.pushed), (1, 1), "{r:?}");
    // The next change to bob's permissions gives the push another chance.
    h.add_member(&root, "go:course:editor", "carol").await.unwrap();
    h.remove_member(&root, "go:course:editor", "bob").await.unwrap();
    let r = worker.run_once().await.unwrap();
    assert_eq!((r.claimed, r.pushed, r.deleted), (2, 1, 1), "{r:?}");
    assert_eq!(h.outbox_stats().await.unwrap(), Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_never_push_the_same_user_twice() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    for db in TestDatabase::all().await {
        let h = heimdall(&db).await;
        course_editors(&h).await;
        let root = caller(&h, "root").await;
        for i in 0..100 {
            h.add_member(&root, "go:course:editor", &format!("{}{i}", db.backend))
                .await
                .unwrap();
        }
        let config = SyncConfig {
            batch_size: 30,
            ..fast()
        };
        let workers: Vec<_> = (0..4)
            .map(|_| PushWorker::new(h.clone(), Arc::new(cerbos.client()), config.clone()))
            .collect();
        // Rounds of four workers at once, until the outbox is empty. A user claimed by two workers would be
        // pushed (and counted) twice.
        let mut pushed = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while h.outbox_stats().await.unwrap().pending > 0 {
            assert!(Instant::now() < deadline, "{}: the outbox did not drain", db.backend);
            let (a, b, c, d) = tokio::join!(
                workers[0].run_once(),
                workers[1].run_once(),
                workers[2].run_once(),
                workers[3].run_once()
            );
            for r in [a, b, c, d] {
                let r = r.unwrap();
                // Cerbos' own sqlite3 store answers some concurrent writes with 500: those users are retried.
                assert_eq!(r.rejected, 0, "{}: {r:?}", db.backend);
                pushed += r.pushed + r.deleted;
            }
        }
        assert_eq!(pushed, 101, "{}: every user (and root) pushed exactly once", db.backend);
        drop(h);
        db.drop_database().await;
    }
}

#[tokio::test]
async fn every_kind_of_change_reaches_cerbos() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    course_editors(&h).await;
    let root = caller(&h, "root").await;
    let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast());
    let step = |who: &'static str, want: Decision| {
        let (h, worker, client) = (h.clone(), worker.clone(), cerbos.client());
        async move {
            drain(&h, &worker).await;
            eventually(&client, who, "course:create", want).await;
        }
    };

    // A role given to the user directly, and taken away.
    h.assign_user_role(&root, "dave", "go:course:editor").await.unwrap();
    step("dave", Decision::Allow).await;
    h.remove_user_role(&root, "dave", "go:course:editor").await.unwrap();
    step("dave", Decision::Deny).await;

    // A group's role taken away from the group, and given back.
    h.add_member(&root, "go:course:editor", "erin").await.unwrap();
    step("erin", Decision::Allow).await;
    h.remove_group_role(&root, "go:course:editor", "go:course:editor")
        .await
        .unwrap();
    step("erin", Decision::Deny).await;
    h.assign_group_role(&root, "go:course:editor", "go:course:editor")
        .await
        .unwrap();
    step("erin", Decision::Allow).await;

    // A role's permission revoked, and granted again.
    h.revoke_permission(&root, "go:course:editor", "course:create")
        .await
        .unwrap();
    step("erin", Decision::Deny).await;
    h.grant_permission(&root, "go:course:editor", "course:create", "allow")
        .await
        .unwrap();
    step("erin", Decision::Allow).await;

    // A group deleted: its former members lose what it gave them.
    h.delete_group(&root, "go:course:editor").await.unwrap();
    step("erin", Decision::Deny).await;

    // A role deleted: its holders lose its permissions.
    h.assign_user_role(&root, "frank", "go:course:editor").await.unwrap();
    step("frank", Decision::Allow).await;
    h.delete_role(&root, "go:course:editor").await.unwrap();
    step("frank", Decision::Deny).await;

    assert!(h.reconcile(&client).await.unwrap().in_sync());
}

#[tokio::test]
async fn on_demand_reconciliation_is_for_superadmins_and_audited() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    course_editors(&h).await;
    let root = caller(&h, "root").await;
    h.add_member(&root, "go:course:editor", "bob").await.unwrap();
    let mallory = caller(&h, "mallory").await;
    let e = h.reconcile_as(&mallory, &client).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    assert!(
        client.list_heimdall_principal_policies().await.unwrap().is_empty(),
        "a refused reconciliation pushes nothing"
    );
    let r = h.reconcile_as(&root, &client).await.unwrap();
    assert_eq!((r.to_push, r.to_delete, r.failed), (1, 0, 0), "{r:?}");
    drain(&h, &PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast())).await;
    eventually(&client, "bob", "course:create", Decision::Allow).await;
    let audit = h
        .audit_log(
            &root,
            &heimdall_core::model::AuditQuery {
                operation: Some("reconcile".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let outcomes: Vec<_> = audit.iter().map(|a| (a.actor.as_deref(), a.success)).collect();
    assert_eq!(outcomes, [(Some("root"), true), (Some("mallory"), false)]);
}

/// A PDP whose reload failed (down, restarting, answering 500) is reloaded again at the next rounds, with
/// nothing new to push, until a reload works; then no longer. The fake stands in for the failing PDP: a real
/// one can't be made to fail its reloads and then recover on demand.
#[tokio::test]
async fn a_failed_reload_is_tried_again_until_it_works() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    // Two whole reload calls fail (each is one request and max_retries retries).
    let fake = FakeFailingCerbos::start(vec![Fault::Status500; 8]).await;
    let mut config = heimdall_core::pdp::CerbosConfig::new(fake.base_url());
    config.admin_password = "fake".to_owned();
    config.retry_min_delay = Duration::from_millis(1);
    config.retry_max_delay = Duration::from_millis(2);
    let flaky: Arc<dyn PolicyAdmin> = Arc::new(CerbosClient::new(config).unwrap());
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    course_editors(&h).await;
    let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast()).reload_after_push(vec![flaky]);
    h.add_member(&caller(&h, "root").await, "go:course:editor", "alice")
        .await
        .unwrap();
    let reloads = || {
        fake.requests()
            .iter()
            .filter(|r| r.ends_with("/admin/store/reload"))
            .count()
    };
    drain(&h, &worker).await;
    assert_eq!(
        reloads(),
        4,
        "the push's reload: one request and three retries, all 500"
    );
    worker.run_once().await.unwrap();
    assert_eq!(reloads(), 8, "an idle round tries the failed reload again (and fails)");
    worker.run_once().await.unwrap();
    assert_eq!(reloads(), 9, "the next idle round tries again, and the reload works");
    worker.run_once().await.unwrap();
    worker.run_once().await.unwrap();
    assert_eq!(reloads(), 9, "a PDP that reloaded is not reloaded again without a push");
}

/// A PDP that hangs on its reload holds a round up for 2 s at most: the push counts as done, the reload is
/// owed. (The fake hangs on demand; a real Cerbos can be paused, but not on its reload alone.)
#[tokio::test]
async fn a_hung_reload_holds_a_round_up_for_two_seconds_at_most() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let hung = FakeFailingCerbos::start(vec![Fault::Hang(Duration::from_secs(30))]).await;
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    course_editors(&h).await;
    settle(&h).await;
    let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast())
        .reload_after_push(vec![fake_admin(&hung, Duration::from_secs(60))]);
    h.add_member(&caller(&h, "root").await, "go:course:editor", "alice")
        .await
        .unwrap();
    let started = Instant::now();
    let report = worker.run_once().await.unwrap();
    let took = started.elapsed();
    assert_eq!(report.pushed, 1, "{report:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "the round waited for the hung reload, and no longer than 2 s: {took:?}"
    );
    assert_eq!(h.outbox_stats().await.unwrap().pending, 0, "the push counts as done");
    // The reload is owed: the next round asks again (and the fake now answers).
    worker.run_once().await.unwrap();
    let reloads = hung
        .requests()
        .iter()
        .filter(|r| r.ends_with("/admin/store/reload"))
        .count();
    assert_eq!(reloads, 2, "{:?}", hung.requests());
}

/// Two PDPs on Cerbos' own PostgreSQL store (the production topology: a database of its own beside
/// Heimdall's), written through A's Admin API.
#[tokio::test]
async fn pdps_sharing_a_store_reload_after_a_push() {
    let Some(store) = TestDatabase::postgres().await else {
        return;
    };
    install_postgres_schema(&store.url).await;
    let Some(a) = Cerbos::start_on_postgres(&store.url).await else {
        return;
    };
    let Some(b) = Cerbos::start_on_postgres(&store.url).await else {
        return;
    };
    let (client_a, client_b) = (a.client(), b.client());
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    course_editors(&h).await;
    let root = caller(&h, "root").await;

    // Pushed through A only: B, reading the same store, does not see it.
    let plain = PushWorker::new(h.clone(), Arc::new(a.client()), fast());
    h.add_member(&root, "go:course:editor", "alice").await.unwrap();
    drain(&h, &plain).await;
    eventually(&client_a, "alice", "course:create", Decision::Allow).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        decide(&client_b, "alice", "course:create").await,
        Decision::Deny,
        "B has not reloaded"
    );

    // With B to reload after each push, B answers the new decision as soon as the round is over.
    let reloading =
        PushWorker::new(h.clone(), Arc::new(a.client()), fast()).reload_after_push(vec![Arc::new(b.client())]);
    h.add_member(&root, "go:course:editor", "bob").await.unwrap();
    drain(&h, &reloading).await;
    assert_eq!(decide(&client_b, "bob", "course:create").await, Decision::Allow);
    assert_eq!(decide(&client_b, "alice", "course:create").await, Decision::Allow);
}

/// The API and the worker as separate processes (two Heimdalls, two pools, nothing shared in memory): on
/// PostgreSQL the worker is woken by the commit's notification, not by its poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_in_another_process_is_woken_by_postgres() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let api = heimdall(&db).await;
    course_editors(&api).await;
    let root = caller(&api, "root").await;
    let other_process = heimdall(&db).await;
    // A poll far longer than the test: only a notification can wake this worker in time.
    let worker = PushWorker::new(
        other_process.clone(),
        Arc::new(cerbos.client()),
        SyncConfig {
            poll_interval: Duration::from_secs(3600),
            ..fast()
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        worker
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // the worker's first round and LISTEN
    let client = cerbos.client();
    for who in ["nina", "omar", "pia"] {
        let committed = Instant::now();
        api.add_member(&root, "go:course:editor", who).await.unwrap();
        eventually(&client, who, "course:create", Decision::Allow).await;
        assert!(
            committed.elapsed() < Duration::from_secs(5),
            "{who}: {:?} (the worker was not woken)",
            committed.elapsed()
        );
    }
    let _ = stop.send(());
    running.await.unwrap();
    drop((api, other_process));
    db.drop_database().await;
}
