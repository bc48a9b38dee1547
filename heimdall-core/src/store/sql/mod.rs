//! The SQL both databases run, written once.
//!
//! `sql_store!` expands to the store traits' impls for one concrete sqlx database: the helpers every area
//! shares (opening a write transaction, the change-version bump, the outbox enqueue, the audit row) are here,
//! each area's methods in a file of its own (`users.rs`, `groups.rs`, ...). Every statement is accepted by
//! PostgreSQL 15 and by SQLite ≥ 3.39 (`$N` placeholders, `RETURNING`, `ON CONFLICT`, `IS DISTINCT FROM`).
//! What differs between them lives in `postgres.rs` and `sqlite.rs`: connecting, migrations, how a write
//! transaction begins, and the outbox claim.

#[macro_use]
mod users;
#[macro_use]
mod groups;
#[macro_use]
mod roles;
#[macro_use]
mod mappings;
#[macro_use]
mod api_keys;
#[macro_use]
mod changes;

macro_rules! sql_store {
    ($store:ident, $db:ty, $conn:ty) => {
        use async_trait::async_trait;
        use chrono::{DateTime, Utc};
        use serde_json::{json, Value};
        use sqlx::types::Json;

        use crate::error::{Error, Result};
        use crate::model::{
            ActionName, ApiKey, ApiKeyName, ApiKeyPrincipal, ApiKeyScope, AuditQuery, AuditRecord, Claims, Effect,
            Group, GroupName, GroupPattern, ManagementRight, MembershipChange, PathScope, Role, RoleName,
            RolePermission, Subject, User, UserDetails,
        };
        use crate::store::{
            db_error, ChangeRecord, EffectivePermission, GroupFacts, Guard, MappingFacts, MappingRow, NewMapping,
            Completion, OutboxItem, OutboxStats, Store, Write,
        };

        type Db = $db;
        type Conn = $conn;

        type UserTuple = (i64, String, Option<String>, Option<String>, DateTime<Utc>, Option<DateTime<Utc>>);
        type GroupTuple = (i64, String, Option<String>, DateTime<Utc>);
        type MappingTuple = (
            i64,
            String,
            String,
            String,
            Option<String>,
            i32,
            Option<String>,
            DateTime<Utc>,
            DateTime<Utc>,
        );
        type AuditTuple = (i64, Option<String>, String, String, String, Json<Value>, Json<Value>, bool, DateTime<Utc>);

        const MAPPING_COLUMNS_SQL: &str = "SELECT e.id, e.method, e.path_pattern, a.name, g.name, e.priority, \
            e.description, e.created_at, e.updated_at FROM endpoints e JOIN actions a ON a.id = e.action_id \
            LEFT JOIN groups g ON g.id = e.owner_group_id";

        fn user_from(t: UserTuple) -> User {
            User {
                id: t.0,
                subject: Subject::from_db(t.1),
                display_name: t.2,
                email: t.3,
                created_at: t.4,
                last_seen_at: t.5,
            }
        }

        fn group_from(t: GroupTuple) -> Group {
            Group { id: t.0, name: GroupName::from_db(t.1), description: t.2, created_at: t.3 }
        }

        fn mapping_from(t: MappingTuple) -> MappingRow {
            MappingRow {
                id: t.0,
                method: t.1,
                path_pattern: t.2,
                action: ActionName::from_db(t.3),
                owner_group: t.4.map(GroupName::from_db),
                priority: t.5,
                description: t.6,
                created_at: t.7,
                updated_at: t.8,
            }
        }

        type ApiKeyTuple = (
            i64,
            String,
            String,
            Option<String>,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
        );

        const API_KEY_COLUMNS_SQL: &str = "SELECT k.id, k.name, k.scopes, u.subject, k.created_at, k.revoked_at, \
            k.last_used_at, k.expires_at FROM api_keys k LEFT JOIN users u ON u.id = k.created_by";

        fn api_key_from(t: ApiKeyTuple) -> ApiKey {
            ApiKey {
                id: t.0,
                name: ApiKeyName::from_db(t.1),
                scopes: ApiKeyScope::from_db(&t.2),
                created_by: t.3.map(Subject::from_db),
                created_at: t.4,
                revoked_at: t.5,
                last_used_at: t.6,
                expires_at: t.7,
            }
        }

        type RightTuple = (i64, String, String, Option<String>, DateTime<Utc>);

        fn right_from(t: RightTuple) -> Result<ManagementRight> {
            Ok(ManagementRight {
                id: t.0,
                manager_group: GroupName::from_db(t.1),
                target_pattern: GroupPattern::parse(t.2)?,
                path_scope: t.3.map(PathScope::parse).transpose()?,
                created_at: t.4,
            })
        }

        /// Writes the audit row of a successful mutation, inside its transaction.
        async fn audit(conn: &mut Conn, w: &Write, result: &Value, success: bool) -> Result<()> {
            let a = &w.audit;
            sqlx::query(
                "INSERT INTO admin_audit (actor_user_id, actor_subject, operation, target_type, target_id, \
                 request_payload, result, success, \"timestamp\") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(w.actor_id())
            .bind(a.actor.as_ref().map(|c| c.subject().as_str()).or(a.actor_name.as_deref()))
            .bind(a.operation)
            .bind(&a.target_type)
            .bind(&a.target_id)
            .bind(Json(&a.request))
            .bind(Json(result))
            .bind(success)
            .bind(w.now)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// The end of every write transaction: bumps the change version when something changed (`change`:
        /// the entity and its key), writes the audit row, and commits. The transaction came from `begin`,
        /// which took the change-version lock first.
        async fn finish(
            mut tx: sqlx::Transaction<'static, Db>,
            w: &Write,
            change: Option<(&str, &str)>,
            result: &Value,
        ) -> Result<()> {
            if let Some((entity, key)) = change {
                bump(&mut tx, w, entity, key).await?;
            }
            if w.notes.is_empty() {
                audit(&mut tx, w, result, true).await?;
            } else {
                let mut noted = result.clone();
                if let Value::Object(fields) = &mut noted {
                    fields.extend(w.notes.clone());
                }
                audit(&mut tx, w, &noted, true).await?;
            }
            tx.commit().await?;
            Ok(())
        }

        /// Reads again, under the write lock, the facts an authorization decision depended on.
        async fn check_guard(conn: &mut Conn, guard: &Guard) -> Result<()> {
            let moved = match guard {
                Guard::Group(name, facts) => {
                    let now = group_facts(conn, name).await?;
                    if facts.exists && !now.exists {
                        return Err(Error::not_found(format!("group {name} does not exist")));
                    }
                    now != *facts
                }
                Guard::Mapping(id, facts) => MappingFacts::from(&mapping_by_id(conn, *id).await?) != *facts,
                Guard::MappingVersion(version) => {
                    let (now,): (i64,) =
                        sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM change_log WHERE entity = 'mapping'")
                            .fetch_one(&mut *conn)
                            .await?;
                    now != *version
                }
            };
            if moved {
                return Err(Error::race(
                    "the target changed while this request was being authorized; nothing was changed, try again",
                ));
            }
            Ok(())
        }

        async fn group_facts(conn: &mut Conn, name: &GroupName) -> Result<GroupFacts> {
            let (exists,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM groups WHERE name = $1)")
                .bind(name.as_str())
                .fetch_one(&mut *conn)
                .await?;
            let (holds_rights,): (bool,) = sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM group_management_rights r JOIN groups g ON g.id = r.manager_group_id \
                 WHERE g.name = $1)",
            )
            .bind(name.as_str())
            .fetch_one(&mut *conn)
            .await?;
            let roles: Vec<(String,)> = sqlx::query_as(
                "SELECT r.name FROM roles r JOIN group_roles gr ON gr.role_id = r.id JOIN groups g ON g.id = gr.group_id \
                 WHERE g.name = $1 ORDER BY r.name",
            )
            .bind(name.as_str())
            .fetch_all(&mut *conn)
            .await?;
            Ok(GroupFacts { exists, holds_rights, roles: roles.into_iter().map(|r| RoleName::from_db(r.0)).collect() })
        }

        impl $store {
            /// Opens a write transaction. Every write goes through here: it takes the change-version row lock
            /// before anything else (so writers are serialised, read who is affected only after every earlier
            /// writer committed, and cannot deadlock on each other), then checks the write's guard.
            async fn begin(&self, w: &Write) -> Result<sqlx::Transaction<'static, Db>> {
                let mut tx = self.begin_write().await?;
                sqlx::query(Self::LOCK_SQL).execute(&mut *tx).await?;
                for guard in &w.guard {
                    check_guard(&mut tx, guard).await?;
                }
                Ok(tx)
            }
        }

        /// Bumps the change version and logs what changed. The row lock orders bumps in commit order.
        async fn bump(conn: &mut Conn, w: &Write, entity: &str, key: &str) -> Result<i64> {
            let (version,): (i64,) =
                sqlx::query_as("UPDATE change_version SET version = version + 1 WHERE id = 1 RETURNING version")
                    .fetch_one(&mut *conn)
                    .await?;
            sqlx::query("INSERT INTO change_log (version, entity, entity_key, changed_at) VALUES ($1, $2, $3, $4)")
                .bind(version)
                .bind(entity)
                .bind(key)
                .bind(w.now)
                .execute(&mut *conn)
                .await?;
            Ok(version)
        }

        // The `enqueue_*` statements put users into the principal-policy outbox. A user already waiting gets
        // a new generation and is due at once again, but a worker's lease (locked_until) stays: were it
        // cleared, a second worker could push the new state while the first still pushes the old one, and the
        // older push could land last. The first worker's completion leaves the newer generation due.
        // A waiting user keeps the oldest change version it waits to push (a failed one takes the new one).
        const ENQUEUE_TAIL: &str = " ON CONFLICT (subject) DO UPDATE SET generation = policy_outbox.generation + 1, \
            enqueued_at = excluded.enqueued_at, attempts = 0, next_attempt_at = excluded.next_attempt_at, \
            last_error = NULL, failed = FALSE, enqueued_version = CASE WHEN policy_outbox.failed \
            OR excluded.enqueued_version < policy_outbox.enqueued_version THEN excluded.enqueued_version \
            ELSE policy_outbox.enqueued_version END";
        // Inside a write transaction (under the change-version lock): the version this change will commit as.
        const NEXT_VERSION: &str = "(SELECT version + 1 FROM change_version WHERE id = 1)";

        /// Tells push workers in other processes that the outbox has work, at commit (where the database can).
        async fn notify_outbox(conn: &mut Conn) -> Result<()> {
            if let Some(sql) = <$store>::NOTIFY_SQL {
                sqlx::query(sql).execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// Puts the users `users_sql` selects (user ids, with `$1` bound to `key`) into the principal-policy
        /// outbox, and marks their grants as changed at the version this change commits as (what followers
        /// holding grants on demand ask for: `grants_changed_since`).
        async fn enqueue_users(conn: &mut Conn, now: DateTime<Utc>, users_sql: &str, key: i64) -> Result<()> {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO policy_outbox (subject, generation, enqueued_at, attempts, next_attempt_at, \
                 enqueued_version) SELECT subject, 1, $2, 0, $2, {NEXT_VERSION} FROM users \
                 WHERE id IN ({users_sql}){ENQUEUE_TAIL}"
            )))
            .bind(key)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE users SET grants_version = {NEXT_VERSION} WHERE id IN ({users_sql})"
            )))
            .bind(key)
            .execute(&mut *conn)
            .await?;
            notify_outbox(conn).await?;
            Ok(())
        }

        async fn enqueue_user(conn: &mut Conn, now: DateTime<Utc>, user_id: i64) -> Result<()> {
            enqueue_users(conn, now, "$1", user_id).await
        }

        async fn enqueue_group_members(conn: &mut Conn, now: DateTime<Utc>, group_id: i64) -> Result<()> {
            enqueue_users(conn, now, "SELECT user_id FROM memberships WHERE group_id = $1", group_id).await
        }

        async fn enqueue_role_holders(conn: &mut Conn, now: DateTime<Utc>, role_id: i64) -> Result<()> {
            enqueue_users(
                conn,
                now,
                "SELECT m.user_id FROM memberships m JOIN group_roles gr ON gr.group_id = m.group_id \
                 WHERE gr.role_id = $1 UNION SELECT user_id FROM user_roles WHERE role_id = $1",
                role_id,
            )
            .await
        }

        async fn group_id(conn: &mut Conn, name: &GroupName) -> Result<i64> {
            let id: Option<(i64,)> = sqlx::query_as("SELECT id FROM groups WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&mut *conn)
                .await?;
            id.map(|r| r.0).ok_or_else(|| Error::not_found(format!("group {name} does not exist")))
        }

        async fn role_id(conn: &mut Conn, name: &RoleName) -> Result<i64> {
            let id: Option<(i64,)> = sqlx::query_as("SELECT id FROM roles WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&mut *conn)
                .await?;
            id.map(|r| r.0).ok_or_else(|| Error::not_found(format!("role {name} does not exist")))
        }

        /// The id of the user with `subject`, creating a row for a user nobody has seen yet.
        async fn ensure_user(conn: &mut Conn, now: DateTime<Utc>, subject: &Subject) -> Result<i64> {
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO users (subject, created_at) VALUES ($1, $2) \
                 ON CONFLICT (subject) DO UPDATE SET subject = excluded.subject RETURNING id",
            )
            .bind(subject.as_str())
            .bind(now)
            .fetch_one(&mut *conn)
            .await?;
            Ok(id)
        }

        async fn ensure_action(conn: &mut Conn, action: &ActionName, kind: &str) -> Result<i64> {
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO actions (name, resource_kind) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
            )
            .bind(action.as_str())
            .bind(kind)
            .fetch_one(&mut *conn)
            .await?;
            Ok(id)
        }

        async fn mapping_by_id(conn: &mut Conn, id: i64) -> Result<MappingRow> {
            let row: Option<MappingTuple> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("{MAPPING_COLUMNS_SQL} WHERE e.id = $1")))
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            row.map(mapping_from).ok_or_else(|| Error::not_found(format!("mapping {id} does not exist")))
        }

        /// The error for a mapping that would match exactly what mapping `other` matches.
        async fn mapping_conflict(pool: &sqlx::Pool<Db>, m: &NewMapping) -> Error {
            let other: std::result::Result<Option<(i64, String)>, _> =
                sqlx::query_as("SELECT id, path_pattern FROM endpoints WHERE method = $1 AND match_key = $2")
                    .bind(&m.method)
                    .bind(&m.match_key)
                    .fetch_optional(pool)
                    .await;
            match other {
                Ok(Some((id, pattern))) => Error::conflict(format!(
                    "{} {} matches exactly the same requests as mapping {id} ({} {pattern})",
                    m.method, m.path_pattern, m.method
                ))
                .about_mappings([id])
                .about_field("path_pattern"),
                _ => Error::conflict(format!(
                    "{} {} matches exactly the same requests as an existing mapping",
                    m.method, m.path_pattern
                )),
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                Self::BACKEND
            }

            async fn migrate(&self) -> Result<()> {
                Self::MIGRATOR.run(&self.pool).await?;
                Ok(())
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }

        sql_users!($store);
        sql_groups!($store);
        sql_roles!($store);
        sql_mappings!($store);
        sql_api_keys!($store);
        sql_changes!($store);
    };
}
