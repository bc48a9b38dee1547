//! The store story: every facade operation, run once on SQLite and once on PostgreSQL.

use heimdall_core::ErrorKind;
use heimdall_core::model::{AuditQuery, MappingInput, MembershipChange, Subject};
use heimdall_core::test_utils::TestDatabase;

use crate::support::{caller, claims, heimdall, root};

#[tokio::test]
async fn store_story_on_every_backend() {
    for db in TestDatabase::all().await {
        story(&db).await;
        db.drop_database().await;
    }
}

#[track_caller]
fn kind<T: std::fmt::Debug>(r: heimdall_core::Result<T>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

async fn story(db: &TestDatabase) {
    let h = heimdall(db).await;
    assert_eq!(h.backend(), db.backend);
    h.migrate().await.expect("migrating twice is a no-op");
    let root = root(&h).await;
    h.bootstrap_superadmins(&["root"])
        .await
        .expect("bootstrap is idempotent");
    let boot = h
        .audit_log(
            &root,
            &AuditQuery {
                operation: Some("bootstrap_superadmin".into()),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    // The second bootstrap found a superadmin and did nothing: a bootstrap never resurrects.
    assert_eq!(boot.len(), 1, "only the first bootstrap granted: {boot:?}");
    assert!(
        boot.iter()
            .all(|a| a.success && a.actor.as_deref() == Some("system:bootstrap") && a.target_id == "user:root")
    );
    assert_eq!(
        h.get_user("root").await.unwrap().roles.len(),
        1,
        "bootstrapping twice gives one role"
    );
    let v0 = h.change_version().await.unwrap();

    // Groups.
    let g = h
        .create_group(&root, "go:authenticated", Some("Authenticated users of GO API"))
        .await
        .unwrap();
    assert_eq!(g.name.as_str(), "go:authenticated");
    h.create_group(&root, "go:course:editor", None).await.unwrap();
    h.create_group(&root, "go:admin", None).await.unwrap();
    h.create_group(&root, "rmi:public", None).await.unwrap();
    assert_eq!(kind(h.create_group(&root, "go:admin", None).await), ErrorKind::Conflict);
    assert_eq!(
        kind(h.create_group(&root, "go admin", None).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(h.create_group(&root, "go:x", Some(&"d".repeat(2000))).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        h.get_group("go:authenticated").await.unwrap().description.as_deref(),
        Some("Authenticated users of GO API")
    );
    assert_eq!(kind(h.get_group("go:nope").await), ErrorKind::NotFound);
    let go = h.list_groups(Some("go:"), None, None).await.unwrap();
    let names: Vec<_> = go.items.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["go:admin", "go:authenticated", "go:course:editor"]);
    assert_eq!(go.next, None);
    let page1 = h.list_groups(None, None, Some(2)).await.unwrap();
    assert_eq!(page1.items.len(), 2);
    let page2 = h.list_groups(None, page1.next.as_deref(), Some(2)).await.unwrap();
    assert_eq!(
        page2.items.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
        ["go:course:editor", "rmi:public"]
    );
    assert_eq!(kind(h.list_groups(None, None, Some(0)).await), ErrorKind::InvalidInput);
    assert_eq!(
        kind(h.list_groups(None, None, Some(1_000_000)).await),
        ErrorKind::InvalidInput
    );

    // Roles and group roles.
    h.create_role(&root, "go:course:editor", None).await.unwrap();
    h.create_role(&root, "go:viewer", None).await.unwrap();
    assert_eq!(kind(h.create_role(&root, "go:viewer", None).await), ErrorKind::Conflict);
    assert!(
        h.assign_group_role(&root, "go:course:editor", "go:course:editor")
            .await
            .unwrap()
    );
    assert!(
        !h.assign_group_role(&root, "go:course:editor", "go:course:editor")
            .await
            .unwrap()
    );
    assert_eq!(
        kind(h.assign_group_role(&root, "go:course:editor", "go:nope").await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(h.assign_group_role(&root, "go:nope", "go:viewer").await),
        ErrorKind::NotFound
    );
    assert_eq!(h.group_roles("go:course:editor").await.unwrap().len(), 1);

    // Memberships: idempotent add, and the user's effective roles are group roles ∪ user roles.
    let v1 = h.change_version().await.unwrap();
    assert!(v1 > v0);
    assert_eq!(
        h.add_member(&root, "go:course:editor", "bob").await.unwrap(),
        MembershipChange::Added
    );
    let v2 = h.change_version().await.unwrap();
    assert_eq!(v2, v1 + 1, "adding a member bumps the change version once");
    assert_eq!(
        h.add_member(&root, "go:course:editor", "bob").await.unwrap(),
        MembershipChange::AlreadyMember
    );
    assert_eq!(h.change_version().await.unwrap(), v2, "a no-op add changes nothing");
    h.add_member(&root, "go:authenticated", "bob").await.unwrap();
    assert!(h.assign_user_role(&root, "bob", "go:viewer").await.unwrap());
    let bob = h.get_user("bob").await.unwrap();
    assert_eq!(
        bob.user.last_seen_at, None,
        "bob was added by an administrator and has not signed in"
    );
    let groups: Vec<_> = bob.groups.iter().map(|g| g.as_str()).collect();
    assert_eq!(groups, ["go:authenticated", "go:course:editor"]);
    let roles: Vec<_> = bob.roles.iter().map(|r| r.as_str()).collect();
    assert_eq!(roles, ["go:course:editor", "go:viewer"]);
    assert_eq!(
        h.group_members("go:course:editor", None, None).await.unwrap().items,
        [Subject::parse("bob").unwrap()]
    );
    assert!(
        h.outbox_stats().await.unwrap().pending >= 1,
        "bob's policy waits in the outbox"
    );
    h.remove_member(&root, "go:authenticated", "bob").await.unwrap();
    assert_eq!(
        kind(h.remove_member(&root, "go:authenticated", "bob").await),
        ErrorKind::NotFound
    );
    h.remove_user_role(&root, "bob", "go:viewer").await.unwrap();
    assert_eq!(
        kind(h.remove_user_role(&root, "bob", "go:viewer").await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(h.add_member(&root, "go:course:editor", "").await),
        ErrorKind::InvalidInput
    );
    assert_eq!(kind(h.add_member(&root, "go:nope", "bob").await), ErrorKind::NotFound);

    // Role permissions.
    h.grant_permission(&root, "go:course:editor", "course:create", "allow")
        .await
        .unwrap();
    h.grant_permission(&root, "go:course:editor", "course:delete", "deny")
        .await
        .unwrap();
    let perms = h.role_permissions("go:course:editor").await.unwrap();
    assert_eq!(perms.len(), 2);
    assert_eq!(
        kind(h.grant_permission(&root, "go:course:editor", "course:x", "maybe").await),
        ErrorKind::InvalidInput
    );
    h.revoke_permission(&root, "go:course:editor", "course:delete")
        .await
        .unwrap();
    assert_eq!(
        kind(h.revoke_permission(&root, "go:course:editor", "course:delete").await),
        ErrorKind::NotFound
    );
    // Heimdall's own admin resource kinds and its superadmin role name are reserved.
    let e = h
        .grant_permission(&root, "go:course:editor", "heimdall_group:group:create", "allow")
        .await;
    assert_eq!(kind(e), ErrorKind::InvalidInput);
    assert_eq!(
        kind(h.create_role(&root, "heimdall_superadmin", None).await),
        ErrorKind::InvalidInput
    );

    // Group-management rights.
    let right = h
        .create_management_right(&root, "go:admin", "go:%", None)
        .await
        .unwrap();
    assert_eq!(
        kind(h.create_management_right(&root, "go:admin", "go:%", None).await),
        ErrorKind::Conflict
    );
    assert_eq!(
        kind(h.create_management_right(&root, "go:admin", "go:*", None).await),
        ErrorKind::InvalidInput
    );
    h.create_management_right(&root, "go:admin", "rmi:public", None)
        .await
        .unwrap();
    assert_eq!(h.list_management_rights(Some("go:admin")).await.unwrap().len(), 2);
    h.add_member(&root, "go:admin", "alice").await.unwrap();
    let manageable: Vec<_> = h
        .manageable_groups("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.to_string())
        .collect();
    assert_eq!(
        manageable,
        ["go:admin", "go:authenticated", "go:course:editor", "rmi:public"]
    );
    h.delete_management_right(&root, right.id).await.unwrap();
    assert_eq!(h.manageable_groups("alice").await.unwrap().len(), 1);
    assert_eq!(
        kind(h.delete_management_right(&root, right.id).await),
        ErrorKind::NotFound
    );

    // Mappings: validated, and conflicts found when written.
    let input = MappingInput {
        method: "GET".into(),
        path_pattern: "/courses/:id".into(),
        action: "course:read".into(),
        owner_group: Some("go:admin".into()),
        ..MappingInput::default()
    };
    let m = h.create_mapping(&root, &input).await.unwrap();
    assert_eq!(m.action.as_str(), "course:read");
    let same = MappingInput {
        path_pattern: "/courses/*".into(),
        ..input.clone()
    };
    let e = h.create_mapping(&root, &same).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(
        e.message().contains(&format!("mapping {}", m.id)),
        "the conflict names the other mapping: {e}"
    );
    assert_eq!(
        kind(
            h.create_mapping(
                &root,
                &MappingInput {
                    method: "FETCH".into(),
                    ..input.clone()
                }
            )
            .await
        ),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(
            h.create_mapping(
                &root,
                &MappingInput {
                    path_pattern: "courses".into(),
                    ..input.clone()
                }
            )
            .await
        ),
        ErrorKind::InvalidInput
    );
    let e = h
        .create_mapping(
            &root,
            &MappingInput {
                path_pattern: "~/courses/[0-9".into(),
                ..input.clone()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message().contains("regex") || e.message().contains("regular expression"),
        "the reason is given: {e}"
    );
    assert_eq!(
        kind(
            h.create_mapping(
                &root,
                &MappingInput {
                    owner_group: Some("go:nope".into()),
                    ..input.clone()
                }
            )
            .await
        ),
        ErrorKind::NotFound
    );
    let updated = h
        .update_mapping(
            &root,
            m.id,
            &MappingInput {
                action: "course:view".into(),
                ..input.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.action.as_str(), "course:view");
    assert_eq!(h.get_mapping(m.id).await.unwrap().action.as_str(), "course:view");
    // The lookup sees the change at once, through the compiled snapshot.
    let hit = h
        .resolve("GET", "/courses/42?page=2")
        .await
        .unwrap()
        .expect("a mapping applies");
    assert_eq!((hit.mapping_id, hit.action.as_str()), (m.id, "course:view"));
    assert_eq!(hit.params, [("id".to_owned(), "42".to_owned())]);
    assert_eq!(hit.owner_group.as_ref().map(|g| g.as_str()), Some("go:admin"));
    assert_eq!(h.resolve("POST", "/courses/42").await.unwrap(), None);
    assert_eq!(
        kind(h.resolve("GET", "/courses/a%2Fb").await),
        ErrorKind::InvalidInput,
        "encoded '/' is refused"
    );
    assert_eq!(h.list_mappings(None, None).await.unwrap().items.len(), 1);
    assert_eq!(
        kind(h.delete_group(&root, "go:admin").await),
        ErrorKind::Conflict,
        "go:admin owns a mapping"
    );
    h.delete_mapping(&root, m.id).await.unwrap();
    assert_eq!(kind(h.get_mapping(m.id).await), ErrorKind::NotFound);
    assert_eq!(
        h.resolve("GET", "/courses/42").await.unwrap(),
        None,
        "a deleted mapping no longer resolves"
    );
    assert_eq!(kind(h.delete_mapping(&root, m.id).await), ErrorKind::NotFound);

    // Deleting a group takes its memberships, roles and rights with it.
    h.delete_group(&root, "go:admin").await.unwrap();
    assert!(h.get_user("alice").await.unwrap().groups.is_empty());
    assert!(h.list_management_rights(Some("go:admin")).await.unwrap().is_empty());
    assert_eq!(kind(h.delete_group(&root, "go:admin").await), ErrorKind::NotFound);

    // JIT provisioning refreshes the claims.
    let first = h.provision(claims("carol"), &[]).await.unwrap();
    let mut c = claims("carol");
    c.display_name = Some("Carol".into());
    c.email = Some("carol@example.com".into());
    let again = h.provision(c, &[]).await.unwrap();
    assert_eq!(first.user_id(), again.user_id());
    let carol = h.get_user("carol").await.unwrap();
    assert_eq!(carol.user.display_name.as_deref(), Some("Carol"));
    assert_eq!(carol.user.email.as_deref(), Some("carol@example.com"));
    assert!(carol.user.last_seen_at.is_some());

    // Audit: every mutation, also the failed ones, with filters and a bounded limit.
    let adds = h
        .audit_log(
            &root,
            &AuditQuery {
                operation: Some("add_member".into()),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(adds.len() >= 4, "{adds:?}");
    assert!(
        adds.iter()
            .all(|a| a.operation == "add_member" && a.actor.as_deref() == Some("root"))
    );
    assert!(adds.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let failed = h
        .audit_log(
            &root,
            &AuditQuery {
                operation: Some("create_group".into()),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(
        failed.iter().any(|a| !a.success && a.result["error"] == "conflict"),
        "{failed:?}"
    );
    // By outcome: the failed rows alone, then the successful ones alone.
    for outcome in [false, true] {
        let rows = h
            .audit_log(
                &root,
                &AuditQuery {
                    operation: Some("create_group".into()),
                    success: Some(outcome),
                    ..AuditQuery::default()
                },
            )
            .await
            .unwrap();
        assert!(
            !rows.is_empty() && rows.iter().all(|a| a.success == outcome),
            "{rows:?}"
        );
    }
    let one = h
        .audit_log(
            &root,
            &AuditQuery {
                limit: Some(1),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    let future = adds[0].at + chrono::Duration::days(1);
    let none = h
        .audit_log(
            &root,
            &AuditQuery {
                since: Some(future),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    let until = h
        .audit_log(
            &root,
            &AuditQuery {
                until: Some(future),
                target_id: Some("group:go:course:editor".into()),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(until.iter().all(|a| a.target_id == "group:go:course:editor") && !until.is_empty());
    assert_eq!(
        kind(
            h.audit_log(
                &root,
                &AuditQuery {
                    limit: Some(5000),
                    ..AuditQuery::default()
                }
            )
            .await
        ),
        ErrorKind::InvalidInput
    );

    // The change log says what changed since a version.
    let changes = h.changes_since(v1, Some(1000)).await.unwrap();
    assert_eq!(changes.first().map(|c| c.version), Some(v1 + 1));
    assert_eq!(changes.first().map(|c| c.entity.as_str()), Some("membership"));
    assert!(changes.windows(2).all(|w| w[1].version == w[0].version + 1), "no gaps");

    // Someone without rights is refused, and the refusal is audited.
    let mallory = caller(&h, "mallory").await;
    assert_eq!(
        kind(h.create_group(&mallory, "go:evil", None).await),
        ErrorKind::Forbidden
    );
    assert_eq!(kind(h.get_group("go:evil").await), ErrorKind::NotFound);
    let refused = h
        .audit_log(
            &root,
            &AuditQuery {
                actor: Some("mallory".into()),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(refused.len(), 1);
    assert!(!refused[0].success);
    assert_eq!(refused[0].result["error"], "forbidden");
}

#[tokio::test]
async fn token_roles_count_only_when_configured() {
    let db = TestDatabase::sqlite();
    for merge in [false, true] {
        let h = heimdall_core::Heimdall::builder(heimdall_core::Config {
            database_url: db.url.clone(),
            merge_token_roles: merge,
            ..heimdall_core::Config::default()
        })
        .build()
        .await
        .unwrap();
        // The token claims the superadmin role (and an identity provider's own role, which is ignored).
        let eve = h
            .provision(claims("eve"), &["superadmin", "default roles realm"])
            .await
            .unwrap();
        let name = format!("go:merge-{merge}");
        let outcome = h.create_group(&eve, &name, None).await;
        if merge {
            outcome.expect("with merge_token_roles, the token's superadmin role counts");
        } else {
            assert_eq!(
                kind(outcome),
                ErrorKind::Forbidden,
                "the database is the source of truth by default"
            );
        }
    }
}

#[tokio::test]
async fn managers_cannot_join_a_manager_group() {
    let db = TestDatabase::sqlite();
    let h = heimdall(&db).await;
    let root = root(&h).await;
    for g in ["go:admin", "go:super", "go:plain"] {
        h.create_group(&root, g, None).await.unwrap();
    }
    h.create_management_right(&root, "go:admin", "go:%", None)
        .await
        .unwrap();
    h.create_management_right(&root, "go:super", "%", None).await.unwrap();
    h.add_member(&root, "go:admin", "alice").await.unwrap();
    let alice = caller(&h, "alice").await;

    // alice manages go:% groups, but go:super (and her own go:admin) hold rights: only a superadmin changes them.
    h.add_member(&alice, "go:plain", "alice").await.unwrap();
    assert_eq!(
        kind(h.add_member(&alice, "go:super", "alice").await),
        ErrorKind::Forbidden
    );
    assert_eq!(
        kind(h.add_member(&alice, "go:admin", "mallory").await),
        ErrorKind::Forbidden
    );
    assert_eq!(
        kind(h.remove_member(&alice, "go:admin", "alice").await),
        ErrorKind::Forbidden
    );
    assert_eq!(kind(h.delete_group(&alice, "go:super").await), ErrorKind::Forbidden);
    assert!(
        h.manageable_groups("alice")
            .await
            .unwrap()
            .iter()
            .any(|g| g.as_str() == "go:super")
    );
    assert!(
        h.get_user("alice")
            .await
            .unwrap()
            .groups
            .iter()
            .all(|g| g.as_str() != "go:super")
    );
    h.delete_group(&alice, "go:plain")
        .await
        .expect("an ordinary matching group is alice's to delete");
}

#[tokio::test]
async fn another_replica_sees_mapping_changes_within_the_refresh_interval() {
    let db = TestDatabase::sqlite();
    let writer = heimdall(&db).await;
    let reader = heimdall_core::Heimdall::builder(heimdall_core::Config {
        database_url: db.url.clone(),
        mapping_refresh_interval: std::time::Duration::from_secs(1),
        ..heimdall_core::Config::default()
    })
    .build()
    .await
    .unwrap();
    assert_eq!(reader.resolve("GET", "/courses/1").await.unwrap(), None);
    let root = root(&writer).await;
    let input = MappingInput {
        method: "GET".into(),
        path_pattern: "/courses/:id".into(),
        action: "course:read".into(),
        ..MappingInput::default()
    };
    writer.create_mapping(&root, &input).await.unwrap();
    // Within the interval the reader still answers from its snapshot; after it, from the new one.
    assert_eq!(
        reader.resolve("GET", "/courses/1").await.unwrap(),
        None,
        "the snapshot is not re-read at once"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // The first lookup after the interval starts one background refresh (and is answered at once, from the
    // snapshot it has); a lookup after that refresh sees the new mapping.
    let hit = resolve_within(&reader, "GET", "/courses/1", std::time::Duration::from_millis(500))
        .await
        .expect("the other replica's mapping");
    assert_eq!(hit.action.as_str(), "course:read");
}

/// Resolves until a mapping answers, for at most `within`.
async fn resolve_within(
    h: &heimdall_core::Heimdall,
    method: &str,
    path: &str,
    within: std::time::Duration,
) -> Option<heimdall_core::model::ResolvedEndpoint> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(hit) = h.resolve(method, path).await.unwrap() {
            return Some(hit);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Lookups outlive the database: with PostgreSQL stopped, every lookup is still answered from the last good
/// snapshot (whose age grows), and once it is back, the next change is picked up without restarting Heimdall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_outlive_the_database() {
    use heimdall_core::test_utils::cluster::PrivateCluster;
    let Some(mut cluster) = PrivateCluster::start() else {
        return;
    };
    let config = heimdall_core::Config {
        database_url: cluster.url(),
        mapping_refresh_interval: std::time::Duration::from_millis(100),
        ..heimdall_core::Config::default()
    };
    let h = heimdall_core::Heimdall::builder(config.clone()).build().await.unwrap();
    let root = root(&h).await;
    let mapping = |path: &str, action: &str| MappingInput {
        method: "GET".into(),
        path_pattern: path.into(),
        action: action.into(),
        ..MappingInput::default()
    };
    h.create_mapping(&root, &mapping("/courses/:id", "course:read"))
        .await
        .unwrap();
    let version = h.mapping_snapshot_status().version;

    // Lookups run throughout; the database goes away under them.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let lookups = {
        let h = h.clone();
        tokio::spawn(async move {
            let (mut answered, mut failed) = (0u32, Vec::new());
            while !*stopped.borrow_and_update() {
                match h.resolve("GET", "/courses/7").await {
                    Ok(Some(hit)) if hit.action.as_str() == "course:read" => answered += 1,
                    other => failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            (answered, failed)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    cluster.stop();
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let status = h.mapping_snapshot_status();
    assert_eq!(status.version, version, "the last good snapshot still answers");
    assert!(
        status.age >= std::time::Duration::from_millis(500),
        "its age shows the outage: {status:?}"
    );
    cluster.restart();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    let (answered, failed) = lookups.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} lookups failed during the outage: {failed:?}",
        failed.len()
    );
    assert!(answered > 50, "only {answered} lookups ran");

    // Back: a change made by another replica reaches this one without a restart.
    let other = heimdall_core::Heimdall::builder(config).build().await.unwrap();
    let root = other.provision(crate::support::claims("root"), &[]).await.unwrap();
    other
        .create_mapping(&root, &mapping("/rooms/:id", "room:read"))
        .await
        .unwrap();
    let hit = resolve_within(&h, "GET", "/rooms/1", std::time::Duration::from_secs(5)).await;
    assert_eq!(
        hit.map(|m| m.action.to_string()).as_deref(),
        Some("room:read"),
        "the change after the outage was not picked up; server log:\n{}",
        cluster.log()
    );
    assert!(
        h.mapping_snapshot_status().version > version,
        "the status reports the new version"
    );
}

/// A regular expression whose automaton would blow up is refused when written (and audited as invalid), so
/// that no write can make the next snapshot unbuildable.
#[tokio::test]
async fn a_regex_past_the_limits_is_refused_when_written() {
    for db in TestDatabase::all().await {
        let h = heimdall(&db).await;
        let root = root(&h).await;
        let before = h.mapping_snapshot_status().version;
        let input = MappingInput {
            method: "GET".into(),
            path_pattern: "~/[a-z/]*a[a-z/]{24}".into(),
            action: "x:read".into(),
            ..MappingInput::default()
        };
        let e = h.create_mapping(&root, &input).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}: {e}", db.backend);
        assert!(h.list_mappings(None, None).await.unwrap().items.is_empty());
        // The snapshot still builds, and the mapping after it works.
        let ok = MappingInput {
            path_pattern: "~/x/[0-9]+".into(),
            ..input
        };
        h.create_mapping(&root, &ok).await.unwrap();
        assert!(h.mapping_snapshot_status().version > before);
        assert!(h.resolve("GET", "/x/42").await.unwrap().is_some(), "{}", db.backend);
        drop(h);
        db.drop_database().await;
    }
}
