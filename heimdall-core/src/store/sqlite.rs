//! The SQLite store (the embedded default).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// Heimdall's data in one SQLite file.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    const BACKEND: &'static str = "sqlite";
    const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
    // SQLite has one writer at a time, so a plain UPDATE is already exclusive.
    const OUTBOX_CLAIM_SQL: &'static str = "UPDATE policy_outbox SET locked_until = $2 WHERE subject IN (\
        SELECT subject FROM policy_outbox WHERE NOT failed AND next_attempt_at <= $1 \
        AND (locked_until IS NULL OR locked_until < $1) ORDER BY next_attempt_at LIMIT $3) \
        RETURNING subject, generation, attempts";

    // BEGIN IMMEDIATE already holds the database's one write lock; the statement keeps both stores alike.
    const LOCK_SQL: &'static str = "SELECT version FROM change_version WHERE id = 1";

    /// SQLite has no notification channel: its one process wakes its worker in-process.
    const NOTIFY_SQL: Option<&'static str> = None;

    async fn wakeups(&self) -> crate::Result<Option<Box<dyn crate::store::OutboxWakeups>>> {
        Ok(None)
    }

    /// Opens (creating if needed) the database file `dsn` names, in WAL mode with foreign keys on.
    pub(crate) async fn connect(dsn: &str, max_connections: u32) -> crate::Result<Self> {
        let options = SqliteConnectOptions::from_str(dsn)
            .map_err(|e| crate::Error::new(crate::ErrorKind::Config, format!("bad SQLite DSN: {e}")))?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await
            .map_err(|e| {
                crate::Error::new(crate::ErrorKind::Unavailable, "cannot open SQLite database").with_source(e)
            })?;
        Ok(SqliteStore { pool })
    }

    // BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes can
    // fail with "database is locked" when another writer got in between, whatever the busy timeout.
    async fn begin_write(&self) -> crate::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

sql_store!(SqliteStore, sqlx::Sqlite, sqlx::SqliteConnection);
