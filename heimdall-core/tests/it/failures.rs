//! The audit of failed attempts is bounded per actor and minute, on both databases: a caller who fails again
//! and again writes at most `FAILURE_AUDIT_ROWS` rows of his own, then one coalesced row per operation and
//! outcome whose count grows; the counts add up to every failure.

use heimdall_core::model::{AuditQuery, AuditRecord, Caller};
use heimdall_core::test_utils::TestDatabase;
use heimdall_core::{Error, ErrorKind, FAILURE_AUDIT_COUNT_DELAY, FAILURE_AUDIT_ROWS, Heimdall};

use crate::support::{caller, heimdall, root};

async fn rows_of(h: &Heimdall, root: &Caller, actor: &str) -> Vec<AuditRecord> {
    h.audit_log(
        root,
        &AuditQuery {
            actor: Some(actor.to_owned()),
            limit: Some(1000),
            ..AuditQuery::default()
        },
    )
    .await
    .unwrap()
}

fn failures(rows: &[AuditRecord]) -> u64 {
    rows.iter().map(|r| r.result["count"].as_u64().unwrap_or(1)).sum()
}

#[tokio::test]
async fn failed_attempts_are_audited_with_a_bound_on_every_backend() {
    for db in TestDatabase::all().await {
        story(&db).await;
        db.drop_database().await;
    }
}

async fn story(db: &TestDatabase) {
    let h = heimdall(db).await;
    let root = root(&h).await;
    let eve = caller(&h, "eve").await;
    let b = db.backend;
    let bound = FAILURE_AUDIT_ROWS as usize;

    // Refused (eve may not create groups) and invalid (a bad name): two operations' worth of outcomes.
    for i in 0..60 {
        let e = h.create_group(&eve, &format!("go:e{i}"), None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden, "{b}");
    }
    for _ in 0..10 {
        let e = h.create_group(&eve, "not a name", None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{b}");
    }
    // Counts are written within FAILURE_AUDIT_COUNT_DELAY.
    tokio::time::sleep(FAILURE_AUDIT_COUNT_DELAY * 2).await;
    let rows = rows_of(&h, &root, "eve").await;
    assert_eq!(failures(&rows), 70, "{b}: {rows:?}");
    assert!(rows.len() <= bound + 2, "{b}: {} rows", rows.len());
    let single = rows.iter().filter(|r| r.result.get("count").is_none()).count();
    assert_eq!(single, bound, "{b}: the first failures keep a row each");
    let denied = rows
        .iter()
        .find(|r| r.result["coalesced"] == true && r.result["outcome"] == "denied")
        .expect("a coalesced row of the refusals");
    assert_eq!(denied.result["count"], 60 - bound as u64, "{b}");
    assert!(denied.result["last_at"].is_string(), "{b}");
    assert!(!denied.success, "{b}");
    let invalid = rows
        .iter()
        .find(|r| r.result["coalesced"] == true && r.result["outcome"] == "invalid")
        .expect("a coalesced row of the invalid attempts");
    assert_eq!(invalid.result["count"], 10, "{b}");

    // Another actor has a bound of its own.
    let mallory = caller(&h, "mallory").await;
    h.create_group(&mallory, "go:m", None).await.unwrap_err();
    let rows = rows_of(&h, &root, "mallory").await;
    assert_eq!(rows.len(), 1, "{b}");
    assert!(rows[0].result.get("count").is_none(), "{b}");

    // Credentials refused before anyone was known, by source.
    let refused = Error::new(ErrorKind::Unauthenticated, "unknown or revoked API key");
    for _ in 0..(bound + 15) {
        h.audit_refused_credential("192.0.2.7", "GET /api/v1/mappings/export", &refused)
            .await
            .unwrap();
    }
    tokio::time::sleep(FAILURE_AUDIT_COUNT_DELAY * 2).await;
    let rows = rows_of(&h, &root, "unauthenticated:192.0.2.7").await;
    assert_eq!(rows.len(), bound + 1, "{b}");
    assert_eq!(failures(&rows), (bound + 15) as u64, "{b}");
    assert!(
        rows.iter()
            .all(|r| r.operation == "authenticate" && r.result["outcome"] == "unauthenticated")
    );

    // Nobody signs in as a refused credential's actor.
    let e = h
        .provision(crate::support::claims("unauthenticated:192.0.2.7"), &[])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{b}");
}
