//! Heimdall on its embedded default: a SQLite file and the built-in PDP.
//!
//! Run it with `cargo run -p heimdall-examples --example embedded [DATABASE_URL]`. It bootstraps a
//! superadmin, delegates the management of `go:*` groups to the members of `go:admin`, lets one of them add a
//! member, shows that an outsider is refused, and prints what it did and what the audit log recorded.

use heimdall_core::model::{AuditQuery, Claims, MappingInput, Subject};
use heimdall_core::{Config, Heimdall};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database_url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sqlite://heimdall-example.db".to_owned());
    let h = Heimdall::builder(Config {
        database_url: database_url.clone(),
        bootstrap_superadmins: vec!["root".to_owned()],
        ..Config::default()
    })
    .build()
    .await?;
    println!("Heimdall on {} ({database_url}), built-in PDP", h.backend());

    let claims = |s: &str, name: &str| -> Result<Claims, heimdall_core::Error> {
        Ok(Claims {
            subject: Subject::parse(s)?,
            display_name: Some(name.to_owned()),
            email: None,
        })
    };
    let root = h.provision(claims("root", "Root")?, &[]).await?;
    for group in ["go:admin", "go:authenticated", "go:course:editor"] {
        match h.create_group(&root, group, None).await {
            Ok(g) => println!("created group {}", g.name),
            Err(e) if e.kind() == heimdall_core::ErrorKind::Conflict => println!("group {group} exists already"),
            Err(e) => return Err(e.into()),
        }
    }
    if h.list_management_rights(Some("go:admin")).await?.is_empty() {
        h.create_management_right(&root, "go:admin", "go:%", Some("/courses/**"))
            .await?;
    }
    println!("members of go:admin may manage groups matching go:% and their mappings under /courses/");
    h.add_member(&root, "go:admin", "alice").await?;

    let alice = h.provision(claims("alice", "Alice")?, &[]).await?;
    let change = h.add_member(&alice, "go:authenticated", "bob").await?;
    println!("alice adds bob to go:authenticated: {change:?}");
    let mapping = MappingInput {
        method: "POST".into(),
        path_pattern: "/courses/:id/enroll".into(),
        action: "course:enroll".into(),
        owner_group: Some("go:course:editor".into()),
        ..MappingInput::default()
    };
    match h.create_mapping(&alice, &mapping).await {
        Ok(m) => println!(
            "alice maps {} {} to {}",
            m.method.as_str(),
            m.path_pattern.as_str(),
            m.action
        ),
        Err(e) => println!("alice's mapping: {e}"),
    }

    let mallory = h.provision(claims("mallory", "Mallory")?, &[]).await?;
    match h.add_member(&mallory, "go:admin", "mallory").await {
        Ok(_) => println!("mallory added herself to go:admin (this should not happen)"),
        Err(e) => println!("mallory tries to join go:admin: refused ({e})"),
    }

    let bob = h.get_user("bob").await?;
    println!("bob: groups {:?}, roles {:?}", bob.groups, bob.roles);
    println!("change version: {}", h.change_version().await?);
    println!("last audit rows:");
    for row in h
        .audit_log(
            &root,
            &AuditQuery {
                limit: Some(5),
                ..AuditQuery::default()
            },
        )
        .await?
    {
        println!(
            "  #{} {} {} {} success={}",
            row.id,
            row.actor.unwrap_or_default(),
            row.operation,
            row.target_id,
            row.success
        );
    }
    Ok(())
}
