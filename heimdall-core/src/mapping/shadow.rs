//! Shadowing: which existing mappings a new or changed mapping would take requests from.
//!
//! A mapping `new` *takes requests from* (shadows) an existing mapping `n` when some canonical request
//! (a method and a path) is matched by both and `new` answers it before `n` under the resolver's
//! precedence (see the [module docs](super)). Only such a request can move from `n` to `new` when `new`
//! is written: a request that resolves to `n` today and to `new` afterwards is matched by both, and `new`
//! beats `n` on it (`n` is still there). So the mappings [`would_take_from`] finds are a superset of those
//! that actually lose a request — sound: none is ever missed. [`Snapshot::shadowed_by`] then keeps, of the
//! route patterns, those that really lose a request, searched over classes of requests against the route
//! patterns before and after the write (exact); regular expressions stay as [`would_take_from`] finds them.
//!
//! How each pair is decided is documented on [`would_take_from`].

use std::collections::{HashSet, VecDeque};

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};

use super::path::is_plain;
use super::pattern::{Kind, Method, PathPattern, Segment};
use super::resolver::{MappingRule, Snapshot, method_classes};
use crate::model::GroupName;

/// Most pairs of DFA states the search for a common path visits before it gives up
/// ([`Overlap::Undecided`]).
pub const MAX_PRODUCT_STATES: usize = 200_000;

/// Largest DFA built for one side of an overlap question, in bytes.
const DFA_SIZE_LIMIT: usize = 4 * 1024 * 1024;

/// Whether a mapping takes requests from another (see [`would_take_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// No request is matched by both with the new mapping first.
    None,
    /// Some request is matched by both, and the new mapping answers it first.
    Takes,
    /// Could not be decided within the bounds (regular expressions only): treat as [`Overlap::Takes`].
    Undecided,
}

/// An existing mapping a write would take requests from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    /// The shadowed mapping's id.
    pub id: i64,
    /// Its method.
    pub method: Method,
    /// Its pattern.
    pub pattern: PathPattern,
    /// Its owner group.
    pub owner_group: Option<GroupName>,
    /// Its priority.
    pub priority: i32,
    /// `false` when the overlap could not be decided ([`Overlap::Undecided`]) and is assumed.
    pub certain: bool,
}

impl Shadow {
    /// `mapping 7 (GET /go/billing/**)`, with `(possibly)` when the overlap was assumed.
    pub fn describe(&self) -> String {
        let maybe = if self.certain {
            ""
        } else {
            " (possibly: the overlap could not be decided)"
        };
        format!("mapping {} ({} {}){maybe}", self.id, self.method, self.pattern)
    }
}

/// The request methods that stand for every request method: the seven known ones, and one that is not
/// known (which consults `ANY` mappings only).
const REQUEST_METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"];

/// Whether some request method consults both `new` and `old` and, when `new_first` says so for the
/// positions of their methods in that request's method order, puts `new` first.
fn some_request_method(new: Method, old: Method, new_first: impl Fn(usize, usize) -> bool) -> bool {
    REQUEST_METHODS.iter().any(|q| {
        let order = method_classes(q).order;
        let pos = |m: Method| order.iter().position(|o| *o == m);
        matches!((pos(new), pos(old)), (Some(a), Some(b)) if new_first(a, b))
    })
}

/// How two route patterns order on the paths both match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathOrder {
    /// No path matches both.
    Disjoint,
    /// On every path both match, the first one wins.
    FirstWins,
    /// On every path both match, the second one wins.
    SecondWins,
    /// The same shape (same match key): the method decides.
    SameShape,
}

/// Whether some path matches both `a` and `b` (route pattern segments, from the same position on).
fn paths_meet(a: &[Segment], b: &[Segment]) -> bool {
    for i in 0.. {
        match (a.get(i), b.get(i)) {
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            // The other has a segment here, so every path it matches from here is one `**` matches.
            (Some(Segment::Rest), Some(_)) | (Some(_), Some(Segment::Rest)) => return true,
            (Some(Segment::Lit(x)), Some(Segment::Lit(y))) if x != y => return false,
            _ => {}
        }
    }
    unreachable!("the loop returns")
}

/// The order of route patterns `a` and `b` on the paths both match (see [`PathOrder`]).
fn path_order(a: &[Segment], b: &[Segment]) -> PathOrder {
    use Segment::{Lit, Param, Rest, Wild};
    for i in 0.. {
        let rest_meet = || paths_meet(&a[i + 1..], &b[i + 1..]);
        match (a.get(i), b.get(i)) {
            (None, None) | (Some(Rest), Some(Rest)) => return PathOrder::SameShape,
            // One ends where the other needs a segment (`**` needs one too).
            (None, Some(_)) | (Some(_), None) => return PathOrder::Disjoint,
            // `**` loses to a segment of the other, which always leaves it paths to share.
            (Some(Rest), Some(_)) => return PathOrder::SecondWins,
            (Some(_), Some(Rest)) => return PathOrder::FirstWins,
            (Some(Lit(x)), Some(Lit(y))) => {
                if x != y {
                    return PathOrder::Disjoint;
                }
            }
            (Some(Lit(_)), Some(Param(_) | Wild)) => {
                return if rest_meet() {
                    PathOrder::FirstWins
                } else {
                    PathOrder::Disjoint
                };
            }
            (Some(Param(_) | Wild), Some(Lit(_))) => {
                return if rest_meet() {
                    PathOrder::SecondWins
                } else {
                    PathOrder::Disjoint
                };
            }
            (Some(Param(_) | Wild), Some(Param(_) | Wild)) => {}
        }
    }
    unreachable!("the loop returns")
}

/// Whether `new` takes requests from `existing`, were both in one snapshot: whether some canonical request
/// is matched by both and answered by `new` first. `new.id` breaks ties between regular expressions of
/// equal priority (a mapping being created will get an id larger than every existing one: pass `i64::MAX`).
///
/// How a pair is decided:
///
/// - **Two route patterns**: exactly, from their shapes. Compared segment by segment from the left, the
///   first position where their kinds differ decides (a literal beats `:name`/`*`, which beats `**`),
///   provided the rest of both can still match one path; two literals that differ never overlap. Patterns
///   of the same shape are ordered by method: a request method that consults both must consult `new`'s
///   first (`GET` before `ANY`, `HEAD` before `GET` and `ANY`).
/// - **A route pattern and a regular expression**: a route pattern always comes first, so `new` (a route)
///   takes from a regular expression `n` exactly when a path matches both (and one request method
///   consults both methods); `new` a regular expression never takes from a route pattern. Whether two
///   languages meet is decided on their DFAs: a breadth-first search over pairs of states, over the bytes
///   a canonical path can hold. A route pattern becomes the expression of the paths it matches (a
///   segment is one or more canonical characters or `%XX` escapes). The rules of canonical paths beyond
///   their characters (no `.`/`..` segment, no needless escape) are not modelled: a path that only a
///   non-canonical path could witness counts as an overlap (sound, never a miss).
/// - **Two regular expressions**: as above, and `new` must come first for one request method consulting
///   both: an earlier method class, or the same method and a lower `(priority, id)`.
///
/// When the automata are too large to build, or the search passes [`MAX_PRODUCT_STATES`] pairs of
/// states, the answer is [`Overlap::Undecided`], which callers must treat as a shadow.
pub fn would_take_from(new: &MappingRule, existing: &MappingRule) -> Overlap {
    match (new.pattern.kind(), existing.pattern.kind()) {
        (Kind::Route(a), Kind::Route(b)) => match path_order(a, b) {
            PathOrder::Disjoint | PathOrder::SecondWins => Overlap::None,
            PathOrder::FirstWins => some_request_method(new.method, existing.method, |_, _| true).into(),
            PathOrder::SameShape => some_request_method(new.method, existing.method, |a, b| a < b).into(),
        },
        // Route patterns are consulted before every regular expression.
        (Kind::Regex { .. }, Kind::Route(_)) => Overlap::None,
        (Kind::Route(_), Kind::Regex { .. }) => {
            if !some_request_method(new.method, existing.method, |_, _| true) {
                return Overlap::None;
            }
            languages_meet(&route_regex(&new.pattern), anchored(&existing.pattern))
        }
        (Kind::Regex { .. }, Kind::Regex { .. }) => {
            let first =
                |a: usize, b: usize| a < b || (a == b && (new.priority, new.id) < (existing.priority, existing.id));
            if !some_request_method(new.method, existing.method, first) {
                return Overlap::None;
            }
            languages_meet(anchored(&new.pattern), anchored(&existing.pattern))
        }
    }
}

impl From<bool> for Overlap {
    fn from(takes: bool) -> Overlap {
        if takes { Overlap::Takes } else { Overlap::None }
    }
}

impl Snapshot {
    /// The mappings of this snapshot that `rule` would take requests from once written (created, or
    /// replacing the mapping with its id, which is never listed), in the snapshot's order. Sound: a mapping
    /// not listed loses no request to `rule`.
    ///
    /// A route pattern `n` is listed exactly when some request resolves to `n` in this snapshot and to `rule`
    /// once it is written: of the mappings [`would_take_from`] finds, those no such request reaches (another
    /// mapping already answers every request they would lose, such as the caller's own `/go/team/**` above a
    /// catch-all `/**`) are left out. The requests are searched as classes: at each position a path segment
    /// is one of the literals the patterns still in play have there or a fresh one, at most one segment past
    /// the longest pattern, which tells apart every pair of requests any route pattern tells apart. Past
    /// [`MAX_WITNESS_REQUESTS`] requests the search stops and every route pattern `would_take_from` found is
    /// listed. A regular expression is listed when `would_take_from` finds it (it cannot be searched that
    /// way).
    pub fn shadowed_by(&self, rule: &MappingRule) -> Vec<Shadow> {
        let mut found: Vec<Shadow> = self
            .rules()
            .iter()
            .filter(|n| n.id != rule.id)
            .filter_map(|n| {
                let certain = match would_take_from(rule, n) {
                    Overlap::None => return None,
                    Overlap::Takes => true,
                    Overlap::Undecided => false,
                };
                Some(Shadow {
                    id: n.id,
                    method: n.method,
                    pattern: n.pattern.clone(),
                    owner_group: n.owner_group.clone(),
                    priority: n.priority,
                    certain,
                })
            })
            .collect();
        if found.iter().any(|s| !s.pattern.is_regex())
            && let Some(losing) = self.losing_routes(rule)
        {
            found.retain(|s| s.pattern.is_regex() || losing.contains(&s.id));
        }
        found
    }

    /// The route patterns that lose a request to `rule` once it is written, searched over classes of
    /// requests (see [`shadowed_by`](Self::shadowed_by)); `None` when `rule` is not a route pattern, the
    /// snapshot with it does not build, or the search passes [`MAX_WITNESS_REQUESTS`].
    fn losing_routes(&self, rule: &MappingRule) -> Option<HashSet<i64>> {
        let Kind::Route(segments) = rule.pattern.kind() else {
            return None;
        };
        // Route patterns are consulted before every regular expression, so the route patterns alone decide
        // whether a request resolves to `rule`, and which route pattern it resolved to before (the regular
        // expressions' sets, whose automata are costly to build, are left out).
        let routes_of = |rules: &mut dyn Iterator<Item = &MappingRule>| {
            let routes: Vec<MappingRule> = rules.filter(|r| !r.pattern.is_regex()).cloned().collect();
            Snapshot::build(routes, self.version()).ok()
        };
        let before = routes_of(&mut self.rules().iter())?;
        let after = routes_of(
            &mut self
                .rules()
                .iter()
                .filter(|r| r.id != rule.id)
                .chain(std::iter::once(rule)),
        )?;
        let routes: Vec<&[Segment]> = self
            .rules()
            .iter()
            .chain(std::iter::once(rule))
            .filter_map(|r| match r.pattern.kind() {
                Kind::Route(segs) => Some(segs.as_slice()),
                Kind::Regex { .. } => None,
            })
            .collect();
        let mut search = Witnesses {
            before: &before,
            after: &after,
            id: rule.id,
            methods: request_methods(rule.method),
            longest: routes.iter().map(|r| r.len()).max().unwrap_or(0),
            routes,
            budget: MAX_WITNESS_REQUESTS,
            losing: HashSet::new(),
        };
        let alive: Vec<usize> = (0..search.routes.len()).collect();
        search.walk(segments, 0, &mut String::new(), &alive).ok()?;
        Some(search.losing)
    }
}

/// Most requests [`Snapshot::shadowed_by`] resolves (before and after the write) in its search for the
/// route patterns that really lose one.
pub const MAX_WITNESS_REQUESTS: usize = 50_000;

/// The request methods that reach a mapping of `method`.
fn request_methods(method: Method) -> Vec<&'static str> {
    REQUEST_METHODS
        .into_iter()
        .filter(|q| method_classes(q).order.contains(&method))
        .collect()
}

/// The search for requests that move from a route pattern to the written one.
struct Witnesses<'a> {
    /// The route patterns before the write, and after.
    before: &'a Snapshot,
    after: &'a Snapshot,
    /// The written mapping's id.
    id: i64,
    methods: Vec<&'static str>,
    /// Every route pattern, before and after the write.
    routes: Vec<&'a [Segment]>,
    /// The most segments a route pattern has.
    longest: usize,
    budget: usize,
    losing: HashSet<i64>,
}

/// The search ran out of requests.
struct OutOfBudget;

impl Witnesses<'_> {
    /// Whether route `r` can still match a path whose segment at `pos` is `value`, given it matched the
    /// segments before.
    fn admits(&self, r: usize, pos: usize, value: &str) -> bool {
        let segs = self.routes[r];
        if segs[..pos.min(segs.len())].iter().any(|s| matches!(s, Segment::Rest)) {
            return true;
        }
        match segs.get(pos) {
            None => false,
            Some(Segment::Lit(l)) => **l == *value,
            Some(_) => true,
        }
    }

    /// The segments worth trying at `pos`: the literals the routes still in play have there, and one that
    /// none of them has.
    fn values(&self, pos: usize, alive: &[usize]) -> Vec<String> {
        let mut values: Vec<String> = Vec::new();
        for &r in alive {
            if let Some(Segment::Lit(l)) = self.routes[r].get(pos)
                && !values.iter().any(|v| **v == **l)
            {
                values.push(l.to_string());
            }
        }
        let mut fresh = String::from("~0");
        while values.contains(&fresh) {
            fresh.push('0');
        }
        values.push(fresh);
        values
    }

    /// Tries every class of requests the written pattern `segs` matches from position `pos` on.
    fn walk(&mut self, segs: &[Segment], pos: usize, path: &mut String, alive: &[usize]) -> Result<(), OutOfBudget> {
        let Some(seg) = segs.get(pos) else {
            return self.leaf(path);
        };
        let values = match seg {
            Segment::Lit(l) => vec![l.to_string()],
            Segment::Param(_) | Segment::Wild => self.values(pos, alive),
            Segment::Rest => return self.rest(pos, path, alive),
        };
        for v in values {
            let len = path.len();
            path.push('/');
            path.push_str(&v);
            let next: Vec<usize> = alive.iter().copied().filter(|&r| self.admits(r, pos, &v)).collect();
            self.walk(segs, pos + 1, path, &next)?;
            path.truncate(len);
        }
        Ok(())
    }

    /// `**` at `pos`: one segment or more, up to one past the longest pattern.
    fn rest(&mut self, pos: usize, path: &mut String, alive: &[usize]) -> Result<(), OutOfBudget> {
        for v in self.values(pos, alive) {
            let len = path.len();
            path.push('/');
            path.push_str(&v);
            let next: Vec<usize> = alive.iter().copied().filter(|&r| self.admits(r, pos, &v)).collect();
            self.leaf(path)?;
            if pos < self.longest {
                self.rest(pos + 1, path, &next)?;
            }
            path.truncate(len);
        }
        Ok(())
    }

    /// Resolves one path (every method that reaches the written mapping) against the route patterns before
    /// and after the write.
    fn leaf(&mut self, path: &str) -> Result<(), OutOfBudget> {
        let path = if path.is_empty() { "/" } else { path };
        for m in &self.methods {
            self.budget = self.budget.checked_sub(1).ok_or(OutOfBudget)?;
            if self.after.resolve(m, path).matched().map(|r| r.id()) != Some(self.id) {
                continue;
            }
            if let Some(was) = self.before.resolve(m, path).matched()
                && was.id() != self.id
            {
                self.losing.insert(was.id());
            }
        }
        Ok(())
    }
}

/// The anchored source of a regular-expression pattern (`^(?:...)$`).
fn anchored(pattern: &PathPattern) -> &str {
    match pattern.kind() {
        Kind::Regex { anchored, .. } => anchored,
        Kind::Route(_) => unreachable!("only called for regular expressions"),
    }
}

/// The bytes a canonical path can hold: `/`, `%` and the characters a segment may hold raw.
fn path_bytes() -> impl Iterator<Item = u8> {
    (0u8..128).filter(|&b| b == b'/' || b == b'%' || is_plain(b))
}

/// The anchored regular expression of the paths a route pattern matches.
fn route_regex(pattern: &PathPattern) -> String {
    let Kind::Route(segments) = pattern.kind() else {
        unreachable!("only called for route patterns")
    };
    let mut class = String::from("[");
    for b in (0u8..128).filter(|&b| is_plain(b)) {
        class.push_str(&regex_syntax::escape(&char::from(b).to_string()));
    }
    class.push(']');
    let seg = format!("(?:{class}|%[0-9A-F]{{2}})+");
    let mut re = String::from("^(?:");
    if segments.is_empty() {
        re.push('/');
    }
    for s in segments {
        re.push('/');
        match s {
            Segment::Lit(lit) => re.push_str(&regex_syntax::escape(lit)),
            Segment::Param(_) | Segment::Wild => re.push_str(&seg),
            Segment::Rest => re.push_str(&format!("{seg}(?:/{seg})*")),
        }
    }
    re.push_str(")$");
    re
}

fn dfa(source: &str) -> Option<dense::DFA<Vec<u32>>> {
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(StartKind::Anchored)
                .unicode_word_boundary(true)
                .dfa_size_limit(Some(DFA_SIZE_LIMIT))
                .determinize_size_limit(Some(DFA_SIZE_LIMIT)),
        )
        .thompson(thompson::Config::new().nfa_size_limit(Some(DFA_SIZE_LIMIT)))
        .build(source)
        .ok()
}

/// Whether some canonical-looking path (bytes of [`path_bytes`]) is matched by both anchored expressions.
fn languages_meet(a: &str, b: &str) -> Overlap {
    let (Some(da), Some(db)) = (dfa(a), dfa(b)) else {
        return Overlap::Undecided;
    };
    let config = start::Config::new().anchored(Anchored::Yes);
    let (Ok(sa), Ok(sb)) = (da.start_state(&config), db.start_state(&config)) else {
        return Overlap::Undecided;
    };
    let alive = |d: &dense::DFA<Vec<u32>>, s: StateID| !d.is_dead_state(s) && !d.is_quit_state(s);
    let bytes: Vec<u8> = path_bytes().collect();
    let mut seen: HashSet<(StateID, StateID)> = HashSet::new();
    let mut queue = VecDeque::from([(sa, sb)]);
    seen.insert((sa, sb));
    while let Some((x, y)) = queue.pop_front() {
        if da.is_match_state(da.next_eoi_state(x)) && db.is_match_state(db.next_eoi_state(y)) {
            return Overlap::Takes;
        }
        for &byte in &bytes {
            let next = (da.next_state(x, byte), db.next_state(y, byte));
            if alive(&da, next.0) && alive(&db, next.1) && seen.insert(next) {
                if seen.len() > MAX_PRODUCT_STATES {
                    return Overlap::Undecided;
                }
                queue.push_back(next);
            }
        }
    }
    Overlap::None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::ActionName;

    fn rule(id: i64, method: &str, pattern: &str) -> MappingRule {
        MappingRule {
            id,
            method: Method::parse(method).unwrap(),
            pattern: PathPattern::parse(pattern).unwrap(),
            action: ActionName::parse("a:b").unwrap(),
            owner_group: None,
            priority: 0,
        }
    }

    /// `new` (`METHOD PATTERN`) against `existing`: whether it takes requests from it.
    #[track_caller]
    fn takes(new: &str, existing: &str, expect: Overlap) {
        let parse = |s: &str, id| {
            let (m, p) = s.split_once(' ').unwrap();
            rule(id, m, p)
        };
        let got = would_take_from(&parse(new, i64::MAX), &parse(existing, 1));
        assert_eq!(got, expect, "{new} over {existing}");
    }

    #[test]
    fn route_patterns_by_shape() {
        use Overlap::{None, Takes};
        // The review's case (a): a literal under another team's `**`.
        takes("GET /go/billing/secret", "ANY /go/billing/**", Takes);
        // (b): a literal under a parameter.
        takes("GET /go/ops/restart", "GET /go/ops/:id", Takes);
        takes("GET /go/ops/:id", "GET /go/ops/restart", None);
        takes("GET /go/ops/*/x", "GET /go/ops/:x/**", Takes);
        takes("GET /go/ops/*", "GET /go/ops/:x/**", None);
        takes("GET /go/ops/:x/**", "GET /go/ops/*", None);
        // Disjoint literals, lengths, and a literal where the rest cannot meet.
        takes("GET /go/a", "GET /go/b", None);
        takes("GET /go/a", "GET /go/a/b", None);
        takes("GET /go/a/**", "GET /go/a", None);
        takes("GET /go/a/x", "GET /go/:p/y", None);
        takes("GET /go/a/:x", "GET /go/:p/y", Takes);
        takes("GET /go/:x/y", "GET /go/a/:p", None);
        // The path decides before the method.
        takes("ANY /go/**", "GET /**", Takes);
        takes("GET /**", "ANY /go/**", None);
        takes("ANY /go/x", "GET /go/:id", Takes);
        // Same shape: the method decides.
        takes("GET /go/:id", "ANY /go/:x", Takes);
        takes("ANY /go/:id", "GET /go/:x", None);
        takes("HEAD /go/x", "GET /go/x", Takes);
        takes("GET /go/x", "HEAD /go/x", None);
        takes("GET /go/**", "ANY /go/**", Takes);
        // Methods that no request consults together never meet.
        takes("POST /go/x", "GET /go/:id", None);
        takes("GET /go/x", "POST /go/:id", None);
        takes("HEAD /go/x", "GET /go/:id", Takes);
        takes("GET /go/x", "HEAD /go/:id", Takes);
        // The root.
        takes("GET /", "GET /**", None);
        takes("GET /a", "GET /**", Takes);
        takes("GET /", "ANY /", Takes);
    }

    #[test]
    fn routes_over_regular_expressions() {
        use Overlap::{None, Takes};
        // The review's case (c).
        takes("ANY /go/**", "GET ~/go/[^/]+/admin", Takes);
        takes("GET /go/billing/invoices", "GET ~/go/[^/]+/admin", None);
        takes("GET /go/:team/admin", "GET ~/go/[^/]+/admin", Takes);
        takes("POST /go/:team/admin", "GET ~/go/[^/]+/admin", None);
        takes("GET /go/:team/admin", "ANY ~/go/[^/]+/admin", Takes);
        // A regular expression never takes from a route pattern.
        takes("GET ~/go/.*", "GET /go/:x", None);
        // Only canonical characters: a regex that needs a raw space or `;` meets no route.
        takes("GET /go/:x", "GET ~/go/a b", None);
        takes("GET /go/:x", "GET ~/go/a;b", None);
        takes("GET /go/:x", "GET ~/go/a%20b", Takes);
        takes("GET /", "GET ~/", Takes);
        takes("GET /", "GET ~/.+", None);
    }

    #[test]
    fn an_overlap_too_large_to_decide_counts() {
        // The DFA of this expression has about 2^20 states: past the size limit, so undecided.
        let blowup = rule(1, "GET", "~/go/.*a.{20}");
        assert_eq!(
            would_take_from(&rule(i64::MAX, "GET", "/go/:x"), &blowup),
            Overlap::Undecided
        );
        let shadow = Shadow {
            id: 1,
            method: Method::Get,
            pattern: blowup.pattern.clone(),
            owner_group: None,
            priority: 0,
            certain: false,
        };
        assert!(shadow.describe().contains("possibly"), "{}", shadow.describe());
    }

    #[test]
    fn regular_expressions_by_order() {
        let mut new = rule(i64::MAX, "GET", "~/go/[a-z]+");
        let old = rule(5, "GET", "~/go/x.*");
        assert_eq!(would_take_from(&new, &old), Overlap::None, "a later id");
        new.priority = -1;
        assert_eq!(would_take_from(&new, &old), Overlap::Takes, "a lower priority");
        new.pattern = PathPattern::parse("~/go/[0-9]+").unwrap();
        assert_eq!(would_take_from(&new, &old), Overlap::None, "disjoint");
        let any = rule(6, "ANY", "~/go/x.*");
        let get = rule(i64::MAX, "GET", "~/go/xy");
        assert_eq!(would_take_from(&get, &any), Overlap::Takes, "an earlier method class");
    }

    #[test]
    fn snapshots_list_what_a_rule_would_take_from() {
        let snapshot = Snapshot::build(
            [
                rule(1, "ANY", "/go/billing/**"),
                rule(2, "GET", "/go/ops/:id"),
                rule(3, "GET", "~/go/[^/]+/admin"),
                rule(4, "GET", "/go/mine"),
            ],
            1,
        )
        .unwrap();
        let ids = |r: &MappingRule| snapshot.shadowed_by(r).iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(&rule(i64::MAX, "GET", "/go/billing/secret")), [1]);
        assert_eq!(ids(&rule(i64::MAX, "ANY", "/go/**")), [3]);
        assert_eq!(ids(&rule(i64::MAX, "GET", "/go/other")), Vec::<i64>::new());
        // A mapping changed in place never shadows itself.
        assert_eq!(ids(&rule(4, "GET", "/go/:x/:y")), [3]);
        let s = &snapshot.shadowed_by(&rule(i64::MAX, "GET", "/go/ops/restart"))[0];
        assert_eq!(s.describe(), "mapping 2 (GET /go/ops/:id)");
    }

    #[test]
    fn only_mappings_that_lose_a_request_are_listed() {
        // A catch-all, a team's own subtree under it, and a parameter beside it.
        let snapshot = Snapshot::build(
            [
                rule(1, "ANY", "/**"),
                rule(2, "ANY", "/go/team/**"),
                rule(3, "GET", "/go/team/x/:id"),
                rule(4, "GET", "/go/:other/y"),
            ],
            1,
        )
        .unwrap();
        let ids = |r: &MappingRule| snapshot.shadowed_by(r).iter().map(|s| s.id).collect::<Vec<_>>();
        // Every request under /go/team/ resolves to 2 already: the catch-all loses nothing.
        assert_eq!(ids(&rule(i64::MAX, "GET", "/go/team/a")), [2]);
        assert_eq!(ids(&rule(i64::MAX, "GET", "/go/team/x/7")), [3]);
        // `GET /go/team/y` resolves to 2 (`team` beats `:other`), so 4 loses nothing to it.
        assert_eq!(ids(&rule(i64::MAX, "GET", "/go/team/y")), [2]);
        // Outside the subtree the catch-all loses requests, and so does 4 (`new` beats `:other`).
        assert_eq!(ids(&rule(i64::MAX, "GET", "/go/new/**")), [1, 4]);
        // The shape of 4: its GET requests stay with it, the other methods leave the catch-all.
        assert_eq!(ids(&rule(i64::MAX, "ANY", "/go/*/y")), [1]);
        // HEAD requests that GET mappings answer move to a HEAD mapping of the same shape.
        assert_eq!(ids(&rule(i64::MAX, "HEAD", "/go/team/x/:n")), [3]);
        // Changing 3 in place: what it answered falls back to 2, and it takes `/go/team/x/7/z` from 2.
        assert_eq!(ids(&rule(3, "GET", "/go/team/x/:id/z")), [2]);
        assert_eq!(ids(&rule(3, "GET", "/go/team/x/:id")), Vec::<i64>::new());
    }

    /// Generated rules: route patterns over `a`, `b`, `:p`, `*` and a final `**`, of GET, POST or ANY, and
    /// a few regular expressions over the same paths.
    fn arb_rule() -> impl Strategy<Value = (String, String)> {
        let route = (
            prop::collection::vec(prop::sample::select(vec!["a", "b", ":p", "*"]), 0..4),
            any::<bool>(),
        )
            .prop_map(|(segs, rest)| {
                let mut p: String = segs
                    .iter()
                    .enumerate()
                    .map(|(i, s)| if *s == ":p" { format!("/:p{i}") } else { format!("/{s}") })
                    .collect();
                if rest || p.is_empty() {
                    p.push_str(if rest { "/**" } else { "/" });
                }
                p
            });
        let regex = prop::sample::select(vec!["~/a/.*", "~/[ab]/[^/]+", "~/.*/b", "~/z"]).prop_map(str::to_owned);
        let pattern = prop_oneof![8 => route, 1 => regex];
        (
            prop::sample::select(vec!["GET", "HEAD", "POST", "ANY"]).prop_map(str::to_owned),
            pattern,
        )
    }

    /// Every request the generated rules can tell apart: paths of up to five segments over their literals
    /// and a fresh one, and request methods (one the resolver does not know).
    fn requests() -> Vec<(&'static str, String)> {
        let mut paths = vec!["/".to_owned()];
        let mut frontier = vec![String::new()];
        for _ in 0..5 {
            frontier = frontier
                .iter()
                .flat_map(|p| ["a", "b", "z"].map(|s| format!("{p}/{s}")))
                .collect();
            paths.extend(frontier.iter().cloned());
        }
        ["GET", "HEAD", "POST", "PUT", "OTHER"]
            .into_iter()
            .flat_map(|m| paths.iter().map(move |p| (m, p.clone())))
            .collect()
    }

    fn winner(s: &Snapshot, m: &str, p: &str) -> Option<i64> {
        s.resolve(m, p).matched().map(|r| r.id())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Sound: a request that resolves to another mapping before a write and to the written one after
        /// comes from a mapping `shadowed_by` lists. Exact for two route patterns: `would_take_from` says
        /// `Takes` exactly when a request matched by both is answered by the new one.
        #[test]
        fn shadows_are_sound_and_exact_for_routes(
            existing in prop::collection::vec(arb_rule(), 1..7),
            new in arb_rule(),
            replace in any::<prop::sample::Index>(),
            update in any::<bool>(),
        ) {
            let mut rules: Vec<MappingRule> = Vec::new();
            for (i, (m, p)) in existing.iter().enumerate() {
                let r = rule(i64::try_from(i).unwrap() + 1, m, p);
                if !rules.iter().any(|o| o.method == r.method && o.pattern.match_key() == r.pattern.match_key()) {
                    rules.push(r);
                }
            }
            let before = Snapshot::build(rules.clone(), 1).unwrap();
            let id = if update { rules[replace.index(rules.len())].id } else { i64::MAX };
            let new = rule(id, &new.0, &new.1);
            let mut after_rules: Vec<MappingRule> = rules.iter().filter(|r| r.id != id).cloned().collect();
            after_rules.push(new.clone());
            let Ok(after) = Snapshot::build(after_rules, 2) else {
                return Ok(()); // a conflict: the store refuses the write
            };
            let listed: Vec<i64> = before.shadowed_by(&new).iter().map(|s| s.id).collect();
            let requests = requests();
            let mut moved = HashSet::new();
            for (m, p) in &requests {
                if winner(&after, m, p) == Some(new.id)
                    && let Some(was) = winner(&before, m, p)
                    && was != new.id
                {
                    prop_assert!(listed.contains(&was), "{m} {p}: from {was} to {new:?}, listed {listed:?}");
                    moved.insert(was);
                }
            }
            // Exact for route patterns: a listed route pattern really loses a request.
            if !new.pattern.is_regex() {
                for s in before.shadowed_by(&new).iter().filter(|s| !s.pattern.is_regex()) {
                    prop_assert!(moved.contains(&s.id), "{} listed for {new:?}, loses nothing", s.describe());
                }
            }
            for n in rules.iter().filter(|n| n.id != new.id && !n.pattern.is_regex()) {
                if new.pattern.is_regex() {
                    prop_assert_eq!(would_take_from(&new, n), Overlap::None);
                    continue;
                }
                let alone = Snapshot::build([n.clone()], 1).unwrap();
                let Ok(pair) = Snapshot::build([n.clone(), new.clone()], 1) else { continue };
                let witnessed = requests
                    .iter()
                    .any(|(m, p)| winner(&alone, m, p) == Some(n.id) && winner(&pair, m, p) == Some(new.id));
                prop_assert_eq!(
                    would_take_from(&new, n) == Overlap::Takes,
                    witnessed,
                    "{} {} over {} {}", new.method, new.pattern, n.method, n.pattern
                );
            }
        }
    }
}
