//! Policy decision points against a real Cerbos 0.55 (skipped without `HEIMDALL_CERBOS_BIN`, failing
//! with `CI=true`), plus the faults only a fake can show.

// Tests (and their helpers) may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use heimdall_core::ErrorKind;
use heimdall_core::mapping::PathPattern;
use heimdall_core::model::{ActionName, Effect, GroupName, GroupPattern, PathScope, RoleName, Subject};
use heimdall_core::pdp::cerbos::PolicyFilter;
use heimdall_core::pdp::pack::{self, action};
use heimdall_core::pdp::principal::{HEIMDALL_ANNOTATION, PRINCIPAL_POLICY_MARK};
use heimdall_core::pdp::{
    BuiltinPdp, CerbosClient, CerbosConfig, Decision, Pdp, Principal, Resource, policy_id, principal_id,
    principal_policy, subject_from_policy_id,
};
use serde_json::json;

use crate::support::cerbos::{self, Cerbos};
use crate::support::fake_cerbos::{FakeFailingCerbos, Fault};

const A: Decision = Decision::Allow;
const D: Decision = Decision::Deny;
/// Bound on waiting for a write to become visible in Cerbos (it usually takes a few ms).
const VISIBLE_WITHIN: Duration = Duration::from_secs(10);

/// Checks until Cerbos answers `want`, for at most [`VISIBLE_WITHIN`] (writes are visible within a
/// few ms, but not strictly read-your-writes).
async fn eventually(
    what: &str,
    client: &CerbosClient,
    p: &Principal,
    r: &Resource,
    actions: &[&str],
    want: &[Decision],
) {
    let deadline = Instant::now() + VISIBLE_WITHIN;
    loop {
        let got = client.check(p, r, actions).await.expect(what);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {got:?} after {VISIBLE_WITHIN:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------------
// The pack compiles.

#[test]
fn cerbos_compile_accepts_the_pack_and_rejects_a_broken_policy() {
    let Some(bin) = cerbos::cerbos_bin() else {
        return;
    };
    let pack_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (status, out) = cerbos::compile(&bin, &pack_dir);
    assert!(status.success(), "cerbos compile rejected the pack:\n{out}");

    // The pack plus a generated principal policy, as files, also compile.
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in pack::POLICY_FILES {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let bob = Subject::parse("bob@example.com").unwrap();
    let perms = [(
        "go:course".to_owned(),
        ActionName::parse("go:course:read").unwrap(),
        Effect::Allow,
    )];
    let policy = principal_policy(&bob, &perms).unwrap();
    std::fs::write(dir.path().join("bob.json"), policy.to_string()).unwrap();
    let (status, out) = cerbos::compile(&bin, dir.path());
    assert!(
        status.success(),
        "cerbos compile rejected a generated principal policy:\n{out}"
    );

    // A broken condition must be rejected, or this test could not fail.
    let broken = pack::POLICY_FILES[0]
        .1
        .replace("R.attr.privileged == false", "R.attr.privileged ==");
    assert_ne!(broken, pack::POLICY_FILES[0].1, "the template to break is gone");
    std::fs::write(dir.path().join(pack::POLICY_FILES[0].0), broken).unwrap();
    let (status, out) = cerbos::compile(&bin, dir.path());
    assert!(!status.success(), "cerbos compile accepted a broken policy:\n{out}");
    assert!(out.contains("privileged"), "{out}");
}

// ---------------------------------------------------------------------------------------------------
// One decision table, three answers: the expected one, the built-in PDP's and Cerbos' with the pack.

/// A caller: `(name, superadmin, stored roles, management rights: (pattern, path scope))`.
type Caller = (
    &'static str,
    bool,
    &'static [&'static str],
    &'static [(&'static str, Option<&'static str>)],
);

#[rustfmt::skip]
const CALLERS: &[Caller] = &[
    ("root", true, &["go:admin"], &[]),
    ("go_manager", false, &["go:admin"], &[("go:%", Some("/go/**"))]),
    ("course_manager", false, &[], &[("go:course:_", Some("/go/courses/**"))]),
    ("exact_manager", false, &[], &[("rmi:public", Some("/rmi/**"))]),
    ("multi_manager", false, &["rmi:editor"], &[("go:course:_", None), ("rmi:%", Some("/rmi/**"))]),
    ("escaped_manager", false, &[], &[("go:my\\_g", None)]),
    ("punct_manager", false, &[], &[("go:v1.x", None), ("go:my-team", None)]),
    ("everything_manager", false, &[], &[("%", Some("/**"))]),
    ("plain_user", false, &["go:admin"], &[]),
    ("impostor", false, &["heimdall_superadmin"], &[]),
];

#[derive(Debug, Clone, Copy)]
enum Target {
    Group(&'static str),
    /// A group that holds management rights itself.
    ManagerGroup(&'static str),
    /// A group holding roles; whether one of them is the superadmin role.
    GroupWithRoles(&'static str, &'static [&'static str], bool),
    GroupRole(&'static str, &'static str, bool),
    Role(&'static str),
    User(&'static str),
    /// A mapping: owner group, pattern, priority.
    Mapping(Option<&'static str>, &'static str, i32),
    Right(&'static str, &'static str),
    /// The explanation of a request to a path (`mapping:explain`).
    Explain(&'static str),
    System,
    Other(&'static str),
}
use Target::*;

fn gname(s: &str) -> GroupName {
    GroupName::parse(s).unwrap()
}

impl Target {
    fn resource(self) -> Resource {
        match self {
            Group(g) => pack::group(&gname(g), false, &[], false),
            ManagerGroup(g) => pack::group(&gname(g), true, &[], false),
            GroupWithRoles(g, roles, privileged) => {
                let roles: Vec<RoleName> = roles.iter().map(|r| RoleName::parse(*r).unwrap()).collect();
                pack::group(&gname(g), false, &roles, privileged)
            }
            GroupRole(g, r, privileged) => pack::group_role(&gname(g), &RoleName::parse(r).unwrap(), privileged),
            Role(r) => pack::role(&RoleName::parse(r).unwrap()),
            User(s) => pack::user(&Subject::parse(s).unwrap()),
            Mapping(owner, pattern, priority) => pack::mapping(
                None,
                owner.map(gname).as_ref(),
                &PathPattern::parse(pattern).unwrap(),
                priority,
            ),
            Right(m, p) => pack::management_right(&gname(m), &GroupPattern::parse(p).unwrap()),
            Explain(path) => pack::explain(path),
            System => pack::system(),
            Other(kind) => Resource::new(kind, "x1"),
        }
    }
}

/// `(caller, target, action, expected)`.
#[rustfmt::skip]
const TABLE: &[(&str, Target, &str, Decision)] = &[
    // The superadmin may do everything on the pack's kinds, and nothing elsewhere (no policy there).
    ("root", Group("go:x"), action::GROUP_CREATE, A),
    ("root", Group("rmi:public"), action::GROUP_DELETE, A),
    ("root", GroupRole("go:x", "heimdall:root", true), action::GROUP_ASSIGN_ROLE, A),
    ("root", GroupRole("go:x", "go:editor", false), action::GROUP_REMOVE_ROLE, A),
    ("root", Role("go:r"), action::ROLE_CREATE, A),
    ("root", Role("go:r"), action::ROLE_DELETE, A),
    ("root", Role("go:r"), action::ROLE_GRANT_PERMISSION, A),
    ("root", User("bob@example.com"), action::USER_ASSIGN_ROLE, A),
    ("root", Mapping(None, "/**", 0), action::MAPPING_CREATE, A),
    ("root", Mapping(Some("go:x"), "~/.*", -100), action::MAPPING_CREATE, A),
    ("root", Right("go:admins", "go:%"), action::MANAGEMENT_RIGHT_CREATE, A),
    ("root", Right("go:admins", "go:%"), action::MANAGEMENT_RIGHT_DELETE, A),
    ("root", System, action::RECONCILE, A),
    ("root", System, action::AUDIT_READ, A),
    ("root", Other("course"), "course:create", D),
    // go:% — groups under go:, roles under go:, never the privileged role, never system things.
    // Manager groups (holding rights themselves) are the superadmin's: no joining a wider manager group.
    ("root", ManagerGroup("go:admin"), action::GROUP_ADD_MEMBER, A),
    ("root", ManagerGroup("go:admin"), action::GROUP_DELETE, A),
    ("go_manager", ManagerGroup("go:admin"), action::GROUP_ADD_MEMBER, D),
    ("go_manager", ManagerGroup("go:admin"), action::GROUP_REMOVE_MEMBER, D),
    ("go_manager", ManagerGroup("go:admins:all"), action::GROUP_DELETE, D),
    ("everything_manager", ManagerGroup("rmi:admin"), action::GROUP_ADD_MEMBER, D),
    ("course_manager", ManagerGroup("go:course:x"), action::GROUP_REMOVE_MEMBER, D),
    ("go_manager", Group("go:authenticated"), action::GROUP_CREATE, A),
    ("go_manager", Group("go:authenticated"), action::GROUP_DELETE, A),
    ("go_manager", Group("go:authenticated"), action::GROUP_ADD_MEMBER, A),
    ("go_manager", Group("go:authenticated"), action::GROUP_REMOVE_MEMBER, A),
    ("go_manager", Group("go:course:editor"), action::GROUP_ADD_MEMBER, A),
    ("go_manager", Group("rmi:public"), action::GROUP_ADD_MEMBER, D),
    ("go_manager", Group("gox"), action::GROUP_CREATE, D),
    ("go_manager", Group("go:x"), "group:rename", D),
    ("go_manager", Group("go:x"), action::GROUP_ASSIGN_ROLE, D),
    ("go_manager", GroupRole("go:x", "go:editor", false), action::GROUP_ASSIGN_ROLE, A),
    ("go_manager", GroupRole("go:x", "go:editor", false), action::GROUP_REMOVE_ROLE, A),
    ("go_manager", GroupRole("go:x", "rmi:editor", false), action::GROUP_ASSIGN_ROLE, D),
    ("go_manager", GroupRole("go:x", "go:superadmin", true), action::GROUP_ASSIGN_ROLE, D),
    ("go_manager", GroupRole("go:x", "go:superadmin", true), action::GROUP_REMOVE_ROLE, D),
    ("go_manager", GroupRole("rmi:x", "go:editor", false), action::GROUP_ASSIGN_ROLE, D),
    ("go_manager", Mapping(Some("go:x"), "/go/x", 0), action::MAPPING_CREATE, A),
    ("go_manager", Mapping(Some("go:x"), "/go/:id/**", 0), action::MAPPING_UPDATE, A),
    ("go_manager", Mapping(Some("go:x"), "/go/**", 0), action::MAPPING_DELETE, A),
    ("go_manager", Mapping(None, "/go/x", 0), action::MAPPING_CREATE, D),
    ("go_manager", Mapping(Some("rmi:x"), "/go/x", 0), action::MAPPING_UPDATE, D),
    ("go_manager", Role("go:r"), action::ROLE_CREATE, D),
    ("go_manager", User("bob"), action::USER_ASSIGN_ROLE, D),
    ("go_manager", Right("go:admins", "go:%"), action::MANAGEMENT_RIGHT_CREATE, D),
    ("go_manager", System, action::RECONCILE, D),
    ("go_manager", System, action::AUDIT_READ, D),
    ("go_manager", Other("heimdall_other"), action::GROUP_CREATE, D),
    // go:course:_ — exactly one character after go:course:.
    ("course_manager", Group("go:course:a"), action::GROUP_ADD_MEMBER, A),
    ("course_manager", Group("go:course:1"), action::GROUP_DELETE, A),
    ("course_manager", Group("go:course:ab"), action::GROUP_ADD_MEMBER, D),
    ("course_manager", Group("go:course_a"), action::GROUP_ADD_MEMBER, D),
    ("course_manager", Group("go:x"), action::GROUP_CREATE, D),
    ("course_manager", GroupRole("go:course:a", "go:course:e", false), action::GROUP_ASSIGN_ROLE, A),
    ("course_manager", GroupRole("go:course:a", "go:course:editor", false), action::GROUP_ASSIGN_ROLE, D),
    ("course_manager", Mapping(Some("go:course:a"), "/go/courses/a", 0), action::MAPPING_CREATE, A),
    ("course_manager", Mapping(Some("go:course:ab"), "/go/courses/a", 0), action::MAPPING_CREATE, D),
    ("course_manager", Mapping(Some("go:course:a"), "/go/x", 0), action::MAPPING_CREATE, D),
    // An exact name.
    ("exact_manager", Group("rmi:public"), action::GROUP_ADD_MEMBER, A),
    ("exact_manager", Group("rmi:public"), action::GROUP_REMOVE_MEMBER, A),
    ("exact_manager", Group("rmi:publicx"), action::GROUP_ADD_MEMBER, D),
    ("exact_manager", Group("rmi:pub"), action::GROUP_ADD_MEMBER, D),
    ("exact_manager", Mapping(Some("rmi:public"), "/rmi/public/:id", 0), action::MAPPING_DELETE, A),
    ("exact_manager", GroupRole("rmi:public", "rmi:public", false), action::GROUP_ASSIGN_ROLE, A),
    ("exact_manager", GroupRole("rmi:public", "rmi:viewer", false), action::GROUP_ASSIGN_ROLE, D),
    // Several rights: group and role may match different ones.
    ("multi_manager", Group("go:course:z"), action::GROUP_CREATE, A),
    ("multi_manager", Group("rmi:anything"), action::GROUP_CREATE, A),
    ("multi_manager", Group("go:x"), action::GROUP_CREATE, D),
    ("multi_manager", GroupRole("rmi:x", "go:course:e", false), action::GROUP_ASSIGN_ROLE, A),
    ("multi_manager", GroupRole("go:course:z", "rmi:r", true), action::GROUP_REMOVE_ROLE, D),
    ("multi_manager", Mapping(Some("rmi:x"), "/rmi/x", 0), action::MAPPING_UPDATE, A),
    // The right that covers the owner must also cover the path: no borrowing another right's scope.
    ("multi_manager", Mapping(Some("go:course:a"), "/rmi/x", 0), action::MAPPING_CREATE, D),
    ("multi_manager", Mapping(Some("go:course:a"), "/go/x", 0), action::MAPPING_CREATE, D),
    ("multi_manager", Role("rmi:editor"), action::ROLE_DELETE, D),
    // Escaped '_' and literal punctuation.
    ("escaped_manager", Group("go:my_g"), action::GROUP_ADD_MEMBER, A),
    ("escaped_manager", Group("go:myXg"), action::GROUP_ADD_MEMBER, D),
    ("escaped_manager", Group("go:my-g"), action::GROUP_ADD_MEMBER, D),
    ("punct_manager", Group("go:v1.x"), action::GROUP_ADD_MEMBER, A),
    ("punct_manager", Group("go:v1Xx"), action::GROUP_ADD_MEMBER, D),
    ("punct_manager", Group("go:my-team"), action::GROUP_DELETE, A),
    ("punct_manager", Group("go:myXteam"), action::GROUP_DELETE, D),
    // '%' alone: every group, but still no privileged role, no ownerless mapping, no system things.
    ("everything_manager", Group("a"), action::GROUP_CREATE, A),
    ("everything_manager", GroupRole("a", "b", false), action::GROUP_ASSIGN_ROLE, A),
    ("everything_manager", GroupRole("a", "heimdall:root", true), action::GROUP_ASSIGN_ROLE, D),
    ("everything_manager", Mapping(None, "/x", 0), action::MAPPING_CREATE, D),
    ("everything_manager", Mapping(Some("x"), "/x", 0), action::MAPPING_CREATE, A),
    ("everything_manager", Mapping(Some("x"), "/", 0), action::MAPPING_CREATE, D),
    ("everything_manager", Mapping(Some("x"), "~/x", 0), action::MAPPING_CREATE, D),
    ("everything_manager", Role("x"), action::ROLE_DELETE, D),
    ("everything_manager", User("bob"), action::USER_ASSIGN_ROLE, D),
    ("everything_manager", System, action::AUDIT_READ, D),
    ("everything_manager", Right("a", "%"), action::MANAGEMENT_RIGHT_DELETE, D),
    // Roles alone give no admin rights; a stored role named like the superadmin role is dropped.
    ("plain_user", Group("go:x"), action::GROUP_ADD_MEMBER, D),
    ("plain_user", Group("go:x"), action::GROUP_CREATE, D),
    ("plain_user", Mapping(Some("go:x"), "/go/x", 0), action::MAPPING_CREATE, D),
    ("plain_user", System, action::RECONCILE, D),
    ("impostor", System, action::RECONCILE, D),
    ("impostor", Group("go:x"), action::GROUP_DELETE, D),
    // A manager's mappings stay inside the path scope of his right; regexes and priorities are superadmin's.
    ("go_manager", Mapping(Some("go:x"), "/**", 0), action::MAPPING_CREATE, D),
    ("go_manager", Mapping(Some("go:x"), "/admin/**", 0), action::MAPPING_CREATE, D),
    ("go_manager", Mapping(Some("go:x"), "/go", 0), action::MAPPING_CREATE, D),
    ("go_manager", Mapping(Some("go:x"), "/gold/x", 0), action::MAPPING_CREATE, D),
    ("go_manager", Mapping(Some("go:x"), "/:team/x", 0), action::MAPPING_CREATE, D),
    ("go_manager", Mapping(Some("go:x"), "/*/go/x", 0), action::MAPPING_CREATE, D),
    ("go_manager", Mapping(Some("go:x"), "/", 0), action::MAPPING_CREATE, D),
    ("go_manager", Mapping(Some("go:x"), "~/go/.*", 0), action::MAPPING_CREATE, D),
    ("go_manager", Mapping(Some("go:x"), "/go/x", -5), action::MAPPING_CREATE, D),
    ("go_manager", Mapping(Some("go:x"), "/go/x", 1000), action::MAPPING_UPDATE, D),
    ("go_manager", Mapping(Some("go:x"), "/go/a/b/:c/**", 0), action::MAPPING_CREATE, A),
    // Joining a group gives its roles: a manager may change only the members of a group whose every role he
    // could grant, and never one holding the superadmin role.
    ("root", GroupWithRoles("go:x", &["superadmin"], true), action::GROUP_ADD_MEMBER, A),
    ("go_manager", GroupWithRoles("go:x", &["go:editor", "go:viewer"], false), action::GROUP_ADD_MEMBER, A),
    ("go_manager", GroupWithRoles("go:x", &["go:editor", "rmi:editor"], false), action::GROUP_ADD_MEMBER, D),
    ("go_manager", GroupWithRoles("go:x", &["go:root"], true), action::GROUP_ADD_MEMBER, D),
    ("go_manager", GroupWithRoles("go:x", &["go:root"], true), action::GROUP_REMOVE_MEMBER, D),
    ("go_manager", GroupWithRoles("go:x", &["go:root"], true), action::GROUP_DELETE, D),
    ("go_manager", GroupWithRoles("go:x", &["superadmin"], true), action::GROUP_ADD_MEMBER, D),
    ("go_manager", GroupWithRoles("go:x", &["rmi:editor"], false), action::GROUP_DELETE, D),
    ("multi_manager", GroupWithRoles("rmi:x", &["go:course:e", "rmi:r"], false), action::GROUP_ADD_MEMBER, A),
    ("multi_manager", GroupWithRoles("rmi:x", &["go:course:ee"], false), action::GROUP_ADD_MEMBER, D),
    ("everything_manager", GroupWithRoles("a", &["b", "c:d"], false), action::GROUP_ADD_MEMBER, A),
    ("everything_manager", GroupWithRoles("a", &["root"], true), action::GROUP_ADD_MEMBER, D),
    // API keys are the superadmin's alone.
    ("root", System, action::API_KEY_CREATE, A),
    ("root", System, action::API_KEY_READ, A),
    ("root", System, action::API_KEY_REVOKE, A),
    ("go_manager", System, action::API_KEY_CREATE, D),
    ("go_manager", System, action::API_KEY_READ, D),
    ("everything_manager", System, action::API_KEY_REVOKE, D),
    ("plain_user", System, action::API_KEY_READ, D),
    ("impostor", System, action::API_KEY_CREATE, D),
    // Explaining a request: superadmins anywhere, managers inside the path scopes of their rights.
    ("root", Explain("/anything/at/all"), action::MAPPING_EXPLAIN, A),
    ("root", Explain("/"), action::MAPPING_EXPLAIN, A),
    ("root", Explain("/go/../admin"), action::MAPPING_EXPLAIN, A),
    ("go_manager", Explain("/go/x"), action::MAPPING_EXPLAIN, A),
    ("go_manager", Explain("/go/courses/7/files"), action::MAPPING_EXPLAIN, A),
    ("go_manager", Explain("/gox"), action::MAPPING_EXPLAIN, D),
    ("go_manager", Explain("/gox/y"), action::MAPPING_EXPLAIN, D),
    ("go_manager", Explain("/go"), action::MAPPING_EXPLAIN, D),
    ("go_manager", Explain("/go/"), action::MAPPING_EXPLAIN, D),
    ("go_manager", Explain("/admin/go/x"), action::MAPPING_EXPLAIN, D),
    ("go_manager", Explain("/rmi/x"), action::MAPPING_EXPLAIN, D),
    // A non-canonical path under the prefix is explained (as a rejection: it matches no mapping).
    ("go_manager", Explain("/go/../admin"), action::MAPPING_EXPLAIN, A),
    // The attribute is required, and explaining is no right to write.
    ("go_manager", Mapping(Some("go:x"), "/go/x", 0), action::MAPPING_EXPLAIN, D),
    ("go_manager", Explain("/go/x"), action::MAPPING_CREATE, D),
    ("course_manager", Explain("/go/courses/7"), action::MAPPING_EXPLAIN, A),
    ("course_manager", Explain("/go/x"), action::MAPPING_EXPLAIN, D),
    ("multi_manager", Explain("/rmi/x"), action::MAPPING_EXPLAIN, A),
    // A right without a path scope lets its holders explain nothing.
    ("multi_manager", Explain("/go/courses/1"), action::MAPPING_EXPLAIN, D),
    ("escaped_manager", Explain("/x"), action::MAPPING_EXPLAIN, D),
    ("everything_manager", Explain("/x"), action::MAPPING_EXPLAIN, A),
    ("everything_manager", Explain("/"), action::MAPPING_EXPLAIN, D),
    ("plain_user", Explain("/go/x"), action::MAPPING_EXPLAIN, D),
    ("impostor", Explain("/x"), action::MAPPING_EXPLAIN, D),
];

fn caller(name: &str) -> Principal {
    let (_, superadmin, roles, patterns) = CALLERS
        .iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no caller {name}"));
    let patterns: Vec<pack::ManagedRight> = patterns
        .iter()
        .map(|(p, scope)| {
            (
                GroupPattern::parse(*p).unwrap(),
                scope.map(|s| PathScope::parse(s).unwrap()),
            )
        })
        .collect();
    pack::principal(
        &Subject::parse(format!("{name}@example.com")).unwrap(),
        roles.iter().copied(),
        *superadmin,
        &patterns,
    )
}

#[tokio::test]
async fn builtin_pdp_gives_the_expected_answers() {
    assert!(TABLE.len() >= 60);
    let mut wrong = Vec::new();
    for (who, target, act, want) in TABLE {
        let got = BuiltinPdp
            .check(&caller(who), &target.resource(), &[act])
            .await
            .unwrap()[0];
        if got != *want {
            wrong.push(format!("{who} {act} {target:?}: built-in {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} rows wrong:\n{}", wrong.len(), wrong.join("\n"));
}

#[tokio::test]
async fn cerbos_with_the_pack_agrees_with_the_builtin_pdp() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    pack::install_admin_pack(&client).await.unwrap();
    // Wait (bounded) until the pack is live, then ask each question once: no retry hides a flicker.
    let root = caller("root");
    eventually("pack live", &client, &root, &pack::system(), &[action::RECONCILE], &[A]).await;

    let mut wrong = Vec::new();
    for (who, target, act, want) in TABLE {
        let principal = caller(who);
        let resource = target.resource();
        let by_builtin = BuiltinPdp.check(&principal, &resource, &[act]).await.unwrap()[0];
        let by_cerbos = client.check(&principal, &resource, &[act]).await.unwrap()[0];
        if (by_builtin, by_cerbos) != (*want, *want) {
            wrong.push(format!(
                "{who} {act} {target:?}: cerbos {by_cerbos:?}, built-in {by_builtin:?}, want {want:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} rows disagree:\n{}",
        wrong.len(),
        TABLE.len(),
        wrong.join("\n")
    );

    // The same table in batches (one request per caller, several resources and actions per request).
    for (name, ..) in CALLERS {
        let rows: Vec<_> = TABLE.iter().filter(|r| r.0 == *name).collect();
        let resources: Vec<Resource> = rows.iter().map(|r| r.1.resource()).collect();
        let actions: Vec<[&str; 2]> = rows.iter().map(|r| [r.2, action::GROUP_CREATE]).collect();
        let items: Vec<(&Resource, &[&str])> = resources.iter().zip(&actions).map(|(r, a)| (r, a.as_slice())).collect();
        let principal = caller(name);
        let by_cerbos = client.check_batch(&principal, &items).await.unwrap();
        let by_builtin = BuiltinPdp.check_batch(&principal, &items).await.unwrap();
        assert_eq!(by_cerbos, by_builtin, "batch for {name}");
        let firsts: Vec<Decision> = by_cerbos.iter().map(|d| d[0]).collect();
        let wants: Vec<Decision> = rows.iter().map(|r| r.3).collect();
        assert_eq!(firsts, wants, "batch for {name}");
    }
}

/// Both PDPs agree at the longest names and patterns Heimdall accepts (the documented limits), where a
/// regex engine difference or a size limit would show first.
#[tokio::test]
async fn the_pdps_agree_at_the_longest_allowed_inputs() {
    use heimdall_core::model::{MAX_NAME_LEN, MAX_PATTERN_LEN};
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    pack::install_admin_pack(&client).await.unwrap();
    eventually(
        "pack live",
        &client,
        &caller("root"),
        &pack::system(),
        &[action::RECONCILE],
        &[A],
    )
    .await;

    let patterns = [
        "%a".repeat(MAX_PATTERN_LEN / 2),
        "_".repeat(MAX_PATTERN_LEN),
        format!("{}%", "a".repeat(MAX_PATTERN_LEN - 1)),
        format!("%%{}", "a:".repeat(MAX_PATTERN_LEN / 2 - 1)),
        "%".repeat(MAX_PATTERN_LEN),
    ];
    let names = [
        "a".repeat(MAX_NAME_LEN),
        "b".repeat(MAX_NAME_LEN),
        format!("{}b", "a".repeat(MAX_NAME_LEN - 1)),
        format!("{}:a", "a".repeat(MAX_NAME_LEN - 2)),
        format!("b{}", "a".repeat(MAX_NAME_LEN - 1)),
        "a:".repeat(MAX_NAME_LEN / 2 - 1) + "aa",
    ];
    for p in &patterns {
        assert_eq!(p.len(), MAX_PATTERN_LEN);
        assert!(
            GroupPattern::parse(format!("{p}a")).is_err(),
            "one byte over the limit is refused"
        );
    }
    let scope = format!("/{}/**", "s".repeat(heimdall_core::mapping::MAX_PATH_PATTERN_LEN - 4));
    let mut checked = 0;
    for p in &patterns {
        let pattern = GroupPattern::parse(p.as_str()).unwrap();
        let rights = [(pattern.clone(), Some(PathScope::parse(&scope).unwrap()))];
        let principal = pack::principal(&Subject::parse("limit@example.com").unwrap(), ["r"], false, &rights);
        for n in &names {
            let name = gname(n);
            let roles = [RoleName::parse(n.as_str()).unwrap()];
            // The longest scope, and a mapping just inside it.
            let mapping_pattern = PathPattern::parse(&format!("{}x", &scope[..scope.len() - 2])).unwrap();
            let cases = [
                (pack::group(&name, false, &roles, false), action::GROUP_ADD_MEMBER),
                (pack::group_role(&name, &roles[0], false), action::GROUP_ASSIGN_ROLE),
                (
                    pack::mapping(None, Some(&name), &mapping_pattern, 0),
                    action::MAPPING_CREATE,
                ),
            ];
            let want = if pattern.matches(&name) { A } else { D };
            for (resource, act) in cases {
                let by_builtin = BuiltinPdp.check(&principal, &resource, &[act]).await.unwrap()[0];
                let by_cerbos = client.check(&principal, &resource, &[act]).await.unwrap()[0];
                assert_eq!((by_builtin, by_cerbos), (want, want), "{act}: pattern {p} on {n}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, patterns.len() * names.len() * 3);
}

// ---------------------------------------------------------------------------------------------------
// Principal policies.

#[tokio::test]
async fn a_pushed_principal_policy_decides_with_the_user_role_alone() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    pack::install_admin_pack(&client).await.unwrap();

    // Two subjects Cerbos would store under one name if they were sent as they are.
    let bob = Subject::parse("Bob@example.com").unwrap();
    let twin = Subject::parse("bob_example.com").unwrap();
    let perms = |effect| {
        vec![
            ("course".to_owned(), ActionName::parse("course:create").unwrap(), effect),
            (
                "go:course".to_owned(),
                ActionName::parse("go:course:read").unwrap(),
                Effect::Allow,
            ),
        ]
    };
    let bob_policy = principal_policy(&bob, &perms(Effect::Allow)).unwrap();
    let twin_policy = principal_policy(&twin, &perms(Effect::Deny)).unwrap();
    // Someone else's principal policy, shaped like ours but not annotated: never listed as Heimdall's.
    let foreign = json!({"apiVersion": "api.cerbos.dev/v1", "principalPolicy": {"principal": "carol", "version": "default",
        "rules": [{"resource": "course", "actions": [{"action": "course:create", "effect": "EFFECT_ALLOW", "name": "x"}]}]}});
    client.put_policies(&[bob_policy, twin_policy, foreign]).await.unwrap();

    let as_user = |s: &Subject| Principal::new(principal_id(s), [pack::USER_ROLE]);
    let course = Resource::new("course", "c1");
    let go_course = Resource::new("go:course", "c2");
    let (bob_user, twin_user) = (as_user(&bob), as_user(&twin));
    eventually(
        "bob may create courses",
        &client,
        &bob_user,
        &course,
        &["course:create", "course:delete"],
        &[A, D],
    )
    .await;
    eventually(
        "bob's twin may not",
        &client,
        &twin_user,
        &course,
        &["course:create"],
        &[D],
    )
    .await;
    // A kind with ':' works in principal policies and in checks.
    eventually(
        "kind with ':'",
        &client,
        &bob_user,
        &go_course,
        &["go:course:read"],
        &[A],
    )
    .await;
    // The policy's effect is final: other roles don't change it, and admin checks are unaffected.
    let bob_admin = Principal::new(principal_id(&bob), ["user", "go:admin"]);
    assert_eq!(
        client.check(&bob_admin, &course, &["course:create"]).await.unwrap(),
        [A]
    );
    assert_eq!(
        client
            .check(&as_user(&bob), &pack::system(), &[action::RECONCILE])
            .await
            .unwrap(),
        [D]
    );

    // Listing finds exactly Heimdall's principal policies; the annotation survived.
    let ids = client.list_heimdall_principal_policies().await.unwrap();
    let mut want = vec![policy_id(&bob), policy_id(&twin)];
    want.sort();
    assert_eq!(ids, want);
    let mut subjects: Vec<Subject> = ids.iter().map(|id| subject_from_policy_id(id).unwrap()).collect();
    subjects.sort();
    assert_eq!(subjects, [bob.clone(), twin.clone()]);
    let all = client.list_policies(&PolicyFilter::default()).await.unwrap();
    assert!(all.contains(&"principal.carol.vdefault".to_owned()), "{all:?}");
    assert!(all.contains(&"resource.heimdall_group.vdefault".to_owned()), "{all:?}");
    let stored = client.get_policies(&[policy_id(&bob)]).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0]["metadata"]["annotations"][HEIMDALL_ANNOTATION],
        PRINCIPAL_POLICY_MARK
    );

    // Deleting it takes the permission away.
    assert_eq!(
        client
            .delete_policies(&[policy_id(&bob), "principal.nobody.vdefault".to_owned()])
            .await
            .unwrap(),
        1
    );
    eventually(
        "bob no longer may",
        &client,
        &bob_user,
        &course,
        &["course:create"],
        &[D],
    )
    .await;
    assert_eq!(
        client.list_heimdall_principal_policies().await.unwrap(),
        [policy_id(&twin)]
    );
    client.reload_store().await.unwrap();
}

#[tokio::test]
async fn admin_calls_and_checks_are_batched_beyond_cerbos_limits() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    const USERS: usize = 150; // two PUTs of at most 100, eight deletes of at most 20
    let subjects: Vec<Subject> = (0..USERS)
        .map(|i| Subject::parse(format!("user-{i}@example.com")).unwrap())
        .collect();
    let perms = [(
        "course".to_owned(),
        ActionName::parse("course:read").unwrap(),
        Effect::Allow,
    )];
    let policies: Vec<_> = subjects.iter().map(|s| principal_policy(s, &perms).unwrap()).collect();
    if let Err(e) = client.put_policies(&policies).await {
        tokio::time::sleep(Duration::from_millis(500)).await;
        panic!("{e}; Cerbos' log:\n{}", cerbos.log());
    }
    let mut want: Vec<String> = subjects.iter().map(policy_id).collect();
    want.sort();
    assert_eq!(client.list_heimdall_principal_policies().await.unwrap(), want);

    // One principal, 120 resources with 2 actions each: three check requests of at most 50 resources.
    let last = Principal::new(principal_id(&subjects[USERS - 1]), [pack::USER_ROLE]);
    let courses: Vec<Resource> = (0..120).map(|i| Resource::new("course", format!("c{i}"))).collect();
    let actions = ["course:read", "course:write"];
    let items: Vec<(&Resource, &[&str])> = courses.iter().map(|r| (r, actions.as_slice())).collect();
    let deadline = Instant::now() + VISIBLE_WITHIN;
    loop {
        let got = client.check_batch(&last, &items).await.unwrap();
        assert_eq!(got.len(), 120);
        if got.iter().all(|d| d == &[A, D]) {
            break;
        }
        assert!(Instant::now() < deadline, "batch check never saw the policy: {got:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert_eq!(client.delete_policies(&want).await.unwrap(), USERS as u64);
    assert!(client.list_heimdall_principal_policies().await.unwrap().is_empty());
}

#[tokio::test]
async fn real_cerbos_failures_are_classified() {
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();

    // Cerbos rejects a rule name with ':' (400): permanent.
    let bad = json!({"apiVersion": "api.cerbos.dev/v1", "principalPolicy": {"principal": "x", "version": "default",
        "rules": [{"resource": "course", "actions": [{"action": "a", "effect": "EFFECT_ALLOW", "name": "r:0"}]}]}});
    let e = client.put_policies(&[bad]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(!e.is_retryable());

    // Wrong credentials (401): retryable (the outbox keeps the change until someone fixes the config).
    let mut config = cerbos.config();
    config.admin_password = "wrong".into();
    let e = CerbosClient::new(config)
        .unwrap()
        .list_policies(&PolicyFilter::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert!(!e.to_string().contains("wrong") && !format!("{e:?}").contains(cerbos::ADMIN_PASSWORD));

    // A check without roles is refused before anything is sent.
    let e = client
        .check(
            &Principal::new("x", Vec::<String>::new()),
            &Resource::new("k", "1"),
            &["a"],
        )
        .await;
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidInput);

    // No Cerbos at all: unavailable, after the retries.
    let mut gone = cerbos.config();
    drop(cerbos);
    gone.max_retries = 1;
    let e = CerbosClient::new(gone)
        .unwrap()
        .check(&Principal::new("x", ["user"]), &Resource::new("k", "1"), &["a"])
        .await;
    let e = e.unwrap_err();
    assert!(e.is_retryable(), "{e}");
}

#[tokio::test]
async fn cerbos_can_be_stopped_and_started_on_the_same_store() {
    let Some(mut cerbos) = Cerbos::start_new().await else {
        return;
    };
    let client = cerbos.client();
    pack::install_admin_pack(&client).await.unwrap();
    cerbos.stop();
    let e = client
        .check(&caller("root"), &pack::system(), &[action::RECONCILE])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    cerbos.start().await;
    let root = caller("root");
    eventually(
        "pack survives a restart",
        &client,
        &root,
        &pack::system(),
        &[action::RECONCILE],
        &[A],
    )
    .await;
    cerbos.kill();
    assert!(!cerbos.is_running());
    cerbos.start().await;
    eventually(
        "and a crash",
        &client,
        &root,
        &pack::system(),
        &[action::AUDIT_READ],
        &[A],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------------
// Faults only a fake can show.

fn fake_config(fake: &FakeFailingCerbos) -> CerbosConfig {
    let mut config = CerbosConfig::new(format!("{}/api/check/resources", fake.base_url()));
    config.admin_password = "fake".into();
    config.timeout = Duration::from_millis(300);
    config.max_retries = 3;
    config.retry_min_delay = Duration::from_millis(20);
    config.retry_max_delay = Duration::from_millis(200);
    config
}

#[tokio::test]
async fn checks_are_retried_with_backoff_then_succeed() {
    let fake = FakeFailingCerbos::start(vec![Fault::Status500, Fault::Status500]).await;
    let client = CerbosClient::new(fake_config(&fake)).unwrap();
    let started = Instant::now();
    let got = client
        .check(
            &Principal::new("p", ["user"]),
            &Resource::new("course", "c1"),
            &["course:create"],
        )
        .await;
    assert_eq!(got.unwrap(), [A]);
    assert_eq!(fake.requests(), vec!["POST /api/check/resources"; 3]);
    // Two delays, the second twice the first (before jitter): at least 20 + 40 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_hanging_check_times_out_and_is_retried() {
    let fake = FakeFailingCerbos::start(vec![Fault::Hang(Duration::from_secs(10))]).await;
    let client = CerbosClient::new(fake_config(&fake)).unwrap();
    let started = Instant::now();
    let got = client
        .check(
            &Principal::new("p", ["user"]),
            &Resource::new("course", "c1"),
            &["course:create"],
        )
        .await;
    assert_eq!(got.unwrap(), [A]);
    assert_eq!(fake.requests().len(), 2);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // Hanging every time: a retryable error once the retries are spent, well before the hang ends.
    let fake = FakeFailingCerbos::start(vec![Fault::Hang(Duration::from_secs(10)); 10]).await;
    let mut config = fake_config(&fake);
    config.max_retries = 1;
    let e = CerbosClient::new(config)
        .unwrap()
        .list_policies(&PolicyFilter::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn writes_are_never_retried() {
    let fake = FakeFailingCerbos::start(vec![
        Fault::Status500,
        Fault::Status500,
        Fault::Hang(Duration::from_secs(10)),
    ])
    .await;
    let client = CerbosClient::new(fake_config(&fake)).unwrap();
    let e = client
        .put_policies(&[json!({"apiVersion": "api.cerbos.dev/v1"})])
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "a 500 is worth retrying later, by the caller: {e}");
    assert_eq!(fake.requests(), ["PUT /admin/policy"]);
    let e = client
        .delete_policies(&["principal.x.vdefault".to_owned()])
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    let e = client
        .put_policies(&[json!({"apiVersion": "api.cerbos.dev/v1"})])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
    assert_eq!(
        fake.requests(),
        ["PUT /admin/policy", "POST /admin/policy/delete", "PUT /admin/policy"]
    );
    // After the faults, writes go through, one request each.
    client
        .put_policies(&[json!({"apiVersion": "api.cerbos.dev/v1"})])
        .await
        .unwrap();
    assert_eq!(fake.requests().len(), 4);
}
