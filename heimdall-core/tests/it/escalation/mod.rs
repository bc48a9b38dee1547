//! What a delegated manager (or any caller) must not get past: gaining rights through a group, deciding
//! other teams' endpoints, racing a check against its write, resurrecting a revoked superadmin, and acting
//! without leaving a trace. On SQLite and PostgreSQL, with the built-in PDP and with the real Cerbos.
//! Taking requests from mappings a manager may not edit (shadowing them) is in `shadowing.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use heimdall_core::model::{AuditQuery, AuditRecord, Caller, MappingInput};
use heimdall_core::pdp::pack::{self, action};
use heimdall_core::pdp::{BuiltinPdp, Decision, Pdp, Principal, Resource};
use heimdall_core::test_utils::TestDatabase;
use heimdall_core::{Config, ErrorKind, Heimdall};

use crate::support::cerbos::Cerbos;
use crate::support::{caller, heimdall, root};

mod shadowing;

/// Which PDP decides a story.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decider {
    Builtin,
    Cerbos,
}

/// Runs `story` on every backend, with the built-in PDP and then with a real Cerbos holding the pack.
async fn each_setup<F, Fut>(story: F)
where
    F: Fn(Heimdall, Decider, &'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    let cerbos = Cerbos::start_new().await;
    if let Some(c) = &cerbos {
        c.install_admin_pack().await;
    }
    for db in TestDatabase::all().await {
        story(heimdall(&db).await, Decider::Builtin, db.backend).await;
        if let Some(c) = &cerbos {
            let h = Heimdall::builder(Config {
                database_url: db.url.clone(),
                ..Config::default()
            })
            .pdp(Arc::new(c.client()))
            .build()
            .await
            .unwrap();
            story(h, Decider::Cerbos, db.backend).await;
        }
        db.drop_database().await;
    }
}

fn kind<T: std::fmt::Debug>(r: heimdall_core::Result<T>) -> ErrorKind {
    r.expect_err("should have failed").kind()
}

/// The newest audit row of `operation` by `actor`.
async fn last_audit(h: &Heimdall, root: &Caller, operation: &str, actor: &str) -> AuditRecord {
    let rows = h
        .audit_log(
            root,
            &AuditQuery {
                operation: Some(operation.into()),
                actor: Some(actor.into()),
                limit: Some(1),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    rows.into_iter()
        .next()
        .unwrap_or_else(|| panic!("no audit row for {operation} by {actor}"))
}

/// A fresh name per run, since the Cerbos run reuses the built-in run's database.
fn tag(d: Decider) -> &'static str {
    match d {
        Decider::Builtin => "b",
        Decider::Cerbos => "c",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_manager_gains_rights_through_a_group() {
    each_setup(|h, d, backend| async move {
        let t = tag(d);
        let root = root(&h).await;
        let admins = format!("go:{t}:admins");
        let ops = format!("go:{t}:ops");
        let mixed = format!("go:{t}:mixed");
        let fine = format!("go:{t}:fine");
        for g in [&admins, &ops, &mixed, &fine] {
            h.create_group(&root, g, None).await.unwrap();
        }
        h.create_management_right(&root, &admins, "go:%", Some("/go/**"))
            .await
            .unwrap();
        let mallory = format!("mallory-{t}");
        h.add_member(&root, &admins, &mallory).await.unwrap();
        h.assign_group_role(&root, &ops, "superadmin").await.unwrap();
        for r in [format!("go:{t}:editor"), format!("rmi:{t}:editor")] {
            h.create_role(&root, &r, None).await.unwrap();
            h.assign_group_role(&root, &mixed, &r).await.unwrap();
        }
        h.assign_group_role(&root, &fine, &format!("go:{t}:editor"))
            .await
            .unwrap();
        let mallory = caller(&h, &mallory).await;
        let who = mallory.subject().as_str().to_owned();
        let ctx = format!("{backend}/{d:?}");

        // The group holds the superadmin role: refused, audited as denied.
        assert_eq!(
            kind(h.add_member(&mallory, &ops, &who).await),
            ErrorKind::Forbidden,
            "{ctx}"
        );
        let row = last_audit(&h, &root, "add_member", &who).await;
        assert!(!row.success, "{ctx}");
        assert_eq!(row.result["outcome"], "denied", "{ctx}");
        assert_eq!(row.target_id, format!("group:{ops}"), "{ctx}");
        // ... nor may he take others out of it, or delete it.
        assert_eq!(
            kind(h.remove_member(&mallory, &ops, "root").await),
            ErrorKind::Forbidden,
            "{ctx}"
        );
        assert_eq!(
            kind(h.delete_group(&mallory, &ops).await),
            ErrorKind::Forbidden,
            "{ctx}"
        );
        // A group holding a role outside his patterns: refused too.
        assert_eq!(
            kind(h.add_member(&mallory, &mixed, &who).await),
            ErrorKind::Forbidden,
            "{ctx}"
        );
        // Direct roles are the superadmin's alone.
        assert_eq!(
            kind(h.assign_user_role(&mallory, &who, "superadmin").await),
            ErrorKind::Forbidden,
            "{ctx}"
        );
        // And he is still no superadmin: a superadmin-only action is refused.
        assert!(
            !h.get_user(&who)
                .await
                .unwrap()
                .roles
                .iter()
                .any(|r| r.as_str() == "superadmin")
        );
        assert_eq!(
            kind(h.create_role(&mallory, &format!("go:{t}:x"), None).await),
            ErrorKind::Forbidden
        );
        assert_eq!(
            kind(h.create_management_right(&mallory, &fine, "%", Some("/**")).await),
            ErrorKind::Forbidden,
            "{ctx}"
        );
        // What he was given stays his: a group whose every role matches his pattern.
        h.add_member(&mallory, &fine, &who)
            .await
            .expect("a group of grantable roles");
        h.remove_member(&mallory, &fine, &who).await.expect("and out again");
    })
    .await;
}

/// A mapping owned by `owner` with `method`, `pattern` and `priority`.
fn mapping(method: &str, pattern: &str, owner: &str, priority: i32) -> MappingInput {
    MappingInput {
        method: method.into(),
        path_pattern: pattern.into(),
        action: "go:page:read".into(),
        owner_group: Some(owner.into()),
        priority,
        description: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_cannot_decide_another_teams_endpoints() {
    each_setup(|h, d, backend| async move {
        let t = tag(d);
        let root = root(&h).await;
        let (go_admins, go_team) = (format!("go:{t}:admins"), format!("go:{t}:team"));
        let (rmi_team, scopeless) = (format!("rmi:{t}:team"), format!("go:{t}:scopeless"));
        for g in [&go_admins, &go_team, &rmi_team, &scopeless] {
            h.create_group(&root, g, None).await.unwrap();
        }
        let right = h
            .create_management_right(&root, &go_admins, &format!("go:{t}:%"), Some(&format!("/go/{t}/**")))
            .await
            .unwrap();
        assert_eq!(
            right.path_scope.as_ref().map(|s| s.as_str()),
            Some(format!("/go/{t}/**").as_str())
        );
        h.create_management_right(&root, &scopeless, &format!("go:{t}:%"), None)
            .await
            .unwrap();
        let listed = h.list_management_rights(Some(&go_admins)).await.unwrap();
        assert_eq!(listed[0].path_scope, right.path_scope, "the listing shows the scope");
        let theirs = h
            .create_mapping(&root, &mapping("ANY", &format!("/rmi/{t}/**"), &rmi_team, 0))
            .await
            .unwrap();
        let alice = format!("alice-{t}");
        h.add_member(&root, &go_admins, &alice).await.unwrap();
        let alice = caller(&h, &alice).await;
        let ctx = format!("{backend}/{d:?}");

        // Every pattern, method and priority that could reach beyond /go/<t>/ is refused.
        let patterns = [
            "/**".to_owned(),
            "/*/**".to_owned(),
            "/:a/**".to_owned(),
            format!("/rmi/{t}/**"),
            format!("/rmi/{t}/x"),
            format!("/*/{t}/x"),
            format!("/go/{t}"),
            format!("/go/{t}x/y"),
            "/go/**".to_owned(),
            "/".to_owned(),
            "~/.*".to_owned(),
            format!("~/go/{t}/.*"),
        ];
        let mut tried = 0;
        for pattern in &patterns {
            for method in ["GET", "POST", "ANY"] {
                for priority in [0, -1000, 1000] {
                    let r = h
                        .create_mapping(&alice, &mapping(method, pattern, &go_team, priority))
                        .await;
                    assert_eq!(
                        kind(r),
                        ErrorKind::Forbidden,
                        "{ctx}: {method} {pattern} prio {priority}"
                    );
                    tried += 1;
                }
            }
        }
        assert_eq!(tried, 108);
        // Inside the scope, at default priority, she may; not with another priority or as a regex.
        let mine = h
            .create_mapping(&alice, &mapping("GET", &format!("/go/{t}/pages/:id"), &go_team, 0))
            .await
            .expect("inside the scope");
        assert_eq!(
            kind(
                h.create_mapping(&alice, &mapping("GET", &format!("/go/{t}/x"), &go_team, -1))
                    .await
            ),
            ErrorKind::Forbidden
        );
        // Moving her mapping out of the scope, or taking over theirs, is refused too.
        let moved = mapping("GET", &format!("/rmi/{t}/pages/:id"), &go_team, 0);
        assert_eq!(
            kind(h.update_mapping(&alice, mine.id, &moved).await),
            ErrorKind::Forbidden,
            "{ctx}"
        );
        let taken = mapping("ANY", &format!("/rmi/{t}/**"), &go_team, 0);
        assert_eq!(
            kind(h.update_mapping(&alice, theirs.id, &taken).await),
            ErrorKind::Forbidden,
            "{ctx}"
        );
        assert_eq!(
            kind(h.delete_mapping(&alice, theirs.id).await),
            ErrorKind::Forbidden,
            "{ctx}"
        );
        // A right without a path scope covers no mappings.
        let bob = format!("bob-{t}");
        h.add_member(&root, &scopeless, &bob).await.unwrap();
        let bob = caller(&h, &bob).await;
        let inside = mapping("GET", &format!("/go/{t}/other"), &go_team, 0);
        assert_eq!(
            kind(h.create_mapping(&bob, &inside).await),
            ErrorKind::Forbidden,
            "{ctx}"
        );
        // Their endpoints still resolve to their mapping.
        for path in [format!("/rmi/{t}/x"), format!("/rmi/{t}/pages/7")] {
            let got = h.resolve("GET", &path).await.unwrap().expect("theirs");
            assert_eq!(got.mapping_id, theirs.id, "{ctx}: {path}");
        }
    })
    .await;
}

/// A change to run once, from inside a check.
type PendingChange = Arc<Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>>;

/// A PDP that, while deciding a non-superadmin's check of `action`, lets another writer change the
/// target first: the race between a check and its write, made deterministic.
#[derive(Clone)]
struct ChangeDuringCheck {
    action: &'static str,
    change: PendingChange,
}

impl std::fmt::Debug for ChangeDuringCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeDuringCheck")
    }
}

#[async_trait]
impl Pdp for ChangeDuringCheck {
    async fn check(
        &self,
        principal: &Principal,
        resource: &Resource,
        actions: &[&str],
    ) -> heimdall_core::Result<Vec<Decision>> {
        if actions.contains(&self.action) && !principal.has_role(pack::SUPERADMIN_ROLE) {
            let change = self.change.lock().unwrap().take();
            if let Some(change) = change {
                change.await;
            }
        }
        BuiltinPdp.check(principal, resource, actions).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_are_read_again_under_the_write() {
    for db in TestDatabase::all().await {
        let other = heimdall(&db).await;
        let root = root(&other).await;
        for g in ["go:admins", "go:team", "rmi:team"] {
            other.create_group(&root, g, None).await.unwrap();
        }
        other
            .create_management_right(&root, "go:admins", "go:%", Some("/go/**"))
            .await
            .unwrap();
        other.add_member(&root, "go:admins", "alice").await.unwrap();
        let race = ChangeDuringCheck {
            action: action::GROUP_ADD_MEMBER,
            change: Arc::new(Mutex::new(None)),
        };
        let h = Heimdall::builder(Config {
            database_url: db.url.clone(),
            ..Config::default()
        })
        .pdp(Arc::new(race.clone()))
        .build()
        .await
        .unwrap();
        let alice = caller(&h, "alice").await;

        // While alice's add is being decided (go:team holds no role yet), a superadmin gives go:team the
        // superadmin role and commits. Her write must not land on what she was not authorized for: the write
        // transaction finds the facts moved, and the add is decided again on the fresh ones — and refused.
        let (o, r) = (other.clone(), root.clone());
        *race.change.lock().unwrap() = Some(Box::pin(async move {
            o.assign_group_role(&r, "go:team", "superadmin").await.unwrap();
        }));
        let e = h.add_member(&alice, "go:team", "alice").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden, "{}: {e}", db.backend);
        assert!(race.change.lock().unwrap().is_none(), "the concurrent change ran");
        let alice_now = h.get_user("alice").await.unwrap();
        assert!(
            !alice_now.groups.iter().any(|g| g.as_str() == "go:team"),
            "{}: alice did not join",
            db.backend
        );
        assert_eq!(
            last_audit(&h, &root, "add_member", "alice").await.result["outcome"],
            "denied"
        );

        // The same for a mapping whose owner changes while a delete of it is being decided.
        let m = other
            .create_mapping(&root, &mapping("GET", "/go/pages", "go:team", 0))
            .await
            .unwrap();
        let race = ChangeDuringCheck {
            action: action::MAPPING_DELETE,
            change: Arc::new(Mutex::new(None)),
        };
        let h = Heimdall::builder(Config {
            database_url: db.url.clone(),
            ..Config::default()
        })
        .pdp(Arc::new(race.clone()))
        .build()
        .await
        .unwrap();
        let (o, r) = (other.clone(), root.clone());
        *race.change.lock().unwrap() = Some(Box::pin(async move {
            o.update_mapping(&r, m.id, &mapping("GET", "/go/pages", "rmi:team", 0))
                .await
                .unwrap();
        }));
        assert_eq!(
            kind(h.delete_mapping(&alice, m.id).await),
            ErrorKind::Forbidden,
            "{}",
            db.backend
        );
        assert_eq!(
            h.get_mapping(m.id).await.unwrap().owner_group.unwrap().as_str(),
            "rmi:team",
            "{}: the mapping survived",
            db.backend
        );
        drop((h, other));
        db.drop_database().await;
    }
}

#[tokio::test]
async fn bootstrap_never_resurrects_a_revoked_superadmin() {
    for db in TestDatabase::all().await {
        let config = Config {
            database_url: db.url.clone(),
            bootstrap_superadmins: vec!["root".into(), "bob".into()],
            ..Config::default()
        };
        let is_superadmin = async |h: &Heimdall, who: &str| {
            h.get_user(who)
                .await
                .unwrap()
                .roles
                .iter()
                .any(|r| r.as_str() == "superadmin")
        };
        let h = Heimdall::builder(config.clone()).build().await.unwrap();
        assert!(is_superadmin(&h, "root").await && is_superadmin(&h, "bob").await);
        let root = caller(&h, "root").await;
        h.remove_user_role(&root, "bob", "superadmin").await.unwrap();
        drop(h);

        // A restart with the same configuration: a superadmin exists, so bob stays revoked.
        let h = Heimdall::builder(config.clone()).build().await.unwrap();
        assert!(
            !is_superadmin(&h, "bob").await,
            "{}: bootstrap resurrected bob",
            db.backend
        );
        assert!(is_superadmin(&h, "root").await);

        // Once nobody holds the role, the bootstrap applies again (the way back into a locked-out install).
        h.remove_user_role(&root, "root", "superadmin").await.unwrap();
        drop(h);
        let h = Heimdall::builder(config).build().await.unwrap();
        assert!(
            is_superadmin(&h, "root").await && is_superadmin(&h, "bob").await,
            "{}",
            db.backend
        );
        drop(h);
        db.drop_database().await;
    }
}

/// A PDP that cannot decide: every check fails.
#[derive(Debug)]
struct BrokenPdp;

#[async_trait]
impl Pdp for BrokenPdp {
    async fn check(&self, _: &Principal, _: &Resource, _: &[&str]) -> heimdall_core::Result<Vec<Decision>> {
        Err(heimdall_core::Error::new(ErrorKind::Unavailable, "down"))
    }
}

#[tokio::test]
async fn every_attempt_leaves_a_bounded_trace() {
    for db in TestDatabase::all().await {
        let h = heimdall(&db).await;
        let root = root(&h).await;
        let eve = caller(&h, "eve").await;
        h.create_group(&root, "go:x", None).await.unwrap();
        let huge = "x".repeat(1 << 20);
        let audited = async |operation: &str, actor: &str, outcome: &str| {
            let row = last_audit(&h, &root, operation, actor).await;
            assert!(!row.success, "{}: {operation}", db.backend);
            assert_eq!(
                row.result["outcome"], outcome,
                "{}: {operation}: {:?}",
                db.backend, row.result
            );
            row
        };
        assert!(h.create_group(&eve, "go:y", None).await.is_err());
        audited("create_group", "eve", "denied").await;
        assert!(h.create_group(&root, &huge, None).await.is_err());
        let row = audited("create_group", "root", "invalid").await;
        // Garbage input cannot bloat the log.
        let stored = row.request.to_string().len() + row.result.to_string().len() + row.target_id.len();
        assert!(
            stored < 2_000,
            "{}: {stored} bytes audited for a 1 MiB name",
            db.backend
        );
        assert!(h.add_member(&root, "go:nope", "bob").await.is_err());
        audited("add_member", "root", "not_found").await;
        assert!(h.delete_management_right(&root, 424_242).await.is_err());
        audited("delete_management_right", "root", "not_found").await;
        assert!(h.delete_mapping(&root, 424_242).await.is_err());
        audited("delete_mapping", "root", "not_found").await;
        assert!(h.create_group(&root, "go:x", None).await.is_err());
        audited("create_group", "root", "conflict").await;
        assert!(h.grant_permission(&root, "go:r", "a:b", "maybe").await.is_err());
        audited("grant_permission", "root", "invalid").await;

        // A PDP that cannot decide: an error, audited as such, and nothing changed.
        let broken = Heimdall::builder(Config {
            database_url: db.url.clone(),
            ..Config::default()
        })
        .pdp(Arc::new(BrokenPdp))
        .build()
        .await
        .unwrap();
        let version = broken.change_version().await.unwrap();
        assert_eq!(
            kind(broken.create_group(&root, "go:z", None).await),
            ErrorKind::Unavailable
        );
        assert_eq!(
            last_audit(&h, &root, "create_group", "root").await.result["outcome"],
            "error"
        );
        assert_eq!(broken.change_version().await.unwrap(), version);
        drop((h, broken));
        db.drop_database().await;
    }
}

#[tokio::test]
async fn only_core_makes_callers() {
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    // Subjects of the system caller are reserved.
    assert_eq!(
        kind(h.provision(crate::support::claims("system:cli"), &[]).await),
        ErrorKind::InvalidInput
    );
    let system = h.system_caller("cli").unwrap();
    assert!(system.is_system() && system.user_id().is_none());
    assert_eq!(system.subject().as_str(), "system:cli");
    h.create_group(&system, "go:by-system", None).await.unwrap();
    let root = root(&h).await;
    let row = last_audit(&h, &root, "create_group", "system:cli").await;
    assert!(row.success);
}

#[tokio::test]
async fn connection_errors_never_show_a_password() {
    // The three forms a DSN holds a credential in: userinfo (with raw and encoded '@'), and a parameter.
    for dsn in [
        // (Each PostgreSQL case waits out the pool's connect timeout: two cover the three forms.)
        "postgres://app:s3c@ret%40x@127.0.0.1:1/h",
        "postgres://app@127.0.0.1:1/h?password=s3cret",
        "sqlite:///nonexistent-dir/x/y.db?password=s3cret",
    ] {
        let e = Heimdall::builder(Config {
            database_url: dsn.into(),
            ..Config::default()
        })
        .build()
        .await
        .expect_err("nothing listens there");
        let mut shown = format!("{e} {e:?}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            shown.push_str(&format!(" {s} {s:?}"));
            source = s.source();
        }
        assert!(!shown.contains("s3c"), "{dsn}: {shown}");
    }
}

/// Frontends (axum handlers, PyO3 futures) need the facade's futures to be `Send`; this fails to compile
/// otherwise.
#[allow(dead_code)]
fn facade_futures_are_send(h: &Heimdall, c: &Caller, m: &MappingInput) {
    fn send<T: Send>(_: T) {}
    send(h.add_member(c, "g", "s"));
    send(h.create_mapping(c, m));
    send(h.update_mapping(c, 1, m));
    send(h.create_management_right(c, "g", "%", None));
    send(h.grant_permission(c, "r", "a:b", "allow"));
    send(h.resolve("GET", "/"));
}
