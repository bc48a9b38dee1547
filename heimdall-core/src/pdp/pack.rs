//! The admin policy pack: Cerbos resource policies for Heimdall's own admin resources, and the
//! principals and resources the facade builds to ask about them.
//!
//! The pack lives in `heimdall-core/policies/` as Cerbos policy files (JSON), is embedded in the binary,
//! and is installed into a Cerbos with [`install_admin_pack`]. [`crate::pdp::BuiltinPdp`] applies exactly
//! the same rules without a Cerbos; one decision table in the tests runs against both.
//!
//! # The rules
//!
//! - The role [`SUPERADMIN_ROLE`] may do everything on every kind of the pack.
//! - A caller with a regex in [`attr::MANAGED_GROUP_REGEXES`] that matches the resource's
//!   [`attr::GROUP_ID`] may `group:create`, `group:delete`, `group:add_member` and `group:remove_member`,
//!   when the group holds no management right ([`attr::MANAGES_GROUPS`] is `false`), not the superadmin
//!   role ([`attr::PRIVILEGED`] is `false`), and only roles the caller could grant (each of
//!   [`attr::GROUP_ROLES`] matches one of the regexes): no manager gains rights by joining a group.
//! - `group:assign_role` and `group:remove_role` also need a regex matching [`attr::ROLE_ID`] and
//!   [`attr::PRIVILEGED`] (the role is the superadmin role) to be `false`.
//! - A caller may `mapping:create`, `mapping:update` and `mapping:delete` a route mapping of default
//!   priority ([`attr::REGEX`] `false`, [`attr::DEFAULT_PRIORITY`] `true`) when one of their
//!   [`attr::MAPPING_SCOPES`] has a group regex matching the mapping's non-empty [`attr::OWNER_GROUP`] and
//!   a path prefix that the mapping's [`attr::PATH_BOUND`] starts with (see [`crate::model::PathScope`]):
//!   a manager's mappings stay inside the path scope of the right that lets him manage the owner.
//! - A caller may `mapping:explain` a path ([`attr::REQUEST_PATH`]) that starts with the path prefix of one
//!   of their [`attr::MAPPING_SCOPES`] (whatever its group regex) and is longer than it: a manager explains
//!   requests inside the path scopes of his rights.
//! - Everything else is denied: only superadmins read the audit log, reconcile, and create, list or
//!   revoke API keys.
//!
//! Conditions are fixed templates: the patterns travel as data in the principal's attributes (anchored
//! regexes from [`GroupPattern::to_regex`]), never as text in a policy.
//!
//! # Example
//!
//! ```
//! use heimdall_core::model::{GroupName, GroupPattern, Subject};
//! use heimdall_core::pdp::pack;
//!
//! let caller = pack::principal(
//!     &Subject::parse("alice").unwrap(),
//!     ["go:admin"],
//!     false,
//!     &[(GroupPattern::parse("go:%").unwrap(), None)],
//! );
//! assert_eq!(caller.roles, ["go:admin", "user"]);
//! let group = pack::new_group(&GroupName::parse("go:x").unwrap());
//! assert_eq!(group.id, "group:go:x");
//! ```

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::mapping::PathPattern;
use crate::model::{GroupName, GroupPattern, PathScope, RoleName, Subject, path_bound};
use crate::pdp::cerbos::CerbosClient;
use crate::pdp::principal::principal_id;
use crate::pdp::{Principal, Resource};

/// The role every principal holds.
pub const USER_ROLE: &str = "user";
/// The role a principal holds when it holds the configured superadmin role.
pub const SUPERADMIN_ROLE: &str = "heimdall_superadmin";

/// Groups and their members and roles; id `group:<name>`.
pub const KIND_GROUP: &str = "heimdall_group";
/// Roles; id `role:<name>`.
pub const KIND_ROLE: &str = "heimdall_role";
/// Users; id `user:<subject>`.
pub const KIND_USER: &str = "heimdall_user";
/// Endpoint mappings; id `mapping:<id>` or `mapping:new`.
pub const KIND_MAPPING: &str = "heimdall_mapping";
/// Group-management rights; id `management_right:<manager group>:<pattern>`.
pub const KIND_MANAGEMENT_RIGHT: &str = "heimdall_management_right";
/// Heimdall itself; id `system`.
pub const KIND_SYSTEM: &str = "heimdall_system";

/// Every resource kind of the pack.
pub const KINDS: [&str; 6] = [
    KIND_GROUP,
    KIND_ROLE,
    KIND_USER,
    KIND_MAPPING,
    KIND_MANAGEMENT_RIGHT,
    KIND_SYSTEM,
];

/// Attribute names of the pack's principals and resources.
pub mod attr {
    /// Principal: the caller's subject.
    pub const SUBJECT: &str = "subject";
    /// Principal: anchored regexes of the groups the caller may manage.
    pub const MANAGED_GROUP_REGEXES: &str = "managedGroupRegexes";
    /// Group: its name.
    pub const GROUP_ID: &str = "groupId";
    /// Role, and group for role assignment: the role's name.
    pub const ROLE_ID: &str = "roleId";
    /// Group: whether it holds the configured superadmin role; group for role assignment: whether the role
    /// is the configured superadmin role.
    pub const PRIVILEGED: &str = "privileged";
    /// Group: whether it holds group-management rights (a manager group).
    pub const MANAGES_GROUPS: &str = "managesGroups";
    /// Group: the roles it holds (names).
    pub const GROUP_ROLES: &str = "groupRoles";
    /// Principal: `[{"groupRegex": ..., "pathPrefix": ...}]`, one per management right with a path scope.
    pub const MAPPING_SCOPES: &str = "mappingScopes";
    /// Mapping: its owner group's name, or `""`.
    pub const OWNER_GROUP: &str = "ownerGroup";
    /// Mapping: what every path its pattern matches starts with (`""` for a regular expression or the root).
    pub const PATH_BOUND: &str = "pathBound";
    /// Mapping: whether its pattern is a regular expression.
    pub const REGEX: &str = "regex";
    /// Mapping: whether its priority is the default (0).
    pub const DEFAULT_PRIORITY: &str = "defaultPriority";
    /// Management right: the group whose members hold it.
    pub const MANAGER_GROUP: &str = "managerGroup";
    /// Management right: its target pattern, as written.
    pub const TARGET_PATTERN: &str = "targetPattern";
    /// Mapping, for `mapping:explain`: the path to explain, as received up to its query string.
    pub const REQUEST_PATH: &str = "requestPath";
}

/// The actions of the pack.
pub mod action {
    /// Create a group.
    pub const GROUP_CREATE: &str = "group:create";
    /// Delete a group.
    pub const GROUP_DELETE: &str = "group:delete";
    /// Add a member to a group.
    pub const GROUP_ADD_MEMBER: &str = "group:add_member";
    /// Remove a member from a group.
    pub const GROUP_REMOVE_MEMBER: &str = "group:remove_member";
    /// Give a group a role.
    pub const GROUP_ASSIGN_ROLE: &str = "group:assign_role";
    /// Take a role from a group.
    pub const GROUP_REMOVE_ROLE: &str = "group:remove_role";
    /// Create a role.
    pub const ROLE_CREATE: &str = "role:create";
    /// Delete a role.
    pub const ROLE_DELETE: &str = "role:delete";
    /// Grant a role a permission.
    pub const ROLE_GRANT_PERMISSION: &str = "role:grant_permission";
    /// Give a user a role directly.
    pub const USER_ASSIGN_ROLE: &str = "user:assign_role";
    /// Create a mapping.
    pub const MAPPING_CREATE: &str = "mapping:create";
    /// Change a mapping.
    pub const MAPPING_UPDATE: &str = "mapping:update";
    /// Delete a mapping.
    pub const MAPPING_DELETE: &str = "mapping:delete";
    /// Explain why a request to a path would be allowed or denied.
    pub const MAPPING_EXPLAIN: &str = "mapping:explain";
    /// Create a management right.
    pub const MANAGEMENT_RIGHT_CREATE: &str = "management_right:create";
    /// Delete a management right.
    pub const MANAGEMENT_RIGHT_DELETE: &str = "management_right:delete";
    /// Run a reconciliation.
    pub const RECONCILE: &str = "reconcile";
    /// Read the audit log.
    pub const AUDIT_READ: &str = "audit:read";
    /// Create an API key.
    pub const API_KEY_CREATE: &str = "api_key:create";
    /// List API keys (never their secrets).
    pub const API_KEY_READ: &str = "api_key:read";
    /// Revoke an API key.
    pub const API_KEY_REVOKE: &str = "api_key:revoke";
}

/// The pack's policy files, `(file name, JSON text)`, as embedded from `heimdall-core/policies/`.
pub const POLICY_FILES: [(&str, &str); 6] = [
    (
        "heimdall_group.json",
        include_str!("../../policies/heimdall_group.json"),
    ),
    ("heimdall_role.json", include_str!("../../policies/heimdall_role.json")),
    ("heimdall_user.json", include_str!("../../policies/heimdall_user.json")),
    (
        "heimdall_mapping.json",
        include_str!("../../policies/heimdall_mapping.json"),
    ),
    (
        "heimdall_management_right.json",
        include_str!("../../policies/heimdall_management_right.json"),
    ),
    (
        "heimdall_system.json",
        include_str!("../../policies/heimdall_system.json"),
    ),
];

/// The pack's policies, parsed, ready for `PUT /admin/policy`.
pub fn admin_pack() -> Result<Vec<Value>> {
    POLICY_FILES
        .iter()
        .map(|(name, text)| {
            serde_json::from_str(text)
                .map_err(|e| Error::unexpected(format!("embedded policy {name} is not valid JSON")).with_source(e))
        })
        .collect()
}

/// Installs (adds or replaces) the admin policy pack into the Cerbos behind `client`, in one Admin API
/// call. Not retried: the caller decides (installing again is harmless).
pub async fn install_admin_pack(client: &CerbosClient) -> Result<()> {
    client.put_policies(&admin_pack()?).await
}

/// One management right of a caller, as the pack sees it: the groups it covers, and where their mappings may
/// lie (`None`: nowhere).
pub type ManagedRight = (GroupPattern, Option<PathScope>);

/// The principal for a caller: `roles` (their effective role names, as stored) plus [`USER_ROLE`], plus
/// [`SUPERADMIN_ROLE`] when `superadmin` (and only then: a stored role of that name is dropped); the
/// attributes carry the subject, the anchored regexes of the groups `rights` cover, and the rights' path
/// scopes.
pub fn principal<R: Into<String>>(
    subject: &Subject,
    roles: impl IntoIterator<Item = R>,
    superadmin: bool,
    rights: &[ManagedRight],
) -> Principal {
    let mut all: Vec<String> = roles.into_iter().map(Into::into).collect();
    // Only the superadmin flag grants the superadmin role, never a stored role of the same name.
    all.retain(|r| r != SUPERADMIN_ROLE);
    all.push(USER_ROLE.to_owned());
    if superadmin {
        all.push(SUPERADMIN_ROLE.to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    all.retain(|r| seen.insert(r.clone()));
    let mut regexes: Vec<String> = rights.iter().map(|(p, _)| p.to_regex()).collect();
    regexes.sort();
    regexes.dedup();
    let mut scopes: Vec<(String, String)> = rights
        .iter()
        .filter_map(|(p, scope)| Some((p.to_regex(), scope.as_ref()?.path_prefix().to_owned())))
        .collect();
    scopes.sort();
    scopes.dedup();
    let scopes: Vec<Value> = scopes
        .into_iter()
        .map(|(re, prefix)| json!({"groupRegex": re, "pathPrefix": prefix}))
        .collect();
    Principal::new(principal_id(subject), all)
        .with_attr(attr::SUBJECT, subject.as_str())
        .with_attr(attr::MANAGED_GROUP_REGEXES, regexes)
        .with_attr(attr::MAPPING_SCOPES, scopes)
}

/// A group, for `group:create`, `group:delete`, `group:add_member` and `group:remove_member`:
/// `manages_groups` is whether it holds group-management rights, `roles` the roles it holds and
/// `privileged` whether one of them is the configured superadmin role. Only superadmins may change the
/// members of a group that holds rights or roles the caller could not grant himself, or delete it.
pub fn group(name: &GroupName, manages_groups: bool, roles: &[RoleName], privileged: bool) -> Resource {
    let roles: Vec<&str> = roles.iter().map(RoleName::as_str).collect();
    Resource::new(KIND_GROUP, format!("group:{name}"))
        .with_attr(attr::GROUP_ID, name.as_str())
        .with_attr(attr::MANAGES_GROUPS, manages_groups)
        .with_attr(attr::GROUP_ROLES, roles)
        .with_attr(attr::PRIVILEGED, privileged)
}

/// A group about to be created: it holds no rights and no roles yet.
pub fn new_group(name: &GroupName) -> Resource {
    group(name, false, &[], false)
}

/// A group with the role being given or taken, for `group:assign_role` and `group:remove_role`;
/// `privileged` is whether `role` is the configured superadmin role.
pub fn group_role(group_name: &GroupName, role: &RoleName, privileged: bool) -> Resource {
    Resource::new(KIND_GROUP, format!("group:{group_name}"))
        .with_attr(attr::GROUP_ID, group_name.as_str())
        .with_attr(attr::ROLE_ID, role.as_str())
        .with_attr(attr::PRIVILEGED, privileged)
}

/// A role, for `role:create`, `role:delete` and `role:grant_permission`.
pub fn role(name: &RoleName) -> Resource {
    Resource::new(KIND_ROLE, format!("role:{name}")).with_attr(attr::ROLE_ID, name.as_str())
}

/// A user, for `user:assign_role`.
pub fn user(subject: &Subject) -> Resource {
    Resource::new(KIND_USER, format!("user:{subject}")).with_attr(attr::SUBJECT, subject.as_str())
}

/// A mapping (`id` `None`: one being created) with its owner group, pattern and priority, for
/// `mapping:create`, `mapping:update` and `mapping:delete`.
pub fn mapping(id: Option<i64>, owner_group: Option<&GroupName>, pattern: &PathPattern, priority: i32) -> Resource {
    let id = id.map_or_else(|| "mapping:new".to_owned(), |id| format!("mapping:{id}"));
    Resource::new(KIND_MAPPING, id)
        .with_attr(attr::OWNER_GROUP, owner_group.map_or("", GroupName::as_str))
        .with_attr(attr::PATH_BOUND, path_bound(pattern).unwrap_or_default())
        .with_attr(attr::REGEX, pattern.is_regex())
        .with_attr(attr::DEFAULT_PRIORITY, priority == 0)
}

/// The explanation of a request to `request_path` (the path as received, up to its query string), for
/// `mapping:explain`.
pub fn explain(request_path: &str) -> Resource {
    Resource::new(KIND_MAPPING, "mapping:explain").with_attr(attr::REQUEST_PATH, request_path)
}

/// A management right, for `management_right:create` and `management_right:delete`.
pub fn management_right(manager_group: &GroupName, target_pattern: &GroupPattern) -> Resource {
    Resource::new(
        KIND_MANAGEMENT_RIGHT,
        format!("management_right:{manager_group}:{target_pattern}"),
    )
    .with_attr(attr::MANAGER_GROUP, manager_group.as_str())
    .with_attr(attr::TARGET_PATTERN, target_pattern.as_str())
}

/// Heimdall itself, for `reconcile`, `audit:read` and the API key actions (`api_key:create`, `api_key:read`,
/// `api_key:revoke`).
pub fn system() -> Resource {
    Resource {
        kind: KIND_SYSTEM.to_owned(),
        id: "system".to_owned(),
        attr: Map::new(),
    }
}

/// The pack's policies as one `PUT /admin/policy` body (for tools that install it by other means).
pub fn admin_pack_request() -> Result<Value> {
    Ok(json!({ "policies": admin_pack()? }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdp::principal::{ADMIN_PACK_MARK, has_heimdall_mark};

    #[test]
    fn the_pack_covers_every_kind_and_is_marked() {
        let pack = admin_pack().unwrap();
        let kinds: Vec<&str> = pack
            .iter()
            .map(|p| p["resourcePolicy"]["resource"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, KINDS);
        assert!(pack.iter().all(|p| has_heimdall_mark(p, ADMIN_PACK_MARK)));
    }

    #[test]
    fn principal_roles_and_attrs() {
        let p = principal(
            &Subject::parse("Bob").unwrap(),
            ["go:admin", "user"],
            true,
            &[
                (GroupPattern::parse("go:%").unwrap(), None),
                (
                    GroupPattern::parse("go:%").unwrap(),
                    Some(PathScope::parse("/go/**").unwrap()),
                ),
            ],
        );
        assert_eq!(p.id, "_42ob");
        assert_eq!(p.roles, ["go:admin", "user", "heimdall_superadmin"]);
        assert_eq!(p.attr[attr::MANAGED_GROUP_REGEXES], json!(["^go:.*$"]));
        assert_eq!(
            p.attr[attr::MAPPING_SCOPES],
            json!([{"groupRegex": "^go:.*$", "pathPrefix": "/go/"}])
        );
        assert_eq!(p.attr[attr::SUBJECT], json!("Bob"));
        let impostor = principal(&Subject::parse("eve").unwrap(), [SUPERADMIN_ROLE], false, &[]);
        assert_eq!(impostor.roles, [USER_ROLE]);
    }

    #[test]
    fn resources() {
        let g = GroupName::parse("go:x").unwrap();
        let route = PathPattern::parse("/go/courses/:id").unwrap();
        let m = mapping(None, None, &route, 0);
        assert_eq!(m.attr[attr::OWNER_GROUP], json!(""));
        assert_eq!(m.attr[attr::PATH_BOUND], json!("/go/courses/"));
        assert_eq!(m.attr[attr::DEFAULT_PRIORITY], json!(true));
        let re = mapping(Some(7), Some(&g), &PathPattern::parse("~/go/.*").unwrap(), 5);
        assert_eq!(re.id, "mapping:7");
        assert_eq!(re.attr[attr::PATH_BOUND], json!(""));
        assert_eq!(re.attr[attr::REGEX], json!(true));
        assert_eq!(re.attr[attr::DEFAULT_PRIORITY], json!(false));
        let r = group_role(&g, &RoleName::parse("go:r").unwrap(), false);
        assert_eq!(r.attr[attr::PRIVILEGED], json!(false));
        assert_eq!(r.attr[attr::GROUP_ID], json!("go:x"));
    }
}
