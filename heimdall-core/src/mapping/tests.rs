//! Resolver tests: precedence and conflict tables, path-confusion attempts, and a property test
//! against a straightforward reference implementation of the precedence rules.

use proptest::prelude::*;
use regex::Regex;

use super::pattern::{Kind, Segment};
use super::*;
use crate::ErrorKind;
use crate::model::{ActionName, GroupName};

/// Parses mapping lines of the form `METHOD PATTERN => ACTION [prio=N] [id=N]`; ids default to the
/// line number (from 1).
fn rules(mappings: &str) -> Vec<MappingRule> {
    mappings
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| {
            let (lhs, rhs) = line.split_once("=>").unwrap_or_else(|| panic!("no '=>' in {line:?}"));
            let (method, pattern) = lhs.trim().split_once(' ').unwrap();
            let mut words = rhs.split_whitespace();
            let action = words.next().unwrap();
            let mut rule = MappingRule {
                id: i64::try_from(i).unwrap() + 1,
                method: Method::parse(method).unwrap(),
                pattern: PathPattern::parse(pattern.trim()).unwrap_or_else(|e| panic!("{line:?}: {e}")),
                action: ActionName::parse(action).unwrap(),
                owner_group: Some(GroupName::parse("owners").unwrap()),
                priority: 0,
            };
            for w in words {
                if let Some(p) = w.strip_prefix("prio=") {
                    rule.priority = p.parse().unwrap();
                } else if let Some(id) = w.strip_prefix("id=") {
                    rule.id = id.parse().unwrap();
                } else {
                    panic!("unknown option {w:?} in {line:?}");
                }
            }
            rule
        })
        .collect()
}

fn outcome(r: &Resolution<'_>) -> String {
    match r {
        Resolution::Matched(m) => m.action().to_string(),
        Resolution::NoMatch => "-".to_owned(),
        Resolution::Rejected(why) => format!("rejected:{why}"),
    }
}

/// The only place the table tests resolve: `expect` is the action, `-` for no match, or
/// `rejected:<reason>`. Also checks that the reference implementation agrees.
#[track_caller]
fn check(mappings: &str, method: &str, path: &str, expect: &str) {
    let rules = rules(mappings);
    let snapshot = Snapshot::build(rules.clone(), 1).unwrap_or_else(|e| panic!("{e}"));
    let got = snapshot.resolve(method, path);
    assert_eq!(outcome(&got), expect, "{method} {path} against\n{mappings}");
    let reference = reference(&rules, method, path).map(|r| r.map(|r| r.id));
    let compiled = match got {
        Resolution::Matched(m) => Ok(Some(m.id())),
        Resolution::NoMatch => Ok(None),
        Resolution::Rejected(why) => Err(why),
    };
    assert_eq!(
        compiled, reference,
        "compiled and reference disagree on {method} {path}"
    );
    // Every table row also checks the candidates: the resolver's answers, one removal after another.
    let candidates = snapshot
        .candidates(method, path)
        .map(|c| c.iter().map(|r| r.id).collect::<Vec<_>>());
    assert_eq!(
        candidates,
        successive(&rules, method, path),
        "candidates of {method} {path} against\n{mappings}"
    );
}

/// What the resolver answers for a request, then what it answers without that mapping, and so on: the
/// ids in the order [`Snapshot::candidates`] must list them.
fn successive(rules: &[MappingRule], method: &str, path: &str) -> Result<Vec<i64>, PathRejection> {
    let mut left = rules.to_vec();
    let mut ids = Vec::new();
    loop {
        let snapshot = Snapshot::build(left.clone(), 1).unwrap();
        match snapshot.resolve(method, path) {
            Resolution::Matched(m) => {
                let id = m.id();
                ids.push(id);
                left.retain(|r| r.id != id);
            }
            Resolution::NoMatch => return Ok(ids),
            Resolution::Rejected(why) => return Err(why),
        }
    }
}

/// The ids of the candidates for a request, best first.
#[track_caller]
fn candidate_ids(mappings: &str, method: &str, path: &str) -> Vec<i64> {
    let snapshot = Snapshot::build(rules(mappings), 1).unwrap();
    snapshot
        .candidates(method, path)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect()
}

/// Resolves and returns the parameters of the match.
#[track_caller]
fn params(mappings: &str, method: &str, path: &str) -> Vec<(String, String)> {
    let snapshot = Snapshot::build(rules(mappings), 1).unwrap();
    let m = snapshot.resolve(method, path).matched().expect("a match");
    let all: Vec<(String, String)> = m.params().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    for (k, v) in &all {
        assert_eq!(m.param(k), Some(v.as_str()), "param({k:?})");
    }
    all
}

#[track_caller]
fn conflict(mappings: &str, expect_conflict: bool) {
    let result = Snapshot::build(rules(mappings), 1);
    match (result, expect_conflict) {
        (Ok(_), false) => {}
        (Err(e), true) => {
            assert_eq!(e.kind(), ErrorKind::Conflict);
            let ids = rules(mappings).iter().map(|r| r.id.to_string()).collect::<Vec<_>>();
            for id in ids.iter().rev().take(2) {
                assert!(
                    e.message().contains(&format!("mapping {id} ")),
                    "{} lacks id {id}",
                    e.message()
                );
            }
        }
        (Ok(_), true) => panic!("expected a conflict in\n{mappings}"),
        (Err(e), false) => panic!("unexpected error {e} in\n{mappings}"),
    }
}

#[test]
fn method_specific_beats_any_between_equal_paths_only() {
    let m = "ANY /courses/new => any:new
             GET /courses/:id => get:id
             ANY /courses/:id => any:id";
    // The path decides first: the literal `new` beats `:id`, whatever the methods.
    check(m, "GET", "/courses/new", "any:new");
    check(m, "GET", "/courses/7", "get:id");
    check(m, "POST", "/courses/new", "any:new");
    check(m, "POST", "/courses/7", "any:id");
    check(m, "DELETE", "/courses/7", "any:id");
}

#[test]
fn head_falls_back_to_get_then_any() {
    let m = "GET /a => get:a
             HEAD /b => head:b
             GET /b => get:b
             ANY /c => any:c
             GET /:x => get:x";
    check(m, "HEAD", "/a", "get:a");
    check(m, "HEAD", "/b", "head:b");
    check(m, "GET", "/b", "get:b");
    // ANY's literal beats GET's parameter, for HEAD as for GET.
    check(m, "HEAD", "/c", "any:c");
    check(m, "GET", "/c", "any:c");
    check(m, "HEAD", "/d", "get:x");
    check(m, "POST", "/c", "any:c");
    check(m, "POST", "/a", "-");
}

#[test]
fn unknown_methods_match_any_only_and_lower_case_ones_are_refused() {
    let m = "GET /a => get:a
             ANY /a => any:a";
    check(m, "PROPFIND", "/a", "any:a");
    check(m, "ANY", "/a", "any:a");
    check("GET /a => get:a", "PROPFIND", "/a", "-");
    // Django upper-cases the method before dispatching (`get` runs the GET view), others don't: a
    // method that is not an upper-case token is refused, whatever the path.
    for method in ["get", "Get", "gET", "post", "GE T", "", "GET ", "G\u{c9}T"] {
        check(m, method, "/a", "rejected:invalid_method");
        check(m, method, "/a/../b", "rejected:invalid_method");
        check("GET /a => get:a", method, "/a", "rejected:invalid_method");
    }
}

#[test]
fn literal_beats_param_beats_rest() {
    let m = "GET /users/me => users:me
             GET /users/:id => users:read
             GET /users/** => users:any";
    check(m, "GET", "/users/me", "users:me");
    check(m, "GET", "/users/7", "users:read");
    check(m, "GET", "/users/7/posts", "users:any");
    // `**` needs at least one segment.
    check(m, "GET", "/users", "-");
    check(m, "GET", "/user", "-");
    // `*` ranks like `:name`.
    let m = "GET /files/* => files:one
             GET /files/** => files:all
             GET /files/readme => files:readme";
    check(m, "GET", "/files/readme", "files:readme");
    check(m, "GET", "/files/x", "files:one");
    check(m, "GET", "/files/x/y", "files:all");
}

#[test]
fn leftmost_segment_decides() {
    let m = "GET /a/:x/c => left:literal
             GET /:y/b/c => left:param";
    check(m, "GET", "/a/b/c", "left:literal");
    check(m, "GET", "/z/b/c", "left:param");
    let m = "GET /a/:x/:y => a:xy
             GET /:p/b/c => p:bc";
    check(m, "GET", "/a/b/c", "a:xy");
}

#[test]
fn search_backtracks_to_less_specific_branches() {
    let m = "GET /a/b/c => abc
             GET /a/:x/d => axd
             GET /:p/b/e => pbe
             GET /** => all";
    check(m, "GET", "/a/b/c", "abc");
    check(m, "GET", "/a/b/d", "axd");
    check(m, "GET", "/a/b/e", "pbe");
    check(m, "GET", "/a/b/f", "all");
    check(m, "GET", "/", "-");
}

#[test]
fn path_specificity_decides_before_method() {
    let m = "GET /** => get:all
             ANY /admin/** => any:admin
             POST /admin/users => post:users
             HEAD /admin/:x => head:x
             GET /admin/:x => get:x
             ANY /admin/:x => any:x";
    check(m, "GET", "/admin/users/7", "any:admin");
    check(m, "DELETE", "/admin/users/7", "any:admin");
    check(m, "GET", "/other", "get:all");
    check(m, "POST", "/other", "-");
    // At `/admin/users` only POST is mapped: other methods fall back to the next most specific path.
    check(m, "POST", "/admin/users", "post:users");
    check(m, "GET", "/admin/users", "get:x");
    check(m, "HEAD", "/admin/users", "head:x");
    check(m, "PUT", "/admin/users", "any:x");
    check(m, "PROPFIND", "/admin/users", "any:x");
    // HEAD: HEAD, then GET, then ANY, between equally specific paths.
    let m = "GET /a/:x => get:x
             ANY /a/:x => any:x
             ANY /a/** => any:rest";
    check(m, "HEAD", "/a/1", "get:x");
    check(m, "HEAD", "/a/1/2", "any:rest");
}

#[test]
fn rest_matches_one_or_more_segments() {
    let m = "GET /files => files:list
             GET /files/** => files:any
             GET /docs/** => docs:any
             GET /docs/:q/** => docs:q";
    check(m, "GET", "/files", "files:list");
    check(m, "GET", "/files/a", "files:any");
    check(m, "GET", "/files/a/b/c", "files:any");
    check(m, "GET", "/docs", "-");
    check(m, "GET", "/docs/", "rejected:empty_segment");
    // `/docs/:q/**` needs a segment after `x`.
    check(m, "GET", "/docs/x", "docs:any");
    check(m, "GET", "/docs/x/y", "docs:q");
    check("GET /** => all", "GET", "/", "-");
    check("GET /** => all", "GET", "/x", "all");
    check("GET / => root", "GET", "/", "root");
    check("GET / => root", "GET", "/x", "-");
}

#[test]
fn routes_beat_regexes() {
    let m = "GET ~/courses/[0-9]+ => re:course
             ANY /courses/:id => any:course
             GET ~/admin/.* => re:admin";
    check(m, "GET", "/courses/7", "any:course");
    check(m, "GET", "/admin/x", "re:admin");
    check(m, "GET", "/admin", "-");
}

#[test]
fn regexes_by_method_then_priority_then_id() {
    let m = "ANY ~/r/.* => any:first prio=-10
             GET ~/r/[a-z]+ => get:late prio=5 id=10
             GET ~/r/[a-c]+ => get:early prio=5 id=3
             GET ~/r/x.* => get:prio prio=-1
             HEAD ~/r/h.* => head:h prio=10";
    check(m, "GET", "/r/abc", "get:early");
    // One automaton per request method holds its own expressions, then GET's (for HEAD), then ANY's.
    check(m, "HEAD", "/r/hab", "head:h");
    check(m, "GET", "/r/hab", "get:late");
    check(m, "HEAD", "/r/h1", "head:h");
    check(m, "HEAD", "/r/1", "any:first");
    check(m, "GET", "/r/d", "get:late");
    check(m, "GET", "/r/xyz", "get:prio");
    check(m, "GET", "/r/1", "any:first");
    check(m, "POST", "/r/abc", "any:first");
    check(m, "HEAD", "/r/abc", "get:early");
}

#[test]
fn candidates_list_every_match_best_first() {
    // Literal, parameter, `**`; method-specific before ANY between equal paths; routes before regexes;
    // regexes by method class, then priority, then id.
    let m = "ANY /a/** => any:rest
             GET /a/:x => get:x
             ANY /a/:x => any:x
             GET /a/b => get:b
             POST /a/b => post:b
             GET ~/a/.* => re:late prio=5
             ANY ~/a/b => re:any prio=-9
             GET ~/a/[a-z] => re:early prio=5 id=0
             GET /** => get:all
             GET /c => get:c";
    assert_eq!(candidate_ids(m, "GET", "/a/b"), [4, 2, 3, 1, 9, 0, 6, 7]);
    assert_eq!(candidate_ids(m, "HEAD", "/a/b"), [4, 2, 3, 1, 9, 0, 6, 7]);
    assert_eq!(candidate_ids(m, "POST", "/a/b"), [5, 3, 1, 7]);
    assert_eq!(candidate_ids(m, "PROPFIND", "/a/b"), [3, 1, 7]);
    assert_eq!(candidate_ids(m, "DELETE", "/c"), Vec::<i64>::new());
    assert_eq!(candidate_ids(m, "GET", "/c"), [10, 9]);
    let snapshot = Snapshot::build(rules(m), 1).unwrap();
    assert_eq!(
        snapshot.candidates("GET", "/a/../b").unwrap_err(),
        PathRejection::DotSegment
    );
    // The query string is not part of the path.
    assert_eq!(
        snapshot
            .candidates("GET", "/c?x=/a/b")
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [10, 9]
    );
}

#[test]
fn regexes_match_the_whole_path_as_received() {
    let m = "GET ~/courses/[0-9]+/admin => course:admin
             GET ~/files/a%20b => files:space
             GET ~/files/caf%C3%A9 => files:cafe
             GET ~/files/café => files:never
             GET ~.*/secret => secret";
    check(m, "GET", "/courses/12/admin", "course:admin");
    check(m, "GET", "/courses/12/admin/x", "-");
    check(m, "GET", "/x/courses/12/admin", "-");
    check(m, "GET", "/courses/12/admin/", "rejected:empty_segment");
    check(m, "GET", "/courses/%31%32/admin", "rejected:needless_percent_escape");
    check(m, "GET", "/courses//12/./admin", "rejected:empty_segment");
    check(m, "GET", "/files/a%20b", "files:space");
    check(m, "GET", "/files/caf%C3%A9", "files:cafe");
    check(m, "GET", "/a/b/secret", "secret");
    check(m, "GET", "/secret", "secret");
}

#[test]
fn regexes_compete_by_priority_then_id_alone() {
    // The expression under /a/b has a worse priority than the one with no literal prefix.
    let m = "GET ~/a/b/[0-9]+ => deep prio=5
             GET ~/a/[a-z]/[0-9]+ => mid prio=3
             GET ~/.*/[0-9]+ => shallow prio=1";
    check(m, "GET", "/a/b/1", "shallow");
    let m = "GET ~/a/b/[0-9]+ => deep prio=1
             GET ~/a/[a-z]/[0-9]+ => mid prio=3
             GET ~/.*/[0-9]+ => shallow prio=5";
    check(m, "GET", "/a/b/1", "deep");
    check(m, "GET", "/a/c/1", "mid");
    check(m, "GET", "/q/1", "shallow");
    // Shaped (fixed segment count) and unshaped expressions compete by priority alone.
    let m = "GET ~/a/[a-z]+ => shaped prio=2
             GET ~/a/.* => unshaped prio=1
             GET ~/[a-z]* => root prio=3
             GET ~/ => slash prio=4";
    check(m, "GET", "/a/b", "unshaped");
    check(m, "GET", "/a", "root");
    check(m, "GET", "/b", "root");
    check(m, "GET", "/", "root");
    let m = "GET ~/a/[a-z]+ => shaped prio=0
             GET ~/a/.* => unshaped prio=1";
    check(m, "GET", "/a/b", "shaped");
    check(m, "GET", "/a/1", "unshaped");
}

#[test]
fn path_confusion_attempts() {
    let m = "GET /courses/:id => course:read
             GET /courses/:id/admin => course:admin
             GET /admin => admin:read
             GET /admin/** => admin:any";
    let table = [
        ("/courses/7", "course:read"),
        ("/courses/7/admin?x=/../../y", "course:admin"),
        // A server hands a '#' to the router as part of the path (uvicorn does): refused.
        ("/courses/7#/../../admin", "rejected:fragment_in_target"),
        // Never rewritten: what a router would route elsewhere is refused.
        ("/courses/7/", "rejected:empty_segment"),
        ("/courses//7", "rejected:empty_segment"),
        ("/courses/%37", "rejected:needless_percent_escape"),
        // A decoding router (Starlette, Django) would read these as /courses/7:x and /courses/@me.
        ("/courses/7%3Ax", "rejected:needless_percent_escape"),
        ("/courses/%40me", "rejected:needless_percent_escape"),
        ("/courses/7%2Badmin", "rejected:needless_percent_escape"),
        ("/courses/7/./admin", "rejected:dot_segment"),
        ("/courses/%2e%2e/admin", "rejected:dot_segment"),
        ("/courses/%2E%2E/admin", "rejected:dot_segment"),
        ("/courses/7/../../admin", "rejected:dot_segment"),
        ("/courses/7/%2e%2e/%2e%2e/admin/x", "rejected:dot_segment"),
        ("/courses/7/..", "rejected:dot_segment"),
        ("/courses/../../admin", "rejected:dot_segment"),
        ("/courses/7%2F..%2F..%2Fadmin", "rejected:encoded_slash"),
        ("/courses/7%2f..%2f..%2fadmin", "rejected:encoded_slash"),
        ("/courses/%252e%252e/admin", "rejected:encoded_percent"),
        ("/courses/7%3F/admin", "rejected:encoded_query_delimiter"),
        ("/courses/7%23/admin", "rejected:encoded_query_delimiter"),
        ("/admin;x=1", "rejected:semicolon"),
        ("/courses/7;/admin", "rejected:semicolon"),
        ("/courses\\..\\admin", "rejected:backslash"),
        ("/courses/7%00/admin", "rejected:control_character"),
        ("/courses/caf\u{e9}", "rejected:invalid_character"),
        ("courses/7", "rejected:path_not_absolute"),
        // Case variants are different paths.
        ("/Courses/7", "-"),
        ("/ADMIN", "-"),
        ("/Admin/x", "-"),
        ("/courses/7/ADMIN", "-"),
        // `**` needs a segment.
        ("/admin/x", "admin:any"),
    ];
    for (path, expect) in table {
        check(m, "GET", path, expect);
    }
}

#[test]
fn parameters_are_captured() {
    let p = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        params("GET /c/:course/s/:section => a:b", "GET", "/c/7/s/x"),
        p(&[("course", "7"), ("section", "x")])
    );
    assert_eq!(params("GET /c/*/:id => a:b", "GET", "/c/x/9"), p(&[("id", "9")]));
    assert_eq!(
        params("GET /f/:id/** => a:b", "GET", "/f/1/a/b"),
        p(&[("id", "1"), ("**", "a/b")])
    );
    assert_eq!(
        params("GET /f/:id/** => a:b", "GET", "/f/1/x"),
        p(&[("id", "1"), ("**", "x")])
    );
    // Values are slices of the path, still percent-encoded.
    assert_eq!(
        params("GET /f/:name => a:b", "GET", "/f/a%20b"),
        p(&[("name", "a%20b")])
    );
    assert_eq!(params("GET /** => a:b", "GET", "/x"), p(&[("**", "x")]));
    assert_eq!(
        params(
            "GET ~/r/(?P<owner>[^/]+)/(?P<repo>[^/]+)(/(?P<opt>x))? => a:b",
            "GET",
            "/r/o/p"
        ),
        p(&[("owner", "o"), ("repo", "p")])
    );
    let snapshot = Snapshot::build(rules("GET /c/:id => c:read"), 1).unwrap();
    let m = snapshot.resolve("GET", "/c/7?x").matched().unwrap();
    assert_eq!(m.param("nope"), None);
    assert_eq!(m.path(), "/c/7");
    assert_eq!(m.pattern().as_str(), "/c/:id");
    assert_eq!(m.owner_group().map(GroupName::as_str), Some("owners"));
    assert_eq!(m.rule().method, Method::Get);
}

#[test]
fn conflicts_are_exact_overlaps_only() {
    conflict("GET /a/:x => a:x\n GET /a/:y => a:y", true);
    conflict("GET /a/:x => a:x\n GET /a/* => a:y", true);
    conflict("GET /a/b => a:x\n GET /a/%62 => a:y", true);
    conflict("GET /a/caf%C3%A9 => a:x\n GET /a/café => a:y", true);
    conflict("GET /a/** => a:x\n GET /a/** => a:y", true);
    conflict("GET ~/a/[0-9]+ => a:x\n GET ~/a/[0-9]+ => a:y", true);
    conflict("GET /a/:x => a:x\n ANY /a/:x => a:y", false);
    conflict("GET /a/:x => a:x\n POST /a/:x => a:y", false);
    conflict("GET /a/:x => a:x\n GET /a/b => a:y", false);
    conflict("GET /a/:x => a:x\n GET /a/** => a:y", false);
    conflict("GET /a => a:x\n GET /a/** => a:y", false);
    conflict("GET /a/:x => a:x\n GET /a/%3Ax => a:y", false);
    // A character that may stand raw and its escape are one literal: a canonical request path spells
    // it raw, and the escape is refused as needless.
    conflict("GET /a!b => a:x\n GET /a%21b => a:y", true);
    conflict("GET /v1/jobs:purge => a:x\n GET /v1/jobs%3Apurge => a:y", true);
    conflict("GET /users/@me => a:x\n GET /users/%40me => a:y", true);
    conflict("GET /a/** => a:x\n ANY /a/** => a:y", false);
    conflict("GET ~/a/[0-9]+ => a:x\n GET ~/a/[0-9]{1,} => a:y", false);
    conflict("GET /a => a:x\n GET ~/a => a:y", false);
}

#[test]
fn duplicate_ids_are_invalid() {
    let e = Snapshot::build(rules("GET /a => a:x id=5\n GET /b => b:x id=5"), 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("id 5"), "{}", e.message());
}

#[test]
fn find_conflict_names_the_existing_mapping() {
    let snapshot = Snapshot::build(rules("GET /a/:x => a:x id=40\n ANY ~/b => b:x id=41"), 1).unwrap();
    let pat = |s: &str| PathPattern::parse(s).unwrap();
    assert_eq!(snapshot.find_conflict(Method::Get, &pat("/a/*")), Some(40));
    assert_eq!(snapshot.find_conflict(Method::Post, &pat("/a/*")), None);
    assert_eq!(snapshot.find_conflict(Method::Any, &pat("~/b")), Some(41));
    assert_eq!(snapshot.find_conflict(Method::Get, &pat("/a/b")), None);
    assert_eq!((snapshot.len(), snapshot.version(), snapshot.is_empty()), (2, 1, false));
}

#[test]
fn shared_resolver_swaps_snapshots() {
    let shared = SharedResolver::new(Snapshot::build(rules("GET /a => a:one"), 1).unwrap());
    let old = shared.snapshot();
    assert!(shared.store_if_newer(Snapshot::build(rules("GET /a => a:two"), 2).unwrap()));
    assert!(!shared.store_if_newer(Snapshot::build(rules("GET /a => a:stale"), 2).unwrap()));
    assert_eq!(outcome(&shared.load().resolve("GET", "/a")), "a:two");
    // A reader that kept the old snapshot still sees it.
    assert_eq!(outcome(&old.resolve("GET", "/a")), "a:one");
    let previous = shared.store(Snapshot::default());
    assert_eq!(previous.version(), 2);
    assert_eq!(outcome(&shared.load().resolve("GET", "/a")), "-");
}

// ---------------------------------------------------------------------------------------------------
// Reference implementation: every rule checked in turn, the best by an explicit sort key.

/// The rank of a mapping's method for a request method: own method 0, GET for HEAD 1, ANY 2.
fn method_rank(rule: Method, request: &str) -> Option<u8> {
    if rule == Method::Any {
        return Some(2);
    }
    if rule.as_str() == request {
        return Some(0);
    }
    (request == "HEAD" && rule == Method::Get).then_some(1)
}

/// The shape of a route pattern that matches `path`: per segment 0 literal, 1 parameter, 2 `**` (which
/// needs at least one segment).
fn route_shape(segments: &[Segment], path: &[&str]) -> Option<Vec<u8>> {
    let mut shape = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        match seg {
            Segment::Rest => {
                if path.len() <= i {
                    return None;
                }
                shape.push(2);
                return Some(shape);
            }
            Segment::Lit(lit) => {
                if path.get(i) != Some(&&**lit) {
                    return None;
                }
                shape.push(0);
            }
            Segment::Param(_) | Segment::Wild => {
                path.get(i)?;
                shape.push(1);
            }
        }
    }
    (segments.len() == path.len()).then_some(shape)
}

fn reference<'r>(rules: &'r [MappingRule], method: &str, raw: &str) -> Result<Option<&'r MappingRule>, PathRejection> {
    if method.is_empty()
        || method
            .bytes()
            .any(|b| !(b.is_ascii_uppercase() || b"!#$%&'*+-.^_`|~0123456789".contains(&b)))
    {
        return Err(PathRejection::InvalidMethod);
    }
    let path = check_path(raw)?;
    let segs: Vec<&str> = if path == "/" {
        Vec::new()
    } else {
        path[1..].split('/').collect()
    };
    // (stage, route shape, method rank, priority, id): the path decides before the method.
    type Key = (u8, Vec<u8>, u8, i32, i64);
    let mut best: Option<(Key, &MappingRule)> = None;
    for rule in rules {
        let Some(rank) = method_rank(rule.method, method) else {
            continue;
        };
        let key = match rule.pattern.kind() {
            Kind::Route(segments) => match route_shape(segments, &segs) {
                Some(shape) => (0, shape, rank, 0, 0),
                None => continue,
            },
            Kind::Regex { .. } => {
                let re = Regex::new(&format!("^(?:{})$", &rule.pattern.as_str()[1..])).unwrap();
                if !re.is_match(path) {
                    continue;
                }
                (1, Vec::new(), rank, rule.priority, rule.id)
            }
        };
        if let Some((k, other)) = &best {
            assert_ne!(
                *k, key,
                "two matches with equal precedence: {} and {}",
                other.id, rule.id
            );
        }
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((key, rule));
        }
    }
    Ok(best.map(|(_, r)| r))
}

// ---------------------------------------------------------------------------------------------------
// Property test.

const REGEXES: &[&str] = &[
    "~/a/[^/]+",
    "~/a/.*",
    "~/[ab]/c",
    "~/a(/b)?",
    "~.*",
    "~/b/[a-c]+/c",
    "~/a/b",
    "~/c/.+/a",
    "~/",
    "~/a/b/c/[ab]",
    "~/a/b/.*",
    "~/b/a",
    "~/[a-z]*",
    "~/a/[b-z]*/c",
    "~/(a|b)/[^/]+/c",
];

fn arb_method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Get),
        Just(Method::Head),
        Just(Method::Post),
        Just(Method::Any)
    ]
}

fn arb_route() -> impl Strategy<Value = String> {
    let seg = prop_oneof![Just("a"), Just("b"), Just("c"), Just(":p"), Just("*")];
    (prop::collection::vec(seg, 0..4), any::<bool>()).prop_map(|(segs, rest)| {
        let mut s = String::new();
        for (i, seg) in segs.iter().enumerate() {
            s.push('/');
            s.push_str(seg);
            if *seg == ":p" {
                s.push_str(&i.to_string());
            }
        }
        if rest {
            s.push_str("/**");
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    })
}

fn arb_pattern() -> impl Strategy<Value = String> {
    prop_oneof![4 => arb_route(), 1 => prop::sample::select(REGEXES).prop_map(str::to_owned)]
}

fn arb_rules() -> impl Strategy<Value = Vec<MappingRule>> {
    prop::collection::vec((arb_method(), arb_pattern(), -2i32..=2), 0..24).prop_map(|raw| {
        let n = raw.len();
        raw.into_iter()
            .enumerate()
            .map(|(i, (method, pattern, priority))| MappingRule {
                // Ids run against the input order, so that order and id are not the same thing.
                id: i64::try_from(n - i).unwrap(),
                method,
                pattern: PathPattern::parse(&pattern).unwrap(),
                action: ActionName::parse(format!("act:{i}")).unwrap(),
                owner_group: None,
                priority,
            })
            .collect()
    })
}

fn without_conflicts(rules: Vec<MappingRule>) -> Vec<MappingRule> {
    let mut seen = std::collections::HashSet::new();
    rules
        .into_iter()
        .filter(|r| seen.insert((r.method, r.pattern.match_key())))
        .collect()
}

fn arb_path() -> impl Strategy<Value = String> {
    // Mostly canonical paths (the point is the precedence), some that are not.
    let seg = prop_oneof![
        8 => Just("a"), 8 => Just("b"), 6 => Just("c"), 2 => Just("d"), 1 => Just("%61"),
        1 => Just("."), 1 => Just(".."), 1 => Just(""), 1 => Just("a%2Fb"), 1 => Just("%2e%2E"),
    ];
    let slash = prop::sample::select(&[false, false, false, false, false, false, false, true][..]);
    (prop::collection::vec(seg, 0..6), slash, any::<bool>()).prop_map(|(segs, slash, query)| {
        let mut s = String::new();
        for seg in segs {
            s.push('/');
            s.push_str(seg);
        }
        if slash || s.is_empty() {
            s.push('/');
        }
        if query {
            s.push_str("?q=/../a");
        }
        s
    })
}

fn arb_request_method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(
        &[
            "GET", "HEAD", "POST", "DELETE", "get", "Get", "PROPFIND", "M-SEARCH", "GE T",
        ][..],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn compiled_resolver_agrees_with_reference(
        rules in arb_rules().prop_map(without_conflicts),
        requests in prop::collection::vec((arb_request_method(), arb_path()), 1..24),
    ) {
        let snapshot = Snapshot::build(rules.clone(), 7).unwrap();
        for (method, path) in &requests {
            let compiled = match snapshot.resolve(method, path) {
                Resolution::Matched(m) => Ok(Some(m.id())),
                Resolution::NoMatch => Ok(None),
                Resolution::Rejected(why) => Err(why),
            };
            let expected = reference(&rules, method, path).map(|r| r.map(|r| r.id));
            prop_assert_eq!(compiled, expected, "{} {}", method, path);
        }
    }

    #[test]
    fn candidates_are_the_resolvers_successive_answers(
        rules in arb_rules().prop_map(without_conflicts),
        requests in prop::collection::vec((arb_request_method(), arb_path()), 1..8),
    ) {
        let snapshot = Snapshot::build(rules.clone(), 7).unwrap();
        for (method, path) in &requests {
            let candidates = snapshot.candidates(method, path).map(|c| c.iter().map(|r| r.id).collect::<Vec<_>>());
            let first = match snapshot.resolve(method, path) {
                Resolution::Matched(m) => Ok(Some(m.id())),
                Resolution::NoMatch => Ok(None),
                Resolution::Rejected(why) => Err(why),
            };
            prop_assert_eq!(candidates.clone().map(|c| c.first().copied()), first, "{} {}", method, path);
            prop_assert_eq!(candidates, successive(&rules, method, path), "{} {}", method, path);
        }
    }

    #[test]
    fn build_refuses_exactly_the_duplicate_keys(rules in arb_rules()) {
        let distinct = without_conflicts(rules.clone()).len();
        let built = Snapshot::build(rules.clone(), 1);
        prop_assert_eq!(built.is_ok(), distinct == rules.len());
        if let Err(e) = built {
            prop_assert_eq!(e.kind(), ErrorKind::Conflict);
        }
    }
}

#[test]
fn snapshots_are_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Snapshot>();
    send_sync::<SharedResolver>();
    send_sync::<PathPattern>();
    let shared = std::sync::Arc::new(SharedResolver::new(
        Snapshot::build(rules("GET /a/:x => a:read"), 1).unwrap(),
    ));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let shared = std::sync::Arc::clone(&shared);
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    let snapshot = shared.load();
                    let action = outcome(&snapshot.resolve("GET", "/a/7"));
                    assert!(action == "a:read" || action == "a:write", "{action}");
                }
            })
        })
        .collect();
    for v in 2..50 {
        shared.store_if_newer(Snapshot::build(rules("GET /a/:x => a:write"), v).unwrap());
    }
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(shared.load().version(), 49);
}

#[test]
fn regex_count_and_set_size_are_bounded() {
    let regex_rule = |id: usize, method: Method, src: String| MappingRule {
        id: i64::try_from(id).unwrap(),
        method,
        pattern: PathPattern::parse(&src).unwrap(),
        action: ActionName::parse("re:x").unwrap(),
        owner_group: None,
        priority: 0,
    };
    // Spread over methods so that no set is too large: the count alone is refused.
    let many = |n: usize| (0..n).map(move |i| regex_rule(i, Method::ALL[i % 8], format!("~/r/{i}")));
    assert!(Snapshot::build(many(MAX_REGEX_MAPPINGS), 1).is_ok());
    let e = Snapshot::build(many(MAX_REGEX_MAPPINGS + 1), 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("more than the limit of 256"), "{}", e.message());
    // Expressions whose DFA would blow up are refused when the snapshot is built, for their method.
    let small = regex_rule(1, Method::Get, r"~/w/\w+".to_owned());
    let exploding = |method| regex_rule(2, method, "~/[a-z/]*a[a-z/]{24}".to_owned());
    assert!(Snapshot::build([small.clone(), exploding(Method::Post)], 1).is_err());
    let e = Snapshot::build([small.clone(), exploding(Method::Get)], 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message()
            .contains("regular expressions that a GET request consults (GET, ANY)"),
        "{}",
        e.message()
    );
    // An `ANY` expression counts in the set of every request method, which consults it.
    let e = Snapshot::build([small.clone(), exploding(Method::Any)], 1).unwrap_err();
    assert!(e.message().contains("a GET request consults"), "{}", e.message());
    let snapshot = Snapshot::build([small.clone()], 1).unwrap();
    // The same checks before a write.
    assert!(snapshot.check_regex_limits(&exploding(Method::Post)).is_err());
    assert!(snapshot.check_regex_limits(&exploding(Method::Any)).is_err());
    assert!(
        snapshot
            .check_regex_limits(&regex_rule(3, Method::Get, "~/ok/[0-9]+".to_owned()))
            .is_ok()
    );
    assert!(snapshot.check_regex_limits(&small).is_ok());
    assert!(snapshot.check_regex_limits(&rules("GET /a => a:x")[0]).is_ok());
    let full = Snapshot::build(many(MAX_REGEX_MAPPINGS), 1).unwrap();
    let e = full
        .check_regex_limits(&regex_rule(9999, Method::Get, "~/new".to_owned()))
        .unwrap_err();
    assert!(e.message().contains("more than the limit of 256"), "{}", e.message());
    // Replacing one (same id) keeps the count.
    assert!(
        full.check_regex_limits(&regex_rule(0, Method::Get, "~/new".to_owned()))
            .is_ok()
    );
}

#[test]
fn long_paths_are_rejected_before_any_matching() {
    let m = "GET ~/.* => re:all
             GET /** => all";
    let ok = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
    check(m, "GET", &ok, "all");
    let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
    check(m, "GET", &long, "rejected:path_too_long");
}
