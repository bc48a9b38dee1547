//! The store's `ApiKeys` area: API keys (only the SHA-256 of a secret is stored).
//!
//! `sql_api_keys!` is expanded by `sql_store!` (`mod.rs`), whose helpers, types and imports it uses.

macro_rules! sql_api_keys {
    ($store:ident) => {
        #[async_trait]
        impl crate::store::ApiKeys for $store {
            async fn create_api_key(
                &self,
                w: &Write,
                name: &ApiKeyName,
                key_hash: &str,
                scopes: &[ApiKeyScope],
                expires_at: Option<DateTime<Utc>>,
            ) -> Result<ApiKey> {
                let mut tx = self.begin(w).await?;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO api_keys (name, key_hash, scopes, created_by, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(name.as_str())
                .bind(key_hash)
                .bind(ApiKeyScope::to_db(scopes))
                .bind(w.actor_id())
                .bind(w.now)
                .bind(expires_at)
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
                let row: Option<(i64, String, String, Option<DateTime<Utc>>)> = sqlx::query_as(
                    "SELECT id, name, scopes, expires_at FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
                )
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(id, name, scopes, expires_at)| ApiKeyPrincipal {
                    id,
                    name: ApiKeyName::from_db(name),
                    scopes: ApiKeyScope::from_db(&scopes),
                    expires_at,
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
        }
    };
}
