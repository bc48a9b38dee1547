//! What a caller administers, for frontends that show each person only that (the console): the whole of
//! Heimdall (a superadmin), the groups and path scopes of his management rights (a delegated manager), or
//! nothing but his own access (a plain user).
//!
//! A scope is a *view*, not a decision: it chooses what to list. Every change is still decided by the PDP
//! with the caller, exactly as for the REST API, so a scope that is wider than the policies allow changes
//! nothing; it can only show more.

use std::sync::Arc;

use super::Heimdall;
use crate::authz;
use crate::error::Result;
use crate::mapping::{MappingRule, PathPattern, Snapshot};
use crate::model::{Caller, Group, GroupName, GroupPattern, Page, PathScope, page_size};

/// Groups read from the store at a time while looking for those a manager manages.
const GROUP_SCAN: u32 = 1000;

/// What a caller administers (see the module docs).
#[derive(Debug, Clone)]
pub struct AdminScope {
    superadmin: bool,
    rights: Vec<(GroupPattern, Option<PathScope>)>,
}

impl AdminScope {
    /// Whether the caller administers everything.
    pub fn is_superadmin(&self) -> bool {
        self.superadmin
    }

    /// Whether the caller administers anything at all (a superadmin, or the holder of a management right);
    /// otherwise they may see their own access only.
    pub fn administers(&self) -> bool {
        self.superadmin || !self.rights.is_empty()
    }

    /// Whether the caller manages `group`.
    pub fn covers_group(&self, group: &GroupName) -> bool {
        self.superadmin || self.rights.iter().any(|(p, _)| p.matches(group))
    }

    /// Whether a mapping of `pattern` owned by `owner` lies in the caller's scope: a superadmin's every
    /// mapping; a manager's, those owned by a group one of his rights covers, inside that right's path scope.
    pub fn covers_mapping(&self, owner: Option<&GroupName>, pattern: &PathPattern) -> bool {
        self.superadmin
            || owner.is_some_and(|owner| {
                self.rights
                    .iter()
                    .any(|(p, scope)| p.matches(owner) && scope.as_ref().is_some_and(|s| s.contains(pattern)))
            })
    }

    /// The longest start that every right's pattern has in common ("" without rights).
    fn common_literal_prefix(&self) -> String {
        let mut prefixes = self.rights.iter().map(|(p, _)| p.literal_prefix());
        let Some(mut common) = prefixes.next() else {
            return String::new();
        };
        for p in prefixes {
            let shared = common.chars().zip(p.chars()).take_while(|(a, b)| a == b).count();
            common = common.chars().take(shared).collect();
        }
        common
    }
}

/// Which mappings to list: by owner group, by the start of the pattern, after an id.
#[derive(Debug, Clone, Default)]
pub struct MappingFilter {
    /// Only mappings this group owns.
    pub owner: Option<String>,
    /// Only mappings whose pattern starts with this.
    pub pattern_prefix: Option<String>,
    /// Only mappings with a larger id (the last id of the previous page).
    pub after: Option<i64>,
}

impl Heimdall {
    /// What `caller` administers, from the same facts the PDP is told of them (see [`AdminScope`]).
    pub async fn admin_scope(&self, caller: &Caller) -> Result<AdminScope> {
        let facts = authz::caller_facts(self.store(), &self.inner.config, caller).await?;
        Ok(AdminScope {
            superadmin: facts.superadmin,
            rights: facts.rights,
        })
    }

    /// The groups in `scope`, in name order, optionally only those whose name starts with `prefix`; `after`
    /// is the last name of the previous page. A manager's are found by reading the groups (of that prefix,
    /// narrowed to what his rights' patterns start with) in name order, [`GROUP_SCAN`] at a time, until the
    /// page is full: at most every group once.
    pub async fn list_groups_in(
        &self,
        scope: &AdminScope,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<Group>> {
        if scope.superadmin {
            return self.list_groups(prefix, after, limit).await;
        }
        let size = page_size(limit)?;
        let wanted = usize::try_from(size).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        // Only names that start with what every right's pattern starts with can match: the scan narrows to
        // that (with the searched prefix, when one is given; when the two part ways, nothing can match).
        let common = scope.common_literal_prefix();
        let prefix = match prefix {
            None => Some(common.as_str()).filter(|c| !c.is_empty()),
            Some(p) if p.starts_with(&common) => Some(p),
            Some(p) if common.starts_with(p) => Some(common.as_str()),
            Some(_) => return Ok(Page::new(items, size, |g: &Group| g.name.to_string())),
        };
        let mut cursor = after.map(str::to_owned);
        while !scope.rights.is_empty() && items.len() < wanted {
            let batch = self.list_groups(prefix, cursor.as_deref(), Some(GROUP_SCAN)).await?;
            cursor = batch.next;
            items.extend(batch.items.into_iter().filter(|g| scope.covers_group(&g.name)));
            if cursor.is_none() {
                break;
            }
        }
        items.truncate(wanted);
        // A full page points at its last item; the next one may turn out empty.
        Ok(Page::new(items, size, |g| g.name.to_string()))
    }

    /// The mappings in `scope` that `filter` selects, by id, from the freshest snapshot the database gives
    /// (the current one when it cannot be reached), at most `limit`; the page's `next` is the last id when
    /// more follow.
    pub async fn find_mappings(
        &self,
        scope: &AdminScope,
        filter: &MappingFilter,
        limit: Option<u32>,
    ) -> Result<Page<MappingRule>> {
        crate::model::check_text("owner", filter.owner.as_deref())?;
        crate::model::check_text("pattern_prefix", filter.pattern_prefix.as_deref())?;
        let limit = usize::try_from(page_size(limit)?).unwrap_or(usize::MAX);
        let snapshot: Arc<Snapshot> = match self.refresh_mappings().await {
            Ok(s) => s,
            Err(_) => self.mapping_snapshot(),
        };
        let after = filter.after.unwrap_or(i64::MIN);
        let mut matching: Vec<&MappingRule> = snapshot
            .rules()
            .iter()
            .filter(|r| r.id > after)
            .filter(|r| {
                filter
                    .owner
                    .as_deref()
                    .is_none_or(|o| r.owner_group.as_ref().is_some_and(|g| g.as_str() == o))
            })
            .filter(|r| {
                filter
                    .pattern_prefix
                    .as_deref()
                    .is_none_or(|p| r.pattern.as_str().starts_with(p))
            })
            .filter(|r| scope.covers_mapping(r.owner_group.as_ref(), &r.pattern))
            .collect();
        // The page: the lowest ids, in order (the rest only tells whether there is a next page).
        let more = matching.len() > limit;
        if more {
            matching.select_nth_unstable_by_key(limit, |r| r.id);
            matching.truncate(limit);
        }
        matching.sort_unstable_by_key(|r| r.id);
        let next = if more {
            matching.last().map(|r| r.id.to_string())
        } else {
            None
        };
        Ok(Page {
            items: matching.into_iter().cloned().collect(),
            next,
        })
    }
}
