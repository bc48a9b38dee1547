//! The `heimdall` command, run as a user would: against a real Cerbos and a throwaway database.

// Tests may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use heimdall_core::model::Subject;
use heimdall_core::pdp::{Decision, Pdp, Principal, pack};
use heimdall_core::test_utils::cerbos::{ADMIN_PASSWORD, ADMIN_USER, Cerbos};
use heimdall_core::test_utils::{TestDatabase, course_editors};
use heimdall_core::{Config, Heimdall};

fn heimdall(db: &TestDatabase, cerbos: &Cerbos, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heimdall"))
        .args(args)
        .env_clear()
        .env("DB_DSN", &db.url)
        .env("CERBOS_ADMIN_URL", format!("{}/admin/policy", cerbos.base_url()))
        .env("CERBOS_ADMIN_USER", ADMIN_USER)
        .env("CERBOS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root")
        .output()
        .expect("run heimdall")
}

#[track_caller]
fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "heimdall failed: {stderr}");
    assert!(
        !stderr.contains(ADMIN_PASSWORD),
        "the admin password was printed: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn migrate_install_policies_and_reconcile() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let db = TestDatabase::sqlite();

    let out = ok(&heimdall(&db, &cerbos, &["migrate"]));
    assert!(out.contains("migrated the sqlite database"), "{out}");

    let out = ok(&heimdall(&db, &cerbos, &["install-policies"]));
    assert!(out.contains("installed the admin policy pack"), "{out}");
    // The pack is live: Cerbos now lets a superadmin create groups.
    let root = pack::principal(&Subject::parse("root").unwrap(), Vec::<String>::new(), true, &[]);
    let group = pack::new_group(&heimdall_core::model::GroupName::parse("go:x").unwrap());
    let client = cerbos.client();
    let mut allowed = false;
    for _ in 0..200 {
        if client
            .check(&root, &group, &[pack::action::GROUP_CREATE])
            .await
            .unwrap()[0]
            == Decision::Allow
        {
            allowed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(allowed, "the installed pack should allow a superadmin");

    // A member with a permission, written through the library; `heimdall reconcile` pushes their policy.
    let h = Heimdall::builder(Config {
        database_url: db.url.clone(),
        ..Config::default()
    })
    .build()
    .await
    .unwrap();
    let caller = course_editors(&h).await;
    h.add_member(&caller, "go:course:editor", "bob").await.unwrap();
    // A dry run finds bob's policy missing, and queues nothing: the next dry run finds the same.
    let pending = h.outbox_stats().await.unwrap().pending;
    let mut found = Vec::new();
    for _ in 0..2 {
        let out = ok(&heimdall(&db, &cerbos, &["reconcile", "--dry-run"]));
        let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(report["in_sync"], false, "{report}");
        found.push(report["to_push"].as_u64().unwrap());
    }
    assert!(found[0] >= 1 && found[0] == found[1], "{found:?}");
    assert_eq!(
        h.outbox_stats().await.unwrap().pending,
        pending,
        "a dry run queues nothing"
    );
    let out = ok(&heimdall(&db, &cerbos, &["reconcile"]));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["pushed"], 1, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    let out = ok(&heimdall(&db, &cerbos, &["reconcile"]));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (report["pushed"].as_u64(), report["deleted"].as_u64()),
        (Some(0), Some(0)),
        "in sync: {report}"
    );
    let out = ok(&heimdall(&db, &cerbos, &["reconcile", "--dry-run"]));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["in_sync"], true, "{report}");
    let bob = Principal::new(
        heimdall_core::pdp::principal_id(&Subject::parse("bob").unwrap()),
        ["user"],
    );
    let course = heimdall_core::pdp::Resource::new("course", "course:1");
    assert_eq!(
        client.check(&bob, &course, &["course:create"]).await.unwrap()[0],
        Decision::Allow
    );
}

#[test]
fn a_missing_admin_password_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_heimdall"))
        .arg("reconcile")
        .env_clear()
        .env("DB_DSN", "sqlite::memory:")
        .env("CERBOS_ADMIN_URL", "http://127.0.0.1:9/admin/policy")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CERBOS_ADMIN_PASSWORD is empty"), "{stderr}");
}

/// `heimdall serve` refuses bad configuration at start, naming the variable, and exits non-zero.
#[test]
fn serve_fails_at_start_naming_the_bad_variable() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let cases: [(&[(&str, &str)], &str); 7] = [
        (
            &[
                ("KEYCLOAK_JWKS_URL", "keycloak:8080/certs"),
                ("JWT_AUDIENCE", "heimdall"),
            ],
            "KEYCLOAK_JWKS_URL",
        ),
        // A token minted for any other application would pass: refused unless explicitly allowed.
        (&[("KEYCLOAK_JWKS_URL", "http://127.0.0.1:9/certs")], "JWT_AUDIENCE"),
        // Keys fetched over plain HTTP from another machine can be swapped on the way.
        (
            &[
                ("KEYCLOAK_JWKS_URL", "http://keycloak:8080/certs"),
                ("JWT_AUDIENCE", "heimdall"),
            ],
            "KEYCLOAK_JWKS_URL",
        ),
        (&[("STATIC_API_TOKEN", "too-short-to-be-a-secret")], "STATIC_API_TOKEN"),
        (&[("PORT", port.as_str())], "HOST/PORT"),
        (&[("PORT", "not-a-port")], "PORT"),
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
    ];
    for (env, variable) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_heimdall"))
            .arg("serve")
            .env_clear()
            .env("DB_DSN", "sqlite::memory:")
            .env("HOST", "127.0.0.1")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} started: {stderr}");
        assert!(
            stderr.contains(variable),
            "{env:?}: the error does not name {variable}: {stderr}"
        );
    }
    drop(taken);
}
