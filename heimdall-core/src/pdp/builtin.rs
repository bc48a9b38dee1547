//! The built-in policy decision point: the admin policy pack's rules in Rust, without I/O.
//!
//! Used when no Cerbos is configured (the embedded default). It decides only about the pack's resource
//! kinds (see [`crate::pdp::pack`]) and denies everything else; it knows nothing of the principal
//! policies pushed for users.
//!
//! It mirrors how Cerbos evaluates the pack's CEL conditions: a regex is searched for (not implicitly
//! anchored; Heimdall's are anchored), a regex that does not compile or is not a string never matches,
//! and a missing or mistyped attribute makes the condition false.
//!
//! # Example
//!
//! ```
//! use heimdall_core::model::{GroupName, Subject};
//! use heimdall_core::pdp::{BuiltinPdp, Decision, pack};
//!
//! let root = pack::principal(&Subject::parse("root").unwrap(), Vec::<String>::new(), true, &[]);
//! let group = pack::new_group(&GroupName::parse("go:x").unwrap());
//! assert_eq!(BuiltinPdp::decide(&root, &group, pack::action::GROUP_DELETE), Decision::Allow);
//! ```

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::pdp::pack::{self, action, attr};
use crate::pdp::{Decision, Pdp, Principal, Resource};

/// Largest compiled regex the built-in PDP accepts from a principal's attributes, in bytes. It must hold the
/// regex of the longest management pattern Heimdall accepts (`%a%a…`, [`crate::model::MAX_PATTERN_LEN`]
/// bytes, about 200 KiB compiled), or the built-in PDP would deny what Cerbos allows: the decision table's
/// test at the limits checks it.
const REGEX_SIZE_LIMIT: usize = 1 << 22;

/// The built-in PDP (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct BuiltinPdp;

/// The principal's managed-group regexes that compile; others never match (as in Cerbos).
fn managed_regexes(principal: &Principal) -> Vec<regex::Regex> {
    let Some(Value::Array(items)) = principal.attr.get(attr::MANAGED_GROUP_REGEXES) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|re| regex::RegexBuilder::new(re).size_limit(REGEX_SIZE_LIMIT).build().ok())
        .collect()
}

/// Whether the string attribute `name` of `resource` is present and matched by one of `regexes`.
fn attr_matches(resource: &Resource, name: &str, regexes: &[regex::Regex]) -> bool {
    match resource.attr.get(name) {
        Some(Value::String(s)) => regexes.iter().any(|re| re.is_match(s)),
        _ => false,
    }
}

/// Whether the attribute `name` of `resource` is the boolean `want` (missing or mistyped: no).
fn attr_is(resource: &Resource, name: &str, want: bool) -> bool {
    resource.attr.get(name) == Some(&Value::Bool(want))
}

/// Whether the list attribute `name` of `resource` holds only strings, each matched by one of `regexes`.
fn all_match(resource: &Resource, name: &str, regexes: &[regex::Regex]) -> bool {
    match resource.attr.get(name) {
        Some(Value::Array(items)) => items
            .iter()
            .all(|v| v.as_str().is_some_and(|s| regexes.iter().any(|re| re.is_match(s)))),
        _ => false,
    }
}

/// Whether one of the principal's mapping scopes covers the mapping: its group regex matches the owner
/// and the mapping's path bound starts with its path prefix. Malformed entries never match (as in Cerbos,
/// where they make the condition fail).
fn scope_covers(principal: &Principal, resource: &Resource) -> bool {
    let (Some(Value::String(owner)), Some(Value::String(bound))) = (
        resource.attr.get(attr::OWNER_GROUP),
        resource.attr.get(attr::PATH_BOUND),
    ) else {
        return false;
    };
    let Some(Value::Array(scopes)) = principal.attr.get(attr::MAPPING_SCOPES) else {
        return false;
    };
    scopes.iter().any(|scope| {
        let (Some(Value::String(re)), Some(Value::String(prefix))) = (scope.get("groupRegex"), scope.get("pathPrefix"))
        else {
            return false;
        };
        let owner_matches = regex::RegexBuilder::new(re)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .is_ok_and(|re| re.is_match(owner));
        owner_matches && bound.starts_with(prefix.as_str())
    })
}

/// Whether the request path of a `mapping:explain` resource lies inside one of the principal's mapping
/// scopes: it starts with the scope's path prefix and goes on after it (`**` needs a segment). A prefix
/// ends in `/`, so `/gox` is not inside `/go/**`, nor `/go`, nor `/` inside `/**`.
fn explain_in_scope(principal: &Principal, resource: &Resource) -> bool {
    let Some(Value::String(path)) = resource.attr.get(attr::REQUEST_PATH) else {
        return false;
    };
    let Some(Value::Array(scopes)) = principal.attr.get(attr::MAPPING_SCOPES) else {
        return false;
    };
    scopes.iter().any(|scope| {
        matches!(scope.get("pathPrefix"), Some(Value::String(prefix))
            if path.starts_with(prefix.as_str()) && path.len() > prefix.len())
    })
}

impl BuiltinPdp {
    /// Decides one action; the same as [`Pdp::check`] for one action, without the async.
    pub fn decide(principal: &Principal, resource: &Resource, action: &str) -> Decision {
        Self::decide_with(principal, &managed_regexes(principal), resource, action)
    }

    fn decide_with(principal: &Principal, regexes: &[regex::Regex], resource: &Resource, act: &str) -> Decision {
        let kind = resource.kind.as_str();
        if !pack::KINDS.contains(&kind) {
            return Decision::Deny;
        }
        if principal.has_role(pack::SUPERADMIN_ROLE) {
            return Decision::Allow;
        }
        let allowed = match (kind, act) {
            (
                pack::KIND_GROUP,
                action::GROUP_CREATE | action::GROUP_DELETE | action::GROUP_ADD_MEMBER | action::GROUP_REMOVE_MEMBER,
            ) => {
                attr_matches(resource, attr::GROUP_ID, regexes)
                    && attr_is(resource, attr::MANAGES_GROUPS, false)
                    && attr_is(resource, attr::PRIVILEGED, false)
                    && all_match(resource, attr::GROUP_ROLES, regexes)
            }
            (pack::KIND_GROUP, action::GROUP_ASSIGN_ROLE | action::GROUP_REMOVE_ROLE) => {
                attr_matches(resource, attr::GROUP_ID, regexes)
                    && attr_matches(resource, attr::ROLE_ID, regexes)
                    && attr_is(resource, attr::PRIVILEGED, false)
            }
            (pack::KIND_MAPPING, action::MAPPING_CREATE | action::MAPPING_UPDATE | action::MAPPING_DELETE) => {
                matches!(resource.attr.get(attr::OWNER_GROUP), Some(Value::String(s)) if !s.is_empty())
                    && attr_is(resource, attr::REGEX, false)
                    && attr_is(resource, attr::DEFAULT_PRIORITY, true)
                    && scope_covers(principal, resource)
            }
            (pack::KIND_MAPPING, action::MAPPING_EXPLAIN) => explain_in_scope(principal, resource),
            _ => false,
        };
        if allowed { Decision::Allow } else { Decision::Deny }
    }
}

#[async_trait]
impl Pdp for BuiltinPdp {
    async fn check(&self, principal: &Principal, resource: &Resource, actions: &[&str]) -> Result<Vec<Decision>> {
        if actions.is_empty() {
            return Err(Error::invalid("a check needs at least one action"));
        }
        let regexes = managed_regexes(principal);
        Ok(actions
            .iter()
            .map(|a| Self::decide_with(principal, &regexes, resource, a))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::PathPattern;
    use crate::model::{GroupName, GroupPattern, PathScope, RoleName, Subject};

    fn caller(superadmin: bool, patterns: &[&str]) -> Principal {
        let patterns: Vec<pack::ManagedRight> = patterns
            .iter()
            .map(|p| (GroupPattern::parse(*p).unwrap(), Some(PathScope::parse("/**").unwrap())))
            .collect();
        pack::principal(&Subject::parse("alice").unwrap(), ["go:admin"], superadmin, &patterns)
    }

    fn g(name: &str) -> GroupName {
        GroupName::parse(name).unwrap()
    }

    #[test]
    fn rules() {
        let mgr = caller(false, &["go:%"]);
        let d = |p: &Principal, r: &Resource, a: &str| BuiltinPdp::decide(p, r, a);
        assert_eq!(
            d(&mgr, &pack::new_group(&g("go:x")), action::GROUP_ADD_MEMBER),
            Decision::Allow
        );
        assert_eq!(
            d(&mgr, &pack::new_group(&g("rmi:x")), action::GROUP_ADD_MEMBER),
            Decision::Deny
        );
        assert_eq!(
            d(&mgr, &pack::new_group(&g("go:x")), action::GROUP_ASSIGN_ROLE),
            Decision::Deny,
            "no roleId"
        );
        let role = RoleName::parse("go:r").unwrap();
        assert_eq!(
            d(
                &mgr,
                &pack::group_role(&g("go:x"), &role, false),
                action::GROUP_ASSIGN_ROLE
            ),
            Decision::Allow
        );
        assert_eq!(
            d(
                &mgr,
                &pack::group_role(&g("go:x"), &role, true),
                action::GROUP_ASSIGN_ROLE
            ),
            Decision::Deny
        );
        assert_eq!(
            d(
                &mgr,
                &pack::mapping(None, None, &PathPattern::parse("/x").unwrap(), 0),
                action::MAPPING_CREATE
            ),
            Decision::Deny
        );
        assert_eq!(
            d(
                &mgr,
                &pack::mapping(None, Some(&g("go:x")), &PathPattern::parse("/x").unwrap(), 0),
                action::MAPPING_CREATE
            ),
            Decision::Allow
        );
        assert_eq!(d(&mgr, &pack::system(), action::RECONCILE), Decision::Deny);
        let root = caller(true, &[]);
        assert_eq!(d(&root, &pack::system(), action::RECONCILE), Decision::Allow);
        assert_eq!(d(&root, &pack::system(), "anything"), Decision::Allow);
        assert_eq!(
            d(&root, &Resource::new("course", "c1"), "course:create"),
            Decision::Deny
        );
    }

    proptest::proptest! {
        /// A management right lets its holder manage exactly the groups its LIKE pattern matches.
        #[test]
        fn decisions_follow_like_matching(pattern in "[ab:%_]{1,6}", name in "[ab]{1,3}(:[ab]{1,3}){0,2}") {
            let pat = GroupPattern::parse(pattern).unwrap();
            let group = g(&name);
            let p = pack::principal(&Subject::parse("m").unwrap(), Vec::<String>::new(), false, &[(pat.clone(), None)]);
            let got = BuiltinPdp::decide(&p, &pack::new_group(&group), action::GROUP_ADD_MEMBER);
            proptest::prop_assert_eq!(got == Decision::Allow, pat.matches(&group));
        }
    }

    #[test]
    fn bad_regexes_never_match() {
        let p = Principal::new("x", ["user"]).with_attr(attr::MANAGED_GROUP_REGEXES, vec!["(", "^go:.*$"]);
        assert_eq!(
            BuiltinPdp::decide(&p, &pack::new_group(&g("go:x")), action::GROUP_CREATE),
            Decision::Allow
        );
        let p = Principal::new("x", ["user"]).with_attr(attr::MANAGED_GROUP_REGEXES, vec!["("]);
        assert_eq!(
            BuiltinPdp::decide(&p, &pack::new_group(&g("go:x")), action::GROUP_CREATE),
            Decision::Deny
        );
        let p = Principal::new("x", ["user"]).with_attr(attr::MANAGED_GROUP_REGEXES, "^go:.*$");
        assert_eq!(
            BuiltinPdp::decide(&p, &pack::new_group(&g("go:x")), action::GROUP_CREATE),
            Decision::Deny
        );
    }
}
