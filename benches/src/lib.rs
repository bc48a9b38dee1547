//! Shared fixtures for Heimdall's benchmarks: a generated route set in the shape of a large public REST
//! API, and a fixed mix of requests against it.

use std::collections::HashMap;

use heimdall_core::mapping::{MAX_PATH_LEN, MAX_REGEX_MAPPINGS, MappingRule, Method, PathPattern, Snapshot};
use heimdall_core::model::ActionName;

/// Requests in the fixed mix.
pub const REQUESTS: usize = 512;
/// One mapping in this many is a regular expression (5 %), up to [`REGEX_CAP`].
pub const REGEX_EVERY: usize = 20;
/// Most regular expressions in a generated route set: a snapshot holds at most
/// [`MAX_REGEX_MAPPINGS`], so sets of more than 4,000 routes have fewer than 5 % regexes.
pub const REGEX_CAP: usize = 200;

/// Route templates in the shape of GitHub's REST API. Each API namespace repeats them.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("GET", "/user"),
    ("PATCH", "/user"),
    ("GET", "/user/repos"),
    ("POST", "/user/repos"),
    ("GET", "/user/orgs"),
    ("GET", "/user/keys"),
    ("GET", "/user/keys/:key_id"),
    ("DELETE", "/user/keys/:key_id"),
    ("GET", "/users/:username"),
    ("GET", "/users/:username/repos"),
    ("GET", "/users/:username/gists"),
    ("GET", "/users/:username/followers"),
    ("GET", "/users/:username/following/:target"),
    ("GET", "/orgs/:org"),
    ("PATCH", "/orgs/:org"),
    ("GET", "/orgs/:org/repos"),
    ("POST", "/orgs/:org/repos"),
    ("GET", "/orgs/:org/members"),
    ("GET", "/orgs/:org/members/:username"),
    ("DELETE", "/orgs/:org/members/:username"),
    ("GET", "/orgs/:org/teams"),
    ("GET", "/orgs/:org/teams/:team_slug"),
    ("PUT", "/orgs/:org/teams/:team_slug/repos/:owner/:repo"),
    ("GET", "/orgs/:org/hooks/:hook_id"),
    ("ANY", "/orgs/:org/settings/**"),
    ("GET", "/repos/:owner/:repo"),
    ("PATCH", "/repos/:owner/:repo"),
    ("DELETE", "/repos/:owner/:repo"),
    ("GET", "/repos/:owner/:repo/issues"),
    ("POST", "/repos/:owner/:repo/issues"),
    ("GET", "/repos/:owner/:repo/issues/:number"),
    ("PATCH", "/repos/:owner/:repo/issues/:number"),
    ("GET", "/repos/:owner/:repo/issues/:number/comments"),
    ("POST", "/repos/:owner/:repo/issues/:number/comments"),
    ("PUT", "/repos/:owner/:repo/issues/:number/lock"),
    ("DELETE", "/repos/:owner/:repo/issues/:number/lock"),
    ("GET", "/repos/:owner/:repo/issues/:number/events"),
    ("GET", "/repos/:owner/:repo/issues/:number/labels"),
    ("DELETE", "/repos/:owner/:repo/issues/:number/labels/:name"),
    ("GET", "/repos/:owner/:repo/issues/comments/:comment_id"),
    ("GET", "/repos/:owner/:repo/pulls"),
    ("POST", "/repos/:owner/:repo/pulls"),
    ("GET", "/repos/:owner/:repo/pulls/:number"),
    ("PATCH", "/repos/:owner/:repo/pulls/:number"),
    ("GET", "/repos/:owner/:repo/pulls/:number/files"),
    ("GET", "/repos/:owner/:repo/pulls/:number/commits"),
    ("PUT", "/repos/:owner/:repo/pulls/:number/merge"),
    ("GET", "/repos/:owner/:repo/pulls/:number/reviews"),
    ("POST", "/repos/:owner/:repo/pulls/:number/reviews"),
    ("GET", "/repos/:owner/:repo/pulls/:number/reviews/:review_id"),
    ("GET", "/repos/:owner/:repo/commits"),
    ("GET", "/repos/:owner/:repo/commits/:ref"),
    ("GET", "/repos/:owner/:repo/commits/:ref/status"),
    ("GET", "/repos/:owner/:repo/branches"),
    ("GET", "/repos/:owner/:repo/branches/:branch"),
    ("PUT", "/repos/:owner/:repo/branches/:branch/protection"),
    ("GET", "/repos/:owner/:repo/contents/**"),
    ("PUT", "/repos/:owner/:repo/contents/**"),
    ("GET", "/repos/:owner/:repo/releases"),
    ("GET", "/repos/:owner/:repo/releases/latest"),
    ("GET", "/repos/:owner/:repo/releases/:release_id"),
    ("GET", "/repos/:owner/:repo/releases/:release_id/assets"),
    ("GET", "/repos/:owner/:repo/actions/runs"),
    ("GET", "/repos/:owner/:repo/actions/runs/:run_id"),
    ("POST", "/repos/:owner/:repo/actions/runs/:run_id/cancel"),
    ("GET", "/repos/:owner/:repo/actions/runs/:run_id/logs"),
    ("GET", "/repos/:owner/:repo/hooks"),
    ("GET", "/repos/:owner/:repo/hooks/:hook_id"),
    ("GET", "/repos/:owner/:repo/collaborators/:username"),
    ("PUT", "/repos/:owner/:repo/collaborators/:username"),
    ("GET", "/repos/:owner/:repo/git/refs/**"),
    ("GET", "/repos/:owner/:repo/git/trees/:tree_sha"),
    ("GET", "/repos/:owner/:repo/stats/contributors"),
    ("ANY", "/repos/:owner/:repo/admin/**"),
    ("GET", "/gists"),
    ("POST", "/gists"),
    ("GET", "/gists/:gist_id"),
    ("PATCH", "/gists/:gist_id"),
    ("GET", "/gists/:gist_id/comments"),
    ("GET", "/search/repositories"),
    ("GET", "/search/issues"),
    ("GET", "/notifications"),
    ("GET", "/notifications/threads/:thread_id"),
    ("GET", "/teams/:team_id/members"),
    ("GET", "/rate_limit"),
    ("GET", "/meta"),
];

/// Whether a parameter's values are numbers (a regex uses `[0-9]+` for them).
pub fn numeric(name: &str) -> bool {
    name == "number" || name.ends_with("_id")
}

/// A deterministic xorshift generator, so every run sees the same routes and requests.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// One generated mapping, as text.
#[derive(Debug, Clone)]
pub struct Route {
    /// `GET`, ..., or `ANY`.
    pub method: &'static str,
    /// The route pattern (`/api/s3/repos/:owner/:repo`), also for the regex ones.
    pub route: String,
    /// The pattern as stored: the route, or a `~` regular expression for 5 % of them.
    pub pattern: String,
}

impl Route {
    /// Whether the stored pattern is a regular expression.
    pub fn is_regex(&self) -> bool {
        self.pattern.starts_with('~')
    }
}

/// `n` mappings: the templates repeated under API namespaces `/api/s<k>`, one in twenty as a regex (at
/// most [`REGEX_CAP`]).
pub fn routes(n: usize) -> Vec<Route> {
    (0..n)
        .map(|i| {
            let (method, template) = TEMPLATES[i % TEMPLATES.len()];
            let ns = i / TEMPLATES.len();
            let route = format!("/api/s{ns}{template}");
            let pattern = if i % REGEX_EVERY == REGEX_EVERY / 2 && i / REGEX_EVERY < REGEX_CAP {
                let mut re = String::from("~");
                for seg in route[1..].split('/') {
                    re.push('/');
                    match seg.strip_prefix(':') {
                        Some(name) if numeric(name) => re.push_str("[0-9]+"),
                        Some(_) => re.push_str("[^/]+"),
                        None if seg == "**" => {
                            re.pop();
                            re.push_str("(/.*)?");
                        }
                        None => re.push_str(&regex::escape(seg)),
                    }
                }
                re
            } else {
                route.clone()
            };
            Route { method, route, pattern }
        })
        .collect()
}

/// The mappings of [`routes`], parsed, with ids from 1 and 500 distinct actions.
pub fn rules(routes: &[Route]) -> Vec<MappingRule> {
    routes
        .iter()
        .enumerate()
        .map(|(i, r)| MappingRule {
            id: i as i64 + 1,
            method: Method::parse(r.method).expect("method"),
            pattern: PathPattern::parse(&r.pattern).expect("pattern"),
            action: ActionName::parse(format!("api:action{}", i % 500)).expect("action"),
            owner_group: None,
            priority: 0,
        })
        .collect()
}

/// A concrete path for a route pattern.
pub fn instantiate(route: &str, rng: &mut Rng) -> String {
    const NAMES: &[&str] = &[
        "octocat",
        "hello-world",
        "rust-lang",
        "linux",
        "heimdall",
        "main",
        "v1.2.3",
    ];
    let mut path = String::new();
    for seg in route[1..].split('/') {
        path.push('/');
        match seg.strip_prefix(':') {
            Some(name) if numeric(name) => path.push_str(&(rng.next_u64() % 100_000).to_string()),
            Some(_) => path.push_str(NAMES[rng.below(NAMES.len())]),
            None if seg == "**" => path.push_str("src/lib.rs"),
            None => path.push_str(seg),
        }
    }
    path
}

/// The fixed mix: about 75 % hits on route patterns, 5 % on regexes, 20 % misses (an unknown
/// sub-resource under a known prefix, a method no mapping has, an unknown namespace). A few carry a
/// query string.
pub fn requests(routes: &[Route]) -> Vec<(&'static str, String)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let plain: Vec<&Route> = routes.iter().filter(|r| !r.is_regex()).collect();
    let regexes: Vec<&Route> = routes.iter().filter(|r| r.is_regex()).collect();
    let mut out = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let roll = rng.below(100);
        let (method, mut path) = if roll < 75 || regexes.is_empty() {
            let r = plain[rng.below(plain.len())];
            (
                if r.method == "ANY" { "POST" } else { r.method },
                instantiate(&r.route, &mut rng),
            )
        } else if roll < 80 {
            let r = regexes[rng.below(regexes.len())];
            (
                if r.method == "ANY" { "GET" } else { r.method },
                instantiate(&r.route, &mut rng),
            )
        } else if roll < 90 {
            let r = plain[rng.below(plain.len())];
            ("GET", format!("{}/no-such-thing", instantiate(&r.route, &mut rng)))
        } else if roll < 95 {
            ("TRACE", instantiate(&plain[rng.below(plain.len())].route, &mut rng))
        } else {
            ("GET", format!("/api/s{}/repos/a/b", 1_000_000 + i))
        };
        if i % 16 == 0 {
            path.push_str("?per_page=100&page=2");
        }
        out.push((method, path));
    }
    out
}

/// The most expensive snapshot the limits allow for one request, and that request: a `HEAD` request
/// (which consults the `HEAD`, `GET` and `ANY` regular expressions, compiled into one automaton) on a
/// path of [`MAX_PATH_LEN`] bytes, against up to [`MAX_REGEX_MAPPINGS`] regular expressions spread over
/// those three methods, all as large as `MAX_REGEX_SET_SIZE` allows for that many together. The expressions defeat the
/// lazy DFA (`/[a-z/]*a[a-z/]{n}k`: "the n-th byte before the end is an `a`" has 2^n states), every one
/// follows the path to its last byte, and all fail there. Returns the rules and [`WORST_CASE_PATHS`]
/// such paths of random `a`s and `b`s (so that a benchmark cycling through them keeps meeting DFA states
/// it has not cached, as an attacker's requests would).
///
/// `per_method`: how many expressions each of the three methods gets (at most a third of
/// [`MAX_REGEX_MAPPINGS`] is used); fewer, larger expressions cost more per request than many small ones.
pub fn worst_case(per_method: usize) -> (Vec<MappingRule>, Vec<String>) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let paths = (0..WORST_CASE_PATHS)
        .map(|_| {
            let mut path = String::with_capacity(MAX_PATH_LEN);
            while path.len() < MAX_PATH_LEN - 1 {
                path.push(if path.len().is_multiple_of(16) {
                    '/'
                } else if rng.next_u64().is_multiple_of(2) {
                    'a'
                } else {
                    'b'
                });
            }
            path.push('!');
            path
        })
        .collect();
    // `None` when the expression exceeds the per-expression limit.
    let rule = |id: usize, method: Method, n: usize| {
        Some(MappingRule {
            id: id as i64 + 1,
            method,
            pattern: PathPattern::parse(&format!("~/[a-z/]*a[a-z/]{{{n}}}{id}")).ok()?,
            action: ActionName::parse(format!("re:a{id}")).expect("action"),
            owner_group: None,
            priority: 0,
        })
    };
    let methods = [Method::Head, Method::Get, Method::Any];
    // `per_method` expressions for each method (at most a third of `MAX_REGEX_MAPPINGS` each), all with
    // `n` repetitions, or `None` if one exceeds the per-expression limit.
    let set = |n: usize| -> Option<Vec<MappingRule>> {
        let mut rules = Vec::new();
        for (m, method) in methods.into_iter().enumerate() {
            let count = per_method
                .min(MAX_REGEX_MAPPINGS / methods.len() + usize::from(m < MAX_REGEX_MAPPINGS % methods.len()));
            let first = rules.len();
            for k in first..first + count {
                rules.push(rule(k, method, n)?);
            }
        }
        Some(rules)
    };
    // The largest repetition count for which the snapshot builds, by bisection: the set a HEAD request
    // consults (all of them) then sits at the size limit.
    let (mut lo, mut hi) = (1usize, 4096usize);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if set(mid).is_some_and(|rules| Snapshot::build(rules, 1).is_ok()) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let rules = set(lo).expect("one repetition fits");
    (rules, paths)
}

/// How many different paths [`worst_case`] returns.
pub const WORST_CASE_PATHS: usize = 256;

/// matchit routers, one per method plus one for ANY, on the routes it can express (not the regexes).
pub struct MatchitRouters {
    by_method: HashMap<&'static str, matchit::Router<i64>>,
    any: matchit::Router<i64>,
}

impl MatchitRouters {
    /// The routers, and how many routes they could not take.
    pub fn new(routes: &[Route]) -> (Self, usize) {
        let mut by_method: HashMap<&'static str, matchit::Router<i64>> = HashMap::new();
        let mut any = matchit::Router::new();
        let mut skipped = 0;
        for (i, r) in routes.iter().enumerate() {
            if r.is_regex() {
                skipped += 1;
                continue;
            }
            let mut path = String::new();
            for seg in r.route[1..].split('/') {
                path.push('/');
                match seg {
                    "**" => path.push_str("{*rest}"),
                    s if s.starts_with(':') => {
                        path.push('{');
                        path.push_str(&s[1..]);
                        path.push('}');
                    }
                    s => path.push_str(s),
                }
            }
            let router = if r.method == "ANY" {
                &mut any
            } else {
                by_method.entry(r.method).or_default()
            };
            if router.insert(path, i as i64 + 1).is_err() {
                skipped += 1;
            }
        }
        (MatchitRouters { by_method, any }, skipped)
    }

    /// The id (index + 1) of the route `method raw` resolves to, or 0.
    pub fn resolve(&self, method: &str, raw: &str) -> i64 {
        let path = raw.split('?').next().unwrap_or(raw);
        if let Some(router) = self.by_method.get(method)
            && let Ok(m) = router.at(path)
        {
            return *m.value;
        }
        self.any.at(path).map_or(0, |m| *m.value)
    }
}

/// `prefix` followed by `value` percent-encoded as a query value (how the lookup benchmarks ask
/// `GET /api/v1/mappings?method=&path=`).
pub fn url_query(prefix: &str, value: &str) -> String {
    let mut out = String::from(prefix);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A benchmark's Heimdall: SQLite (kept while the returned database lives) and the built-in PDP.
pub async fn sqlite_heimdall()
-> heimdall_core::Result<(heimdall_core::test_utils::TestDatabase, heimdall_core::Heimdall)> {
    let db = heimdall_core::test_utils::TestDatabase::sqlite();
    let h = heimdall_core::Heimdall::builder(heimdall_core::Config {
        database_url: db.url.clone(),
        ..heimdall_core::Config::default()
    })
    .build()
    .await?;
    Ok((db, h))
}

/// This process's resident memory (`VmRSS`), in KiB, for the benchmarks that measure a process of their own.
pub fn rss_kib() -> std::io::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no VmRSS in /proc/self/status"))
}

/// The lookup benchmarks' Heimdall ([`sqlite_heimdall`]) with `routes` as mappings (actions `api:action0` to
/// `api:action499`), created by the system caller.
pub async fn heimdall_with_mappings(
    routes: &[Route],
) -> heimdall_core::Result<(heimdall_core::test_utils::TestDatabase, heimdall_core::Heimdall)> {
    let (db, h) = sqlite_heimdall().await?;
    let system = h.system_caller("benchmark")?;
    for (i, r) in routes.iter().enumerate() {
        let input = heimdall_core::model::MappingInput {
            method: r.method.to_owned(),
            path_pattern: r.pattern.clone(),
            action: format!("api:action{}", i % 500),
            ..heimdall_core::model::MappingInput::default()
        };
        h.create_mapping(&system, &input).await?;
    }
    Ok((db, h))
}

/// The `p`th percentile (nearest rank) of `sorted`, which must not be empty.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
