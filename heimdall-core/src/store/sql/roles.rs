//! The store's `Roles` area: roles, group and user roles, and role permissions.
//!
//! `sql_roles!` is expanded by `sql_store!` (`mod.rs`), whose helpers, types and imports it uses.

macro_rules! sql_roles {
    ($store:ident) => {
        #[async_trait]
        impl crate::store::Roles for $store {
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
        }
    };
}
