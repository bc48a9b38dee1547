//! Test support (the `testing` feature): throwaway databases on both backends, and a real Cerbos PDP.
//!
//! SQLite databases live in a temporary directory. PostgreSQL databases are created, one per test, in the
//! cluster that `HEIMDALL_TEST_DATABASE_URL` points at (`scripts/test` starts a throwaway one). When that
//! variable is unset, PostgreSQL tests fail under `CI=true` and are skipped loudly elsewhere.

// Test support may unwrap: a panic here is a test failure with a message.
#![allow(clippy::unwrap_used)]

pub mod cerbos;
pub mod cluster;
pub mod haproxy;
pub mod inspect;

use crate::Heimdall;
use crate::model::{Caller, Claims, Subject};

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

/// Environment variable naming a PostgreSQL server (any database) the tests may create databases in.
pub const DATABASE_URL_VAR: &str = "HEIMDALL_TEST_DATABASE_URL";

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The DSN to hand to [`crate::Config::database_url`].
    pub url: String,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("heimdall_test_{}_{}_{}", std::process::id(), n, nanos)
}

/// Whether a missing service must fail the test (under CI) rather than skip it.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

impl TestDatabase {
    /// A fresh SQLite database in a temporary directory.
    pub fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("heimdall.db").display());
        TestDatabase {
            url,
            backend: "sqlite",
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (after saying so on stderr) when no server is configured and
    /// the test is not running under CI.
    pub async fn postgres() -> Option<TestDatabase> {
        let Ok(admin_url) = std::env::var(DATABASE_URL_VAR) else {
            if required() {
                panic!("{DATABASE_URL_VAR} is not set, and CI=true requires the PostgreSQL tests: run scripts/test");
            }
            eprintln!("SKIPPED PostgreSQL half of this test: {DATABASE_URL_VAR} is not set (scripts/test sets it)");
            return None;
        };
        let name = unique_name();
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {DATABASE_URL_VAR}: {e}"));
        // The name is ours (letters, digits, underscores), so it is safe to splice into the statement.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url);
        Some(TestDatabase {
            url: format!("{base}/{name}"),
            backend: "postgres",
            _dir: None,
            postgres: Some((admin_url.clone(), name)),
        })
    }

    /// Fills a PostgreSQL database (migrated already) for the console's benchmark, straight by SQL: `groups`
    /// groups `bench:g1` …, `mappings` mappings `GET /bench/r<i>/:id` → `bench:read`, each owned by one of the
    /// groups, and `audit_rows` audit rows (`add_member` on the groups by 100 actors, one in ten failed). No
    /// change version moves: make one change through the facade afterwards so that the mapping snapshot loads
    /// them.
    pub async fn insert_console_fixture(&self, groups: i64, mappings: i64, audit_rows: i64) -> crate::Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .map_err(crate::store::storage_error)?;
        let statements = [
            (
                "INSERT INTO groups (name, created_at) SELECT 'bench:g' || i, now() FROM generate_series(1, $1) i",
                groups,
            ),
            (
                "INSERT INTO actions (name, resource_kind) SELECT 'bench:read', 'bench' WHERE $1 > 0 \
                 ON CONFLICT (name) DO NOTHING",
                mappings,
            ),
            (
                "INSERT INTO endpoints (path_pattern, method, match_key, action_id, owner_group_id, priority, \
                 created_at, updated_at) \
                 SELECT '/bench/r' || i || '/:id', 'GET', '/bench/r' || i || '/:', a.id, \
                 (SELECT id FROM groups WHERE name = 'bench:g' || (1 + i % (SELECT count(*) FROM groups \
                 WHERE name LIKE 'bench:g%'))), 0, now(), now() \
                 FROM generate_series(1, $1) i, actions a WHERE a.name = 'bench:read'",
                mappings,
            ),
            (
                "INSERT INTO admin_audit (actor_subject, operation, target_type, target_id, request_payload, result, \
                 success, \"timestamp\") \
                 SELECT 'bench-user' || (i % 100), 'add_member', 'heimdall_group', 'group:bench:g' || (1 + i % 10000), \
                 '{}'::jsonb, '{}'::jsonb, i % 10 <> 0, now() - make_interval(secs => i) \
                 FROM generate_series(1, $1) i",
                audit_rows,
            ),
        ];
        for (sql, n) in statements {
            sqlx::query(sql)
                .bind(n)
                .execute(&mut conn)
                .await
                .map_err(crate::store::storage_error)?;
        }
        conn.close().await.map_err(crate::store::storage_error)
    }

    /// Adds `count` users `{prefix}1` … `{prefix}{count}` straight into a SQLite database (migrated already),
    /// and makes the first `members` of them members of `group` (which must exist): a large user base in
    /// seconds, for benchmarks. The users are as JIT provisioning leaves them; no change version moves.
    pub async fn insert_users(&self, prefix: &str, count: u64, group: &str, members: u64) -> crate::Result<()> {
        let mut conn = sqlx::SqliteConnection::connect(&self.url)
            .await
            .map_err(crate::store::storage_error)?;
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
             INSERT INTO users (subject, created_at) SELECT $1 || i, '2026-01-01T00:00:00+00:00' FROM n",
        )
        .bind(prefix)
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .execute(&mut conn)
        .await
        .map_err(crate::store::storage_error)?;
        sqlx::query(
            "INSERT INTO memberships (group_id, user_id, granted_by, granted_at) \
             SELECT g.id, u.id, NULL, '2026-01-01T00:00:00+00:00' FROM users u, groups g \
             WHERE g.name = $1 AND u.subject IN \
             (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $3) SELECT $2 || i FROM n)",
        )
        .bind(group)
        .bind(prefix)
        .bind(i64::try_from(members).unwrap_or(i64::MAX))
        .execute(&mut conn)
        .await
        .map_err(crate::store::storage_error)?;
        conn.close().await.map_err(crate::store::storage_error)
    }

    /// SQLite, and PostgreSQL when available: what a store test runs against.
    pub async fn all() -> Vec<TestDatabase> {
        let mut dbs = vec![TestDatabase::sqlite()];
        dbs.extend(TestDatabase::postgres().await);
        dbs
    }

    /// Drops a PostgreSQL database (call it after the last connection to it is closed). A SQLite database
    /// goes with its temporary directory.
    pub async fn drop_database(self) {
        if let Some((admin_url, name)) = &self.postgres
            && let Ok(mut conn) = sqlx::PgConnection::connect(admin_url).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
            conn.close().await.ok();
        }
    }
}

/// Bootstraps the superadmin `root` and returns them as a caller.
pub async fn root(h: &Heimdall) -> Caller {
    h.bootstrap_superadmins(&["root"]).await.expect("bootstrap root");
    let claims = Claims {
        subject: Subject::parse("root").expect("a subject"),
        display_name: None,
        email: None,
    };
    h.provision(claims, &[]).await.expect("provision root")
}

/// The fixture most push tests start from: a group `go:course:editor` whose role of the same name lets its
/// members `course:create` and forbids them `course:delete`, set up by `root` (see [`root`]), who is returned.
pub async fn course_editors(h: &Heimdall) -> Caller {
    let root = root(h).await;
    h.create_group(&root, "go:course:editor", None)
        .await
        .expect("create the group");
    h.create_role(&root, "go:course:editor", None)
        .await
        .expect("create the role");
    h.grant_permission(&root, "go:course:editor", "course:create", "allow")
        .await
        .expect("grant");
    h.grant_permission(&root, "go:course:editor", "course:delete", "deny")
        .await
        .expect("deny");
    h.assign_group_role(&root, "go:course:editor", "go:course:editor")
        .await
        .expect("assign");
    root
}
