//! The store's `Mappings` area: endpoint → action mappings.
//!
//! `sql_mappings!` is expanded by `sql_store!` (`mod.rs`), whose helpers, types and imports it uses.

macro_rules! sql_mappings {
    ($store:ident) => {
        #[async_trait]
        impl crate::store::Mappings for $store {
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
        }
    };
}
