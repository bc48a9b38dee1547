//! Reading a Heimdall PostgreSQL database behind the facade's back, for tests that check what a fleet left in
//! it (`heimdall-http/tests/fleet.rs`): the SQL stays here, in heimdall-core, with the rest of it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sqlx::Connection as _;

/// Makes the database `name` (a plain identifier) on the server of `admin_url` and returns its DSN.
///
/// # Panics
///
/// When it cannot be made.
pub async fn create_database(admin_url: &str, name: &str) -> String {
    assert!(
        name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "{name} is not a plain identifier"
    );
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect as the administrator");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create the database");
    match admin_url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("{admin_url} names no database"),
    }
}

/// A small pool on a Heimdall database, and the questions tests ask it.
#[derive(Debug, Clone)]
pub struct Inspector {
    pool: sqlx::PgPool,
}

impl Inspector {
    /// Connects (two connections at most).
    ///
    /// # Panics
    ///
    /// When the database cannot be reached.
    pub async fn connect(url: &str) -> Inspector {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .expect("connect to the database");
        Inspector { pool }
    }

    /// The database server's clock.
    ///
    /// # Panics
    ///
    /// When the query fails.
    pub async fn now(&self) -> DateTime<Utc> {
        let (now,): (DateTime<Utc>,) = sqlx::query_as("SELECT now()")
            .fetch_one(&self.pool)
            .await
            .expect("now()");
        now
    }

    /// Outbox rows claimed (and not failed) with a lease that runs past `after` + `lease`: claims taken or
    /// renewed after `after`.
    ///
    /// # Panics
    ///
    /// When the query fails.
    pub async fn claims_taken_after(&self, after: DateTime<Utc>, lease: std::time::Duration) -> i64 {
        let lease = chrono::Duration::from_std(lease).expect("a lease of sane length");
        let (claimed,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM policy_outbox WHERE locked_until > $1 AND NOT failed")
                .bind(after + lease)
                .fetch_one(&self.pool)
                .await
                .expect("count claims");
        claimed
    }

    /// Every fact about the groups and roles named `{prefix}…` and the mappings whose pattern starts with
    /// `/{path}`, as `group|name`, `role|name`, `member|group|subject`, `perm|role|action`, `grant|group|role`
    /// and `mapping|METHOD|pattern`.
    ///
    /// # Panics
    ///
    /// When a query fails.
    pub async fn facts(&self, prefix: &str, path: &str) -> BTreeSet<String> {
        let queries = [
            "SELECT 'group|' || name FROM groups WHERE starts_with(name, $1)",
            "SELECT 'role|' || name FROM roles WHERE starts_with(name, $1)",
            "SELECT 'member|' || g.name || '|' || u.subject FROM memberships m JOIN groups g ON g.id = m.group_id \
             JOIN users u ON u.id = m.user_id WHERE starts_with(g.name, $1)",
            "SELECT 'perm|' || r.name || '|' || a.name FROM role_permissions p JOIN roles r ON r.id = p.role_id \
             JOIN actions a ON a.id = p.action_id WHERE starts_with(r.name, $1)",
            "SELECT 'grant|' || g.name || '|' || r.name FROM group_roles x JOIN groups g ON g.id = x.group_id \
             JOIN roles r ON r.id = x.role_id WHERE starts_with(g.name, $1)",
            "SELECT 'mapping|' || method || '|' || path_pattern FROM endpoints WHERE starts_with(path_pattern, $2)",
        ];
        let mut facts = BTreeSet::new();
        for q in queries {
            let rows: Vec<(String,)> = sqlx::query_as(q)
                .bind(prefix)
                .bind(format!("/{path}"))
                .fetch_all(&self.pool)
                .await
                .expect("read facts");
            facts.extend(rows.into_iter().map(|(f,)| f));
        }
        facts
    }

    /// The successful operations audited more than once with the same request, by actors whose subject starts
    /// with `actor_prefix` (operation, request as JSON text).
    ///
    /// # Panics
    ///
    /// When the query fails.
    pub async fn audited_twice(&self, actor_prefix: &str) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT operation, request_payload::text FROM admin_audit \
             WHERE success AND starts_with(actor_subject, $1) GROUP BY 1, 2 HAVING count(*) > 1",
        )
        .bind(actor_prefix)
        .fetch_all(&self.pool)
        .await
        .expect("read the audit")
    }
}
