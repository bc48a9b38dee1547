//! The SQL both databases run, written once.
//!
//! `sql_store!` expands to `impl Store for $store` for one concrete sqlx database. Every statement here is
//! accepted by PostgreSQL 15 and by SQLite ≥ 3.39 (`$N` placeholders, `RETURNING`, `ON CONFLICT`,
//! `IS DISTINCT FROM`). What differs between them lives in `postgres.rs` and `sqlite.rs`: connecting,
//! migrations, how a write transaction begins, and the outbox claim.

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
        );

        const API_KEY_COLUMNS_SQL: &str = "SELECT k.id, k.name, k.scopes, u.subject, k.created_at, k.revoked_at, \
            k.last_used_at FROM api_keys k LEFT JOIN users u ON u.id = k.created_by";

        fn api_key_from(t: ApiKeyTuple) -> ApiKey {
            ApiKey {
                id: t.0,
                name: ApiKeyName::from_db(t.1),
                scopes: ApiKeyScope::from_db(&t.2),
                created_by: t.3.map(Subject::from_db),
                created_at: t.4,
                revoked_at: t.5,
                last_used_at: t.6,
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
            mut tx: sqlx::Transaction<'static, $db>,
            w: &Write,
            change: Option<(&str, &str)>,
            result: &Value,
        ) -> Result<()> {
            if let Some((entity, key)) = change {
                bump(&mut tx, w, entity, key).await?;
            }
            audit(&mut tx, w, result, true).await?;
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
            async fn begin(&self, w: &Write) -> Result<sqlx::Transaction<'static, $db>> {
                let mut tx = self.begin_write().await?;
                sqlx::query(Self::LOCK_SQL).execute(&mut *tx).await?;
                if let Some(guard) = &w.guard {
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
        const ENQUEUE_TAIL: &str = " ON CONFLICT (subject) DO UPDATE SET generation = policy_outbox.generation + 1, \
            enqueued_at = excluded.enqueued_at, attempts = 0, next_attempt_at = excluded.next_attempt_at, \
            last_error = NULL, failed = FALSE";

        /// Tells push workers in other processes that the outbox has work, at commit (where the database can).
        async fn notify_outbox(conn: &mut Conn) -> Result<()> {
            if let Some(sql) = <$store>::NOTIFY_SQL {
                sqlx::query(sql).execute(&mut *conn).await?;
            }
            Ok(())
        }

        async fn enqueue_user(conn: &mut Conn, now: DateTime<Utc>, user_id: i64) -> Result<()> {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO policy_outbox (subject, generation, enqueued_at, attempts, next_attempt_at) \
                 SELECT subject, 1, $1, 0, $1 FROM users WHERE id = $2{ENQUEUE_TAIL}"
            )))
            .bind(now)
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
            notify_outbox(conn).await?;
            Ok(())
        }

        async fn enqueue_group_members(conn: &mut Conn, now: DateTime<Utc>, group_id: i64) -> Result<()> {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO policy_outbox (subject, generation, enqueued_at, attempts, next_attempt_at) \
                 SELECT u.subject, 1, $1, 0, $1 FROM users u \
                 WHERE u.id IN (SELECT user_id FROM memberships WHERE group_id = $2){ENQUEUE_TAIL}"
            )))
            .bind(now)
            .bind(group_id)
            .execute(&mut *conn)
            .await?;
            notify_outbox(conn).await?;
            Ok(())
        }

        async fn enqueue_role_holders(conn: &mut Conn, now: DateTime<Utc>, role_id: i64) -> Result<()> {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO policy_outbox (subject, generation, enqueued_at, attempts, next_attempt_at) \
                 SELECT u.subject, 1, $1, 0, $1 FROM users u WHERE u.id IN (\
                   SELECT m.user_id FROM memberships m JOIN group_roles gr ON gr.group_id = m.group_id \
                   WHERE gr.role_id = $2 UNION SELECT user_id FROM user_roles WHERE role_id = $2){ENQUEUE_TAIL}"
            )))
            .bind(now)
            .bind(role_id)
            .execute(&mut *conn)
            .await?;
            notify_outbox(conn).await?;
            Ok(())
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
        async fn mapping_conflict(pool: &sqlx::Pool<$db>, m: &NewMapping) -> Error {
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
                )),
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

            async fn upsert_user(&self, claims: &Claims, now: DateTime<Utc>) -> Result<User> {
                // Refreshes the row only when a claim changed or the last refresh is a minute old, so that
                // a busy user does not turn every request into a write.
                let stale = now - chrono::Duration::seconds(60);
                let row: Option<UserTuple> = sqlx::query_as(
                    "INSERT INTO users (subject, display_name, email, created_at, last_seen_at) \
                     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (subject) DO UPDATE SET \
                     display_name = excluded.display_name, email = excluded.email, \
                     last_seen_at = excluded.last_seen_at \
                     WHERE users.display_name IS DISTINCT FROM excluded.display_name \
                        OR users.email IS DISTINCT FROM excluded.email \
                        OR users.last_seen_at IS NULL OR users.last_seen_at < $5 \
                     RETURNING id, subject, display_name, email, created_at, last_seen_at",
                )
                .bind(claims.subject.as_str())
                .bind(claims.display_name.as_deref())
                .bind(claims.email.as_deref())
                .bind(now)
                .bind(stale)
                .fetch_optional(&self.pool)
                .await?;
                if let Some(row) = row {
                    return Ok(user_from(row));
                }
                let row: UserTuple = sqlx::query_as(
                    "SELECT id, subject, display_name, email, created_at, last_seen_at FROM users WHERE subject = $1",
                )
                .bind(claims.subject.as_str())
                .fetch_one(&self.pool)
                .await?;
                Ok(user_from(row))
            }

            async fn user_id(&self, subject: &Subject) -> Result<Option<i64>> {
                let id: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE subject = $1")
                    .bind(subject.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(id.map(|r| r.0))
            }

            async fn subjects(&self, after: Option<&str>, limit: i64) -> Result<Vec<Subject>> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT subject FROM users WHERE ($1 IS NULL OR subject > $1) ORDER BY subject LIMIT $2")
                        .bind(after)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(|r| Subject::from_db(r.0)).collect())
            }

            async fn user_details(&self, subject: &Subject) -> Result<UserDetails> {
                let row: Option<UserTuple> = sqlx::query_as(
                    "SELECT id, subject, display_name, email, created_at, last_seen_at FROM users WHERE subject = $1",
                )
                .bind(subject.as_str())
                .fetch_optional(&self.pool)
                .await?;
                let user = row.map(user_from).ok_or_else(|| Error::not_found(format!("user {subject} does not exist")))?;
                let groups: Vec<(String,)> = sqlx::query_as(
                    "SELECT g.name FROM groups g JOIN memberships m ON m.group_id = g.id WHERE m.user_id = $1 ORDER BY g.name",
                )
                .bind(user.id)
                .fetch_all(&self.pool)
                .await?;
                let roles = self.effective_roles(user.id).await?;
                Ok(UserDetails { user, groups: groups.into_iter().map(|g| GroupName::from_db(g.0)).collect(), roles })
            }

            async fn effective_roles(&self, user_id: i64) -> Result<Vec<RoleName>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT name FROM roles WHERE id IN (\
                       SELECT gr.role_id FROM group_roles gr JOIN memberships m ON m.group_id = gr.group_id \
                       WHERE m.user_id = $1 UNION SELECT role_id FROM user_roles WHERE user_id = $1) ORDER BY name",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|r| RoleName::from_db(r.0)).collect())
            }

            async fn management_rights_of(&self, user_id: i64) -> Result<Vec<(GroupPattern, Option<PathScope>)>> {
                let rows: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT DISTINCT r.target_group_pattern, r.path_scope FROM group_management_rights r \
                     JOIN memberships m ON m.group_id = r.manager_group_id WHERE m.user_id = $1 \
                     ORDER BY r.target_group_pattern, r.path_scope",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(p, scope)| Ok((GroupPattern::parse(p)?, scope.map(PathScope::parse).transpose()?)))
                    .collect()
            }

            async fn role_has_holders(&self, role: &RoleName) -> Result<bool> {
                let (held,): (bool,) = sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE r.name = $1) \
                     OR EXISTS (SELECT 1 FROM memberships m JOIN group_roles gr ON gr.group_id = m.group_id \
                     JOIN roles r ON r.id = gr.role_id WHERE r.name = $1)",
                )
                .bind(role.as_str())
                .fetch_one(&self.pool)
                .await?;
                Ok(held)
            }

            async fn effective_permissions(
                &self,
                subjects: &[String],
            ) -> Result<std::collections::HashMap<String, Vec<EffectivePermission>>> {
                let mut out: std::collections::HashMap<String, Vec<EffectivePermission>> =
                    subjects.iter().map(|s| (s.clone(), Vec::new())).collect();
                if subjects.is_empty() {
                    return Ok(out);
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT DISTINCT u.subject, a.resource_kind, a.name, rp.effect FROM users u \
                     JOIN (SELECT m.user_id, gr.role_id FROM memberships m JOIN group_roles gr ON gr.group_id = m.group_id \
                           UNION SELECT ur.user_id, ur.role_id FROM user_roles ur) held ON held.user_id = u.id \
                     JOIN role_permissions rp ON rp.role_id = held.role_id JOIN actions a ON a.id = rp.action_id \
                     WHERE u.subject IN (",
                );
                let mut list = q.separated(", ");
                for subject in subjects {
                    list.push_bind(subject);
                }
                q.push(") ORDER BY u.subject, a.resource_kind, a.name, rp.effect");
                let rows: Vec<(String, String, String, String)> = q.build_query_as().fetch_all(&self.pool).await?;
                for (subject, kind, action, effect) in rows {
                    out.entry(subject).or_default().push(EffectivePermission {
                        resource_kind: kind,
                        action: ActionName::from_db(action),
                        effect: Effect::parse(&effect)?,
                    });
                }
                Ok(out)
            }

            async fn create_group(&self, w: &Write, name: &GroupName, description: Option<&str>) -> Result<Group> {
                let mut tx = self.begin(w).await?;
                let row: GroupTuple = sqlx::query_as(
                    "INSERT INTO groups (name, description, created_by, created_at) VALUES ($1, $2, $3, $4) \
                     RETURNING id, name, description, created_at",
                )
                .bind(name.as_str())
                .bind(description)
                .bind(w.actor_id())
                .bind(w.now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| db_error(e, Some(&|| format!("group {name} already exists")), None))?;
                finish(tx, w, Some(("group", name.as_str())), &json!({"id": row.0})).await?;
                Ok(group_from(row))
            }

            async fn get_group(&self, name: &GroupName) -> Result<Group> {
                let row: Option<GroupTuple> =
                    sqlx::query_as("SELECT id, name, description, created_at FROM groups WHERE name = $1")
                        .bind(name.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(group_from).ok_or_else(|| Error::not_found(format!("group {name} does not exist")))
            }

            async fn list_groups(&self, prefix: Option<&str>, after: Option<&str>, limit: i64) -> Result<Vec<Group>> {
                let rows: Vec<GroupTuple> = sqlx::query_as(
                    "SELECT id, name, description, created_at FROM groups \
                     WHERE ($1 IS NULL OR substr(name, 1, length($1)) = $1) AND ($2 IS NULL OR name > $2) \
                     ORDER BY name LIMIT $3",
                )
                .bind(prefix)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(group_from).collect())
            }

            async fn all_group_names(&self) -> Result<Vec<GroupName>> {
                let rows: Vec<(String,)> = sqlx::query_as("SELECT name FROM groups ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(|r| GroupName::from_db(r.0)).collect())
            }

            async fn delete_group(&self, w: &Write, name: &GroupName) -> Result<()> {
                let mut tx = self.begin(w).await?;
                let id = group_id(&mut tx, name).await?;
                let owned: Vec<(i64,)> = sqlx::query_as("SELECT id FROM endpoints WHERE owner_group_id = $1 ORDER BY id")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                if !owned.is_empty() {
                    let ids: Vec<String> = owned.iter().map(|r| r.0.to_string()).collect();
                    return Err(Error::conflict(format!(
                        "group {name} owns mappings {}: delete them or give them another owner first",
                        ids.join(", ")
                    )));
                }
                // Members lose the group's roles: their policies must be pushed again.
                enqueue_group_members(&mut tx, w.now, id).await?;
                let members: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM memberships WHERE group_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                // Memberships, group roles and management rights go with the group (ON DELETE CASCADE).
                // A concurrent delete may have won since we looked the group up: then there is nothing to do.
                let deleted = sqlx::query("DELETE FROM groups WHERE id = $1").bind(id).execute(&mut *tx).await?;
                if deleted.rows_affected() == 0 {
                    return Err(Error::not_found(format!("group {name} does not exist")));
                }
                finish(tx, w, Some(("group", name.as_str())), &json!({"deleted": name.as_str(), "members_removed": members.0})).await?;
                Ok(())
            }

            async fn group_members(&self, name: &GroupName, after: Option<&str>, limit: i64) -> Result<Vec<Subject>> {
                let mut conn = self.pool.acquire().await?;
                let gid = group_id(&mut conn, name).await?;
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT u.subject FROM users u JOIN memberships m ON m.user_id = u.id \
                     WHERE m.group_id = $1 AND ($2 IS NULL OR u.subject > $2) ORDER BY u.subject LIMIT $3",
                )
                .bind(gid)
                .bind(after)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
                Ok(rows.into_iter().map(|r| Subject::from_db(r.0)).collect())
            }

            async fn group_roles(&self, name: &GroupName) -> Result<Vec<RoleName>> {
                let mut conn = self.pool.acquire().await?;
                let gid = group_id(&mut conn, name).await?;
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT r.name FROM roles r JOIN group_roles gr ON gr.role_id = r.id WHERE gr.group_id = $1 ORDER BY r.name",
                )
                .bind(gid)
                .fetch_all(&mut *conn)
                .await?;
                Ok(rows.into_iter().map(|r| RoleName::from_db(r.0)).collect())
            }

            async fn group_facts(&self, name: &GroupName) -> Result<GroupFacts> {
                let mut conn = self.pool.acquire().await?;
                group_facts(&mut conn, name).await
            }

            async fn add_member(&self, w: &Write, group: &GroupName, subject: &Subject) -> Result<MembershipChange> {
                let mut tx = self.begin(w).await?;
                let gid = group_id(&mut tx, group).await?;
                let uid = ensure_user(&mut tx, w.now, subject).await?;
                let inserted = sqlx::query(
                    "INSERT INTO memberships (group_id, user_id, granted_by, granted_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (group_id, user_id) DO NOTHING",
                )
                .bind(gid)
                .bind(uid)
                .bind(w.actor_id())
                .bind(w.now)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(e, None, Some(&|| format!("group {group} does not exist"))))?
                .rows_affected();
                let key = format!("{group}/{subject}");
                if inserted == 1 {
                    enqueue_user(&mut tx, w.now, uid).await?;
                    finish(tx, w, Some(("membership", &key)), &json!({"status": "member_added"})).await?;
                    Ok(MembershipChange::Added)
                } else {
                    finish(tx, w, None, &json!({"status": "already_member"})).await?;
                    Ok(MembershipChange::AlreadyMember)
                }
            }

            async fn remove_member(&self, w: &Write, group: &GroupName, subject: &Subject) -> Result<()> {
                let mut tx = self.begin(w).await?;
                let gid = group_id(&mut tx, group).await?;
                let removed: Option<(i64,)> = sqlx::query_as(
                    "DELETE FROM memberships WHERE group_id = $1 AND user_id = (SELECT id FROM users WHERE subject = $2) \
                     RETURNING user_id",
                )
                .bind(gid)
                .bind(subject.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some((uid,)) = removed else {
                    return Err(Error::not_found(format!("{subject} is not a member of {group}")));
                };
                enqueue_user(&mut tx, w.now, uid).await?;
                finish(tx, w, Some(("membership", &format!("{group}/{subject}"))), &json!({"status": "member_removed"})).await?;
                Ok(())
            }

            async fn create_role(&self, w: &Write, name: &RoleName, description: Option<&str>) -> Result<Role> {
                let mut tx = self.begin(w).await?;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO roles (name, description, created_at) VALUES ($1, $2, $3) RETURNING id",
                )
                .bind(name.as_str())
                .bind(description)
                .bind(w.now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| db_error(e, Some(&|| format!("role {name} already exists")), None))?;
                finish(tx, w, Some(("role", name.as_str())), &json!({"id": id})).await?;
                Ok(Role { id, name: name.clone(), description: description.map(str::to_owned) })
            }

            async fn list_roles(&self, after: Option<&str>, limit: i64) -> Result<Vec<Role>> {
                let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
                    "SELECT id, name, description FROM roles WHERE ($1 IS NULL OR name > $1) ORDER BY name LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, name, description)| Role { id, name: RoleName::from_db(name), description })
                    .collect())
            }

            async fn delete_role(&self, w: &Write, name: &RoleName) -> Result<()> {
                let mut tx = self.begin(w).await?;
                let id = role_id(&mut tx, name).await?;
                enqueue_role_holders(&mut tx, w.now, id).await?;
                let deleted = sqlx::query("DELETE FROM roles WHERE id = $1").bind(id).execute(&mut *tx).await?;
                if deleted.rows_affected() == 0 {
                    return Err(Error::not_found(format!("role {name} does not exist")));
                }
                finish(tx, w, Some(("role", name.as_str())), &json!({"deleted": name.as_str()})).await?;
                Ok(())
            }

            async fn assign_group_role(&self, w: &Write, group: &GroupName, role: &RoleName) -> Result<bool> {
                let mut tx = self.begin(w).await?;
                let gid = group_id(&mut tx, group).await?;
                let rid = role_id(&mut tx, role).await?;
                let added = sqlx::query(
                    "INSERT INTO group_roles (group_id, role_id) VALUES ($1, $2) ON CONFLICT (group_id, role_id) DO NOTHING",
                )
                .bind(gid)
                .bind(rid)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if added {
                    enqueue_group_members(&mut tx, w.now, gid).await?;
                }
                let key = format!("{group}/{role}");
                let status = json!({"status": if added { "role_assigned" } else { "already_assigned" }});
                finish(tx, w, added.then_some(("group_role", key.as_str())), &status).await?;
                Ok(added)
            }

            async fn remove_group_role(&self, w: &Write, group: &GroupName, role: &RoleName) -> Result<()> {
                let mut tx = self.begin(w).await?;
                let gid = group_id(&mut tx, group).await?;
                let rid = role_id(&mut tx, role).await?;
                let removed = sqlx::query("DELETE FROM group_roles WHERE group_id = $1 AND role_id = $2")
                    .bind(gid)
                    .bind(rid)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if removed == 0 {
                    return Err(Error::not_found(format!("group {group} does not have role {role}")));
                }
                enqueue_group_members(&mut tx, w.now, gid).await?;
                finish(tx, w, Some(("group_role", &format!("{group}/{role}"))), &json!({"status": "role_removed"})).await?;
                Ok(())
            }

            async fn assign_user_role(&self, w: &Write, subject: &Subject, role: &RoleName) -> Result<bool> {
                let mut tx = self.begin(w).await?;
                let rid = role_id(&mut tx, role).await?;
                let uid = ensure_user(&mut tx, w.now, subject).await?;
                let added = sqlx::query(
                    "INSERT INTO user_roles (user_id, role_id, granted_by, granted_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id, role_id) DO NOTHING",
                )
                .bind(uid)
                .bind(rid)
                .bind(w.actor_id())
                .bind(w.now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if added {
                    enqueue_user(&mut tx, w.now, uid).await?;
                }
                let key = format!("{subject}/{role}");
                let status = json!({"status": if added { "role_assigned" } else { "already_assigned" }});
                finish(tx, w, added.then_some(("user_role", key.as_str())), &status).await?;
                Ok(added)
            }

            async fn remove_user_role(&self, w: &Write, subject: &Subject, role: &RoleName) -> Result<()> {
                let mut tx = self.begin(w).await?;
                let rid = role_id(&mut tx, role).await?;
                let removed: Option<(i64,)> = sqlx::query_as(
                    "DELETE FROM user_roles WHERE role_id = $1 AND user_id = (SELECT id FROM users WHERE subject = $2) \
                     RETURNING user_id",
                )
                .bind(rid)
                .bind(subject.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some((uid,)) = removed else {
                    return Err(Error::not_found(format!("{subject} does not have role {role} directly")));
                };
                enqueue_user(&mut tx, w.now, uid).await?;
                finish(tx, w, Some(("user_role", &format!("{subject}/{role}"))), &json!({"status": "role_removed"})).await?;
                Ok(())
            }

            async fn grant_permission(
                &self,
                w: &Write,
                role: &RoleName,
                action: &ActionName,
                resource_kind: &str,
                effect: Effect,
            ) -> Result<()> {
                let mut tx = self.begin(w).await?;
                let rid = role_id(&mut tx, role).await?;
                let aid = ensure_action(&mut tx, action, resource_kind).await?;
                let changed = sqlx::query(
                    "INSERT INTO role_permissions (role_id, action_id, effect) VALUES ($1, $2, $3) \
                     ON CONFLICT (role_id, action_id) DO UPDATE SET effect = excluded.effect \
                     WHERE role_permissions.effect <> excluded.effect",
                )
                .bind(rid)
                .bind(aid)
                .bind(effect.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if changed {
                    enqueue_role_holders(&mut tx, w.now, rid).await?;
                }
                let key = format!("{role}/{action}");
                let status = json!({"status": if changed { "granted" } else { "unchanged" }});
                finish(tx, w, changed.then_some(("role_permission", key.as_str())), &status).await?;
                Ok(())
            }

            async fn revoke_permission(&self, w: &Write, role: &RoleName, action: &ActionName) -> Result<()> {
                let mut tx = self.begin(w).await?;
                let rid = role_id(&mut tx, role).await?;
                let removed = sqlx::query(
                    "DELETE FROM role_permissions WHERE role_id = $1 AND action_id = (SELECT id FROM actions WHERE name = $2)",
                )
                .bind(rid)
                .bind(action.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if removed == 0 {
                    return Err(Error::not_found(format!("role {role} has no permission for {action}")));
                }
                enqueue_role_holders(&mut tx, w.now, rid).await?;
                finish(tx, w, Some(("role_permission", &format!("{role}/{action}"))), &json!({"status": "revoked"})).await?;
                Ok(())
            }

            async fn role_permissions(&self, role: &RoleName) -> Result<Vec<RolePermission>> {
                let mut conn = self.pool.acquire().await?;
                let rid = role_id(&mut conn, role).await?;
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT a.name, rp.effect FROM role_permissions rp JOIN actions a ON a.id = rp.action_id \
                     WHERE rp.role_id = $1 ORDER BY a.name",
                )
                .bind(rid)
                .fetch_all(&mut *conn)
                .await?;
                rows.into_iter()
                    .map(|(a, e)| {
                        Ok(RolePermission { role: role.clone(), action: ActionName::from_db(a), effect: Effect::parse(&e)? })
                    })
                    .collect()
            }

            async fn create_right(
                &self,
                w: &Write,
                manager: &GroupName,
                pattern: &GroupPattern,
                scope: Option<&PathScope>,
            ) -> Result<ManagementRight> {
                let mut tx = self.begin(w).await?;
                let gid = group_id(&mut tx, manager).await?;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO group_management_rights (manager_group_id, target_group_pattern, path_scope, created_by, \
                     created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(gid)
                .bind(pattern.as_str())
                .bind(scope.map(PathScope::as_str))
                .bind(w.actor_id())
                .bind(w.now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| {
                    db_error(e, Some(&|| format!("group {manager} already has the right to manage {pattern}")), None)
                })?;
                finish(tx, w, Some(("management_right", &id.to_string())), &json!({"id": id})).await?;
                Ok(ManagementRight {
                    id,
                    manager_group: manager.clone(),
                    target_pattern: pattern.clone(),
                    path_scope: scope.cloned(),
                    created_at: w.now,
                })
            }

            async fn list_rights(&self, manager: Option<&GroupName>) -> Result<Vec<ManagementRight>> {
                let rows: Vec<RightTuple> = sqlx::query_as(
                    "SELECT r.id, g.name, r.target_group_pattern, r.path_scope, r.created_at FROM group_management_rights r \
                     JOIN groups g ON g.id = r.manager_group_id WHERE ($1 IS NULL OR g.name = $1) ORDER BY r.id",
                )
                .bind(manager.map(GroupName::as_str))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(right_from).collect()
            }

            async fn get_right(&self, id: i64) -> Result<ManagementRight> {
                let row: Option<RightTuple> = sqlx::query_as(
                    "SELECT r.id, g.name, r.target_group_pattern, r.path_scope, r.created_at FROM group_management_rights r \
                     JOIN groups g ON g.id = r.manager_group_id WHERE r.id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(right_from)
                    .unwrap_or_else(|| Err(Error::not_found(format!("management right {id} does not exist"))))
            }

            async fn delete_right(&self, w: &Write, id: i64) -> Result<()> {
                let mut tx = self.begin(w).await?;
                let removed = sqlx::query("DELETE FROM group_management_rights WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if removed == 0 {
                    return Err(Error::not_found(format!("management right {id} does not exist")));
                }
                finish(tx, w, Some(("management_right", &id.to_string())), &json!({"deleted": id})).await?;
                Ok(())
            }

            async fn create_mapping(&self, w: &Write, m: &NewMapping) -> Result<MappingRow> {
                let mut tx = self.begin(w).await?;
                let aid = ensure_action(&mut tx, &m.action, &m.resource_kind).await?;
                let owner = match &m.owner_group {
                    Some(g) => Some(group_id(&mut tx, g).await?),
                    None => None,
                };
                let inserted: std::result::Result<(i64,), sqlx::Error> = sqlx::query_as(
                    "INSERT INTO endpoints (path_pattern, method, match_key, action_id, owner_group_id, priority, \
                     description, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
                     RETURNING id",
                )
                .bind(&m.path_pattern)
                .bind(&m.method)
                .bind(&m.match_key)
                .bind(aid)
                .bind(owner)
                .bind(m.priority)
                .bind(m.description.as_deref())
                .bind(w.actor_id())
                .bind(w.now)
                .fetch_one(&mut *tx)
                .await;
                let id = match inserted {
                    Ok((id,)) => id,
                    Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => {
                        drop(tx);
                        return Err(mapping_conflict(&self.pool, m).await);
                    }
                    Err(e) => return Err(e.into()),
                };
                let row = mapping_by_id(&mut tx, id).await?;
                // The new mapping's id is known only now: the audit row names it.
                let mut named = w.clone();
                named.audit.target_id = format!("mapping:{id}");
                finish(tx, &named, Some(("mapping", &id.to_string())), &json!({"id": id})).await?;
                Ok(row)
            }

            async fn update_mapping(&self, w: &Write, id: i64, m: &NewMapping) -> Result<MappingRow> {
                let mut tx = self.begin(w).await?;
                let aid = ensure_action(&mut tx, &m.action, &m.resource_kind).await?;
                let owner = match &m.owner_group {
                    Some(g) => Some(group_id(&mut tx, g).await?),
                    None => None,
                };
                let updated = sqlx::query(
                    "UPDATE endpoints SET path_pattern = $1, method = $2, match_key = $3, action_id = $4, \
                     owner_group_id = $5, priority = $6, description = $7, updated_at = $8 WHERE id = $9",
                )
                .bind(&m.path_pattern)
                .bind(&m.method)
                .bind(&m.match_key)
                .bind(aid)
                .bind(owner)
                .bind(m.priority)
                .bind(m.description.as_deref())
                .bind(w.now)
                .bind(id)
                .execute(&mut *tx)
                .await;
                match updated {
                    Ok(r) if r.rows_affected() == 0 => {
                        return Err(Error::not_found(format!("mapping {id} does not exist")));
                    }
                    Ok(_) => {}
                    Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => {
                        drop(tx);
                        return Err(mapping_conflict(&self.pool, m).await);
                    }
                    Err(e) => return Err(e.into()),
                }
                let row = mapping_by_id(&mut tx, id).await?;
                finish(tx, w, Some(("mapping", &id.to_string())), &json!({"id": id})).await?;
                Ok(row)
            }

            async fn delete_mapping(&self, w: &Write, id: i64) -> Result<()> {
                let mut tx = self.begin(w).await?;
                let removed = sqlx::query("DELETE FROM endpoints WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if removed == 0 {
                    return Err(Error::not_found(format!("mapping {id} does not exist")));
                }
                finish(tx, w, Some(("mapping", &id.to_string())), &json!({"deleted": id})).await?;
                Ok(())
            }

            async fn get_mapping(&self, id: i64) -> Result<MappingRow> {
                let mut conn = self.pool.acquire().await?;
                mapping_by_id(&mut conn, id).await
            }

            async fn list_mappings(&self, after_id: Option<i64>, limit: i64) -> Result<Vec<MappingRow>> {
                let rows: Vec<MappingTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{MAPPING_COLUMNS_SQL} WHERE ($1 IS NULL OR e.id > $1) ORDER BY e.id LIMIT $2"
                )))
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(mapping_from).collect())
            }

            async fn all_mappings(&self) -> Result<Vec<MappingRow>> {
                let rows: Vec<MappingTuple> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("{MAPPING_COLUMNS_SQL} ORDER BY e.id")))
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(mapping_from).collect())
            }

            async fn create_api_key(
                &self,
                w: &Write,
                name: &ApiKeyName,
                key_hash: &str,
                scopes: &[ApiKeyScope],
            ) -> Result<ApiKey> {
                let mut tx = self.begin(w).await?;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO api_keys (name, key_hash, scopes, created_by, created_at) VALUES ($1, $2, $3, $4, $5) \
                     RETURNING id",
                )
                .bind(name.as_str())
                .bind(key_hash)
                .bind(ApiKeyScope::to_db(scopes))
                .bind(w.actor_id())
                .bind(w.now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| db_error(e, Some(&|| format!("an API key named {name} already exists")), None))?;
                let row: ApiKeyTuple = sqlx::query_as(sqlx::AssertSqlSafe(format!("{API_KEY_COLUMNS_SQL} WHERE k.id = $1")))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                // Never the secret nor its hash: the audit row names the key and its scopes.
                finish(tx, w, None, &json!({"id": id, "scopes": ApiKeyScope::to_db(scopes)})).await?;
                Ok(api_key_from(row))
            }

            async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
                let rows: Vec<ApiKeyTuple> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("{API_KEY_COLUMNS_SQL} ORDER BY k.id")))
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(api_key_from).collect())
            }

            async fn revoke_api_key(&self, w: &Write, id: i64) -> Result<bool> {
                let mut tx = self.begin(w).await?;
                let found: Option<(Option<DateTime<Utc>>,)> =
                    sqlx::query_as("SELECT revoked_at FROM api_keys WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some((revoked_at,)) = found else {
                    return Err(Error::not_found(format!("API key {id} does not exist")));
                };
                if revoked_at.is_some() {
                    finish(tx, w, None, &json!({"status": "already_revoked"})).await?;
                    return Ok(true);
                }
                sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2")
                    .bind(w.now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                finish(tx, w, None, &json!({"status": "revoked"})).await?;
                Ok(false)
            }

            async fn active_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyPrincipal>> {
                // The unique index on key_hash finds the key: the secret itself is never compared.
                let row: Option<(i64, String, String)> = sqlx::query_as(
                    "SELECT id, name, scopes FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
                )
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(id, name, scopes)| ApiKeyPrincipal {
                    id,
                    name: ApiKeyName::from_db(name),
                    scopes: ApiKeyScope::from_db(&scopes),
                }))
            }

            async fn record_api_key_use(&self, w: &Write, id: i64) -> Result<()> {
                let mut tx = self.begin(w).await?;
                sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                    .bind(w.now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                finish(tx, w, None, &json!({"status": "recorded"})).await
            }

            async fn role_sources(&self, user_id: i64) -> Result<Vec<(RoleName, Option<GroupName>)>> {
                let rows: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT r.name, g.name FROM memberships m JOIN groups g ON g.id = m.group_id \
                     JOIN group_roles gr ON gr.group_id = m.group_id JOIN roles r ON r.id = gr.role_id \
                     WHERE m.user_id = $1 \
                     UNION ALL SELECT r.name, NULL FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
                     WHERE ur.user_id = $1",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
                // Sorted here: the databases order NULLs differently.
                let mut out: Vec<(RoleName, Option<GroupName>)> = rows
                    .into_iter()
                    .map(|(role, group)| (RoleName::from_db(role), group.map(GroupName::from_db)))
                    .collect();
                out.sort();
                Ok(out)
            }

            async fn write_audit(&self, w: &Write, result: &Value, success: bool) -> Result<()> {
                let mut conn = self.pool.acquire().await?;
                audit(&mut conn, w, result, success).await
            }

            async fn list_audit(&self, q: &AuditQuery, limit: i64) -> Result<Vec<AuditRecord>> {
                let rows: Vec<AuditTuple> = sqlx::query_as(
                    "SELECT id, actor_subject, operation, target_type, target_id, request_payload, result, success, \
                     \"timestamp\" FROM admin_audit WHERE ($1 IS NULL OR actor_subject = $1) \
                     AND ($2 IS NULL OR operation = $2) AND ($3 IS NULL OR target_id = $3) \
                     AND ($4 IS NULL OR \"timestamp\" >= $4) AND ($5 IS NULL OR \"timestamp\" < $5) \
                     AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7",
                )
                .bind(q.actor.as_deref())
                .bind(q.operation.as_deref())
                .bind(q.target_id.as_deref())
                .bind(q.since)
                .bind(q.until)
                .bind(q.before_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|t| AuditRecord {
                        id: t.0,
                        actor: t.1,
                        operation: t.2,
                        target_type: t.3,
                        target_id: t.4,
                        request: t.5.0,
                        result: t.6.0,
                        success: t.7,
                        at: t.8,
                    })
                    .collect())
            }

            async fn change_version(&self) -> Result<i64> {
                let (v,): (i64,) = sqlx::query_as("SELECT version FROM change_version WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(v)
            }

            async fn mapping_version(&self) -> Result<i64> {
                let (v,): (i64,) =
                    sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM change_log WHERE entity = 'mapping'")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(v)
            }

            async fn changes_since(&self, version: i64, limit: i64) -> Result<Vec<ChangeRecord>> {
                let rows: Vec<(i64, String, String, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT version, entity, entity_key, changed_at FROM change_log WHERE version > $1 \
                     ORDER BY version LIMIT $2",
                )
                .bind(version)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(version, entity, entity_key, changed_at)| ChangeRecord { version, entity, entity_key, changed_at })
                    .collect())
            }

            async fn outbox_claim(
                &self,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<OutboxItem>> {
                // The lease is the claim's fencing token, compared for equality later: keep it to the microsecond
                // that both databases store exactly.
                let lease_until = chrono::SubsecRound::trunc_subsecs(lease_until, 6);
                let rows: Vec<(String, i64, i32)> = sqlx::query_as(Self::OUTBOX_CLAIM_SQL)
                    .bind(now)
                    .bind(lease_until)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(subject, generation, attempts)| OutboxItem { subject, generation, attempts, lease_until })
                    .collect())
            }

            async fn outbox_complete(&self, items: &[OutboxItem], now: DateTime<Utc>) -> Result<Vec<Completion>> {
                if items.is_empty() {
                    return Ok(Vec::new());
                }
                // The common case in one statement: still ours and unchanged, so done.
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "DELETE FROM policy_outbox WHERE (subject, generation, locked_until) IN (VALUES ",
                );
                let mut rows = q.separated(", ");
                for item in items {
                    rows.push("(");
                    rows.push_bind_unseparated(&item.subject);
                    rows.push_unseparated(", ");
                    rows.push_bind_unseparated(item.generation);
                    rows.push_unseparated(", ");
                    rows.push_bind_unseparated(item.lease_until);
                    rows.push_unseparated(")");
                }
                q.push(") RETURNING subject");
                let done: std::collections::HashSet<String> =
                    q.build_query_as::<(String,)>().fetch_all(&self.pool).await?.into_iter().map(|r| r.0).collect();
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if done.contains(&item.subject) {
                        out.push(Completion::Done);
                        continue;
                    }
                    // Still ours, but the user changed again while we pushed: due for the newer state.
                    let released =
                        sqlx::query("UPDATE policy_outbox SET locked_until = NULL WHERE subject = $1 AND locked_until = $2")
                            .bind(&item.subject)
                            .bind(item.lease_until)
                            .execute(&self.pool)
                            .await?
                            .rows_affected();
                    if released == 1 {
                        out.push(Completion::Done);
                        continue;
                    }
                    // The lease expired and another worker took over (and may be done already): our push may
                    // have landed after theirs, so the user is due again — whoever pushes next pushes the
                    // current state.
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO policy_outbox (subject, generation, enqueued_at, attempts, next_attempt_at) \
                         VALUES ($1, 1, $2, 0, $2){ENQUEUE_TAIL}"
                    )))
                    .bind(&item.subject)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                    notify_outbox(&mut *self.pool.acquire().await?).await?;
                    out.push(Completion::LeaseLost);
                }
                Ok(out)
            }

            async fn outbox_enqueue(&self, subjects: &[String], now: DateTime<Utc>) -> Result<()> {
                for subject in subjects {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO policy_outbox (subject, generation, enqueued_at, attempts, next_attempt_at) \
                         VALUES ($1, 1, $2, 0, $2){ENQUEUE_TAIL}"
                    )))
                    .bind(subject)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                }
                if !subjects.is_empty() {
                    notify_outbox(&mut *self.pool.acquire().await?).await?;
                }
                Ok(())
            }

            async fn outbox_retry(
                &self,
                item: &OutboxItem,
                next_attempt_at: DateTime<Utc>,
                error: &str,
                permanent: bool,
            ) -> Result<()> {
                // Only under our lease: a worker that took the user over decides for itself.
                sqlx::query(
                    "UPDATE policy_outbox SET attempts = attempts + 1, next_attempt_at = $3, last_error = $4, \
                     failed = $5, locked_until = NULL WHERE subject = $1 AND generation = $2 AND locked_until = $6",
                )
                .bind(&item.subject)
                .bind(item.generation)
                .bind(next_attempt_at)
                .bind(error)
                .bind(permanent)
                .bind(item.lease_until)
                .execute(&self.pool)
                .await?;
                sqlx::query("UPDATE policy_outbox SET locked_until = NULL WHERE subject = $1 AND locked_until = $2")
                    .bind(&item.subject)
                    .bind(item.lease_until)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn outbox_wakeups(&self) -> Result<Option<Box<dyn crate::store::OutboxWakeups>>> {
                self.wakeups().await
            }

            async fn outbox_revive_failed(&self, now: DateTime<Utc>) -> Result<u64> {
                let n = sqlx::query(
                    "UPDATE policy_outbox SET failed = FALSE, attempts = 0, next_attempt_at = $1 WHERE failed",
                )
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(n)
            }

            async fn outbox_failures(&self) -> Result<Vec<(String, String)>> {
                let rows: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT subject, last_error FROM policy_outbox WHERE failed ORDER BY subject LIMIT 1000",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(s, e)| (s, e.unwrap_or_default())).collect())
            }

            async fn outbox_stats(&self) -> Result<OutboxStats> {
                let (pending, failed, retrying, oldest): (i64, i64, i64, Option<DateTime<Utc>>) = sqlx::query_as(
                    "SELECT COALESCE(SUM(CASE WHEN failed THEN 0 ELSE 1 END), 0), \
                     COALESCE(SUM(CASE WHEN failed THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN NOT failed AND attempts > 0 THEN 1 ELSE 0 END), 0), \
                     MIN(CASE WHEN failed THEN NULL ELSE enqueued_at END) FROM policy_outbox",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(OutboxStats { pending, failed, retrying, oldest_pending: oldest })
            }
        }
    };
}
