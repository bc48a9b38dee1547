//! Resolving a request that matches does not allocate (paths are checked, never rewritten; regular
//! expressions run as a precompiled DFA).
//!
//! A binary of its own, because it counts every heap allocation through dhat's global allocator.

// Tests may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

use heimdall_core::mapping::{MappingRule, Method, PathPattern, Resolution, Snapshot};
use heimdall_core::model::{ActionName, GroupName};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn rule(id: i64, method: &str, pattern: &str, action: &str) -> MappingRule {
    MappingRule {
        id,
        method: Method::parse(method).unwrap(),
        pattern: PathPattern::parse(pattern).unwrap(),
        action: ActionName::parse(action).unwrap(),
        owner_group: Some(GroupName::parse("go:admin").unwrap()),
        priority: 0,
    }
}

#[test]
fn resolving_a_hit_does_not_allocate() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut rules = vec![
        rule(1, "GET", "/courses", "course:list"),
        rule(2, "GET", "/courses/:id", "course:read"),
        rule(3, "POST", "/courses/:id/enroll", "course:enroll"),
        rule(4, "ANY", "/files/**", "file:any"),
        rule(5, "GET", "~/reports/[0-9]{4}/q[1-4]", "report:read"),
    ];
    for i in 0..1000 {
        rules.push(rule(100 + i, "GET", &format!("/api/v{i}/items/:id"), "item:read"));
    }
    let snapshot = Snapshot::build(rules, 1).unwrap();
    let requests = [
        ("GET", "/courses"),
        ("GET", "/courses/42"),
        ("GET", "/courses/42?page=2"),
        ("POST", "/courses/42/enroll"),
        ("DELETE", "/files/a/b/c"),
        ("GET", "/reports/2026/q3"),
        ("GET", "/api/v777/items/9"),
    ];
    let resolve_all = || {
        let mut ids = 0;
        for (method, path) in requests {
            match snapshot.resolve(method, path) {
                Resolution::Matched(m) => ids += m.id(),
                other => panic!("{method} {path}: {other:?}"),
            }
        }
        ids
    };
    // Warm up once (nothing should need it: regular expressions run as a precompiled DFA).
    let expected = resolve_all();
    let before = dhat::HeapStats::get();
    assert!(
        before.total_blocks > 1000,
        "the allocator counts (building the snapshot allocated)"
    );
    for _ in 0..100 {
        assert_eq!(std::hint::black_box(resolve_all()), expected);
    }
    let after = dhat::HeapStats::get();
    assert_eq!(
        after.total_blocks - before.total_blocks,
        0,
        "resolving {} hits allocated {} blocks",
        100 * requests.len(),
        after.total_blocks - before.total_blocks
    );
}
