//! Cerbos converges to the database: reconciliation never writes a stale policy, foreign policies are left
//! alone, every PDP sharing a store sees reconciliation's repairs, and a push that outlives its lease is
//! corrected. Against the real Cerbos; the one stand-in (`StagedAdmin`) only delays a real client's writes or
//! runs a hook while it reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use heimdall_core::model::Subject;
use heimdall_core::pdp::{CerbosClient, Decision, policy_id, principal_id};
use heimdall_core::sync::{PolicyAdmin, PushWorker, SyncConfig};
use heimdall_core::test_utils::{TestDatabase, course_editors};
use serde_json::{Value, json};

use crate::support::cerbos::Cerbos;
use crate::support::{caller, heimdall};
use crate::sync::{decide, drain, eventually, fast};

/// Something to run once, from inside an Admin API call.
type Hook = Arc<Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>>;

/// The real Cerbos Admin API with two stage directions: a hook that runs (once) when policies are read —
/// for reconciliation, the moment between computing what the database implies and acting on it — and a delay
/// before every write (a slow Cerbos, which the real one cannot be made to be).
#[derive(Clone)]
struct StagedAdmin {
    inner: CerbosClient,
    during_read: Hook,
    /// How long a write stalls its whole worker, as a stopped or starved process would: the thread is
    /// blocked, so the worker can't renew its claim meanwhile either.
    write_stall: Duration,
    /// How long a write takes (the worker stays alive and renews its claim meanwhile).
    write_delay: Duration,
}

impl StagedAdmin {
    fn new(inner: CerbosClient) -> Self {
        StagedAdmin {
            inner,
            during_read: Arc::new(Mutex::new(None)),
            write_stall: Duration::ZERO,
            write_delay: Duration::ZERO,
        }
    }
}

impl std::fmt::Debug for StagedAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StagedAdmin")
    }
}

#[async_trait]
impl PolicyAdmin for StagedAdmin {
    async fn put_policies(&self, policies: &[Value]) -> heimdall_core::Result<()> {
        std::thread::sleep(self.write_stall);
        tokio::time::sleep(self.write_delay).await;
        self.inner.put_policies(policies).await
    }
    async fn delete_policies(&self, ids: &[String]) -> heimdall_core::Result<()> {
        std::thread::sleep(self.write_stall);
        tokio::time::sleep(self.write_delay).await;
        self.inner.delete_policies(ids).await.map(drop)
    }
    async fn list_heimdall_policy_ids(&self) -> heimdall_core::Result<Vec<String>> {
        self.inner.list_heimdall_principal_policies().await
    }
    async fn get_policies(&self, ids: &[String]) -> heimdall_core::Result<Vec<Value>> {
        let hook = self.during_read.lock().unwrap().take();
        if let Some(hook) = hook {
            hook.await;
        }
        self.inner.get_policies(ids).await
    }
    async fn reload_store(&self) -> heimdall_core::Result<()> {
        self.inner.reload_store().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_never_writes_a_stale_policy() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    for db in TestDatabase::all().await {
        let h = heimdall(&db).await;
        course_editors(&h).await;
        let root = caller(&h, "root").await;
        let bob = format!("bob-{}", db.backend);
        h.add_member(&root, "go:course:editor", &bob).await.unwrap();
        let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast());
        drain(&h, &worker).await;
        eventually(&client, &bob, "course:create", Decision::Allow).await;

        // Reconciliation computes that bob should be allowed; before it acts, bob is removed and the worker
        // deletes his policy. The older state must not come back.
        let (h2, r2, w2, b2) = (h.clone(), root.clone(), worker.clone(), bob.clone());
        let admin = StagedAdmin::new(cerbos.client());
        *admin.during_read.lock().unwrap() = Some(Box::pin(async move {
            h2.remove_member(&r2, "go:course:editor", &b2).await.unwrap();
            drain(&h2, &w2).await;
        }));
        let report = h.reconcile(&admin).await.unwrap();
        assert!(
            admin.during_read.lock().unwrap().is_none(),
            "the revocation ran mid-reconciliation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            decide(&client, &bob, "course:create").await,
            Decision::Deny,
            "{}: reconciliation wrote back the revoked policy ({report:?})",
            db.backend
        );
        // Whatever it queued, the worker recomputes from the database: still revoked.
        drain(&h, &worker).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(decide(&client, &bob, "course:create").await, Decision::Deny);
        assert!(h.reconcile(&client).await.unwrap().in_sync(), "{}", db.backend);
        drop(h);
        db.drop_database().await;
    }
}

/// A principal policy written by hand, without Heimdall's annotation.
fn hand_written(subject: &str, action: &str) -> Value {
    json!({
        "apiVersion": "api.cerbos.dev/v1",
        "principalPolicy": {
            "principal": principal_id(&Subject::parse(subject).unwrap()),
            "version": "default",
            "rules": [{"resource": "course", "actions": [
                {"action": action, "effect": "EFFECT_ALLOW", "name": "by_hand"}
            ]}]
        }
    })
}

#[tokio::test]
async fn only_heimdalls_policies_are_touched() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    course_editors(&h).await;
    let root = caller(&h, "root").await;
    // carol's and dave's ids hold policies someone wrote by hand.
    client
        .put_policies(&[
            hand_written("carol", "course:grade"),
            hand_written("dave", "course:grade"),
        ])
        .await
        .unwrap();
    eventually(&client, "carol", "course:grade", Decision::Allow).await;
    let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast());
    drain(&h, &worker).await;

    // Heimdall would give carol a policy: it must not overwrite the hand-written one, and says so.
    h.add_member(&root, "go:course:editor", "carol").await.unwrap();
    let r = worker.run_once().await.unwrap();
    assert_eq!((r.claimed, r.foreign, r.pushed), (1, 1, 0), "{r:?}");
    let failures = h.outbox_failures().await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].1.contains("did not write"), "{failures:?}");
    // dave has no permissions in Heimdall: his hand-written policy is not Heimdall's to delete either.
    let report = h.reconcile(&client).await.unwrap();
    assert_eq!(report.foreign, 1, "carol's id is reported as a conflict: {report:?}");
    assert_eq!(report.to_delete, 0, "dave's policy is not Heimdall's: {report:?}");
    drain_quietly(&worker).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for who in ["carol", "dave"] {
        assert_eq!(
            decide(&client, who, "course:grade").await,
            Decision::Allow,
            "{who}'s policy was touched"
        );
        assert_eq!(
            decide(&client, who, "course:create").await,
            Decision::Deny,
            "{who}'s policy was overwritten"
        );
    }
    let held = client
        .get_policies(&[policy_id(&Subject::parse("carol").unwrap())])
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert!(held[0].to_string().contains("by_hand"), "{}", held[0]);
}

/// Runs the worker's due rounds, whatever they find (foreign policies fail for good, by design).
async fn drain_quietly(worker: &PushWorker) {
    worker.push_due().await.unwrap();
}

#[tokio::test]
async fn every_pdp_sharing_a_store_sees_reconciliations_repairs() {
    let Some(a) = Cerbos::start_new().await else { return };
    let Some(b) = Cerbos::start_sharing_store(&a).await else {
        return;
    };
    let (client_a, client_b) = (a.client(), b.client());
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    course_editors(&h).await;
    let root = caller(&h, "root").await;
    h.add_member(&root, "go:course:editor", "erin").await.unwrap();
    let worker = PushWorker::new(h.clone(), Arc::new(a.client()), fast()).reload_after_push(vec![Arc::new(b.client())]);
    drain(&h, &worker).await;
    assert_eq!(decide(&client_b, "erin", "course:create").await, Decision::Allow);

    // erin's policy vanishes behind Heimdall's back (through A; B reloads to see it).
    client_a
        .delete_policies(&[policy_id(&Subject::parse("erin").unwrap())])
        .await
        .unwrap();
    client_b.reload_store().await.unwrap();
    assert_eq!(decide(&client_b, "erin", "course:create").await, Decision::Deny);

    // Reconciliation queues the repair; the worker writes it and reloads B: B answers at once.
    let report = h.reconcile(&client_a).await.unwrap();
    assert_eq!(report.to_push, 1, "{report:?}");
    let pushed = worker.push_due().await.unwrap();
    assert_eq!(pushed.pushed, 1, "{pushed:?}");
    assert_eq!(decide(&client_b, "erin", "course:create").await, Decision::Allow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_outlives_its_lease_is_corrected() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    for db in TestDatabase::all().await {
        let h = heimdall(&db).await;
        course_editors(&h).await;
        let root = caller(&h, "root").await;
        let quick = PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast());
        drain(&h, &quick).await;
        let fay = format!("fay-{}", db.backend);
        h.add_member(&root, "go:course:editor", &fay).await.unwrap();

        // The slow worker claims fay for 300 ms and stalls for a second (no renewal) before pushing "allowed".
        let slow_config = SyncConfig {
            lease: Duration::from_millis(300),
            ..fast()
        };
        let slow = PushWorker::new(
            h.clone(),
            Arc::new(StagedAdmin {
                write_stall: Duration::from_secs(1),
                ..StagedAdmin::new(cerbos.client())
            }),
            slow_config,
        );
        let slow_round = tokio::spawn(async move { slow.run_once().await.unwrap() });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Meanwhile fay is removed, and once the lease has expired the quick worker pushes "denied".
        h.remove_member(&root, "go:course:editor", &fay).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = quick.run_once().await.unwrap();
        assert_eq!(
            (r.claimed, r.deleted),
            (1, 1),
            "{}: the expired lease is taken over: {r:?}",
            db.backend
        );
        // The slow push of the older state lands last...
        let late = slow_round.await.unwrap();
        assert_eq!((late.pushed, late.lease_lost), (1, 1), "{}: {late:?}", db.backend);
        eventually(&client, &fay, "course:create", Decision::Allow).await;
        // ...and fay is due again, so the current state is pushed last.
        drain(&h, &quick).await;
        eventually(&client, &fay, "course:create", Decision::Deny).await;
        assert!(h.reconcile(&client).await.unwrap().in_sync(), "{}", db.backend);
        drop(h);
        db.drop_database().await;
    }
}

/// A worker that is alive but slow keeps its claim: it renews it while it pushes, so nobody takes its users over
/// (and pushes them twice) however long the push takes; the claim is still short, for when a worker dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_worker_keeps_its_claim_while_it_pushes() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    course_editors(&h).await;
    let root = caller(&h, "root").await;
    let quick = PushWorker::new(h.clone(), Arc::new(cerbos.client()), fast());
    drain(&h, &quick).await;
    h.add_member(&root, "go:course:editor", "gus").await.unwrap();
    let slow = PushWorker::new(
        h.clone(),
        Arc::new(StagedAdmin {
            write_delay: Duration::from_millis(1500),
            ..StagedAdmin::new(cerbos.client())
        }),
        SyncConfig {
            lease: Duration::from_millis(300),
            ..fast()
        },
    );
    let slow_round = tokio::spawn(async move { slow.run_once().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Five leases later, gus is still the slow worker's.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        let r = quick.run_once().await.unwrap();
        assert_eq!(r.claimed, 0, "a renewed claim was taken over: {r:?}");
    }
    let done = slow_round.await.unwrap();
    assert_eq!((done.pushed, done.lease_lost), (1, 0), "{done:?}");
    eventually(&cerbos.client(), "gus", "course:create", Decision::Allow).await;
    assert_eq!(h.outbox_stats().await.unwrap().pending, 0);
}

/// Several workers write to one Cerbos on its sqlite3 store at once (two `heimdall worker`s, or one worker and
/// a reconciliation): every write succeeds. Cerbos' store reads, then writes, in one transaction; begun
/// deferred, its upgrade to a write lock fails at once with SQLITE_BUSY when another writer got in first
/// (busy_timeout does not apply to that upgrade: it would deadlock), so the DSN asks for immediate
/// transactions (`_txlock=immediate`), whose lock is taken at BEGIN, where busy_timeout waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_to_one_sqlite_cerbos_all_succeed() {
    use heimdall_core::model::{ActionName, Effect};
    use heimdall_core::pdp::principal_policy;

    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    const WRITERS: usize = 4;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let client = cerbos.client();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for round in 0..25 {
                    let batch: Vec<Value> = (0..5)
                        .map(|k| {
                            let subject = Subject::parse(format!("writer-{writer}-{round}-{k}")).unwrap();
                            let allow = (
                                "course".to_owned(),
                                ActionName::parse("course:read").unwrap(),
                                Effect::Allow,
                            );
                            principal_policy(&subject, &[allow]).unwrap()
                        })
                        .collect();
                    if let Err(e) = client.put_policies(&batch).await {
                        failures.push(e.to_string());
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} of {} concurrent writes failed: {:?}",
        failures.len(),
        WRITERS * 25,
        &failures[..failures.len().min(3)]
    );
}
