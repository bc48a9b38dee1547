//! Authorization of admin operations: building the principal and the resource, and asking the PDP.
//!
//! The principal and resources built here are the contract with the admin policy pack
//! (`heimdall-core/policies/`) and with [`crate::pdp::BuiltinPdp`].

use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Caller, GroupName, GroupPattern, RoleName, Subject};
use crate::pdp::{Decision, Pdp, Principal, Resource, principal_id};
use crate::store::Store;

/// The role every principal holds (Cerbos needs at least one).
pub(crate) const BASE_ROLE: &str = "user";
/// The role a principal holds when it holds the configured superadmin role.
pub(crate) const SUPERADMIN_ROLE: &str = "heimdall_superadmin";

/// One action on one admin resource.
#[derive(Debug, Clone)]
pub(crate) struct Operation<'a> {
    pub(crate) action: &'a str,
    pub(crate) resource: Resource,
}

fn attrs(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl<'a> Operation<'a> {
    fn new(action: &'a str, kind: &str, id: String, attr: Value) -> Self {
        Operation {
            action,
            resource: Resource {
                kind: kind.to_owned(),
                id,
                attr: attrs(attr),
            },
        }
    }

    pub(crate) fn group(action: &'a str, group: &GroupName) -> Self {
        Self::new(action, "heimdall_group", format!("group:{group}"), json!({"groupId": group.as_str()}))
    }

    pub(crate) fn group_role(action: &'a str, group: &GroupName, role: &RoleName, privileged: bool) -> Self {
        Self::new(
            action,
            "heimdall_group",
            format!("group:{group}"),
            json!({"groupId": group.as_str(), "roleId": role.as_str(), "privileged": privileged}),
        )
    }

    pub(crate) fn role(action: &'a str, role: &RoleName) -> Self {
        Self::new(action, "heimdall_role", format!("role:{role}"), json!({"roleId": role.as_str()}))
    }

    pub(crate) fn user(action: &'a str, subject: &Subject) -> Self {
        Self::new(action, "heimdall_user", format!("user:{subject}"), json!({"subject": subject.as_str()}))
    }

    pub(crate) fn mapping(action: &'a str, id: &str, owner: Option<&GroupName>) -> Self {
        Self::new(
            action,
            "heimdall_mapping",
            format!("mapping:{id}"),
            json!({"ownerGroup": owner.map(GroupName::as_str).unwrap_or("")}),
        )
    }

    pub(crate) fn right(action: &'a str, manager: &GroupName, pattern: &GroupPattern) -> Self {
        Self::new(
            action,
            "heimdall_management_right",
            format!("management_right:{manager}:{pattern}"),
            json!({"managerGroup": manager.as_str(), "targetPattern": pattern.as_str()}),
        )
    }

    pub(crate) fn system(action: &'a str) -> Self {
        Self::new(action, "heimdall_system", "system".to_owned(), json!({}))
    }
}

/// The caller as the PDP sees them: effective roles from the database (plus the token's, when configured),
/// and the patterns of the groups they may manage, as regular expressions.
pub(crate) async fn principal(store: &dyn Store, config: &Config, caller: &Caller) -> Result<Principal> {
    let mut roles: Vec<String> = store
        .effective_roles(caller.user_id)
        .await?
        .into_iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    if config.merge_token_roles {
        roles.extend(caller.token_roles.iter().map(|r| r.as_str().to_owned()));
    }
    let superadmin = roles.iter().any(|r| *r == config.superadmin_role);
    roles.push(BASE_ROLE.to_owned());
    if superadmin {
        roles.push(SUPERADMIN_ROLE.to_owned());
    }
    roles.sort();
    roles.dedup();
    let patterns = store.management_patterns(caller.user_id).await?;
    let regexes: Vec<String> = patterns.iter().map(GroupPattern::to_regex).collect();
    Ok(Principal {
        id: principal_id(&caller.subject),
        roles,
        attr: attrs(json!({"subject": caller.subject.as_str(), "managedGroupRegexes": regexes})),
    })
}

/// A PDP failure, as the caller sees it: no decision means no (fail closed).
pub(crate) fn unavailable(e: Error) -> Error {
    tracing::warn!(error = %e, "policy decision point failed; denying");
    Error::new(ErrorKind::Unavailable, "the policy decision point could not decide; nothing was changed").with_source(e)
}

/// Succeeds when the PDP allows every one of `ops` to `caller`.
pub(crate) async fn authorize(
    store: &dyn Store,
    pdp: &dyn Pdp,
    config: &Config,
    caller: &Caller,
    ops: &[Operation<'_>],
) -> Result<()> {
    let principal = principal(store, config, caller).await?;
    for op in ops {
        let decisions = pdp.check(&principal, &op.resource, &[op.action]).await.map_err(unavailable)?;
        if decisions.first() != Some(&Decision::Allow) {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!("{} may not {} on {}", caller.subject, op.action, op.resource.id),
            ));
        }
    }
    Ok(())
}
