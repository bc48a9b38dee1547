//! Authorization of admin operations: the caller's principal, and asking the PDP.
//!
//! The principals and resources come from [`crate::pdp::pack`], the contract shared with the admin policy
//! pack and with [`crate::pdp::BuiltinPdp`].

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Caller, GroupPattern, PathScope};
use crate::pdp::{Pdp, Principal, Resource, pack};
use crate::store::Store;

/// One action on one admin resource.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub(crate) action: &'static str,
    pub(crate) resource: Resource,
}

impl Operation {
    pub(crate) fn new(action: &'static str, resource: Resource) -> Self {
        Operation { action, resource }
    }
}

/// What the PDP is told of a caller: effective roles from the database (plus the token's, when configured),
/// whether they make a superadmin, and the patterns and path scopes of their management rights.
pub(crate) struct CallerFacts {
    pub(crate) roles: Vec<String>,
    pub(crate) superadmin: bool,
    pub(crate) rights: Vec<(GroupPattern, Option<PathScope>)>,
}

/// The facts of `caller`; the system caller is a superadmin with no roles or rights.
pub(crate) async fn caller_facts(store: &dyn Store, config: &Config, caller: &Caller) -> Result<CallerFacts> {
    let Some(user_id) = caller.user_id() else {
        return Ok(CallerFacts {
            roles: Vec::new(),
            superadmin: true,
            rights: Vec::new(),
        });
    };
    let mut roles: Vec<String> = store
        .effective_roles(user_id)
        .await?
        .into_iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    if config.merge_token_roles {
        roles.extend(caller.token_roles().iter().map(|r| r.as_str().to_owned()));
    }
    let superadmin = roles.contains(&config.superadmin_role);
    let rights = store.management_rights_of(user_id).await?;
    Ok(CallerFacts {
        roles,
        superadmin,
        rights,
    })
}

/// The caller as the PDP sees them (see [`CallerFacts`]).
pub(crate) async fn principal(store: &dyn Store, config: &Config, caller: &Caller) -> Result<Principal> {
    let facts = caller_facts(store, config, caller).await?;
    Ok(pack::principal(
        caller.subject(),
        facts.roles,
        facts.superadmin,
        &facts.rights,
    ))
}

/// A PDP failure, as the caller sees it: no decision means no (fail closed).
pub(crate) fn unavailable(e: Error) -> Error {
    tracing::warn!(error = %e, "policy decision point failed; denying");
    Error::new(
        ErrorKind::Unavailable,
        "the policy decision point could not decide; nothing was changed",
    )
    .with_source(e)
}

/// The index of the first of `ops` the PDP does not allow `caller` (`None`: it allows every one).
pub(crate) async fn first_denied(
    store: &dyn Store,
    pdp: &dyn Pdp,
    config: &Config,
    caller: &Caller,
    ops: &[Operation],
) -> Result<Option<usize>> {
    let principal = principal(store, config, caller).await?;
    for (i, op) in ops.iter().enumerate() {
        let decisions = pdp
            .check(&principal, &op.resource, &[op.action])
            .await
            .map_err(unavailable)?;
        if !decisions.first().is_some_and(|d| d.is_allowed()) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Succeeds when the PDP allows every one of `ops` to `caller`.
pub(crate) async fn authorize(
    store: &dyn Store,
    pdp: &dyn Pdp,
    config: &Config,
    caller: &Caller,
    ops: &[Operation],
) -> Result<()> {
    match first_denied(store, pdp, config, caller, ops).await? {
        Some(i) => Err(Error::new(
            ErrorKind::Forbidden,
            format!(
                "{} may not {} on {}",
                caller.subject(),
                ops[i].action,
                ops[i].resource.id
            ),
        )),
        None => Ok(()),
    }
}
