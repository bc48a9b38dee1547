//! Local decisions: the grants snapshot heimdall-http exports and the PDP that decides from it.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::Heimdall;
use crate::error::{ErrorKind, Result};
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

impl Heimdall {
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
                let granted = permissions
                    .into_iter()
                    .map(|p| GrantedPermission {
                        resource_kind: p.resource_kind,
                        action: p.action.as_str().to_owned(),
                        effect: p.effect.as_str().to_owned(),
                    })
                    .collect();
                out.subjects.insert(subject, granted);
            }
            if page.len() < 1000 {
                break;
            }
        }
        Ok(out)
    }
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
        Ok(actions
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
            .collect())
    }

    fn holds_principal_policies(&self) -> bool {
        true
    }
}
