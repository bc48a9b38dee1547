//! Storage: the only place in Heimdall that knows SQL.
//!
//! [`Store`] is implemented twice, for PostgreSQL (production) and SQLite (the embedded default), from one
//! body of SQL (`sql/`, one file per area) that both databases accept. Each mutation is one transaction that
//! also writes its audit row, bumps the change version where the change matters to caches and adapters, and
//! enqueues the users whose principal policies must be pushed again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    ActionName, ApiKey, ApiKeyName, ApiKeyPrincipal, ApiKeyScope, AuditQuery, AuditRecord, Caller, Claims, Effect,
    Group, GroupName, GroupPattern, ManagementRight, MembershipChange, PathScope, Role, RoleName, RolePermission,
    Subject, User, UserDetails,
};

#[macro_use]
mod sql;
pub(crate) mod postgres;
pub(crate) mod sqlite;

/// The audit part of a mutation: who does what to which target, and with which request.
#[derive(Debug, Clone)]
pub(crate) struct Audit {
    pub(crate) actor: Option<Caller>,
    /// Who acted when it was not a caller (an API key: `api_key:<name>`); the row's actor subject then.
    pub(crate) actor_name: Option<String>,
    pub(crate) operation: &'static str,
    pub(crate) target_type: String,
    pub(crate) target_id: String,
    pub(crate) request: Value,
}

/// Context of one mutation.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    pub(crate) now: DateTime<Utc>,
    pub(crate) audit: Audit,
    /// The facts the authorization decision read; the write transaction reads them again under its lock
    /// and refuses to change anything when they moved in between.
    pub(crate) guard: Vec<Guard>,
    /// Fields added to the audit row's result when the write succeeds (what a mapping write shadowed).
    pub(crate) notes: serde_json::Map<String, Value>,
}

impl Write {
    pub(crate) fn actor_id(&self) -> Option<i64> {
        self.audit.actor.as_ref().and_then(Caller::user_id)
    }
}

/// What the PDP was told about a group: whether it exists, holds management rights, and its roles (sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupFacts {
    pub(crate) exists: bool,
    pub(crate) holds_rights: bool,
    pub(crate) roles: Vec<RoleName>,
}

/// What the PDP was told about an existing mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MappingFacts {
    pub(crate) method: String,
    pub(crate) path_pattern: String,
    pub(crate) owner_group: Option<GroupName>,
    pub(crate) priority: i32,
}

impl From<&MappingRow> for MappingFacts {
    fn from(row: &MappingRow) -> Self {
        MappingFacts {
            method: row.method.clone(),
            path_pattern: row.path_pattern.clone(),
            owner_group: row.owner_group.clone(),
            priority: row.priority,
        }
    }
}

/// Facts an authorization decision depended on, checked again inside the write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Guard {
    /// The group's facts.
    Group(GroupName, GroupFacts),
    /// The mapping's facts.
    Mapping(i64, MappingFacts),
    /// The mapping version (the last change of any mapping): the decision read every mapping, as of this
    /// version (which mappings a write shadows).
    MappingVersion(i64),
}

/// A mapping as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MappingRow {
    pub(crate) id: i64,
    pub(crate) method: String,
    pub(crate) path_pattern: String,
    pub(crate) action: ActionName,
    pub(crate) owner_group: Option<GroupName>,
    pub(crate) priority: i32,
    pub(crate) description: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

/// A mapping to write. `match_key` is the pattern's canonical form (see the mapping module).
#[derive(Debug, Clone)]
pub(crate) struct NewMapping {
    pub(crate) method: String,
    pub(crate) path_pattern: String,
    pub(crate) match_key: String,
    pub(crate) action: ActionName,
    pub(crate) resource_kind: String,
    pub(crate) owner_group: Option<GroupName>,
    pub(crate) priority: i32,
    pub(crate) description: Option<String>,
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    /// The version this change produced.
    pub version: i64,
    /// What kind of thing changed (`mapping`, `membership`, `group`, ...).
    pub entity: String,
    /// Which one.
    pub entity_key: String,
    /// When.
    pub changed_at: DateTime<Utc>,
}

/// A user whose principal policy a worker has claimed for pushing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxItem {
    pub(crate) subject: String,
    pub(crate) generation: i64,
    pub(crate) attempts: i32,
    /// The claim's lease, as stored: the worker's fencing token. A completion whose lease is no longer on the
    /// row lost the user to another worker and makes it due again (see [`Store::outbox_complete`]).
    pub(crate) lease_until: DateTime<Utc>,
}

/// What completing a push found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completion {
    /// Done: the row is gone, or (when the user changed again meanwhile) due for the newer state.
    Done,
    /// The lease had expired and another worker took the user over: this push may have landed after theirs,
    /// so the user is due again, to push the current state last.
    LeaseLost,
}

/// How the outbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Users waiting for a push (including those waiting for a retry).
    pub pending: i64,
    /// Users whose push failed permanently (a 400 from Cerbos); they wait for the next change or a
    /// reconciliation.
    pub failed: i64,
    /// Of the pending ones, how many have failed at least once.
    pub retrying: i64,
    /// Users claimed by a worker whose claim lapsed without a renewal (the worker died or stalls), not yet
    /// taken over by another: normally 0, briefly more after a worker's death.
    pub lapsed_claims: i64,
    /// When the longest-waiting pending user was queued (none pending: `None`).
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// What a role permission is about, as the principal-policy builder needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct EffectivePermission {
    pub(crate) resource_kind: String,
    pub(crate) action: ActionName,
    pub(crate) effect: Effect,
}

/// Wake-ups for a push worker in another process: PostgreSQL delivers a notification when a transaction that
/// put users into the outbox commits.
#[async_trait]
pub(crate) trait OutboxWakeups: Send {
    /// Waits for the next wake-up. An error means the channel is gone (the worker polls, and opens it again).
    async fn next(&mut self) -> Result<()>;
}

/// Everything Heimdall persists: one trait per area, so that each area's SQL lives in a file of its own
/// (`sql/`); callers hold a `dyn Store` and call any area's methods on it.
#[async_trait]
pub(crate) trait Store: Users + Groups + Roles + Mappings + ApiKeys + Changes + std::fmt::Debug {
    /// Which database this is (`postgres` or `sqlite`).
    fn backend(&self) -> &'static str;
    /// Applies the embedded migrations.
    async fn migrate(&self) -> Result<()>;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
}

/// Users: JIT provisioning and what a user holds.
#[async_trait]
pub(crate) trait Users: Send + Sync {
    async fn upsert_user(&self, claims: &Claims, now: DateTime<Utc>) -> Result<User>;
    async fn user_id(&self, subject: &Subject) -> Result<Option<i64>>;
    async fn subjects(&self, after: Option<&str>, limit: i64) -> Result<Vec<Subject>>;
    /// The users whose grants changed after change version `since` (their `grants_version`), at most `limit`,
    /// oldest change first.
    async fn grants_changed_since(&self, since: i64, limit: i64) -> Result<Vec<Subject>>;
    async fn user_details(&self, subject: &Subject) -> Result<UserDetails>;
    async fn effective_roles(&self, user_id: i64) -> Result<Vec<RoleName>>;
    /// The target patterns and path scopes of the management rights of the groups the user belongs to.
    async fn management_rights_of(&self, user_id: i64) -> Result<Vec<(GroupPattern, Option<PathScope>)>>;
    /// Whether any user holds `role`, directly or through a group.
    async fn role_has_holders(&self, role: &RoleName) -> Result<bool>;
    /// What each of `subjects` may do, in one query (every subject is a key; no permissions: empty).
    async fn effective_permissions(
        &self,
        subjects: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<EffectivePermission>>>;

    /// The user's roles with the group each comes through (`None`: given directly); a role held several
    /// ways is listed once per way.
    async fn role_sources(&self, user_id: i64) -> Result<Vec<(RoleName, Option<GroupName>)>>;
}

/// Groups, their members and the group-management rights between them.
#[async_trait]
pub(crate) trait Groups: Send + Sync {
    async fn create_group(&self, w: &Write, name: &GroupName, description: Option<&str>) -> Result<Group>;
    async fn get_group(&self, name: &GroupName) -> Result<Group>;
    async fn list_groups(&self, prefix: Option<&str>, after: Option<&str>, limit: i64) -> Result<Vec<Group>>;
    async fn all_group_names(&self) -> Result<Vec<GroupName>>;
    async fn delete_group(&self, w: &Write, name: &GroupName) -> Result<()>;
    async fn group_members(&self, name: &GroupName, after: Option<&str>, limit: i64) -> Result<Vec<Subject>>;
    async fn group_roles(&self, name: &GroupName) -> Result<Vec<RoleName>>;
    /// What an authorization decision about the group reads (an unknown group has no rights and no roles).
    async fn group_facts(&self, name: &GroupName) -> Result<GroupFacts>;

    async fn add_member(&self, w: &Write, group: &GroupName, subject: &Subject) -> Result<MembershipChange>;
    async fn remove_member(&self, w: &Write, group: &GroupName, subject: &Subject) -> Result<()>;

    // Group-management rights.
    async fn create_right(
        &self,
        w: &Write,
        manager: &GroupName,
        pattern: &GroupPattern,
        scope: Option<&PathScope>,
    ) -> Result<ManagementRight>;
    async fn list_rights(&self, manager: Option<&GroupName>) -> Result<Vec<ManagementRight>>;
    async fn delete_right(&self, w: &Write, id: i64) -> Result<()>;
    async fn get_right(&self, id: i64) -> Result<ManagementRight>;
}

/// Roles, who holds them and the permissions they grant.
#[async_trait]
pub(crate) trait Roles: Send + Sync {
    async fn create_role(&self, w: &Write, name: &RoleName, description: Option<&str>) -> Result<Role>;
    async fn list_roles(&self, after: Option<&str>, limit: i64) -> Result<Vec<Role>>;
    async fn delete_role(&self, w: &Write, name: &RoleName) -> Result<()>;
    async fn assign_group_role(&self, w: &Write, group: &GroupName, role: &RoleName) -> Result<bool>;
    async fn remove_group_role(&self, w: &Write, group: &GroupName, role: &RoleName) -> Result<()>;
    async fn assign_user_role(&self, w: &Write, subject: &Subject, role: &RoleName) -> Result<bool>;
    async fn remove_user_role(&self, w: &Write, subject: &Subject, role: &RoleName) -> Result<()>;
    async fn grant_permission(
        &self,
        w: &Write,
        role: &RoleName,
        action: &ActionName,
        resource_kind: &str,
        effect: Effect,
    ) -> Result<()>;
    async fn revoke_permission(&self, w: &Write, role: &RoleName, action: &ActionName) -> Result<()>;
    async fn role_permissions(&self, role: &RoleName) -> Result<Vec<RolePermission>>;
}

/// Endpoint → action mappings.
#[async_trait]
pub(crate) trait Mappings: Send + Sync {
    async fn create_mapping(&self, w: &Write, m: &NewMapping) -> Result<MappingRow>;
    async fn update_mapping(&self, w: &Write, id: i64, m: &NewMapping) -> Result<MappingRow>;
    async fn delete_mapping(&self, w: &Write, id: i64) -> Result<()>;
    async fn get_mapping(&self, id: i64) -> Result<MappingRow>;
    async fn list_mappings(&self, after_id: Option<i64>, limit: i64) -> Result<Vec<MappingRow>>;
    async fn all_mappings(&self) -> Result<Vec<MappingRow>>;
}

/// API keys. They change nothing that caches or adapters follow: no change-version bump.
#[async_trait]
pub(crate) trait ApiKeys: Send + Sync {
    /// Stores a new key (only the SHA-256 of its secret, hex); a taken name is a conflict.
    async fn create_api_key(
        &self,
        w: &Write,
        name: &ApiKeyName,
        key_hash: &str,
        scopes: &[ApiKeyScope],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<ApiKey>;
    /// Every key, revoked ones too, by id.
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>>;
    /// Revokes key `id`; returns whether it was revoked already (then nothing changes). Unknown: not found.
    async fn revoke_api_key(&self, w: &Write, id: i64) -> Result<bool>;
    /// The key whose secret hashes to `key_hash`, unless it is revoked.
    async fn active_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyPrincipal>>;
    /// Sets key `id`'s `last_used_at` to `w.now` and writes `w`'s audit row.
    async fn record_api_key_use(&self, w: &Write, id: i64) -> Result<()>;
}

/// The audit log, the change versions and the principal-policy outbox.
#[async_trait]
pub(crate) trait Changes: Send + Sync {
    async fn write_audit(&self, w: &Write, result: &Value, success: bool) -> Result<()>;
    /// Writes `w`'s audit row of a failure and returns its id (a row that later failures update).
    async fn insert_failure_audit(&self, w: &Write, result: &Value) -> Result<i64>;
    /// Replaces the result of audit row `id` (a coalesced failure's count).
    async fn update_audit_result(&self, id: i64, result: &Value) -> Result<()>;
    async fn list_audit(&self, q: &AuditQuery, limit: i64) -> Result<Vec<AuditRecord>>;
    async fn change_version(&self) -> Result<i64>;
    /// The change version and, read in the same statement, the pushed version: the newest change version
    /// whose principal-policy changes (and all before it) are in Cerbos, as far as the outbox tells.
    async fn change_and_pushed_version(&self) -> Result<(i64, i64)>;
    async fn mapping_version(&self) -> Result<i64>;
    async fn changes_since(&self, version: i64, limit: i64) -> Result<Vec<ChangeRecord>>;
    /// The ids of the mappings changed (created, updated, deleted) after version `since`, up to `until`.
    async fn mapping_ids_changed(&self, since: i64, until: i64) -> Result<Vec<i64>>;

    // The principal-policy outbox.
    async fn outbox_claim(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: i64)
    -> Result<Vec<OutboxItem>>;
    /// Marks pushes done, under their claims' leases (see [`Completion`]); one completion per item, in order.
    async fn outbox_complete(&self, items: &[OutboxItem], now: DateTime<Utc>) -> Result<Vec<Completion>>;
    /// Moves the claim `held` of `subjects` to `renewed` on the rows that still carry it; returns the lease as
    /// stored (the claim's new fencing token).
    async fn outbox_renew(
        &self,
        subjects: &[String],
        held: DateTime<Utc>,
        renewed: DateTime<Utc>,
    ) -> Result<DateTime<Utc>>;
    /// Puts `subjects` into the outbox, due at `now` (reconciliation's repairs).
    async fn outbox_enqueue(&self, subjects: &[String], now: DateTime<Utc>) -> Result<()>;
    async fn outbox_retry(
        &self,
        item: &OutboxItem,
        next_attempt_at: DateTime<Utc>,
        error: &str,
        permanent: bool,
    ) -> Result<()>;
    async fn outbox_stats(&self, now: DateTime<Utc>) -> Result<OutboxStats>;
    /// Users whose push failed for good, with the recorded error.
    async fn outbox_failures(&self) -> Result<Vec<(String, String)>>;
    /// Listens for outbox wake-ups from other processes; `None` where the database has no such channel
    /// (SQLite: one process, woken in-process).
    async fn outbox_wakeups(&self) -> Result<Option<Box<dyn OutboxWakeups>>>;
    /// Makes the users whose push failed for good due again; returns how many.
    async fn outbox_revive_failed(&self, now: DateTime<Utc>) -> Result<u64>;
}

/// Converts a database error, naming a unique violation `on_conflict` (when given) and a broken foreign key
/// `on_missing` (when given).
pub(crate) fn db_error(
    e: sqlx::Error,
    on_conflict: Option<&dyn Fn() -> String>,
    on_missing: Option<&dyn Fn() -> String>,
) -> Error {
    if let Some(db) = e.as_database_error() {
        if db.is_unique_violation()
            && let Some(msg) = on_conflict
        {
            return Error::conflict(msg()).with_source(e);
        }
        if db.is_foreign_key_violation()
            && let Some(msg) = on_missing
        {
            return Error::not_found(msg()).with_source(e);
        }
    }
    storage_error(e)
}

/// SQLSTATEs with which PostgreSQL asks for a transaction to be tried again: serialization failure, deadlock.
const RETRY_SQLSTATES: [&str; 2] = ["40001", "40P01"];

/// Whether PostgreSQL's SQLSTATE says the server, not the statement, is the trouble: a connection exception
/// (class 08), a server shutting down, crashed or starting up (57P01–57P03), too many connections (53300), or
/// a standby not promoted yet refusing a write (25006). Each passes with a failover or a restart.
fn server_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "25006")
}

/// Classifies a database error that no operation expects.
pub(crate) fn storage_error(e: sqlx::Error) -> Error {
    if let Some(db) = e.as_database_error()
        && db.code().is_some_and(|c| RETRY_SQLSTATES.contains(&c.as_ref()))
    {
        tracing::info!(error = %e, "the database asked to retry a transaction");
        return Error::race("a concurrent change got in the way; nothing was changed, try again").with_source(e);
    }
    let kind = match &e {
        // A connection the server dropped mid-message reads as a protocol error.
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => ErrorKind::Unavailable,
        sqlx::Error::RowNotFound => ErrorKind::NotFound,
        sqlx::Error::Database(db) if db.message().contains("database is locked") => ErrorKind::Unavailable,
        sqlx::Error::Database(db) if db.code().is_some_and(|c| server_unavailable(&c)) => ErrorKind::Unavailable,
        _ => ErrorKind::Unexpected,
    };
    tracing::warn!(error = %e, "database error");
    Error::new(kind, "database error").with_source(e)
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        storage_error(e)
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::new(ErrorKind::Unexpected, format!("migration failed: {e}")).with_source(e)
    }
}

/// Opens the store a DSN names: `postgres://` / `postgresql://` or `sqlite:`.
pub(crate) async fn connect(dsn: &str, max_connections: u32) -> Result<Box<dyn Store>> {
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        Ok(Box::new(postgres::PgStore::connect(dsn, max_connections).await?))
    } else if dsn.starts_with("sqlite:") {
        Ok(Box::new(sqlite::SqliteStore::connect(dsn, max_connections).await?))
    } else {
        Err(Error::new(
            ErrorKind::Config,
            "database DSN must start with postgres://, postgresql:// or sqlite:",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::server_unavailable;

    #[test]
    fn failover_sqlstates_are_unavailability_and_statement_errors_are_not() {
        for code in ["08000", "08006", "08P01", "57P01", "57P02", "57P03", "53300", "25006"] {
            assert!(server_unavailable(code), "{code}");
        }
        for code in ["23505", "22001", "42P01", "40001", "53100", "25P02"] {
            assert!(!server_unavailable(code), "{code}");
        }
    }
}
