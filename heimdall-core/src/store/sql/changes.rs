//! The store's `Changes` area: the audit log, the change versions and the principal-policy outbox.
//!
//! `sql_changes!` is expanded by `sql_store!` (`mod.rs`), whose helpers, types and imports it uses.

macro_rules! sql_changes {
    ($store:ident) => {
        #[async_trait]
        impl crate::store::Changes for $store {
            async fn write_audit(&self, w: &Write, result: &Value, success: bool) -> Result<()> {
                let mut conn = self.pool.acquire().await?;
                audit(&mut conn, w, result, success).await
            }

            async fn insert_failure_audit(&self, w: &Write, result: &Value) -> Result<i64> {
                let a = &w.audit;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO admin_audit (actor_user_id, actor_subject, operation, target_type, target_id, \
                     request_payload, result, success, \"timestamp\") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     RETURNING id",
                )
                .bind(w.actor_id())
                .bind(a.actor.as_ref().map(|c| c.subject().as_str()).or(a.actor_name.as_deref()))
                .bind(a.operation)
                .bind(&a.target_type)
                .bind(&a.target_id)
                .bind(Json(&a.request))
                .bind(Json(result))
                .bind(false)
                .bind(w.now)
                .fetch_one(&self.pool)
                .await?;
                Ok(id)
            }

            async fn update_audit_result(&self, id: i64, result: &Value) -> Result<()> {
                sqlx::query("UPDATE admin_audit SET result = $1 WHERE id = $2")
                    .bind(Json(result))
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_audit(&self, q: &AuditQuery, limit: i64) -> Result<Vec<AuditRecord>> {
                let rows: Vec<AuditTuple> = sqlx::query_as(
                    "SELECT id, actor_subject, operation, target_type, target_id, request_payload, result, success, \
                     \"timestamp\" FROM admin_audit WHERE ($1 IS NULL OR actor_subject = $1) \
                     AND ($2 IS NULL OR operation = $2) AND ($3 IS NULL OR target_id = $3) \
                     AND ($4 IS NULL OR \"timestamp\" >= $4) AND ($5 IS NULL OR \"timestamp\" < $5) \
                     AND ($6 IS NULL OR id < $6) AND ($7 IS NULL OR success = $7) ORDER BY id DESC LIMIT $8",
                )
                .bind(q.actor.as_deref())
                .bind(q.operation.as_deref())
                .bind(q.target_id.as_deref())
                .bind(q.since)
                .bind(q.until)
                .bind(q.before_id)
                .bind(q.success)
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

            async fn change_and_pushed_version(&self) -> Result<(i64, i64)> {
                // Failed rows don't hold the pushed version back: their users' policies were deleted (fail
                // closed), which no cached allow may outlive either.
                let (change, waiting): (i64, Option<i64>) = sqlx::query_as(
                    "SELECT v.version, (SELECT MIN(enqueued_version) FROM policy_outbox WHERE NOT failed) \
                     FROM change_version v WHERE v.id = 1",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok((change, waiting.map_or(change, |first| (first - 1).min(change))))
            }

            async fn mapping_version(&self) -> Result<i64> {
                let (v,): (i64,) =
                    sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM change_log WHERE entity = 'mapping'")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(v)
            }

            async fn mapping_ids_changed(&self, since: i64, until: i64) -> Result<Vec<i64>> {
                let keys: Vec<(String,)> = sqlx::query_as(
                    "SELECT DISTINCT entity_key FROM change_log WHERE entity = 'mapping' AND version > $1 \
                     AND version <= $2",
                )
                .bind(since)
                .bind(until)
                .fetch_all(&self.pool)
                .await?;
                keys.into_iter()
                    .map(|(key,)| {
                        key.parse::<i64>().map_err(|_| {
                            crate::Error::new(
                                crate::ErrorKind::Unexpected,
                                format!("the change log names a mapping {key:?} that is not an id"),
                            )
                        })
                    })
                    .collect()
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
                let mut q = sqlx::QueryBuilder::<Db>::new(
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

            async fn outbox_renew(
                &self,
                subjects: &[String],
                held: DateTime<Utc>,
                renewed: DateTime<Utc>,
            ) -> Result<DateTime<Utc>> {
                // Stored to the microsecond, like the claim's lease: the value is compared for equality later.
                let renewed = chrono::SubsecRound::trunc_subsecs(renewed, 6);
                for chunk in subjects.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<Db>::new("UPDATE policy_outbox SET locked_until = ");
                    q.push_bind(renewed);
                    q.push(" WHERE locked_until = ");
                    q.push_bind(held);
                    q.push(" AND subject IN (");
                    let mut list = q.separated(", ");
                    for subject in chunk {
                        list.push_bind(subject);
                    }
                    q.push(")");
                    q.build().execute(&self.pool).await?;
                }
                Ok(renewed)
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

            async fn outbox_stats(&self, now: DateTime<Utc>) -> Result<OutboxStats> {
                let (pending, failed, retrying, lapsed, oldest): (i64, i64, i64, i64, Option<DateTime<Utc>>) =
                    sqlx::query_as(
                        "SELECT COALESCE(SUM(CASE WHEN failed THEN 0 ELSE 1 END), 0), \
                         COALESCE(SUM(CASE WHEN failed THEN 1 ELSE 0 END), 0), \
                         COALESCE(SUM(CASE WHEN NOT failed AND attempts > 0 THEN 1 ELSE 0 END), 0), \
                         COALESCE(SUM(CASE WHEN locked_until < $1 THEN 1 ELSE 0 END), 0), \
                         MIN(CASE WHEN failed THEN NULL ELSE enqueued_at END) FROM policy_outbox",
                    )
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(OutboxStats { pending, failed, retrying, lapsed_claims: lapsed, oldest_pending: oldest })
            }
        }
    };
}
