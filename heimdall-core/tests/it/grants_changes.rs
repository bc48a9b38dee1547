//! What a follower holding grants on demand asks the server (`Heimdall::subject_grants`,
//! `Heimdall::grants_changes`), on both databases: one subject's grants equal their entry in the grants export,
//! and after any change the subjects whose grants it changed are named — every one of them, and no one else.

use std::collections::BTreeSet;

use heimdall_core::Heimdall;
use heimdall_core::authorizer::GrantsChanges;
use heimdall_core::model::Subject;
use heimdall_core::test_utils::TestDatabase;

use crate::support::{heimdall, root};

/// The subjects named since `since`, as a set (the change must name some).
async fn named(h: &Heimdall, since: i64) -> BTreeSet<String> {
    let changes: GrantsChanges = h.grants_changes(since).await.unwrap();
    assert_eq!(changes.since, since);
    changes.subjects.expect("a few subjects changed").into_iter().collect()
}

fn set(subjects: &[&str]) -> BTreeSet<String> {
    subjects.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn every_change_names_exactly_the_subjects_whose_grants_it_changed() {
    for db in TestDatabase::all().await {
        let b = db.backend;
        let h = heimdall(&db).await;
        let root = root(&h).await;
        h.create_role(&root, "go:reader", None).await.unwrap();
        h.grant_permission(&root, "go:reader", "course:read", "allow")
            .await
            .unwrap();
        h.create_role(&root, "go:auditor", None).await.unwrap();
        h.create_group(&root, "go:readers", None).await.unwrap();
        h.create_group(&root, "go:others", None).await.unwrap();
        h.assign_group_role(&root, "go:readers", "go:reader").await.unwrap();
        h.add_member(&root, "go:readers", "alice").await.unwrap();
        h.add_member(&root, "go:others", "bob").await.unwrap();
        h.assign_user_role(&root, "carol", "go:reader").await.unwrap();

        // Nothing since now.
        let mut at = h.change_version().await.unwrap();
        assert_eq!(named(&h, at).await, set(&[]), "{b}");

        // Each change, and whom it names.
        let steps: Vec<(&str, BTreeSet<String>)> = vec![
            ("a member joins", set(&["dave"])),
            ("a role gains a permission", set(&["alice", "carol", "dave"])),
            ("a group gains a role", set(&["bob"])),
            ("a member leaves", set(&["alice"])),
            ("a role given directly is taken back", set(&["carol"])),
            ("a role is deleted", set(&["bob", "dave"])),
            ("a group is deleted", set(&["bob"])),
        ];
        for (step, expected) in steps {
            match step {
                "a member joins" => h.add_member(&root, "go:readers", "dave").await.map(|_| ()),
                "a role gains a permission" => h
                    .grant_permission(&root, "go:reader", "course:list", "allow")
                    .await
                    .map(|_| ()),
                "a group gains a role" => h.assign_group_role(&root, "go:others", "go:reader").await.map(|_| ()),
                "a member leaves" => h.remove_member(&root, "go:readers", "alice").await,
                "a role given directly is taken back" => h.remove_user_role(&root, "carol", "go:reader").await,
                "a role is deleted" => h.delete_role(&root, "go:reader").await,
                "a group is deleted" => h.delete_group(&root, "go:others").await,
                other => panic!("no such step {other}"),
            }
            .unwrap_or_else(|e| panic!("{b}: {step}: {e}"));
            assert_eq!(named(&h, at).await, expected, "{b}: {step}");
            let now = h.change_version().await.unwrap();
            assert!(now > at, "{b}: {step} moved the change version");
            at = now;
        }
        // A change of something else names no one: a role without holders gains a permission.
        h.grant_permission(&root, "go:auditor", "report:view", "allow")
            .await
            .unwrap();
        assert_eq!(named(&h, at).await, set(&[]), "{b}");

        // Asked from further back, a subject changed twice is named once.
        assert!(
            named(&h, 0).await.is_superset(&set(&["alice", "bob", "carol", "dave"])),
            "{b}"
        );

        // A follower ahead of the server is told to drop everything.
        let ahead = h.grants_changes(at + 100).await.unwrap();
        assert_eq!(ahead.subjects, None, "{b}");
        assert_eq!(ahead.version, h.change_version().await.unwrap(), "{b}");
    }
}

#[tokio::test]
async fn one_subjects_grants_are_their_entry_in_the_export() {
    for db in TestDatabase::all().await {
        let b = db.backend;
        let h = heimdall(&db).await;
        let root = root(&h).await;
        h.create_role(&root, "go:editor", None).await.unwrap();
        h.grant_permission(&root, "go:editor", "course:read", "allow")
            .await
            .unwrap();
        h.grant_permission(&root, "go:editor", "course:delete", "deny")
            .await
            .unwrap();
        h.create_group(&root, "go:editors", None).await.unwrap();
        h.assign_group_role(&root, "go:editors", "go:editor").await.unwrap();
        h.add_member(&root, "go:editors", "alice").await.unwrap();
        h.add_member(&root, "go:editors", "bob").await.unwrap();

        let export = h.grants_snapshot().await.unwrap();
        for subject in ["alice", "bob", "nobody"] {
            let one = h.subject_grants(&Subject::parse(subject).unwrap()).await.unwrap();
            assert_eq!(one.subject, subject, "{b}");
            assert!(one.version >= export.version, "{b}");
            let expected = export.subjects.get(subject).cloned().unwrap_or_default();
            assert_eq!(one.permissions, expected, "{b}: {subject}");
        }
        assert_eq!(
            h.subject_grants(&Subject::parse("alice").unwrap())
                .await
                .unwrap()
                .permissions
                .len(),
            2,
            "{b}"
        );
    }
}
