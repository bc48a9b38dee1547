//! Local decisions: the grants snapshot heimdall-http exports and the PDP that decides from it.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::Heimdall;
use crate::error::{ErrorKind, Result};
use crate::model::Subject;
use crate::pdp::{Decision, Pdp, Principal, Resource};

/// One permission a subject holds, as their pushed principal policy states it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantedPermission {
    /// The resource kind (the action's name before its last `:`).
    pub resource_kind: String,
    /// The action.
    pub action: String,
    /// `allow` or `deny`.
    pub effect: String,
}

/// Every subject's effective permissions at one change version: what the principal policies Heimdall pushes
/// say, for deciding without a network call per request ([`LocalPdp`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantsSnapshot {
    /// The change version read before the grants (a later change makes a newer version).
    pub version: i64,
    /// Subject → permissions (subjects holding none are left out).
    pub subjects: std::collections::BTreeMap<String, Vec<GrantedPermission>>,
}

/// One subject's effective permissions at one change version (`GET /api/v1/grants?subject=`): what a follower
/// holding grants on demand fetches on the subject's first use.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubjectGrants {
    /// The change version read before the grants (they are at least that new).
    pub version: i64,
    /// The subject.
    pub subject: String,
    /// Their permissions (none for a subject Heimdall does not know).
    pub permissions: Vec<GrantedPermission>,
}

/// Most subjects [`Heimdall::grants_changes`] names; past it, it names none and says so.
pub const MAX_GRANTS_CHANGES: usize = 10_000;

/// The subjects whose grants changed after a change version (`GET /api/v1/grants/changes?since=N`): what a
/// follower holding grants on demand drops from its cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantsChanges {
    /// The version the follower holds.
    pub since: i64,
    /// The change version read first: every subject whose grants changed after `since` up to it is named.
    pub version: i64,
    /// The subjects, oldest change first; `None` when more than [`MAX_GRANTS_CHANGES`] changed, or when
    /// `since` is newer than `version` (a follower ahead of this server): then the follower drops every
    /// subject it holds.
    pub subjects: Option<Vec<String>>,
}

/// Permissions as a follower holds them.
fn granted(permissions: Vec<crate::store::EffectivePermission>) -> Vec<GrantedPermission> {
    permissions
        .into_iter()
        .map(|p| GrantedPermission {
            resource_kind: p.resource_kind,
            action: p.action.as_str().to_owned(),
            effect: p.effect.as_str().to_owned(),
        })
        .collect()
}

impl Heimdall {
    /// `subject`'s effective permissions, for a follower holding grants on demand (`grants:read`).
    pub async fn subject_grants(&self, subject: &Subject) -> Result<SubjectGrants> {
        let version = self.change_version().await?;
        let permissions = self
            .store()
            .effective_permissions(&[subject.as_str().to_owned()])
            .await?
            .remove(subject.as_str())
            .map(granted)
            .unwrap_or_default();
        Ok(SubjectGrants {
            version,
            subject: subject.as_str().to_owned(),
            permissions,
        })
    }

    /// The subjects whose grants changed after change version `since` (see [`GrantsChanges`]).
    pub async fn grants_changes(&self, since: i64) -> Result<GrantsChanges> {
        let version = self.change_version().await?;
        let mut out = GrantsChanges {
            since,
            version,
            subjects: None,
        };
        if since > version {
            return Ok(out);
        }
        let limit = i64::try_from(MAX_GRANTS_CHANGES + 1).unwrap_or(i64::MAX);
        let changed = self.store().grants_changed_since(since, limit).await?;
        if changed.len() <= MAX_GRANTS_CHANGES {
            out.subjects = Some(changed.into_iter().map(|s| s.as_str().to_owned()).collect());
        }
        Ok(out)
    }

    /// Every subject's effective permissions, for adapters deciding locally (`grants:read`).
    pub async fn grants_snapshot(&self) -> Result<GrantsSnapshot> {
        // The version first: the grants read after it are at least that new, and any later change moves it.
        let version = self.change_version().await?;
        let mut out = GrantsSnapshot {
            version,
            subjects: Default::default(),
        };
        let mut after: Option<String> = None;
        loop {
            let page = self.store().subjects(after.as_deref(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.as_str().to_owned());
            let names: Vec<String> = page.iter().map(|s| s.as_str().to_owned()).collect();
            for (subject, permissions) in self.store().effective_permissions(&names).await? {
                if permissions.is_empty() {
                    continue;
                }
                out.subjects.insert(subject, granted(permissions));
            }
            if page.len() < 1000 {
                break;
            }
        }
        Ok(out)
    }
}

/// What a subject holding `held` (`None`: nothing known of them) may do, as Cerbos decides it from their pushed
/// principal policy: for each action on `resource`'s kind, a `deny` beats an `allow`; nothing stated means deny;
/// reserved kinds (Heimdall's own) grant nothing.
pub(super) fn decide(held: Option<&[GrantedPermission]>, resource: &Resource, actions: &[&str]) -> Vec<Decision> {
    actions
        .iter()
        .map(|action| {
            let Some(held) = held else { return Decision::Deny };
            if crate::pdp::principal::is_reserved_resource_kind(&resource.kind) {
                return Decision::Deny;
            }
            let mut allowed = false;
            for p in held
                .iter()
                .filter(|p| p.resource_kind == resource.kind && p.action == *action)
            {
                if p.effect == "deny" {
                    return Decision::Deny;
                }
                allowed |= p.effect == "allow";
            }
            if allowed { Decision::Allow } else { Decision::Deny }
        })
        .collect()
}

/// A PDP that decides adapters' questions from a [`GrantsSnapshot`], as Cerbos decides them from the pushed
/// principal policies: for the principal's subject, a `deny` of the action on the resource's kind beats an
/// `allow`; nothing stated means deny; reserved kinds (Heimdall's own) grant nothing. Before its first
/// snapshot it cannot decide (an error: requests fail closed).
#[derive(Debug, Default)]
pub struct LocalPdp {
    grants: ArcSwapOption<GrantsSnapshot>,
}

impl LocalPdp {
    /// An empty local PDP.
    pub fn new() -> Arc<Self> {
        Arc::new(LocalPdp::default())
    }

    /// Installs `grants` unless a newer snapshot is installed.
    pub fn install(&self, grants: GrantsSnapshot) {
        if self.version().is_none_or(|v| v <= grants.version) {
            self.grants.store(Some(Arc::new(grants)));
        }
    }

    /// The installed snapshot's version.
    pub fn version(&self) -> Option<i64> {
        self.grants.load().as_ref().map(|g| g.version)
    }

    /// Takes `other`'s grants while this PDP has none.
    pub fn adopt(&self, other: &LocalPdp) {
        if let Some(grants) = other.grants.load_full() {
            self.grants.compare_and_swap(&None::<Arc<GrantsSnapshot>>, Some(grants));
        }
    }
}

#[async_trait::async_trait]
impl Pdp for LocalPdp {
    async fn check(&self, principal: &Principal, resource: &Resource, actions: &[&str]) -> Result<Vec<Decision>> {
        let Some(grants) = self.grants.load_full() else {
            return Err(crate::Error::new(
                ErrorKind::Unavailable,
                "no grants snapshot is loaded yet",
            ));
        };
        let held = crate::pdp::subject_from_principal_id(&principal.id)
            .ok()
            .and_then(|s| grants.subjects.get(s.as_str()));
        Ok(decide(held.map(Vec::as_slice), resource, actions))
    }

    fn holds_principal_policies(&self) -> bool {
        true
    }
}
