//! Principal ids and the principal policies Heimdall pushes to Cerbos for its users.
//!
//! # Principal ids
//!
//! Cerbos rewrites some characters in principal names (`bob@example.com` is stored as
//! `principal.bob_example.com.vdefault`), so two subjects could end up with one policy. Heimdall therefore
//! never sends a subject as it is: [`principal_id`] encodes it into `[a-z0-9_]` (`a`–`z` and `0`–`9`
//! stay, every other byte of its UTF-8 becomes `_` and two lowercase hex digits), which Cerbos keeps
//! unchanged. The encoding is a prefix code, so it is injective, and [`subject_from_principal_id`]
//! reverses it. An adapter computes it from the token's subject alone.
//!
//! ```
//! use heimdall_core::model::Subject;
//! use heimdall_core::pdp::{policy_id, principal_id, subject_from_principal_id};
//!
//! let bob = Subject::parse("Bob@example.com").unwrap();
//! assert_eq!(principal_id(&bob), "_42ob_40example_2ecom");
//! assert_eq!(policy_id(&bob), "principal._42ob_40example_2ecom.vdefault");
//! assert_eq!(subject_from_principal_id("_42ob_40example_2ecom").unwrap(), bob);
//! ```
//!
//! # Principal policies
//!
//! A user's principal policy lists, per resource kind, the actions their roles allow or deny
//! ([`principal_policy`]). In Cerbos a principal policy's allow or deny is final for its action, so a
//! check with the roles `["user"]` alone is enough for an adapter. Every such policy carries the
//! annotation [`HEIMDALL_ANNOTATION`]` = `[`PRINCIPAL_POLICY_MARK`] (annotations survive the Admin API
//! round trip), which is how reconciliation tells Heimdall's policies from others.
//!
//! Resource kinds that start with [`RESERVED_KIND_PREFIX`] belong to the admin policy pack: a principal
//! policy never carries rules on them (they would override the pack), and the store should refuse them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::model::{ActionName, Effect, Subject};

/// The annotation key (in `metadata.annotations`) that marks a policy as Heimdall's.
pub const HEIMDALL_ANNOTATION: &str = "heimdall.managed";
/// The annotation value of a user's principal policy.
pub const PRINCIPAL_POLICY_MARK: &str = "principal-policy";
/// The annotation value of the admin policy pack's resource policies.
pub const ADMIN_PACK_MARK: &str = "admin-pack";
/// Resource kinds with this prefix are Heimdall's own (see [`crate::pdp::pack`]).
pub const RESERVED_KIND_PREFIX: &str = "heimdall_";
/// A regular expression (RE2 and `regex`) matching exactly the outputs of [`principal_id`].
pub const PRINCIPAL_ID_REGEX: &str = "^([a-z0-9]|_[0-9a-f]{2})+$";

/// The principal id of `subject`: a reversible encoding into `[a-z0-9_]` (see the module docs).
pub fn principal_id(subject: &Subject) -> String {
    let s = subject.as_str();
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "_{b:02x}");
        }
    }
    out
}

/// The subject whose [`principal_id`] is `id`; invalid input when `id` is not such an encoding.
pub fn subject_from_principal_id(id: &str) -> Result<Subject> {
    let bad = || Error::invalid(format!("{id:?} is not a Heimdall principal id"));
    let bytes = id.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b @ (b'a'..=b'z' | b'0'..=b'9') => {
                out.push(b);
                i += 1;
            }
            b'_' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let digit = |h: u8| match h {
                    b'0'..=b'9' => Some(h - b'0'),
                    b'a'..=b'f' => Some(h - b'a' + 10),
                    _ => None,
                };
                let (hi, lo) = (digit(hex[0]).ok_or_else(bad)?, digit(hex[1]).ok_or_else(bad)?);
                let b = hi << 4 | lo;
                // A byte that would have been kept as is was not encoded by principal_id.
                if b.is_ascii_lowercase() || b.is_ascii_digit() {
                    return Err(bad());
                }
                out.push(b);
                i += 3;
            }
            _ => return Err(bad()),
        }
    }
    let s = String::from_utf8(out).map_err(|_| bad())?;
    Subject::parse(s).map_err(|_| bad())
}

/// The Cerbos policy id of `subject`'s principal policy: `principal.<principal_id>.vdefault`.
pub fn policy_id(subject: &Subject) -> String {
    format!("principal.{}.vdefault", principal_id(subject))
}

/// The subject whose principal policy has the Cerbos id `id` (the inverse of [`policy_id`]); invalid
/// input for any other id.
pub fn subject_from_policy_id(id: &str) -> Result<Subject> {
    id.strip_prefix("principal.")
        .and_then(|rest| rest.strip_suffix(".vdefault"))
        .ok_or_else(|| Error::invalid(format!("{id:?} is not the id of a Heimdall principal policy")))
        .and_then(subject_from_principal_id)
}

/// The resource kind an action applies to by default: the part of its name before the last `:`
/// (`course:create` → `course`, `go:course:read` → `go:course`), or the whole name when it has no `:`.
///
/// Cerbos 0.55 accepts `:` in resource kinds, both in principal policies and in check requests, so the
/// kind is used as it is, without any transformation.
pub fn resource_kind_for_action(action: &ActionName) -> String {
    let name = action.as_str();
    match name.rfind(':') {
        Some(i) => name[..i].to_owned(),
        None => name.to_owned(),
    }
}

/// Whether `kind` is reserved for Heimdall's own admin resources (it starts with [`RESERVED_KIND_PREFIX`]).
pub fn is_reserved_resource_kind(kind: &str) -> bool {
    kind.starts_with(RESERVED_KIND_PREFIX)
}

/// A Cerbos rule name (`^[a-zA-Z][\w@.-]*$`) for the `n`th action of a policy.
fn rule_name(effect: Effect, n: usize, action: &ActionName) -> String {
    // Action names hold only `A-Z a-z 0-9 _ . -` and `:`, so replacing `:` is enough.
    format!("{}_{n}_{}", effect.as_str(), action.as_str().replace(':', "."))
}

/// `subject`'s principal policy for Cerbos' Admin API, as one element of `PUT /admin/policy`'s
/// `policies`, or `None` when there is nothing to say (the caller then deletes [`policy_id`] instead).
///
/// `permissions` are `(resource kind, action, effect)`; a deny beats an allow of the same action on the
/// same kind; rules on reserved kinds (see [`is_reserved_resource_kind`]) and on empty kinds are
/// dropped. The output is deterministic (sorted), so equal inputs give equal policies.
pub fn principal_policy(subject: &Subject, permissions: &[(String, ActionName, Effect)]) -> Option<Value> {
    let mut by_kind: BTreeMap<&str, BTreeMap<&ActionName, Effect>> = BTreeMap::new();
    for (kind, action, effect) in permissions {
        if kind.is_empty() || is_reserved_resource_kind(kind) {
            tracing::warn!(kind = %kind, action = %action, "skipping a permission on a reserved resource kind");
            continue;
        }
        let slot = by_kind
            .entry(kind.as_str())
            .or_default()
            .entry(action)
            .or_insert(*effect);
        if *effect == Effect::Deny {
            *slot = Effect::Deny;
        }
    }
    if by_kind.is_empty() {
        return None;
    }
    let mut n = 0;
    let rules: Vec<Value> = by_kind
        .into_iter()
        .map(|(kind, actions)| {
            let actions: Vec<Value> = actions
                .into_iter()
                .map(|(action, effect)| {
                    n += 1;
                    json!({
                        "action": action.as_str(),
                        "effect": match effect { Effect::Allow => "EFFECT_ALLOW", Effect::Deny => "EFFECT_DENY" },
                        "name": rule_name(effect, n, action),
                    })
                })
                .collect();
            json!({ "resource": kind, "actions": actions })
        })
        .collect();
    Some(json!({
        "apiVersion": "api.cerbos.dev/v1",
        "metadata": { "annotations": { HEIMDALL_ANNOTATION: PRINCIPAL_POLICY_MARK } },
        "principalPolicy": {
            "principal": principal_id(subject),
            "version": "default",
            "rules": rules,
        },
    }))
}

/// Whether a policy (as the Admin API returns it) carries the annotation [`HEIMDALL_ANNOTATION`] with
/// the value `mark`.
pub fn has_heimdall_mark(policy: &Value, mark: &str) -> bool {
    policy
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(HEIMDALL_ANNOTATION))
        .and_then(Value::as_str)
        == Some(mark)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn subject(s: &str) -> Subject {
        Subject::parse(s).unwrap()
    }

    #[test]
    fn encodes_into_the_safe_alphabet() {
        for (s, id) in [
            ("alice", "alice"),
            ("12345678900", "12345678900"),
            ("bob@example.com", "bob_40example_2ecom"),
            ("bob_example.com", "bob_5fexample_2ecom"),
            ("Bob", "_42ob"),
            ("a b", "a_20b"),
            ("é", "_c3_a9"),
        ] {
            assert_eq!(principal_id(&subject(s)), id, "{s}");
            assert_eq!(subject_from_principal_id(id).unwrap().as_str(), s);
            let policy = policy_id(&subject(s));
            assert_eq!(subject_from_policy_id(&policy).unwrap().as_str(), s);
        }
    }

    #[test]
    fn rejects_what_is_not_an_encoding() {
        for bad in [
            "", "Bob", "a-b", "_4", "_4g", "_41_", "_61", "_30", "_c3", "_0a", "_20a",
        ] {
            assert!(subject_from_principal_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn policy_ids() {
        for bad in [
            "principal.Bob.vdefault",
            "resource.bob.vdefault",
            "principal.bob.v1",
            "bob",
        ] {
            assert!(subject_from_policy_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_regex_matches_the_encoding() {
        let re = regex::Regex::new(PRINCIPAL_ID_REGEX).unwrap();
        assert!(re.is_match("bob_40example_2ecom"));
        assert!(!re.is_match("bob@example.com"));
        assert!(!re.is_match("_4"));
    }

    proptest! {
        #[test]
        fn round_trip(s in "\\PC{1,40}") {
            if let Ok(sub) = Subject::parse(s) {
                let id = principal_id(&sub);
                prop_assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
                prop_assert!(regex::Regex::new(PRINCIPAL_ID_REGEX).unwrap().is_match(&id));
                prop_assert_eq!(subject_from_principal_id(&id).unwrap(), sub);
            }
        }

        #[test]
        fn injective(a in "[a-zA-Z0-9@._ -]{1,12}", b in "[a-zA-Z0-9@._ -]{1,12}") {
            if let (Ok(sa), Ok(sb)) = (Subject::parse(a), Subject::parse(b)) {
                prop_assert_eq!(sa == sb, principal_id(&sa) == principal_id(&sb));
            }
        }
    }

    #[test]
    fn resource_kinds() {
        let kind = |a: &str| resource_kind_for_action(&ActionName::parse(a).unwrap());
        assert_eq!(kind("course:create"), "course");
        assert_eq!(kind("go:course:read"), "go:course");
        assert_eq!(kind("reconcile"), "reconcile");
        assert!(is_reserved_resource_kind("heimdall_group"));
        assert!(!is_reserved_resource_kind("course"));
    }

    fn perm(kind: &str, action: &str, effect: Effect) -> (String, ActionName, Effect) {
        (kind.to_owned(), ActionName::parse(action).unwrap(), effect)
    }

    #[test]
    fn empty_permissions_give_no_policy() {
        assert_eq!(principal_policy(&subject("bob"), &[]), None);
        let only_reserved = [perm("heimdall_group", "group:create", Effect::Allow)];
        assert_eq!(principal_policy(&subject("bob"), &only_reserved), None);
    }

    #[test]
    fn principal_policy_shape() {
        let p = principal_policy(
            &subject("bob@x"),
            &[
                perm("go:course", "go:course:read", Effect::Allow),
                perm("course", "course:create", Effect::Allow),
                perm("course", "course:delete", Effect::Allow),
                perm("course", "course:delete", Effect::Deny),
                perm("heimdall_system", "reconcile", Effect::Allow),
            ],
        )
        .unwrap();
        assert_eq!(
            p,
            json!({
                "apiVersion": "api.cerbos.dev/v1",
                "metadata": { "annotations": { "heimdall.managed": "principal-policy" } },
                "principalPolicy": {
                    "principal": "bob_40x",
                    "version": "default",
                    "rules": [
                        { "resource": "course", "actions": [
                            { "action": "course:create", "effect": "EFFECT_ALLOW", "name": "allow_1_course.create" },
                            { "action": "course:delete", "effect": "EFFECT_DENY", "name": "deny_2_course.delete" },
                        ]},
                        { "resource": "go:course", "actions": [
                            { "action": "go:course:read", "effect": "EFFECT_ALLOW", "name": "allow_3_go.course.read" },
                        ]},
                    ],
                },
            })
        );
        assert!(has_heimdall_mark(&p, PRINCIPAL_POLICY_MARK));
        let name_re = regex::Regex::new(r"^[a-zA-Z][\w@.-]*$").unwrap();
        for rule in p["principalPolicy"]["rules"].as_array().unwrap() {
            for a in rule["actions"].as_array().unwrap() {
                assert!(name_re.is_match(a["name"].as_str().unwrap()));
            }
        }
    }
}
