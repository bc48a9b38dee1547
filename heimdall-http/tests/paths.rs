//! What is authorised is what is routed: a differential test of the mapping resolver against axum's own
//! `Router`.
//!
//! The same routes are registered as mappings and as an axum `Router` whose handlers answer with their
//! mapping's id. Every (method, path) of a table of adversarial paths must be rejected by the resolver
//! (non-canonical: frontends answer 400), or be dispatched by axum to the handler of the mapping the
//! resolver chose, or to no handler at all when the resolver chose none. axum answering 405 (the path's
//! route has no handler for the method, where the resolver may fall back to a less specific path) runs
//! no handler either, and is counted apart.

// Tests may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::routing::{MethodFilter, MethodRouter};
use heimdall_core::mapping::{MAX_PATH_LEN, MappingRule, Method, PathPattern, Resolution, Snapshot};
use heimdall_core::model::ActionName;
use http::{HeaderValue, Request};
use tower::ServiceExt;

/// Two sets of mappings, `(method, pattern)`; the id is the position plus one. (axum's router refuses a
/// parameter beside a catch-all at one position, so `/**` and `/:y/...` cannot both be routes: the
/// first set has a catch-all at the root, the second a parameter. A literal segment that starts with ':',
/// the pattern `/%3Aid`, is in neither: axum 0.8 refuses a route segment that starts with ':'.)
const WITH_ROOT_CATCH_ALL: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/courses"),
    ("GET", "/courses/:id"),
    ("GET", "/courses/new"),
    ("ANY", "/courses/:id/**"),
    ("POST", "/courses/:course/enroll"),
    ("ANY", "/admin/**"),
    ("GET", "/**"),
    ("ANY", "/admin/users"),
    ("GET", "/caf%C3%A9"),
    ("GET", "/jobs/j:run"),
    ("GET", "/files/*"),
    ("HEAD", "/files/*"),
    ("ANY", "/files/readme"),
    ("GET", "/t/a/:x/c"),
    ("GET", "/t/:y/b/c"),
    ("DELETE", "/users/:uid"),
    ("ANY", "/users/me"),
    ("GET", "/users/:uid/posts/:pid"),
    ("GET", "/sp%20ace"),
    ("GET", "/x!y"),
    ("PUT", "/x!y"),
    ("GET", "/A/B"),
    ("GET", "/users/@me"),
    ("POST", "/jobs/j:run"),
    ("POST", "/t/:y/b/c"),
    ("ANY", "/t/:y/b/c"),
    ("GET", "/t/:y/:z/d"),
];

const WITH_ROOT_PARAM: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/:y"),
    ("GET", "/:y/b/c"),
    ("POST", "/:y/b/c"),
    ("ANY", "/:y/b/c"),
    ("GET", "/a/:x/c"),
    ("GET", "/a/b/:z"),
    ("ANY", "/admin/**"),
    ("POST", "/admin/users"),
    ("HEAD", "/admin/users"),
    ("GET", "/admin/users/:id"),
    ("GET", "/courses/:id/**"),
    ("ANY", "/courses/:id"),
    ("GET", "/courses/new"),
    ("GET", "/caf%C3%A9"),
    ("GET", "/jobs/j:run"),
    ("GET", "/sp%20ace"),
    ("GET", "/x!y"),
    ("PUT", "/x!y"),
    ("GET", "/A/B"),
    ("GET", "/users/@me"),
    ("DELETE", "/users/:uid"),
    ("ANY", "/users/me"),
    ("ANY", "/files/**"),
    ("GET", "/files/readme"),
    ("GET", "/docs/*"),
    ("ANY", "/docs/index"),
];

/// Request methods, with lower- and mixed-case ones (refused by the resolver: `invalid_method`).
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PROPFIND", "get", "Get", "post", "gET",
];

/// The axum path for a route pattern: `:name` and `*` become `{pN}` (one name per position, so that
/// routes sharing a prefix never disagree on a name), `**` becomes `{*rest}`.
fn axum_path(pattern: &str) -> String {
    if pattern == "/" {
        return "/".to_owned();
    }
    let mut out = String::new();
    for (i, seg) in pattern[1..].split('/').enumerate() {
        out.push('/');
        if seg == "**" {
            out.push_str("{*rest}");
        } else if seg == "*" || seg.starts_with(':') {
            out.push_str(&format!("{{p{i}}}"));
        } else {
            out.push_str(seg);
        }
    }
    out
}

/// A handler answering with `id` in the `x-mapping` header (HEAD responses have no body).
fn answer(id: String) -> MethodRouter {
    axum::routing::any(move || {
        let id = id.clone();
        async move { ([("x-mapping", id)], "") }
    })
}

fn app(mappings: &[(&str, &str)]) -> Router {
    // axum path → (method → id), with "ANY" as the method router's fallback.
    let mut routes: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    for (i, (method, pattern)) in mappings.iter().enumerate() {
        let canonical = PathPattern::parse(pattern).unwrap();
        assert_eq!(canonical.as_str(), *pattern, "write the test's patterns canonically");
        let previous = routes.entry(axum_path(pattern)).or_default().insert(method, i + 1);
        assert!(previous.is_none(), "{method} {pattern} twice");
    }
    let mut app = Router::new();
    for (path, methods) in routes {
        let mut router = MethodRouter::new();
        for (method, id) in &methods {
            let handler = answer(id.to_string());
            router = match *method {
                "ANY" => continue,
                "GET" => router.on_service(MethodFilter::GET, handler),
                "HEAD" => router.on_service(MethodFilter::HEAD, handler),
                "POST" => router.on_service(MethodFilter::POST, handler),
                "PUT" => router.on_service(MethodFilter::PUT, handler),
                "DELETE" => router.on_service(MethodFilter::DELETE, handler),
                other => panic!("method {other} not used here"),
            };
        }
        let fallback = methods.get("ANY").map_or("405".to_owned(), |id| id.to_string());
        router = router.fallback_service(answer(fallback));
        app = app.route(&path, router);
    }
    app.fallback_service(answer("none".to_owned()))
}

fn snapshot(mappings: &[(&str, &str)]) -> Snapshot {
    let rules = mappings.iter().enumerate().map(|(i, (method, pattern))| MappingRule {
        id: i64::try_from(i).unwrap() + 1,
        method: Method::parse(method).unwrap(),
        pattern: PathPattern::parse(pattern).unwrap(),
        action: ActionName::parse(format!("m:{}", i + 1)).unwrap(),
        owner_group: None,
        priority: 0,
    });
    Snapshot::build(rules, 1).unwrap()
}

/// Base paths: hits on every mapping, near misses, and case variants.
const BASES: &[&str] = &[
    "/",
    "/courses",
    "/courses/7",
    "/courses/new",
    "/courses/7/enroll",
    "/courses/new/enroll",
    "/courses/7/files/a",
    "/admin",
    "/admin/users",
    "/admin/users/7",
    "/caf%C3%A9",
    "/jobs/j:run",
    "/jobs/j%3Arun",
    "/jobs/j%3arun",
    "/users/@me",
    "/users/%40me",
    "/users/%40%6De",
    "/files/x",
    "/files/readme",
    "/files/readme/x",
    "/t/a/b/c",
    "/t/z/b/c",
    "/t/a/q/c",
    "/t/a/b/d",
    "/t/a/b/e",
    "/users/me",
    "/users/9",
    "/users/9/posts/3",
    "/sp%20ace",
    "/x!y",
    "/x%21y",
    "/A/B",
    "/a/b",
    "/%3Aid",
    "/:id",
    "/other/deep/path",
    "/a/b/c",
    "/z/b/c",
    "/a/q/c",
    "/a/b/d",
    "/q",
    "/docs/x",
    "/docs/index",
    "/docs/index/x",
];

/// Turns a base path into adversarial variants.
fn variants(base: &str) -> Vec<String> {
    let trimmed = base.trim_end_matches('/');
    let mut out = vec![base.to_owned()];
    for suffix in [
        "?q=1/../x",
        "?",
        "#frag",
        "/",
        "//",
        "/.",
        "/..",
        "/%2e",
        "/%2E",
        "/%2e%2E",
        "/.%2e",
        "/%2E.",
        "/./x",
        "/../admin",
        "/%2e%2e/admin",
        "/%2E%2E/admin/users",
        "%2F",
        "%2f..%2fadmin",
        "%5C",
        "%5c",
        "\\",
        "%3F",
        "%3f",
        "%23",
        "%25",
        "%252e%252e",
        "%00",
        "%0A",
        "%7F",
        ";x=1",
        "%3B",
        "%C3",
        "%C3%A9",
        "%c3%a9",
        "%C0%AF",
        "%E0%80%AE",
        "%ED%A0%80",
        "%FF",
        "%41",
        "%7E",
        "%2D",
        "%20",
        "%2",
        "%",
        "%zz",
        "é",
        " ",
        "{x}",
        "|",
        "%21",
        "%3A",
        "%3Ax",
        "%40",
        "%2B",
        "%3D",
        "%24%26%27%28%29%2C",
        "+",
        ":",
        "@",
        "*",
        "/*",
        "/**",
        "/%2A",
        ":x",
    ] {
        out.push(format!("{trimmed}{suffix}"));
    }
    // Prefixes and rewrites of the whole path.
    out.push(format!("/{base}"));
    out.push(format!("/x/..{base}"));
    out.push(format!("/x/%2E%2E{base}"));
    out.push(format!("/.{base}"));
    out.push(base.to_uppercase());
    out.push(base.to_lowercase());
    out.push(base.replace('/', "%2F"));
    out.push(base.replacen('/', "//", 2));
    if base.len() > 1 {
        out.push(base.replace('/', "/./"));
        // The last character, percent-encoded (needless for unreserved characters).
        let (head, last) = base.split_at(base.len() - 1);
        out.push(format!("{head}%{:02X}", last.as_bytes()[0]));
        out.push(format!("{head}%{:02x}", last.as_bytes()[0]));
    }
    // Long paths around the limit.
    out.push(format!("{trimmed}/{}", "a".repeat(MAX_PATH_LEN)));
    let fill = MAX_PATH_LEN.saturating_sub(trimmed.len() + 1);
    out.push(format!("{trimmed}/{}", "b".repeat(fill)));
    out
}

fn paths() -> Vec<String> {
    let mut all: Vec<String> = BASES.iter().flat_map(|b| variants(b)).collect();
    all.extend(
        [
            "",
            "*",
            "courses",
            "//",
            "///",
            "/%2F",
            "/%2e%2e%2f",
            "/..%2F..%2Fadmin",
            "/admin%2Fusers",
            "/admin%2fusers",
            "/courses/%37",
            "/c%6Furses",
            "/%63ourses",
            "/COURSES/7",
            "/Courses/7",
            "/courses/7?",
            "/courses/7?#",
            "/courses/7#?x",
            "/courses/7%3Fx=1",
            "/courses/7%23x",
            "/courses/%F0%9F%98%80",
            "/courses/%F0%9F%98",
            "/courses/%F4%90%80%80",
            "/courses/\u{1F600}",
            "/files/%2E%2E%2F%2E%2E%2Fadmin",
            "/files/..%5Cadmin",
            "/files/..\\admin",
            "/users/me;jsessionid=1",
            "/users/me%3B",
            "/users/%6De",
            "/users/m%65",
            "/admin/%2e/users",
            "/admin/users/",
            "/admin/users//",
            "/t/a/b/c/",
            "/t/%61/b/c",
            "/t/a/%62/c",
            "/t/a/b/%63",
        ]
        .map(str::to_owned),
    );
    all.sort();
    all.dedup();
    all
}

fn resolver_choice(snapshot: &Snapshot, method: &str, path: &str) -> Option<Option<String>> {
    match snapshot.resolve(method, path) {
        Resolution::Matched(m) => Some(Some(m.id().to_string())),
        Resolution::NoMatch => Some(None),
        Resolution::Rejected(_) => None,
    }
}

#[tokio::test]
async fn resolver_agrees_with_axum_with_a_root_catch_all() {
    differential("root catch-all", WITH_ROOT_CATCH_ALL).await;
}

#[tokio::test]
async fn resolver_agrees_with_axum_with_a_root_parameter() {
    differential("root parameter", WITH_ROOT_PARAM).await;
}

async fn differential(name: &str, mappings: &[(&str, &str)]) {
    let app = app(mappings);
    let snapshot = snapshot(mappings);
    let paths = paths();
    assert!(paths.len() >= 200, "{} paths", paths.len());
    let (mut rejected, mut agreed, mut matched, mut method_refused, mut unparsable) = (0, 0, 0, 0, 0);
    let mut failures = Vec::new();
    for path in &paths {
        for method in METHODS {
            let Some(choice) = resolver_choice(&snapshot, method, path) else {
                rejected += 1;
                continue;
            };
            let Ok(req) = Request::builder()
                .method(*method)
                .uri(path.as_str())
                .body(Body::empty())
            else {
                // The http crate (hyper's parser too) refuses the target: no router ever sees it.
                unparsable += 1;
                continue;
            };
            let resp = app.clone().oneshot(req).await.unwrap();
            let routed = resp
                .headers()
                .get("x-mapping")
                .map(HeaderValue::to_str)
                .and_then(Result::ok)
                .unwrap_or("missing")
                .to_owned();
            match (routed.as_str(), &choice) {
                ("405", _) => method_refused += 1,
                ("none", None) => agreed += 1,
                (id, Some(chosen)) if id == chosen => {
                    agreed += 1;
                    matched += 1;
                }
                _ => failures.push(format!(
                    "{method} {path:?}: axum dispatched to {routed}, the resolver chose {choice:?}"
                )),
            }
        }
    }
    println!(
        "{name}: {} paths x {} methods: {rejected} rejected by the resolver, {agreed} agreed with axum ({matched} \
         on a mapping), {method_refused} refused by axum with 405, {unparsable} not parsable as a URI",
        paths.len(),
        METHODS.len()
    );
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        rejected > 1000 && agreed > 500 && matched > 200,
        "the table exercises both sides"
    );
}
