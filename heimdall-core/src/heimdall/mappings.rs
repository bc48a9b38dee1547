//! Endpoint → action mappings: writing them, and resolving requests against the compiled snapshot.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Attempt, Heimdall, action_kind, description, raw_target};
use crate::authz::Operation;
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::{MappingRule, Method, PathPattern, PathRejection, Resolution, Snapshot};
use crate::model::{
    ActionName, Caller, GroupName, Mapping, MappingInput, Page, ResolvedEndpoint, SnapshotStatus, page_size,
};
use crate::pdp::Resource;
use crate::pdp::pack::{self, action};
use crate::store::{Guard, MappingFacts, MappingRow, NewMapping, Write};

/// Most shadowed mappings one audit row lists (it also gives their number when there are more).
const SHADOWS_AUDITED: usize = 16;

impl Heimdall {
    /// Validates a mapping's input: the mapping to write, and its pattern (for the PDP's resource). A refusal
    /// names the field it is about ([`Error::field`]).
    fn new_mapping(input: &MappingInput) -> Result<(NewMapping, PathPattern)> {
        let method = Method::parse(&input.method).map_err(|e| e.about_field("method"))?;
        let pattern = PathPattern::parse(&input.path_pattern).map_err(|e| e.about_field("path_pattern"))?;
        let action = ActionName::parse(input.action.clone()).map_err(|e| e.about_field("action"))?;
        let owner_group = input
            .owner_group
            .as_deref()
            .map(GroupName::parse)
            .transpose()
            .map_err(|e| e.about_field("owner_group"))?;
        let desc = description(input.description.as_deref()).map_err(|e| e.about_field("description"))?;
        let new = NewMapping {
            method: method.as_str().to_owned(),
            path_pattern: pattern.as_str().to_owned(),
            match_key: pattern.match_key(),
            resource_kind: action_kind(&action).map_err(|e| e.about_field("action"))?,
            action,
            owner_group,
            priority: input.priority,
            description: desc.map(str::to_owned),
        };
        Ok((new, pattern))
    }

    /// A mapping's input as the audit log records it.
    fn mapping_request(input: &MappingInput) -> Value {
        json!({
            "method": input.method, "path_pattern": input.path_pattern, "action": input.action,
            "owner_group": input.owner_group, "priority": input.priority, "description": input.description,
        })
    }

    /// An existing mapping as the PDP sees it, and the guard that makes the write transaction check it again.
    fn stored_mapping(row: &MappingRow) -> Result<(Resource, Guard)> {
        let pattern = PathPattern::parse(&row.path_pattern)?;
        let resource = pack::mapping(Some(row.id), row.owner_group.as_ref(), &pattern, row.priority);
        Ok((resource, Guard::Mapping(row.id, MappingFacts::from(row))))
    }

    /// Refuses a regular-expression mapping that would take the mappings past the limits on regular
    /// expressions, checked against a snapshot refreshed from the database: a write must never make the next
    /// snapshot unbuildable. (Two replicas adding regexes at the same instant could still pass together;
    /// the snapshot build then keeps the last good snapshot and logs why.)
    async fn check_regex_limits(&self, id: Option<i64>, new: &NewMapping, pattern: &PathPattern) -> Result<()> {
        if !pattern.is_regex() {
            return Ok(());
        }
        let rule = Self::rule_of(id.unwrap_or(i64::MAX), new, pattern)?;
        self.refresh_mappings().await?.check_regex_limits(&rule)
    }

    /// The mapping to write as the resolver will see it; `id` `i64::MAX` for one being created (its id will
    /// be larger than every existing one).
    fn rule_of(id: i64, new: &NewMapping, pattern: &PathPattern) -> Result<MappingRule> {
        Ok(MappingRule {
            id,
            method: Method::parse(&new.method)?,
            pattern: pattern.clone(),
            action: new.action.clone(),
            owner_group: new.owner_group.clone(),
            priority: new.priority,
        })
    }

    /// Refuses a write of `rule` by a caller who may not edit a mapping it would take requests from (see
    /// [`Snapshot::shadowed_by`]): "may edit" is the PDP's `mapping:update` on that mapping as it is, the
    /// very question [`Heimdall::update_mapping`] asks. A superadmin may edit every mapping, so may shadow
    /// any; the audit row names what the write shadows (`shadows`), the refused attempt's too.
    ///
    /// The shadows are computed on a snapshot refreshed from the database; the write carries
    /// [`Guard::MappingVersion`] of that snapshot, so a mapping written by someone else in between makes the
    /// write transaction refuse (a lost race) and the operation is decided again on the new mappings.
    async fn check_shadows(&self, attempt: &Attempt, w: &mut Write, rule: &MappingRule, verb: &str) -> Result<()> {
        let snapshot = self.refresh_mappings().await?;
        w.guard.push(Guard::MappingVersion(snapshot.version()));
        if snapshot
            .find_conflict(rule.method, &rule.pattern)
            .is_some_and(|id| id != rule.id)
        {
            // The store refuses it as a conflict, naming the other mapping.
            return Ok(());
        }
        let shadows = snapshot.shadowed_by(rule);
        if shadows.is_empty() {
            return Ok(());
        }
        let listed: Vec<Value> = shadows
            .iter()
            .take(SHADOWS_AUDITED)
            .map(|s| {
                json!({"id": s.id, "method": s.method.as_str(), "path_pattern": s.pattern.as_str(),
                       "owner_group": s.owner_group.as_ref().map(GroupName::as_str), "certain": s.certain})
            })
            .collect();
        attempt.note(w, "shadows", Value::Array(listed))?;
        if shadows.len() > SHADOWS_AUDITED {
            attempt.note(w, "shadows_total", json!(shadows.len()))?;
        }
        let ops: Vec<Operation> = shadows
            .iter()
            .map(|s| {
                let resource = pack::mapping(Some(s.id), s.owner_group.as_ref(), &s.pattern, s.priority);
                Operation::new(action::MAPPING_UPDATE, resource)
            })
            .collect();
        if let Some(i) = attempt.first_denied(&ops).await? {
            let who = attempt.caller()?;
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "would shadow {}, which {} may not edit: {} may not {verb} mapping {} {} (requests it answers \
                     today would resolve to this one)",
                    shadows[i].describe(),
                    who.subject(),
                    who.subject(),
                    rule.method,
                    rule.pattern,
                ),
            )
            .about_mappings([shadows[i].id])
            .about_field("path_pattern"));
        }
        Ok(())
    }

    /// A refused mapping write, with the rule that refuses it (the PDP says only "no").
    fn mapping_refusal(e: Error) -> Error {
        if e.kind() != ErrorKind::Forbidden {
            return e;
        }
        Error::new(
            ErrorKind::Forbidden,
            format!(
                "{}: mappings are written by superadmins, and by the managers of their owner group for route \
                 mappings of priority 0 inside the path scope of their right",
                e.message()
            ),
        )
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
    /// conflict naming the other. A manager may create only route mappings of default priority, owned by a
    /// group he manages and inside the path scope of that right, and none that would take requests from a
    /// mapping he may not edit (403 naming it; see [`Snapshot::shadowed_by`]).
    pub async fn create_mapping(&self, caller: &Caller, input: &MappingInput) -> Result<Mapping> {
        let target = raw_target("mapping", "new");
        let row = self
            .mutate(
                caller,
                "create_mapping",
                Self::mapping_request(input),
                &target,
                move |attempt| async move {
                    let (new, pattern) = Self::new_mapping(input)?;
                    let resource = pack::mapping(None, new.owner_group.as_ref(), &pattern, new.priority);
                    let mut w = attempt
                        .authorize(vec![Operation::new(action::MAPPING_CREATE, resource)], None)
                        .await
                        .map_err(Self::mapping_refusal)?;
                    self.check_regex_limits(None, &new, &pattern).await?;
                    let rule = Self::rule_of(i64::MAX, &new, &pattern)?;
                    self.check_shadows(&attempt, &mut w, &rule, "create").await?;
                    self.store().create_mapping(&w, &new).await
                },
            )
            .await?;
        self.mappings_changed().await;
        Self::mapping_from_row(row)
    }

    /// Replaces a mapping. The caller must be allowed `mapping:update` on the mapping as it is and as it will
    /// be, and on every other mapping it would then take requests from (see [`Snapshot::shadowed_by`]).
    pub async fn update_mapping(&self, caller: &Caller, id: i64, input: &MappingInput) -> Result<Mapping> {
        let target = raw_target("mapping", id);
        let row = self
            .mutate(
                caller,
                "update_mapping",
                Self::mapping_request(input),
                &target,
                move |attempt| async move {
                    let (new, pattern) = Self::new_mapping(input)?;
                    let old = self.store().get_mapping(id).await?;
                    let (as_is, guard) = Self::stored_mapping(&old)?;
                    let to_be = pack::mapping(Some(id), new.owner_group.as_ref(), &pattern, new.priority);
                    let ops = vec![
                        Operation::new(action::MAPPING_UPDATE, as_is),
                        Operation::new(action::MAPPING_UPDATE, to_be),
                    ];
                    let mut w = attempt
                        .authorize(ops, Some(guard))
                        .await
                        .map_err(Self::mapping_refusal)?;
                    self.check_regex_limits(Some(id), &new, &pattern).await?;
                    let rule = Self::rule_of(id, &new, &pattern)?;
                    self.check_shadows(&attempt, &mut w, &rule, "change").await?;
                    self.store().update_mapping(&w, id, &new).await
                },
            )
            .await?;
        self.mappings_changed().await;
        Self::mapping_from_row(row)
    }

    /// Deletes a mapping.
    pub async fn delete_mapping(&self, caller: &Caller, id: i64) -> Result<()> {
        let target = raw_target("mapping", id);
        self.mutate(
            caller,
            "delete_mapping",
            json!({"id": id}),
            &target,
            move |attempt| async move {
                let old = self.store().get_mapping(id).await?;
                let (resource, guard) = Self::stored_mapping(&old)?;
                let w = attempt
                    .authorize(vec![Operation::new(action::MAPPING_DELETE, resource)], Some(guard))
                    .await?;
                self.store().delete_mapping(&w, id).await
            },
        )
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

    /// The compiled mapping snapshot. Never waits for the database: when the snapshot is due for a check
    /// ([`Config::mapping_refresh_interval`](crate::Config::mapping_refresh_interval)), one background task
    /// compares it with the database and swaps in a rebuilt one if a mapping changed; until then, and while
    /// the database is unreachable, lookups are answered from the last good snapshot (see
    /// [`Heimdall::mapping_snapshot_status`] for its age). Changes made through this process are seen at once.
    pub fn mapping_snapshot(&self) -> Arc<Snapshot> {
        let now = self.millis_since_start();
        let interval = u64::try_from(self.inner.config.mapping_refresh_interval.as_millis()).unwrap_or(u64::MAX);
        let tried = self.inner.mappings_tried.load(Ordering::Acquire);
        if now.saturating_sub(tried) >= interval
            && self
                .inner
                .mappings_refreshing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let h = self.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        if let Err(e) = h.refresh_mappings().await {
                            tracing::warn!(error = %e, "could not refresh the mapping snapshot; serving the last good one");
                        }
                        h.inner.mappings_refreshing.store(false, Ordering::Release);
                    });
                }
                // Outside a runtime nothing can run in the background: answer from the snapshot as it is.
                Err(_) => h.inner.mappings_refreshing.store(false, Ordering::Release),
            }
        }
        self.inner.mappings.snapshot()
    }

    /// The current snapshot's mapping version, and how long ago it was last confirmed against the database:
    /// what a frontend reports as staleness.
    pub fn mapping_snapshot_status(&self) -> SnapshotStatus {
        let checked = self.inner.mappings_checked.load(Ordering::Acquire);
        SnapshotStatus {
            version: self.inner.mappings.load().version(),
            age: Duration::from_millis(self.millis_since_start().saturating_sub(checked)),
        }
    }

    /// Compares the snapshot with the database now, and rebuilds it if the database holds a newer mapping
    /// version. On error the current snapshot stays.
    pub async fn refresh_mappings(&self) -> Result<Arc<Snapshot>> {
        let _one_at_a_time = self.inner.mappings_refresh.lock().await;
        let started = self.millis_since_start();
        self.inner.mappings_tried.store(started, Ordering::Release);
        self.change_and_pushed_version().await?;
        let version = self.store().mapping_version().await?;
        if self.inner.mappings.load().version() < version {
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
        self.inner.mappings_checked.store(started, Ordering::Release);
        Ok(self.inner.mappings.snapshot())
    }

    fn millis_since_start(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// After a local change: rebuild at once, so this process reads its own writes.
    async fn mappings_changed(&self) {
        if let Err(e) = self.refresh_mappings().await {
            tracing::warn!(error = %e, "could not rebuild the mapping snapshot; the background refresh tries again");
            self.inner.mappings_tried.store(0, Ordering::Release);
        }
    }

    /// The mapping a request (method and raw path, query string allowed) resolves to, or `None` when no mapping
    /// applies. A path that is not canonical (see [`crate::mapping::check_path`]) is invalid input.
    pub async fn resolve(&self, method: &str, path: &str) -> Result<Option<ResolvedEndpoint>> {
        let snapshot = self.mapping_snapshot();
        match snapshot.resolve(method, path) {
            Resolution::Matched(m) => Ok(Some(ResolvedEndpoint {
                mapping_id: m.id(),
                action: m.action().clone(),
                path_pattern: m.pattern().as_str().to_owned(),
                owner_group: m.owner_group().cloned(),
                params: m.params().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            })),
            Resolution::NoMatch => Ok(None),
            Resolution::Rejected(PathRejection::InvalidMethod) => Err(Error::invalid(format!(
                "method rejected: {} (not an upper-case token)",
                PathRejection::InvalidMethod.as_str()
            ))),
            Resolution::Rejected(why) => Err(Error::invalid(format!("path rejected: {}", why.as_str()))),
        }
    }
}
