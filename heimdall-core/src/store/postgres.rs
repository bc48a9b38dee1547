//! The PostgreSQL store (production).

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

/// Heimdall's data in PostgreSQL.
#[derive(Debug, Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    const BACKEND: &'static str = "postgres";
    const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
    // Several workers may claim at once: SKIP LOCKED hands each due row to exactly one of them, and the
    // lease (locked_until) keeps it theirs while they push, without holding a transaction open.
    const OUTBOX_CLAIM_SQL: &'static str = "UPDATE policy_outbox SET locked_until = $2 WHERE subject IN (\
        SELECT subject FROM policy_outbox WHERE NOT failed AND next_attempt_at <= $1 \
        AND (locked_until IS NULL OR locked_until < $1) ORDER BY next_attempt_at LIMIT $3 \
        FOR UPDATE SKIP LOCKED) RETURNING subject, generation, attempts";

    // Every write transaction takes this row lock first: writers run one at a time, and each reads who its
    // change affects only after every earlier writer committed (READ COMMITTED sees them).
    const LOCK_SQL: &'static str = "SELECT version FROM change_version WHERE id = 1 FOR UPDATE";

    /// Wakes push workers in other processes (see [`PgStore::wakeups`]); delivered when the transaction commits.
    const NOTIFY_SQL: Option<&'static str> = Some("SELECT pg_notify('heimdall_outbox', '')");

    /// A listener on the outbox channel, on a connection of its own.
    async fn wakeups(&self) -> crate::Result<Option<Box<dyn crate::store::OutboxWakeups>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen("heimdall_outbox").await?;
        Ok(Some(Box::new(PgWakeups(listener))))
    }

    /// Connects to the database `dsn` names.
    pub(crate) async fn connect(dsn: &str, max_connections: u32) -> crate::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(dsn)
            .await
            .map_err(|e| {
                crate::Error::new(crate::ErrorKind::Unavailable, "cannot connect to PostgreSQL").with_source(e)
            })?;
        Ok(PgStore { pool })
    }

    async fn begin_write(&self) -> crate::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

sql_store!(PgStore, sqlx::Postgres, sqlx::PgConnection);

/// Outbox notifications from PostgreSQL. The listener reconnects by itself; notifications sent while it was
/// away are lost, which the worker's polling covers.
struct PgWakeups(sqlx::postgres::PgListener);

#[async_trait::async_trait]
impl crate::store::OutboxWakeups for PgWakeups {
    async fn next(&mut self) -> crate::Result<()> {
        self.0.recv().await?;
        Ok(())
    }
}
