//! Policy decision points: who may do what.
//!
//! Two implementations share one interface, [`Pdp`]: a client of a real Cerbos PDP, and the built-in PDP
//! that applies the same rules as Heimdall's admin policy pack when no Cerbos is configured.

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::error::Result;

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

/// The answer for one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied (also when no policy says anything).
    Deny,
}

/// A policy decision point.
#[async_trait]
pub trait Pdp: Send + Sync + std::fmt::Debug {
    /// Decides each of `actions` on `resource` for `principal`, in the order given.
    ///
    /// An error means no decision could be had (the caller must treat it as a denial: fail closed).
    async fn check(&self, principal: &Principal, resource: &Resource, actions: &[&str]) -> Result<Vec<Decision>>;
}
