//! The store's `Groups` area: groups, memberships and group-management rights.
//!
//! `sql_groups!` is expanded by `sql_store!` (`mod.rs`), whose helpers, types and imports it uses.

macro_rules! sql_groups {
    ($store:ident) => {
        #[async_trait]
        impl crate::store::Groups for $store {
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
        }
    };
}
