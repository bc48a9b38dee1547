//! API keys: created with a secret shown once, stored hashed, revocable, authorized and audited, on both
//! databases.

use std::time::Duration;

use heimdall_core::model::{ApiKeyScope, AuditQuery, AuditRecord, Caller};
use heimdall_core::test_utils::TestDatabase;
use heimdall_core::{API_KEY_CACHE_TTL, ErrorKind, Heimdall};

use crate::support::{caller, heimdall, root};

#[track_caller]
fn kind<T: std::fmt::Debug>(r: heimdall_core::Result<T>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

/// The SHA-256 (hex) Heimdall stores for a secret, recomputed independently.
fn sha256_hex(secret: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn audit(h: &Heimdall, root: &Caller, operation: &str) -> Vec<AuditRecord> {
    h.audit_log(
        root,
        &AuditQuery {
            operation: Some(operation.to_owned()),
            ..AuditQuery::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn api_keys_on_every_backend() {
    for db in TestDatabase::all().await {
        story(&db).await;
        db.drop_database().await;
    }
}

async fn story(db: &TestDatabase) {
    let h = heimdall(db).await;
    let root = root(&h).await;
    let b = db.backend;
    let v0 = h.change_version().await.unwrap();

    // Created: the secret is shown once, in the documented shape, and not in Debug.
    let created = h
        .create_api_key(&root, "adapter:go", &["mappings:read", "grants:read", "mappings:read"])
        .await
        .unwrap();
    let secret = created.secret.clone();
    assert!(secret.starts_with("hk_") && secret.len() == 46, "{b}: {secret}");
    assert!(
        secret[3..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert!(!format!("{created:?}").contains(&secret), "{b}: Debug shows the secret");
    let key = &created.key;
    assert_eq!(key.name.as_str(), "adapter:go");
    assert_eq!(key.scopes, [ApiKeyScope::MappingsRead, ApiKeyScope::GrantsRead]);
    assert_eq!(key.created_by.as_ref().map(|s| s.as_str()), Some("root"));
    assert!(key.revoked_at.is_none() && key.last_used_at.is_none());
    assert_eq!(
        h.change_version().await.unwrap(),
        v0,
        "{b}: keys are not versioned data"
    );

    // It verifies (twice: the second from the cache).
    for _ in 0..2 {
        let p = h.authenticate_api_key(&secret).await.unwrap();
        assert_eq!((p.id, p.name.as_str()), (key.id, "adapter:go"), "{b}");
        assert!(p.has_scope(ApiKeyScope::MappingsRead) && p.has_scope(ApiKeyScope::GrantsRead));
    }
    let other = h
        .create_api_key(&root, "adapter:rmi", &["mappings:read"])
        .await
        .unwrap();
    let p = h.authenticate_api_key(&other.secret).await.unwrap();
    assert_eq!(p.id, other.key.id);
    assert!(p.has_scope(ApiKeyScope::MappingsRead) && !p.has_scope(ApiKeyScope::GrantsRead));

    // Listing shows no secret and no hash.
    let listed = h.list_api_keys(&root).await.unwrap();
    assert_eq!(listed.len(), 2, "{b}");
    assert_eq!(listed[0], created.key);
    let shown = format!("{listed:?}");
    for s in [&secret, &other.secret, &sha256_hex(&secret), &sha256_hex(&other.secret)] {
        assert!(!shown.contains(s.as_str()), "{b}: the listing shows {s}");
    }

    // Refused input writes nothing.
    assert_eq!(
        kind(h.create_api_key(&root, "adapter:go", &["mappings:read"]).await),
        ErrorKind::Conflict
    );
    let e = h
        .create_api_key(&root, "adapter:x", &["mappings:write"])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{b}");
    assert!(
        e.message().contains("mappings:read") && e.message().contains("grants:read"),
        "{e}"
    );
    assert_eq!(
        kind(h.create_api_key(&root, "adapter:x", &[]).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(h.create_api_key(&root, "adapter x", &["mappings:read"]).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(h.create_api_key(&root, &"a".repeat(129), &["mappings:read"]).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(h.list_api_keys(&root).await.unwrap().len(), 2, "{b}: nothing written");
    let invalid = audit(&h, &root, "create_api_key").await;
    assert_eq!(
        invalid.iter().filter(|r| !r.success).count(),
        5,
        "{b}: each refusal is audited"
    );
    assert!(
        invalid
            .iter()
            .any(|r| r.success && r.target_id == "api_key:adapter:go" && r.actor.as_deref() == Some("root")),
        "{b}: {invalid:?}"
    );

    // Unknown, malformed and revoked secrets: unauthenticated, without echoing them.
    let forged = format!("hk_{}", "A".repeat(43));
    for bad in [
        forged.as_str(),
        "hk_short",
        "",
        "Bearer x",
        &secret[..45],
        &format!("{secret}x"),
    ] {
        let e = h.authenticate_api_key(bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{b}: {bad:?}");
        assert!(bad.is_empty() || !e.to_string().contains(bad), "{b}: {e}");
    }

    // Uses are audited once per key and operation within the interval, and set last_used_at.
    let p = h.authenticate_api_key(&secret).await.unwrap();
    for _ in 0..3 {
        h.record_api_key_use(&p, "list_mappings", "mappings").await.unwrap();
    }
    h.record_api_key_use(&p, "grants_snapshot", "grants").await.unwrap();
    let uses = audit(&h, &root, "api_key_use").await;
    assert_eq!(uses.len(), 2, "{b}: {uses:?}");
    assert!(
        uses.iter()
            .all(|u| u.success && u.actor.as_deref() == Some("api_key:adapter:go"))
    );
    let mut ops: Vec<(&str, &str)> = uses
        .iter()
        .map(|u| (u.request["operation"].as_str().unwrap(), u.target_id.as_str()))
        .collect();
    ops.sort();
    assert_eq!(ops, [("grants_snapshot", "grants"), ("list_mappings", "mappings")]);
    let used = h.list_api_keys(&root).await.unwrap();
    assert!(used[0].last_used_at.is_some() && used[1].last_used_at.is_none(), "{b}");

    // Revoked: refused at once in this process, although the key was cached a moment ago.
    h.revoke_api_key(&root, key.id).await.unwrap();
    assert_eq!(kind(h.authenticate_api_key(&secret).await), ErrorKind::Unauthenticated);
    h.revoke_api_key(&root, key.id)
        .await
        .expect("revoking twice is idempotent");
    assert_eq!(kind(h.revoke_api_key(&root, 999_999).await), ErrorKind::NotFound);
    let after = h.list_api_keys(&root).await.unwrap();
    assert!(after[0].revoked_at.is_some() && after[1].revoked_at.is_none(), "{b}");
    h.authenticate_api_key(&other.secret)
        .await
        .expect("the other key still works");
    let revocations = audit(&h, &root, "revoke_api_key").await;
    let results: Vec<(bool, String)> = revocations.iter().map(|r| (r.success, r.result.to_string())).collect();
    assert_eq!(revocations.len(), 3, "{b}: {results:?}");
    assert!(
        revocations.iter().any(|r| r.success
            && r.target_id == format!("api_key:{}", key.id)
            && r.result["status"] == "already_revoked")
    );

    // Only superadmins: everyone else is refused, and each refusal is audited.
    let bob = caller(&h, "bob").await;
    assert_eq!(
        kind(h.create_api_key(&bob, "bob:key", &["mappings:read"]).await),
        ErrorKind::Forbidden
    );
    assert_eq!(kind(h.list_api_keys(&bob).await), ErrorKind::Forbidden);
    assert_eq!(kind(h.revoke_api_key(&bob, other.key.id).await), ErrorKind::Forbidden);
    h.authenticate_api_key(&other.secret)
        .await
        .expect("a refused revocation changes nothing");
    for op in ["create_api_key", "list_api_keys", "revoke_api_key"] {
        let denied: Vec<AuditRecord> = audit(&h, &root, op)
            .await
            .into_iter()
            .filter(|r| r.actor.as_deref() == Some("bob"))
            .collect();
        assert_eq!(denied.len(), 1, "{b}: {op}: {denied:?}");
        assert!(
            !denied[0].success && denied[0].result["outcome"] == "denied",
            "{b}: {op}"
        );
    }
    assert_eq!(h.list_api_keys(&root).await.unwrap().len(), 2);

    // No user can pass for a key in the audit log.
    assert_eq!(
        kind(h.provision(crate::support::claims("api_key:adapter:go"), &[]).await),
        ErrorKind::InvalidInput
    );

    // No audit row holds a secret or its hash.
    let everything = h
        .audit_log(
            &root,
            &AuditQuery {
                limit: Some(1000),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(everything.len() > 10, "{b}: {}", everything.len());
    for row in &everything {
        let text = format!("{row:?}");
        for s in [&secret, &other.secret, &sha256_hex(&secret), &sha256_hex(&other.secret)] {
            assert!(!text.contains(s.as_str()), "{b}: an audit row holds a secret: {text}");
        }
    }
}

/// A revocation made by another process is felt here within the cache's time to live.
#[tokio::test]
async fn a_revocation_elsewhere_takes_effect_within_the_cache_ttl() {
    let db = TestDatabase::sqlite();
    let here = heimdall(&db).await;
    let elsewhere = heimdall(&db).await;
    let root = root(&here).await;
    let created = here
        .create_api_key(&root, "adapter:cached", &["mappings:read"])
        .await
        .unwrap();
    here.authenticate_api_key(&created.secret).await.unwrap();
    elsewhere.revoke_api_key(&root, created.key.id).await.unwrap();
    assert_eq!(
        kind(elsewhere.authenticate_api_key(&created.secret).await),
        ErrorKind::Unauthenticated
    );
    // Still cached here (that is the documented bound, not a wish) ...
    here.authenticate_api_key(&created.secret)
        .await
        .expect("cached for a while");
    // ... and refused once the time to live has passed.
    tokio::time::sleep(API_KEY_CACHE_TTL + Duration::from_millis(500)).await;
    assert_eq!(
        kind(here.authenticate_api_key(&created.secret).await),
        ErrorKind::Unauthenticated
    );
}

/// An API key may carry an expiry: it authenticates until then (also from the cache of verified keys), and
/// nothing after; an expiry that is not in the future is invalid input and creates nothing. Both databases.
#[tokio::test]
async fn api_keys_expire() {
    for db in TestDatabase::all().await {
        let h = heimdall(&db).await;
        let root = root(&h).await;
        let b = db.backend;
        let past = heimdall_core::Clock::now(&heimdall_core::SystemClock) - chrono::Duration::seconds(1);
        assert_eq!(
            kind(
                h.create_expiring_api_key(&root, "expired", &["mappings:read"], Some(past))
                    .await
            ),
            ErrorKind::InvalidInput,
            "{b}"
        );
        assert!(
            h.list_api_keys(&root)
                .await
                .unwrap()
                .iter()
                .all(|k| k.name.as_str() != "expired"),
            "{b}: nothing created"
        );
        let expires_at = heimdall_core::Clock::now(&heimdall_core::SystemClock) + chrono::Duration::milliseconds(1500);
        let key = h
            .create_expiring_api_key(&root, "short-lived", &["mappings:read"], Some(expires_at))
            .await
            .unwrap();
        let listed = h.list_api_keys(&root).await.unwrap();
        let shown = listed.iter().find(|k| k.id == key.key.id).unwrap();
        assert_eq!(
            shown.expires_at.map(|t| t.timestamp_millis()),
            Some(expires_at.timestamp_millis()),
            "{b}: the expiry is stored and listed"
        );
        let p = h.authenticate_api_key(&key.secret).await.unwrap();
        assert_eq!(p.id, key.key.id, "{b}");
        // Once more, from the cache of verified keys.
        assert!(h.authenticate_api_key(&key.secret).await.is_ok(), "{b}");
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let e = h.authenticate_api_key(&key.secret).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{b}: {e}");
        assert!(e.message().contains("expired"), "{b}: {e}");
        assert!(!e.message().contains(&key.secret), "{b}: the secret is never echoed");
        // A key without an expiry keeps working.
        let forever = h.create_api_key(&root, "forever", &["mappings:read"]).await.unwrap();
        assert!(forever.key.expires_at.is_none());
        assert!(h.authenticate_api_key(&forever.secret).await.is_ok(), "{b}");
        drop(h);
        db.drop_database().await;
    }
}
