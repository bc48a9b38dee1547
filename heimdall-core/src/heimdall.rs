//! The facade: every operation a frontend may call, each validating its input, authorizing the caller
//! and auditing what it did.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use crate::authz::{self, Operation};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::{MappingRule, Method, PathPattern, Resolution, SharedResolver, Snapshot};
use crate::model::{
    ActionName, AuditQuery, AuditRecord, Caller, Claims, Effect, Group, GroupName, GroupPattern, ManagementRight,
    Mapping, MappingInput, MembershipChange, Page, ResolvedEndpoint, Role, RoleName, RolePermission, Subject,
    UserDetails, check_description, page_size,
};
use crate::pdp::pack::{self, action};
use crate::pdp::{BuiltinPdp, Pdp, Resource};
use crate::store::{self, Audit, ChangeRecord, MappingRow, NewMapping, OutboxStats, Store, Write};

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
    /// When the mapping snapshot was last compared with the database, in milliseconds after `started`
    /// (`u64::MAX`: never, or a refresh failed). An atomic, so that lookups take no lock.
    mappings_checked: AtomicU64,
    started: Instant,
    /// One rebuild of the snapshot at a time.
    mappings_refresh: tokio::sync::Mutex<()>,
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
                mappings_checked: AtomicU64::new(u64::MAX),
                started: Instant::now(),
                mappings_refresh: tokio::sync::Mutex::new(()),
            }),
        };
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

    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
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
    pub async fn provision(&self, claims: Claims, token_roles: &[&str]) -> Result<Caller> {
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
        Ok(Caller {
            user_id: user.id,
            subject: user.subject,
            token_roles,
        })
    }

    /// Makes each of `subjects` a superadmin (creating the superadmin role when it is missing). Idempotent and
    /// audited; meant for `HEIMDALL_BOOTSTRAP_SUPERADMINS` on an empty installation, so it is not authorized
    /// through the PDP: whoever controls the configuration controls the installation.
    pub async fn bootstrap_superadmins(&self, subjects: &[&str]) -> Result<()> {
        let role = RoleName::parse(self.inner.config.superadmin_role.clone())?;
        let subjects = subjects
            .iter()
            .map(|s| Subject::parse(*s))
            .collect::<Result<Vec<_>>>()?;
        let w = self.write(
            None,
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
            let w = self.write(None, "bootstrap_superadmin", &pack::user(&subject), request);
            self.store().assign_user_role(&w, &subject, &role).await?;
        }
        Ok(())
    }

    // ---- Groups ------------------------------------------------------------------------------------------

    /// Creates a group.
    pub async fn create_group(&self, caller: &Caller, name: &str, description_: Option<&str>) -> Result<Group> {
        let name = GroupName::parse(name)?;
        let desc = description(description_)?;
        self.mutate(
            caller,
            "create_group",
            vec![Operation::new(action::GROUP_CREATE, pack::group(&name, false))],
            json!({"name": name.as_str(), "description": desc}),
            async |w| self.store().create_group(w, &name, desc).await,
        )
        .await
    }

    /// One group.
    pub async fn get_group(&self, name: &str) -> Result<Group> {
        self.store().get_group(&GroupName::parse(name)?).await
    }

    /// Groups in name order, optionally only those whose name starts with `prefix`; `after` is the last
    /// name of the previous page.
    pub async fn list_groups(
        &self,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<Group>> {
        let limit = page_size(limit)?;
        let items = self.store().list_groups(prefix, after, limit).await?;
        Ok(Page::new(items, limit, |g| g.name.to_string()))
    }

    /// Deletes a group with its memberships, role assignments and management rights, in one transaction.
    /// A group that owns mappings is not deleted (conflict): reassign or delete the mappings first.
    pub async fn delete_group(&self, caller: &Caller, name: &str) -> Result<()> {
        let name = GroupName::parse(name)?;
        let manages_groups = self.store().group_holds_rights(&name).await?;
        self.mutate(
            caller,
            "delete_group",
            vec![Operation::new(action::GROUP_DELETE, pack::group(&name, manages_groups))],
            json!({"name": name.as_str()}),
            async |w| self.store().delete_group(w, &name).await,
        )
        .await
    }

    /// Members of a group, by subject; `after` is the last subject of the previous page.
    pub async fn group_members(&self, group: &str, after: Option<&str>, limit: Option<u32>) -> Result<Page<Subject>> {
        let limit = page_size(limit)?;
        let items = self
            .store()
            .group_members(&GroupName::parse(group)?, after, limit)
            .await?;
        Ok(Page::new(items, limit, |s| s.to_string()))
    }

    /// Roles a group gives its members.
    pub async fn group_roles(&self, group: &str) -> Result<Vec<RoleName>> {
        self.store().group_roles(&GroupName::parse(group)?).await
    }

    // ---- Memberships -------------------------------------------------------------------------------------

    /// Adds `subject` to `group` (creating the user row for a subject not seen yet). Idempotent: a second add
    /// reports [`MembershipChange::AlreadyMember`].
    pub async fn add_member(&self, caller: &Caller, group: &str, subject: &str) -> Result<MembershipChange> {
        let group = GroupName::parse(group)?;
        let subject = Subject::parse(subject)?;
        let manages_groups = self.store().group_holds_rights(&group).await?;
        self.mutate(
            caller,
            "add_member",
            vec![Operation::new(
                action::GROUP_ADD_MEMBER,
                pack::group(&group, manages_groups),
            )],
            json!({"group": group.as_str(), "subject": subject.as_str()}),
            async |w| self.store().add_member(w, &group, &subject).await,
        )
        .await
    }

    /// Removes `subject` from `group`; not found when they are not a member.
    pub async fn remove_member(&self, caller: &Caller, group: &str, subject: &str) -> Result<()> {
        let group = GroupName::parse(group)?;
        let subject = Subject::parse(subject)?;
        let manages_groups = self.store().group_holds_rights(&group).await?;
        self.mutate(
            caller,
            "remove_member",
            vec![Operation::new(
                action::GROUP_REMOVE_MEMBER,
                pack::group(&group, manages_groups),
            )],
            json!({"group": group.as_str(), "subject": subject.as_str()}),
            async |w| self.store().remove_member(w, &group, &subject).await,
        )
        .await
    }

    // ---- Roles -------------------------------------------------------------------------------------------

    /// Creates a role.
    pub async fn create_role(&self, caller: &Caller, name: &str, description_: Option<&str>) -> Result<Role> {
        let name = RoleName::parse(name)?;
        if name.as_str() == pack::SUPERADMIN_ROLE {
            return Err(Error::invalid(format!("role name {name} is reserved for Heimdall")));
        }
        let desc = description(description_)?;
        self.mutate(
            caller,
            "create_role",
            vec![Operation::new(action::ROLE_CREATE, pack::role(&name))],
            json!({"name": name.as_str(), "description": desc}),
            async |w| self.store().create_role(w, &name, desc).await,
        )
        .await
    }

    /// Roles in name order; `after` is the last name of the previous page.
    pub async fn list_roles(&self, after: Option<&str>, limit: Option<u32>) -> Result<Page<Role>> {
        let limit = page_size(limit)?;
        let items = self.store().list_roles(after, limit).await?;
        Ok(Page::new(items, limit, |r| r.name.to_string()))
    }

    /// Deletes a role, with its assignments and permissions.
    pub async fn delete_role(&self, caller: &Caller, name: &str) -> Result<()> {
        let name = RoleName::parse(name)?;
        self.mutate(
            caller,
            "delete_role",
            vec![Operation::new(action::ROLE_DELETE, pack::role(&name))],
            json!({"name": name.as_str()}),
            async |w| self.store().delete_role(w, &name).await,
        )
        .await
    }

    /// Gives `group`'s members `role`. Returns false when the group had it already.
    pub async fn assign_group_role(&self, caller: &Caller, group: &str, role: &str) -> Result<bool> {
        let group = GroupName::parse(group)?;
        let role = RoleName::parse(role)?;
        let op = Operation::new(
            action::GROUP_ASSIGN_ROLE,
            pack::group_role(&group, &role, self.is_superadmin_role(&role)),
        );
        let request = json!({"group": group.as_str(), "role": role.as_str()});
        self.mutate(caller, "assign_group_role", vec![op], request, async |w| {
            self.store().assign_group_role(w, &group, &role).await
        })
        .await
    }

    /// Takes `role` away from `group`.
    pub async fn remove_group_role(&self, caller: &Caller, group: &str, role: &str) -> Result<()> {
        let group = GroupName::parse(group)?;
        let role = RoleName::parse(role)?;
        let op = Operation::new(
            action::GROUP_REMOVE_ROLE,
            pack::group_role(&group, &role, self.is_superadmin_role(&role)),
        );
        let request = json!({"group": group.as_str(), "role": role.as_str()});
        self.mutate(caller, "remove_group_role", vec![op], request, async |w| {
            self.store().remove_group_role(w, &group, &role).await
        })
        .await
    }

    /// Gives `subject` `role` directly. Returns false when they had it already.
    pub async fn assign_user_role(&self, caller: &Caller, subject: &str, role: &str) -> Result<bool> {
        let subject = Subject::parse(subject)?;
        let role = RoleName::parse(role)?;
        self.mutate(
            caller,
            "assign_user_role",
            vec![Operation::new(action::USER_ASSIGN_ROLE, pack::user(&subject))],
            json!({"subject": subject.as_str(), "role": role.as_str()}),
            async |w| self.store().assign_user_role(w, &subject, &role).await,
        )
        .await
    }

    /// Takes a directly given `role` away from `subject` (authorized as `user:assign_role`).
    pub async fn remove_user_role(&self, caller: &Caller, subject: &str, role: &str) -> Result<()> {
        let subject = Subject::parse(subject)?;
        let role = RoleName::parse(role)?;
        self.mutate(
            caller,
            "remove_user_role",
            vec![Operation::new(action::USER_ASSIGN_ROLE, pack::user(&subject))],
            json!({"subject": subject.as_str(), "role": role.as_str()}),
            async |w| self.store().remove_user_role(w, &subject, &role).await,
        )
        .await
    }

    /// Lets (`allow`) or forbids (`deny`) `role`'s holders `action`. The action's resource kind is the part of
    /// its name before the last `:` (see [`crate::pdp::resource_kind_for_action`]).
    pub async fn grant_permission(&self, caller: &Caller, role: &str, action: &str, effect: &str) -> Result<()> {
        let role = RoleName::parse(role)?;
        let action = ActionName::parse(action)?;
        let effect = Effect::parse(effect)?;
        let kind = action_kind(&action)?;
        self.mutate(
            caller,
            "grant_permission",
            vec![Operation::new(action::ROLE_GRANT_PERMISSION, pack::role(&role))],
            json!({"role": role.as_str(), "action": action.as_str(), "effect": effect.as_str()}),
            async |w| self.store().grant_permission(w, &role, &action, &kind, effect).await,
        )
        .await
    }

    /// Removes `role`'s permission for `action` (authorized as `role:grant_permission`).
    pub async fn revoke_permission(&self, caller: &Caller, role: &str, action: &str) -> Result<()> {
        let role = RoleName::parse(role)?;
        let action = ActionName::parse(action)?;
        self.mutate(
            caller,
            "revoke_permission",
            vec![Operation::new(action::ROLE_GRANT_PERMISSION, pack::role(&role))],
            json!({"role": role.as_str(), "action": action.as_str()}),
            async |w| self.store().revoke_permission(w, &role, &action).await,
        )
        .await
    }

    /// What `role` lets its holders do.
    pub async fn role_permissions(&self, role: &str) -> Result<Vec<RolePermission>> {
        self.store().role_permissions(&RoleName::parse(role)?).await
    }

    // ---- Group-management rights -------------------------------------------------------------------------

    /// Lets members of `manager_group` manage the groups matching `target_pattern` (an SQL `LIKE` pattern,
    /// see [`GroupPattern`]).
    pub async fn create_management_right(
        &self,
        caller: &Caller,
        manager_group: &str,
        target_pattern: &str,
    ) -> Result<ManagementRight> {
        let manager = GroupName::parse(manager_group)?;
        let pattern = GroupPattern::parse(target_pattern)?;
        let op = Operation::new(
            action::MANAGEMENT_RIGHT_CREATE,
            pack::management_right(&manager, &pattern),
        );
        let request = json!({"manager_group": manager.as_str(), "target_pattern": pattern.as_str()});
        self.mutate(caller, "create_management_right", vec![op], request, async |w| {
            self.store().create_right(w, &manager, &pattern).await
        })
        .await
    }

    /// Management rights, optionally only those of one manager group.
    pub async fn list_management_rights(&self, manager_group: Option<&str>) -> Result<Vec<ManagementRight>> {
        let manager = manager_group.map(GroupName::parse).transpose()?;
        self.store().list_rights(manager.as_ref()).await
    }

    /// Deletes a management right.
    pub async fn delete_management_right(&self, caller: &Caller, id: i64) -> Result<()> {
        let right = self.store().get_right(id).await?;
        let op = Operation::new(
            action::MANAGEMENT_RIGHT_DELETE,
            pack::management_right(&right.manager_group, &right.target_pattern),
        );
        self.mutate(
            caller,
            "delete_management_right",
            vec![op],
            json!({"id": id}),
            async |w| self.store().delete_right(w, id).await,
        )
        .await
    }

    /// The groups `subject` may manage through the management rights of the groups they belong to.
    pub async fn manageable_groups(&self, subject: &str) -> Result<Vec<GroupName>> {
        let subject = Subject::parse(subject)?;
        let Some(user_id) = self.store().user_id(&subject).await? else {
            return Err(Error::not_found(format!("user {subject} does not exist")));
        };
        let patterns = self.store().management_patterns(user_id).await?;
        if patterns.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self.store().all_group_names().await?;
        Ok(groups
            .into_iter()
            .filter(|g| patterns.iter().any(|p| p.matches(g)))
            .collect())
    }

    // ---- Mappings ----------------------------------------------------------------------------------------

    fn new_mapping(input: &MappingInput) -> Result<(NewMapping, Value)> {
        let method = Method::parse(&input.method)?;
        let pattern = PathPattern::parse(&input.path_pattern)?;
        let action = ActionName::parse(input.action.clone())?;
        let owner_group = input.owner_group.as_deref().map(GroupName::parse).transpose()?;
        let desc = description(input.description.as_deref())?;
        let request = json!({
            "method": method.as_str(), "path_pattern": pattern.as_str(), "action": action.as_str(),
            "owner_group": owner_group.as_ref().map(GroupName::as_str), "priority": input.priority,
            "description": desc,
        });
        let new = NewMapping {
            method: method.as_str().to_owned(),
            path_pattern: pattern.as_str().to_owned(),
            match_key: pattern.match_key(),
            resource_kind: action_kind(&action)?,
            action,
            owner_group,
            priority: input.priority,
            description: desc.map(str::to_owned),
        };
        Ok((new, request))
    }

    fn mapping_from_row(row: MappingRow) -> Result<Mapping> {
        Ok(Mapping {
            id: row.id,
            method: Method::parse(&row.method)?,
            path_pattern: PathPattern::parse(&row.path_pattern)?,
            action: row.action,
            owner_group: row.owner_group,
            priority: row.priority,
            description: row.description,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    /// Creates a mapping. A mapping that would match exactly the same requests as an existing one is a
    /// conflict naming the other.
    pub async fn create_mapping(&self, caller: &Caller, input: &MappingInput) -> Result<Mapping> {
        let (new, request) = Self::new_mapping(input)?;
        let op = Operation::new(action::MAPPING_CREATE, pack::mapping(None, new.owner_group.as_ref()));
        let row = self
            .mutate(caller, "create_mapping", vec![op], request, async |w| {
                self.store().create_mapping(w, &new).await
            })
            .await?;
        self.mappings_changed().await;
        Self::mapping_from_row(row)
    }

    /// Replaces a mapping. The caller must be allowed `mapping:update` on the mapping as it is and, when the
    /// owner group changes, as it will be.
    pub async fn update_mapping(&self, caller: &Caller, id: i64, input: &MappingInput) -> Result<Mapping> {
        let (new, request) = Self::new_mapping(input)?;
        let old = self.store().get_mapping(id).await?;
        let mut ops = vec![Operation::new(
            action::MAPPING_UPDATE,
            pack::mapping(Some(id), old.owner_group.as_ref()),
        )];
        if new.owner_group != old.owner_group {
            ops.push(Operation::new(
                action::MAPPING_UPDATE,
                pack::mapping(Some(id), new.owner_group.as_ref()),
            ));
        }
        let row = self
            .mutate(caller, "update_mapping", ops, request, async |w| {
                self.store().update_mapping(w, id, &new).await
            })
            .await?;
        self.mappings_changed().await;
        Self::mapping_from_row(row)
    }

    /// Deletes a mapping.
    pub async fn delete_mapping(&self, caller: &Caller, id: i64) -> Result<()> {
        let old = self.store().get_mapping(id).await?;
        let op = Operation::new(
            action::MAPPING_DELETE,
            pack::mapping(Some(id), old.owner_group.as_ref()),
        );
        self.mutate(caller, "delete_mapping", vec![op], json!({"id": id}), async |w| {
            self.store().delete_mapping(w, id).await
        })
        .await?;
        self.mappings_changed().await;
        Ok(())
    }

    /// One mapping.
    pub async fn get_mapping(&self, id: i64) -> Result<Mapping> {
        Self::mapping_from_row(self.store().get_mapping(id).await?)
    }

    /// Mappings in id order; `after` is the last id of the previous page.
    pub async fn list_mappings(&self, after: Option<i64>, limit: Option<u32>) -> Result<Page<Mapping>> {
        let limit = page_size(limit)?;
        let rows = self.store().list_mappings(after, limit).await?;
        let items = rows
            .into_iter()
            .map(Self::mapping_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::new(items, limit, |m| m.id.to_string()))
    }

    /// The compiled mapping snapshot, rebuilt from the database when a mapping changed (checked at most every
    /// [`Config::mapping_refresh_interval`]; at once after this process changes a mapping).
    pub async fn mapping_snapshot(&self) -> Result<Arc<Snapshot>> {
        let checked = self.inner.mappings_checked.load(Ordering::Acquire);
        let due = checked == u64::MAX
            || self.millis_since_start().saturating_sub(checked)
                >= u64::try_from(self.inner.config.mapping_refresh_interval.as_millis()).unwrap_or(u64::MAX);
        if due {
            self.refresh_mappings().await
        } else {
            Ok(self.inner.mappings.snapshot())
        }
    }

    /// Rebuilds the mapping snapshot if the database holds a newer mapping version than the current one.
    pub async fn refresh_mappings(&self) -> Result<Arc<Snapshot>> {
        let _one_at_a_time = self.inner.mappings_refresh.lock().await;
        let version = self.store().mapping_version().await?;
        if self.inner.mappings.snapshot().version() < version {
            let rows = self.store().all_mappings().await?;
            let rules = rows
                .into_iter()
                .map(|row| {
                    Ok(MappingRule {
                        id: row.id,
                        method: Method::parse(&row.method)?,
                        pattern: PathPattern::parse(&row.path_pattern)?,
                        action: row.action,
                        owner_group: row.owner_group,
                        priority: row.priority,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            self.inner.mappings.store_if_newer(Snapshot::build(rules, version)?);
        }
        self.inner
            .mappings_checked
            .store(self.millis_since_start(), Ordering::Release);
        Ok(self.inner.mappings.snapshot())
    }

    fn millis_since_start(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    async fn mappings_changed(&self) {
        if let Err(e) = self.refresh_mappings().await {
            tracing::warn!(error = %e, "could not rebuild the mapping snapshot; the next lookup tries again");
            self.inner.mappings_checked.store(u64::MAX, Ordering::Release);
        }
    }

    /// The mapping a request (method and raw path, query string allowed) resolves to, or `None` when no mapping
    /// applies. A path that is not canonical (see [`crate::mapping::check_path`]) is invalid input.
    pub async fn resolve(&self, method: &str, path: &str) -> Result<Option<ResolvedEndpoint>> {
        let snapshot = self.mapping_snapshot().await?;
        match snapshot.resolve(method, path) {
            Resolution::Matched(m) => Ok(Some(ResolvedEndpoint {
                mapping_id: m.id(),
                action: m.action().clone(),
                path_pattern: m.pattern().as_str().to_owned(),
                owner_group: m.owner_group().cloned(),
                params: m.params().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            })),
            Resolution::NoMatch => Ok(None),
            Resolution::Rejected(why) => Err(Error::invalid(format!("path rejected: {}", why.as_str()))),
        }
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
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let op = Operation::new(action, pack::system());
        let outcome = self
            .mutate(caller, operation, vec![op], json!({}), async |_| work.await)
            .await;
        if let Ok(value) = &outcome {
            let w = self.write(Some(caller), operation, &pack::system(), json!({}));
            if let Err(e) = self
                .store()
                .write_audit(&w, &json!({"result": format!("{value:?}")}), true)
                .await
            {
                tracing::warn!(operation, error = %e, "could not audit an operation");
            }
        }
        outcome
    }

    /// The change version: it grows with every change to mappings, memberships and grants.
    pub async fn change_version(&self) -> Result<i64> {
        self.store().change_version().await
    }

    /// Changes after `version`, oldest first, at most `limit`.
    pub async fn changes_since(&self, version: i64, limit: Option<u32>) -> Result<Vec<ChangeRecord>> {
        self.store().changes_since(version, page_size(limit)?).await
    }

    /// How the principal-policy outbox stands.
    pub async fn outbox_stats(&self) -> Result<OutboxStats> {
        self.store().outbox_stats().await
    }

    // ---- Plumbing ----------------------------------------------------------------------------------------

    fn is_superadmin_role(&self, role: &RoleName) -> bool {
        role.as_str() == self.inner.config.superadmin_role
    }

    /// The audit context of a change to `target`: its kind (without the `heimdall_` prefix) and its id.
    fn write(&self, caller: Option<&Caller>, operation: &'static str, target: &Resource, request: Value) -> Write {
        Write {
            now: self.inner.clock.now(),
            audit: Audit {
                actor: caller.cloned(),
                operation,
                target_type: target.kind.strip_prefix("heimdall_").unwrap_or(&target.kind).to_owned(),
                target_id: target.id.clone(),
                request,
            },
        }
    }

    /// Runs one mutation: asks the PDP whether `caller` may do every one of `ops` (the first names the audit
    /// target), then runs `change`, one store transaction that also audits its success. A refusal or a
    /// failure is audited here, and changes nothing.
    async fn mutate<T>(
        &self,
        caller: &Caller,
        operation: &'static str,
        ops: Vec<Operation>,
        request: Value,
        change: impl AsyncFnOnce(&Write) -> Result<T>,
    ) -> Result<T> {
        let system = pack::system();
        let target = ops.first().map_or(&system, |op| &op.resource);
        let w = self.write(Some(caller), operation, target, request);
        let outcome = async {
            authz::authorize(self.store(), self.inner.pdp.as_ref(), &self.inner.config, caller, &ops).await?;
            change(&w).await
        }
        .await;
        match &outcome {
            Ok(_) => self.inner.outbox_signal.notify_one(),
            Err(e) => {
                let result = json!({"error": e.kind().as_str(), "message": e.message()});
                if let Err(audit_error) = self.store().write_audit(&w, &result, false).await {
                    tracing::warn!(operation, error = %audit_error, "could not audit a failed operation");
                }
            }
        }
        outcome
    }
}
