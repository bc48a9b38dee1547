//! What a caller administers (`admin_scope`), the lists cut to it (`list_groups_in`, `find_mappings`), and
//! refusals that name the mapping and the field they are about (`Error::mappings`, `Error::field`).

use heimdall_core::model::MappingInput;
use heimdall_core::test_utils::{TestDatabase, root};
use heimdall_core::{ErrorKind, Heimdall, MappingFilter};

use crate::support::caller;

fn mapping(method: &str, path: &str, owner: Option<&str>) -> MappingInput {
    MappingInput {
        method: method.to_owned(),
        path_pattern: path.to_owned(),
        action: "thing:do".to_owned(),
        owner_group: owner.map(str::to_owned),
        priority: 0,
        description: None,
    }
}

#[tokio::test]
async fn scopes_cut_lists_to_what_a_caller_administers_on_every_backend() {
    for db in TestDatabase::all().await {
        scopes(&crate::support::heimdall(&db).await).await;
        db.drop_database().await;
    }
}

async fn scopes(h: &Heimdall) {
    let root = root(h).await;
    // 30 go: groups around other teams' groups, so that a manager's page spans several scans' worth.
    for i in 0..30 {
        h.create_group(&root, &format!("go:team{i:02}"), None).await.unwrap();
        h.create_group(&root, &format!("rmi:team{i:02}"), None).await.unwrap();
    }
    h.create_group(&root, "leads:go", None).await.unwrap();
    h.create_management_right(&root, "leads:go", "go:%", Some("/go/**"))
        .await
        .unwrap();
    h.add_member(&root, "leads:go", "mgr").await.unwrap();
    let mgr = caller(h, "mgr").await;
    let plain = caller(h, "plain").await;

    let everything = h.admin_scope(&root).await.unwrap();
    let managed = h.admin_scope(&mgr).await.unwrap();
    let own = h.admin_scope(&plain).await.unwrap();
    assert!(everything.is_superadmin() && everything.administers());
    assert!(!managed.is_superadmin() && managed.administers());
    assert!(!own.is_superadmin() && !own.administers());

    // Groups: the superadmin's every one, the manager's go: ones a page at a time, the plain user's none.
    let all = h.list_groups_in(&everything, None, None, Some(1000)).await.unwrap();
    assert_eq!(all.items.len(), 61);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = h
            .list_groups_in(&managed, None, after.as_deref(), Some(7))
            .await
            .unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|g| g.name.to_string()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (0..30).map(|i| format!("go:team{i:02}")).collect();
    assert_eq!(seen, expected);
    let prefixed = h.list_groups_in(&managed, Some("go:team1"), None, None).await.unwrap();
    assert_eq!(prefixed.items.len(), 10);
    assert!(h.list_groups_in(&own, None, None, None).await.unwrap().items.is_empty());
    // A search the rights' patterns part ways with finds nothing; rights of two teams, both teams' groups.
    let elsewhere = h.list_groups_in(&managed, Some("rmi:"), None, None).await.unwrap();
    assert!(elsewhere.items.is_empty() && elsewhere.next.is_none());
    h.create_group(&root, "leads:mixed", None).await.unwrap();
    for pattern in ["go:team0%", "rmi:team0%"] {
        h.create_management_right(&root, "leads:mixed", pattern, None)
            .await
            .unwrap();
    }
    h.add_member(&root, "leads:mixed", "mixed").await.unwrap();
    let mixed = h.admin_scope(&caller(h, "mixed").await).await.unwrap();
    let both = h.list_groups_in(&mixed, None, None, None).await.unwrap();
    let names: Vec<String> = both.items.iter().map(|g| g.name.to_string()).collect();
    assert_eq!(names.len(), 20, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("go:team0") || n.starts_with("rmi:team0")),
        "{names:?}"
    );

    // Mappings: the manager's are those his groups own inside /go/.
    let inside = h
        .create_mapping(&root, &mapping("GET", "/go/a", Some("go:team01")))
        .await
        .unwrap();
    let outside = h
        .create_mapping(&root, &mapping("GET", "/rmi/a", Some("go:team01")))
        .await
        .unwrap();
    let other_team = h
        .create_mapping(&root, &mapping("GET", "/go/b", Some("rmi:team01")))
        .await
        .unwrap();
    let unowned = h.create_mapping(&root, &mapping("GET", "/go/c", None)).await.unwrap();
    let ids = |page: heimdall_core::model::Page<heimdall_core::mapping::MappingRule>| {
        page.items.iter().map(|r| r.id).collect::<Vec<_>>()
    };
    let none = MappingFilter::default();
    assert_eq!(
        ids(h.find_mappings(&everything, &none, None).await.unwrap()),
        [inside.id, outside.id, other_team.id, unowned.id]
    );
    assert_eq!(ids(h.find_mappings(&managed, &none, None).await.unwrap()), [inside.id]);
    assert!(ids(h.find_mappings(&own, &none, None).await.unwrap()).is_empty());
    let by_owner = MappingFilter {
        owner: Some("go:team01".into()),
        ..MappingFilter::default()
    };
    assert_eq!(
        ids(h.find_mappings(&everything, &by_owner, None).await.unwrap()),
        [inside.id, outside.id]
    );
    let by_prefix = MappingFilter {
        pattern_prefix: Some("/go/".into()),
        ..MappingFilter::default()
    };
    let first = h.find_mappings(&everything, &by_prefix, Some(2)).await.unwrap();
    assert_eq!(first.next.as_deref(), Some(other_team.id.to_string().as_str()));
    let second = MappingFilter {
        after: Some(other_team.id),
        ..by_prefix
    };
    assert_eq!(
        ids(h.find_mappings(&everything, &second, Some(2)).await.unwrap()),
        [unowned.id]
    );

    // A conflict names the mapping it conflicts with; a shadowing refusal, the mapping it would shadow.
    let conflict = h
        .create_mapping(&root, &mapping("GET", "/go/:x", Some("go:team02")))
        .await
        .unwrap();
    let e = h
        .create_mapping(&root, &mapping("GET", "/go/:y", Some("go:team02")))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.mappings()),
        (ErrorKind::Conflict, &[conflict.id][..]),
        "{e}"
    );
    assert_eq!(e.field(), Some("path_pattern"));
    // Invalid input names its field.
    for (bad, field) in [
        (mapping("FETCH", "/go/z", None), "method"),
        (mapping("GET", "go/z", None), "path_pattern"),
        (mapping("GET", "/go/z", Some("no spaces")), "owner_group"),
    ] {
        let e = h.create_mapping(&root, &bad).await.unwrap_err();
        assert_eq!((e.kind(), e.field()), (ErrorKind::InvalidInput, Some(field)), "{e}");
    }
    let catch_all = h.create_mapping(&root, &mapping("GET", "/go/**", None)).await.unwrap();
    let e = h
        .create_mapping(&mgr, &mapping("GET", "/go/x/:id", Some("go:team03")))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.mappings()),
        (ErrorKind::Forbidden, &[catch_all.id][..]),
        "{e}"
    );
}
