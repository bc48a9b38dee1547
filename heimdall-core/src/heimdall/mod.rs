//! The facade: every operation a frontend may call, each validating its input, authorizing the caller
//! and auditing what it did (successes inside the write transaction, every failed attempt here).
//!
//! One file per area: `groups.rs` (groups and memberships), `roles.rs` (roles, grants and permissions),
//! `rights.rs` (group-management rights), `mappings.rs` (mappings and their resolution), `api_keys.rs`
//! (API keys: creating, revoking, authenticating, recording uses), `explain.rs` (why a request would be
//! allowed or denied).

mod api_keys;
mod explain;
mod failures;
mod groups;
mod mappings;
mod rights;
mod roles;
mod scope;

pub use api_keys::{API_KEY_CACHE_TTL, API_KEY_PREFIX, API_KEY_USE_AUDIT_INTERVAL};
pub use failures::{FAILURE_AUDIT_COUNT_DELAY, FAILURE_AUDIT_INTERVAL, FAILURE_AUDIT_ROWS};
pub use scope::{AdminScope, MappingFilter};

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use crate::authz::{self, Operation};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::SharedResolver;
use crate::model::{
    ActionName, AuditQuery, AuditRecord, Caller, Claims, RoleName, Subject, UserDetails, check_description, page_size,
};
use crate::pdp::pack::{self, action};
use crate::pdp::{BuiltinPdp, Pdp, Resource};
use crate::store::{self, Audit, ChangeRecord, Guard, OutboxStats, Store, Write};

/// Heimdall: cheap to clone, shared by every request of a frontend.
#[derive(Clone, Debug)]
pub struct Heimdall {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Box<dyn Store>,
    pdp: Arc<dyn Pdp>,
    clock: Arc<dyn Clock>,
    config: Config,
    outbox_signal: tokio::sync::Notify,
    mappings: SharedResolver,
    /// When the mapping snapshot was last compared with the database successfully, and when a refresh was
    /// last tried, in milliseconds after `started`. Atomics, so that lookups take no lock.
    mappings_checked: AtomicU64,
    mappings_tried: AtomicU64,
    /// The highest pushed version read so far (see [`Heimdall::change_and_pushed_version`]), refreshed with
    /// the mapping snapshot: what an embedded authorizer keys its cached decisions by.
    pushed_version: AtomicI64,
    started: Instant,
    /// Set while a background refresh runs: one at a time (single flight).
    mappings_refreshing: AtomicBool,
    /// One rebuild of the snapshot at a time (background or after a local change).
    mappings_refresh: tokio::sync::Mutex<()>,
    /// Verified API keys and recently recorded uses.
    api_keys: api_keys::ApiKeyCache,
    /// The windows that bound the audit of each actor's failed attempts.
    failures: failures::FailureAudit,
}

/// Builds a [`Heimdall`].
#[derive(Debug)]
pub struct HeimdallBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    pdp: Option<Arc<dyn Pdp>>,
}

impl HeimdallBuilder {
    /// Uses `clock` for every timestamp (tests control time with it).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Decides admin operations with `pdp` (a Cerbos client) instead of the built-in PDP.
    pub fn pdp(mut self, pdp: Arc<dyn Pdp>) -> Self {
        self.pdp = Some(pdp);
        self
    }

    /// Connects to the database (applying migrations when configured) and returns the facade.
    pub async fn build(self) -> Result<Heimdall> {
        if self.config.max_connections == 0 {
            return Err(Error::new(ErrorKind::Config, "max_connections must be at least 1"));
        }
        RoleName::parse(self.config.superadmin_role.clone())
            .map_err(|e| Error::new(ErrorKind::Config, format!("superadmin_role: {}", e.message())))?;
        let store = store::connect(&self.config.database_url, self.config.max_connections).await?;
        if self.config.run_migrations {
            store.migrate().await?;
        }
        let pdp = self.pdp.unwrap_or_else(|| Arc::new(BuiltinPdp));
        let heimdall = Heimdall {
            inner: Arc::new(Inner {
                store,
                pdp,
                clock: self.clock,
                config: self.config,
                outbox_signal: tokio::sync::Notify::new(),
                mappings: SharedResolver::default(),
                mappings_checked: AtomicU64::new(0),
                mappings_tried: AtomicU64::new(0),
                pushed_version: AtomicI64::new(i64::MIN),
                started: Instant::now(),
                mappings_refreshing: AtomicBool::new(false),
                mappings_refresh: tokio::sync::Mutex::new(()),
                api_keys: api_keys::ApiKeyCache::default(),
                failures: failures::FailureAudit::default(),
            }),
        };
        // The first snapshot is loaded before anyone may resolve: there is no moment without one.
        heimdall.refresh_mappings().await?;
        let bootstrap = heimdall.inner.config.bootstrap_superadmins.clone();
        if !bootstrap.is_empty() {
            let subjects: Vec<&str> = bootstrap.iter().map(String::as_str).collect();
            heimdall.bootstrap_superadmins(&subjects).await?;
        }
        Ok(heimdall)
    }
}

/// The resource kind of `action`'s permissions; kinds of Heimdall's own admin resources are reserved, since a
/// principal-policy rule on them would override the admin policy pack.
fn action_kind(action: &ActionName) -> Result<String> {
    let kind = crate::pdp::resource_kind_for_action(action);
    if crate::pdp::principal::is_reserved_resource_kind(&kind) {
        return Err(Error::invalid(format!(
            "action {action} belongs to resource kind {kind:?}: kinds starting with \"heimdall_\" are reserved"
        )));
    }
    Ok(kind)
}

/// Parses an optional description.
fn description(d: Option<&str>) -> Result<Option<&str>> {
    check_description(d)?;
    Ok(d)
}

impl Heimdall {
    /// Starts building a Heimdall from `config`.
    pub fn builder(config: Config) -> HeimdallBuilder {
        HeimdallBuilder {
            config,
            clock: Arc::new(SystemClock),
            pdp: None,
        }
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The time by this Heimdall's clock (the builder's [`Clock`](crate::Clock)).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.clock.now()
    }

    /// Woken after every successful change, so that a push worker in this process starts at once.
    pub(crate) fn outbox_signal(&self) -> &tokio::sync::Notify {
        &self.inner.outbox_signal
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Which database backs this Heimdall: `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        self.store().backend()
    }

    /// Applies pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        self.store().migrate().await
    }

    /// Checks that the database answers.
    pub async fn ping_database(&self) -> Result<()> {
        self.store().ping().await
    }

    // ---- Identity ----------------------------------------------------------------------------------------

    /// Provisions (or refreshes) the user behind verified claims and returns them as a caller.
    /// Idempotent, also under concurrency: one subject is always one user.
    ///
    /// Call it only with claims from a token the frontend has verified: the caller it returns acts as that
    /// user. Subjects starting with `system:` are reserved for [`Heimdall::system_caller`], and those
    /// starting with `api_key:` for API keys (the audit log's actor of a key's use), and those starting with
    /// `unauthenticated:` for refused credentials, so that no user can pass for any of them in the audit log.
    pub async fn provision(&self, claims: Claims, token_roles: &[&str]) -> Result<Caller> {
        if claims.subject.as_str().starts_with(SYSTEM_PREFIX) {
            return Err(Error::invalid(format!(
                "subjects starting with {SYSTEM_PREFIX:?} are reserved for Heimdall's system caller"
            )));
        }
        if claims.subject.as_str().starts_with(API_KEY_ACTOR_PREFIX) {
            return Err(Error::invalid(format!(
                "subjects starting with {API_KEY_ACTOR_PREFIX:?} are reserved for API keys"
            )));
        }
        if claims.subject.as_str().starts_with(UNAUTHENTICATED_ACTOR_PREFIX) {
            return Err(Error::invalid(format!(
                "subjects starting with {UNAUTHENTICATED_ACTOR_PREFIX:?} are reserved for refused credentials"
            )));
        }
        // A token may carry roles that are not Heimdall names (an identity provider's own); they can grant
        // nothing here, so they are left out rather than failing the sign-in.
        let token_roles = token_roles
            .iter()
            .filter_map(|r| match RoleName::parse(*r) {
                Ok(role) => Some(role),
                Err(_) => {
                    tracing::debug!(role = %r, "ignoring a token role that is not a valid role name");
                    None
                }
            })
            .collect();
        let user = self.store().upsert_user(&claims, self.inner.clock.now()).await?;
        Ok(Caller::user(user.id, user.subject, token_roles))
    }

    /// Verifies a bearer token with `verifier` and provisions (or refreshes) its bearer: what a frontend calls
    /// for every JWT-authenticated request. Idempotent under concurrency. The token's roles go along as
    /// the caller's token roles (they count only with [`Config::merge_token_roles`]).
    pub async fn authenticate(&self, verifier: &crate::identity::TokenVerifier, token: &str) -> Result<Caller> {
        let identity = verifier.verify(token).await?;
        let roles: Vec<&str> = identity.roles().iter().map(String::as_str).collect();
        self.provision(identity.claims().clone(), &roles).await
    }

    /// **The system caller: acts as a superadmin without any authentication.** Only for the operator's own
    /// tools — the `heimdall` command and the bootstrap of the first superadmin — never for a request from
    /// the network. Its actions are audited as `system:<purpose>`.
    pub fn system_caller(&self, purpose: &str) -> Result<Caller> {
        Ok(Caller::system(Subject::parse(format!("{SYSTEM_PREFIX}{purpose}"))?))
    }

    /// Makes each of `subjects` a superadmin (creating the superadmin role when it is missing), but only while
    /// nobody holds the superadmin role: `HEIMDALL_BOOTSTRAP_SUPERADMINS` creates the first administrator of
    /// an empty installation and never undoes a later revocation. Audited as `system:bootstrap`; not
    /// authorized through the PDP: whoever controls the configuration controls the installation.
    pub async fn bootstrap_superadmins(&self, subjects: &[&str]) -> Result<()> {
        let role = RoleName::parse(self.inner.config.superadmin_role.clone())?;
        let subjects = subjects
            .iter()
            .map(|s| Subject::parse(*s))
            .collect::<Result<Vec<_>>>()?;
        if self.store().role_has_holders(&role).await? {
            tracing::info!(
                role = %role,
                "a superadmin exists already: skipping the bootstrap of HEIMDALL_BOOTSTRAP_SUPERADMINS"
            );
            return Ok(());
        }
        let system = self.system_caller("bootstrap")?;
        let w = self.write(
            &system,
            "bootstrap_create_role",
            &pack::role(&role),
            json!({"name": role.as_str()}),
        );
        match self.store().create_role(&w, &role, Some("Heimdall superadmin")).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => return Err(e),
        }
        for subject in subjects {
            let request = json!({"subject": subject.as_str(), "role": role.as_str()});
            let w = self.write(&system, "bootstrap_superadmin", &pack::user(&subject), request);
            self.store().assign_user_role(&w, &subject, &role).await?;
        }
        Ok(())
    }

    // ---- Users -------------------------------------------------------------------------------------------

    /// A user with their groups and effective roles (group roles ∪ user roles).
    pub async fn get_user(&self, subject: &str) -> Result<UserDetails> {
        self.store().user_details(&Subject::parse(subject)?).await
    }

    // ---- Audit and changes -------------------------------------------------------------------------------

    /// Audit rows matching `query`, newest first. Authorized as `audit:read`; reading is not itself audited.
    pub async fn audit_log(&self, caller: &Caller, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let limit = page_size(query.limit)?;
        crate::model::check_text("actor", query.actor.as_deref())?;
        crate::model::check_text("operation", query.operation.as_deref())?;
        crate::model::check_text("target_id", query.target_id.as_deref())?;
        let op = Operation::new(action::AUDIT_READ, pack::system());
        authz::authorize(self.store(), self.inner.pdp.as_ref(), &self.inner.config, caller, &[op]).await?;
        self.store().list_audit(query, limit).await
    }

    /// Runs `work` if the PDP allows `action` on Heimdall itself to `caller`, and audits the outcome (the
    /// store audits nothing here: operations on Heimdall itself change no rows of their own).
    pub(crate) async fn authorized_system<T: std::fmt::Debug>(
        &self,
        caller: &Caller,
        action: &'static str,
        operation: &'static str,
        work: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        // `work` runs once: system operations take no guard and write no rows, so they never lose a race.
        let work = &std::sync::Mutex::new(Some(work));
        self.mutate(
            caller,
            operation,
            json!({}),
            &pack::system(),
            move |attempt| async move {
                let w = attempt
                    .authorize(vec![Operation::new(action, pack::system())], None)
                    .await?;
                let work = work.lock().map_err(|_| Error::unexpected("poisoned lock"))?.take();
                let value = work
                    .ok_or_else(|| Error::unexpected("a system operation ran twice"))?
                    .await?;
                if let Err(e) = self
                    .store()
                    .write_audit(&w, &json!({"result": format!("{value:?}")}), true)
                    .await
                {
                    tracing::warn!(operation, error = %e, "could not audit an operation");
                }
                Ok(value)
            },
        )
        .await
    }

    /// The change version: it grows with every change to mappings, memberships and grants.
    pub async fn change_version(&self) -> Result<i64> {
        self.store().change_version().await
    }

    /// The change version and the pushed version: the newest change version whose principal-policy changes
    /// (and every one before it) the push worker has brought to Cerbos. A decision Cerbos made before the
    /// pushed version passed a change may predate it; followers in Cerbos mode drop such decisions when it
    /// moves.
    pub async fn change_and_pushed_version(&self) -> Result<(i64, i64)> {
        let (change, pushed) = self.store().change_and_pushed_version().await?;
        self.inner.pushed_version.fetch_max(pushed, Ordering::AcqRel);
        Ok((change, pushed))
    }

    /// The highest pushed version this process has read (with the mapping snapshot's background check, at
    /// most [`Config::mapping_refresh_interval`] old); `i64::MIN` before the first.
    pub fn pushed_version_seen(&self) -> i64 {
        self.inner.pushed_version.load(Ordering::Acquire)
    }

    /// Changes after `version`, oldest first, at most `limit`.
    pub async fn changes_since(&self, version: i64, limit: Option<u32>) -> Result<Vec<ChangeRecord>> {
        self.store().changes_since(version, page_size(limit)?).await
    }

    /// What changed in the mappings since version `since` (what a follower at `since` applies, see
    /// [`MappingDelta`](crate::authorizer::MappingDelta)), up to the current version; `None` when no delta
    /// leads from `since` to it (a version newer than the database's: a follower of another database, or of
    /// one restored from a backup), then the follower loads the whole export.
    pub async fn mapping_delta(&self, since: i64) -> Result<Option<crate::authorizer::MappingDelta>> {
        let snapshot = self.refresh_mappings().await?;
        if since < 0 || since > snapshot.version() {
            return Ok(None);
        }
        let changed = if since == snapshot.version() {
            Vec::new()
        } else {
            self.store().mapping_ids_changed(since, snapshot.version()).await?
        };
        Ok(Some(crate::authorizer::MappingDelta::between(
            since, &snapshot, changed,
        )))
    }

    /// How the principal-policy outbox stands.
    pub async fn outbox_stats(&self) -> Result<OutboxStats> {
        self.store().outbox_stats(self.now()).await
    }

    /// The users whose push failed for good (Cerbos rejected the policy, or a foreign policy holds its id), with
    /// the error recorded on their outbox row; at most 1000, by subject.
    pub async fn outbox_failures(&self) -> Result<Vec<(String, String)>> {
        self.store().outbox_failures().await
    }

    // ---- Plumbing ----------------------------------------------------------------------------------------

    fn is_superadmin_role(&self, role: &RoleName) -> bool {
        role.as_str() == self.inner.config.superadmin_role
    }

    /// The audit context of a change to `target`: its kind (without the `heimdall_` prefix) and its id.
    fn write(&self, caller: &Caller, operation: &'static str, target: &Resource, request: Value) -> Write {
        Write {
            now: self.inner.clock.now(),
            audit: Audit {
                actor: Some(caller.clone()),
                actor_name: None,
                operation,
                target_type: target.kind.strip_prefix("heimdall_").unwrap_or(&target.kind).to_owned(),
                target_id: bounded_str(&target.id),
                request: bounded(request),
            },
            guard: Vec::new(),
            notes: serde_json::Map::new(),
        }
    }

    /// Runs one mutation attempt and audits it whatever happens. `request` is the input as the caller gave it
    /// (before any validation) and `target` what it names; `body` validates the input, reads the facts the
    /// decision needs, asks the PDP through [`Attempt::authorize`] and makes the change, one store
    /// transaction that also audits its success. Every failure — invalid input, an unknown target, a
    /// refusal, a conflict, an error — is audited here with its outcome, and changes nothing. A lost race
    /// (the database asked for a retry, or the facts moved before the write) runs `body` again after a short
    /// jittered pause, up to [`MAX_TRIES`] times in all.
    async fn mutate<T, Fut>(
        &self,
        caller: &Caller,
        operation: &'static str,
        request: Value,
        target: &Resource,
        body: impl Fn(Attempt) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        // Between lost races, a short jittered pause lets the winner's burst pass.
        let mut pauses = backon::BackoffBuilder::build(
            backon::ExponentialBuilder::default()
                .with_min_delay(std::time::Duration::from_millis(1))
                .with_max_delay(std::time::Duration::from_millis(50))
                .with_jitter()
                .with_max_times(MAX_TRIES as usize - 1),
        );
        let mut tries = 0;
        loop {
            tries += 1;
            let write = Arc::new(std::sync::Mutex::new(self.write(
                caller,
                operation,
                target,
                request.clone(),
            )));
            let attempt = Attempt {
                heimdall: self.clone(),
                write: write.clone(),
            };
            let outcome = body(attempt).await;
            match &outcome {
                Ok(_) => self.inner.outbox_signal.notify_one(),
                // A lost race is decided again from the start: facts, authorization and write.
                Err(e) if e.is_race() && tries < MAX_TRIES => {
                    tracing::debug!(operation, tries, error = %e, "lost a race with a concurrent writer; trying again");
                    if let Some(pause) = pauses.next() {
                        tokio::time::sleep(pause).await;
                    }
                    continue;
                }
                Err(e) => {
                    let mut result = failure_result(e);
                    let w = write.lock().ok().map(|w| w.clone());
                    if let (Some(w), Value::Object(fields)) = (&w, &mut result) {
                        fields.extend(w.notes.clone());
                    }
                    let audited = match &w {
                        Some(w) => self.audit_failure(w, &result).await,
                        None => Err(Error::unexpected("poisoned lock")),
                    };
                    if let Err(audit_error) = audited {
                        tracing::warn!(operation, error = %audit_error, "could not audit a failed operation");
                    }
                }
            }
            return outcome;
        }
    }
}

impl Heimdall {
    /// Succeeds when the PDP allows `op` to `caller` (a read's authorization; mutations authorize through
    /// [`Attempt::authorize`]).
    async fn authorize_caller(&self, caller: &Caller, op: Operation) -> Result<()> {
        let h = &self.inner;
        authz::authorize(h.store.as_ref(), h.pdp.as_ref(), &h.config, caller, &[op]).await
    }

    /// Runs a read (`body` validates, authorizes through [`Heimdall::authorize_caller`] and reads) and
    /// audits it only when it fails — a refusal above all, but also invalid input or an error — with its
    /// outcome, `request` and `target`, as [`Heimdall::mutate`] does. Successful reads are not audited.
    async fn audited_read<T, Fut>(
        &self,
        caller: &Caller,
        operation: &'static str,
        request: Value,
        target: &Resource,
        body: impl FnOnce() -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        let outcome = body().await;
        if let Err(e) = &outcome {
            let w = self.write(caller, operation, target, request);
            if let Err(audit_error) = self.audit_failure(&w, &failure_result(e)).await {
                tracing::warn!(operation, error = %audit_error, "could not audit a failed read");
            }
        }
        outcome
    }
}

/// How the audit log records a failed operation.
fn failure_result(e: &Error) -> Value {
    json!({
        "outcome": outcome_of(e.kind()),
        "error": e.kind().as_str(),
        "message": bounded_str(e.message()),
    })
}

/// Where a mutation attempt stands: what the audit log will say about it.
pub(crate) struct Attempt {
    heimdall: Heimdall,
    /// Shared with [`Heimdall::mutate`], which audits a failure with what it holds when `body` gives up.
    write: Arc<std::sync::Mutex<Write>>,
}

impl Attempt {
    /// Asks the PDP whether the caller may do every one of `ops` (the first names the audit target from
    /// now on, unless it is Heimdall itself, which names nothing in particular: then the target given to
    /// [`Heimdall::mutate`] stays, such as the API key an `api_key:create` is about); when it may, returns
    /// the write context for the store, carrying `guard`: the facts the decision read, which the write
    /// transaction checks again under its lock.
    async fn authorize(&self, ops: Vec<Operation>, guard: Option<Guard>) -> Result<Write> {
        let mut write = {
            let mut shared = self.write.lock().map_err(|_| Error::unexpected("poisoned lock"))?;
            if let Some(first) = ops.first().filter(|op| op.resource.kind != pack::KIND_SYSTEM) {
                let target = &first.resource;
                shared.audit.target_type = target.kind.strip_prefix("heimdall_").unwrap_or(&target.kind).to_owned();
                shared.audit.target_id = bounded_str(&target.id);
            }
            shared.clone()
        };
        let caller = write
            .audit
            .actor
            .as_ref()
            .ok_or_else(|| Error::unexpected("a mutation without a caller"))?;
        let h = &self.heimdall.inner;
        authz::authorize(h.store.as_ref(), h.pdp.as_ref(), &h.config, caller, &ops).await?;
        write.guard = guard.into_iter().collect();
        Ok(write)
    }
}

impl Attempt {
    /// The caller of this attempt.
    fn caller(&self) -> Result<Caller> {
        let shared = self.write.lock().map_err(|_| Error::unexpected("poisoned lock"))?;
        shared
            .audit
            .actor
            .clone()
            .ok_or_else(|| Error::unexpected("a mutation without a caller"))
    }

    /// The index of the first of `ops` the PDP does not allow the caller (`None`: it allows every one);
    /// for a check whose refusal the operation words itself.
    async fn first_denied(&self, ops: &[Operation]) -> Result<Option<usize>> {
        let caller = self.caller()?;
        let h = &self.heimdall.inner;
        authz::first_denied(h.store.as_ref(), h.pdp.as_ref(), &h.config, &caller, ops).await
    }

    /// Adds `value` under `key` to the result the audit row of this attempt records, whether it fails
    /// (here) or succeeds (`w`, the write context [`Attempt::authorize`] returned).
    fn note(&self, w: &mut Write, key: &str, value: Value) -> Result<()> {
        let mut shared = self.write.lock().map_err(|_| Error::unexpected("poisoned lock"))?;
        shared.notes.insert(key.to_owned(), value.clone());
        w.notes.insert(key.to_owned(), value);
        Ok(())
    }
}

/// How often a mutation that lost a race with a concurrent writer is tried in all.
const MAX_TRIES: u32 = 10;
/// Subjects of system callers start with this.
const SYSTEM_PREFIX: &str = "system:";
/// The audit log's actors for API keys start with this (see [`crate::model::ApiKeyPrincipal::actor`]).
const API_KEY_ACTOR_PREFIX: &str = "api_key:";
/// The audit log's actors of credentials refused before anyone was known start with this.
const UNAUTHENTICATED_ACTOR_PREFIX: &str = "unauthenticated:";
/// Longest string the audit log keeps of a request field, an id or an error message, in bytes.
const AUDIT_STRING_LIMIT: usize = 256;
/// Most items the audit log keeps of a list or an object in a request.
const AUDIT_ITEMS_LIMIT: usize = 32;

/// An error kind as an audited outcome.
fn outcome_of(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Forbidden => "denied",
        ErrorKind::Unauthenticated => "unauthenticated",
        ErrorKind::InvalidInput => "invalid",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Conflict => "conflict",
        _ => "error",
    }
}

/// `s` cut to [`AUDIT_STRING_LIMIT`] bytes (on a character boundary), marked when cut.
fn bounded_str(s: &str) -> String {
    // PostgreSQL's jsonb and text hold no NUL: the audit log shows it as U+FFFD instead of failing.
    let cleaned;
    let s = if s.contains('\0') {
        cleaned = s.replace('\0', "\u{FFFD}");
        cleaned.as_str()
    } else {
        s
    };
    if s.len() <= AUDIT_STRING_LIMIT {
        return s.to_owned();
    }
    let mut end = AUDIT_STRING_LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes]", &s[..end], s.len())
}

/// A request as the audit log keeps it: strings cut by [`bounded_str`], lists and objects to
/// [`AUDIT_ITEMS_LIMIT`] items, so that garbage input cannot bloat the log.
fn bounded(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(bounded_str(&s)),
        Value::Array(items) => Value::Array(items.into_iter().take(AUDIT_ITEMS_LIMIT).map(bounded).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .take(AUDIT_ITEMS_LIMIT)
                .map(|(k, v)| (bounded_str(&k), bounded(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The audit target of an input not validated yet: `kind` and `<kind>:<raw>`.
fn raw_target(kind: &str, raw: impl std::fmt::Display) -> Resource {
    Resource::new(format!("heimdall_{kind}"), bounded_str(&format!("{kind}:{raw}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audited_requests_are_bounded() {
        let huge = "x".repeat(100_000);
        let v = bounded(json!({"name": huge, "list": vec![1; 1000], "nested": {"deep": "é".repeat(1000)}}));
        let text = v.to_string();
        assert!(text.len() < 2_000, "{} bytes", text.len());
        assert!(v["name"].as_str().unwrap().ends_with("…[100000 bytes]"));
        assert_eq!(v["list"].as_array().unwrap().len(), AUDIT_ITEMS_LIMIT);
        assert_eq!(bounded_str("short"), "short");
    }
}
