//! The store's `Users` area: JIT provisioning and what a user holds (roles, rights, permissions and where they
//! come from).
//!
//! `sql_users!` is expanded by `sql_store!` (`mod.rs`), whose helpers, types and imports it uses.

macro_rules! sql_users {
    ($store:ident) => {
        #[async_trait]
        impl crate::store::Users for $store {
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

            async fn grants_changed_since(&self, since: i64, limit: i64) -> Result<Vec<Subject>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT subject FROM users WHERE grants_version > $1 ORDER BY grants_version, subject LIMIT $2",
                )
                .bind(since)
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
                // The wanted users first, so that both ways of holding a role are read for them alone (by the
                // user-id indexes), not for every user and then filtered.
                let mut q = sqlx::QueryBuilder::<Db>::new("WITH wanted AS (SELECT id, subject FROM users WHERE subject IN (");
                let mut list = q.separated(", ");
                for subject in subjects {
                    list.push_bind(subject);
                }
                q.push(
                    ")) SELECT DISTINCT w.subject, a.resource_kind, a.name, rp.effect FROM wanted w \
                     JOIN (SELECT m.user_id, gr.role_id FROM memberships m JOIN group_roles gr ON gr.group_id = m.group_id \
                           WHERE m.user_id IN (SELECT id FROM wanted) \
                           UNION SELECT ur.user_id, ur.role_id FROM user_roles ur WHERE ur.user_id IN (SELECT id FROM wanted)) \
                     held ON held.user_id = w.id \
                     JOIN role_permissions rp ON rp.role_id = held.role_id JOIN actions a ON a.id = rp.action_id \
                     ORDER BY w.subject, a.resource_kind, a.name, rp.effect",
                );
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
        }
    };
}
