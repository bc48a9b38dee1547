//! Policy decision points: who may do what.
//!
//! Two implementations share one interface, [`Pdp`]: a client of a real Cerbos PDP, and the built-in PDP
//! that applies the same rules as Heimdall's admin policy pack when no Cerbos is configured.
//!
//! - [`cerbos`]: [`CerbosClient`], the Check API and the Admin API over HTTP/JSON.
//! - [`builtin`]: [`BuiltinPdp`], the admin rules in Rust, without I/O.
//! - [`pack`]: the admin policy pack (resource policies for Heimdall's own resources) and the contract of
//!   the principals and resources the facade builds for it.
//! - [`principal`]: principal ids and the principal policies pushed for users.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use heimdall_core::pdp::{BuiltinPdp, Decision, Pdp, Principal, pack};
//!
//! let caller = Principal::new("alice", ["user"]).with_attr(pack::attr::MANAGED_GROUP_REGEXES, vec!["^go:.*$"]);
//! let group = pack::new_group(&heimdall_core::model::GroupName::parse("go:x").unwrap());
//! let answer = BuiltinPdp.check(&caller, &group, &["group:add_member", "group:assign_role"]).await.unwrap();
//! assert_eq!(answer, [Decision::Allow, Decision::Deny]);
//! # });
//! ```

pub mod builtin;
pub mod cerbos;
pub mod pack;
pub mod principal;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::error::Result;

pub use builtin::BuiltinPdp;
pub use cerbos::{CerbosClient, CerbosConfig};
pub use principal::{
    policy_id, principal_id, principal_policy, resource_kind_for_action, subject_from_policy_id,
    subject_from_principal_id,
};

/// Who is asking: an id, the roles they hold, and attributes that policy conditions read.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The principal id (see `principal_id`).
    pub id: String,
    /// Roles; never empty when sent to Cerbos.
    pub roles: Vec<String>,
    /// Attributes, such as the patterns of groups the principal may manage.
    pub attr: Map<String, Value>,
}

impl Principal {
    /// A principal with an id, roles, and no attributes.
    pub fn new<R: Into<String>>(id: impl Into<String>, roles: impl IntoIterator<Item = R>) -> Self {
        Principal {
            id: id.into(),
            roles: roles.into_iter().map(Into::into).collect(),
            attr: Map::new(),
        }
    }

    /// Sets one attribute.
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attr.insert(name.into(), value.into());
        self
    }

    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// What is being acted on.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The resource kind, such as `heimdall_group`.
    pub kind: String,
    /// The resource id, such as `group:go:authenticated`.
    pub id: String,
    /// Attributes, such as `groupId`.
    pub attr: Map<String, Value>,
}

impl Resource {
    /// A resource with a kind, an id, and no attributes.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Resource {
            kind: kind.into(),
            id: id.into(),
            attr: Map::new(),
        }
    }

    /// Sets one attribute.
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attr.insert(name.into(), value.into());
        self
    }
}

/// The answer for one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied (also when no policy says anything).
    Deny,
}

impl Decision {
    /// Whether this is [`Decision::Allow`].
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// Most resources one batch check sends to Cerbos in one request (Cerbos' own limit).
pub const MAX_RESOURCES_PER_CHECK: usize = 50;
/// Most actions on one resource in one check (Cerbos' own limit).
pub const MAX_ACTIONS_PER_RESOURCE: usize = 50;

/// A policy decision point.
#[async_trait]
pub trait Pdp: Send + Sync + std::fmt::Debug {
    /// Decides each of `actions` on `resource` for `principal`, in the order given.
    ///
    /// An error means no decision could be had (the caller must treat it as a denial: fail closed).
    async fn check(&self, principal: &Principal, resource: &Resource, actions: &[&str]) -> Result<Vec<Decision>>;

    /// Decides several resources at once: one `Vec<Decision>` per item, in the order given, each in the
    /// order of that item's actions.
    ///
    /// The default asks [`Pdp::check`] once per item; the Cerbos client sends up to
    /// [`MAX_RESOURCES_PER_CHECK`] resources per request.
    async fn check_batch(&self, principal: &Principal, items: &[(&Resource, &[&str])]) -> Result<Vec<Vec<Decision>>> {
        let mut out = Vec::with_capacity(items.len());
        for (resource, actions) in items {
            out.push(self.check(principal, resource, actions).await?);
        }
        Ok(out)
    }

    /// Whether this PDP also holds the principal policies Heimdall pushes for users, and so decides the
    /// requests adapters ask about (a Cerbos does). `false` by default: the built-in PDP decides only the
    /// admin pack, and [`crate::Heimdall::explain`] then decides from the database itself.
    fn holds_principal_policies(&self) -> bool {
        false
    }
}
