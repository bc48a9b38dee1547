//! The compiled, immutable resolver snapshot.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::{Anchored, Input, MatchKind};

use super::path::{PathRejection, check_method, check_path};
use super::pattern::{Kind, Method, PathPattern, Segment};
use super::trie::{RouteTrie, next_segment, node_id};
use crate::error::{Error, Result};
use crate::model::{ActionName, GroupName};

/// One endpoint → action mapping, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingRule {
    /// Database id; breaks ties between regular expressions of equal priority (lower first).
    pub id: i64,
    /// The method it applies to, or [`Method::Any`].
    pub method: Method,
    /// The path pattern.
    pub pattern: PathPattern,
    /// The action a matching request needs.
    pub action: ActionName,
    /// The group that owns (administers) the mapping, if any.
    pub owner_group: Option<GroupName>,
    /// Order among regular expressions: lower first. Ignored for route patterns, whose order follows
    /// from their shape.
    pub priority: i32,
}

/// Most regular-expression mappings one snapshot may hold ([`Snapshot::build`] refuses more).
pub const MAX_REGEX_MAPPINGS: usize = 256;

/// Largest compiled set of the regular expressions one request method consults (its own, `GET`'s for
/// `HEAD`, and `ANY`'s), in bytes: they are compiled ahead of time into one deterministic automaton (a
/// DFA), so that matching costs one table lookup per byte of the path, whatever the expressions and the
/// path. An expression set whose DFA would be larger (the number of DFA states can grow exponentially:
/// `.*a.{20}`) is refused when the snapshot is built.
pub const MAX_REGEX_SET_SIZE: usize = 4 * 1024 * 1024;

/// Largest intermediate NFA of one request method's regular-expression set, in bytes.
const REGEX_SET_NFA_LIMIT: usize = 1024 * 1024;

/// The regular expressions a request method consults (its own, `GET`'s for `HEAD`, `ANY`'s), compiled
/// into one multi-pattern DFA; pattern `i` is `rules[i]`, in the order they are consulted (method, then
/// priority, then id). Every pattern is anchored at both ends, so all matches span the whole path, and
/// leftmost-first semantics report the first pattern that matches: one pass over the path, one table
/// lookup per byte, whatever the expressions and however many methods they belong to.
#[derive(Debug, Clone)]
struct RegexStage {
    dfa: dense::DFA<Vec<u32>>,
    rules: Box<[u32]>,
}

impl RegexStage {
    /// Compiles `ordered` (indices into `all`, best first) for requests whose methods are `classes`.
    fn build(classes: &Classes, ordered: Vec<u32>, all: &[MappingRule]) -> Result<RegexStage> {
        let sources: Vec<&str> = ordered
            .iter()
            .filter_map(|&rule| match all[rule as usize].pattern.kind() {
                Kind::Regex { anchored, .. } => Some(&**anchored),
                Kind::Route(_) => None,
            })
            .collect();
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::LeftmostFirst)
                    .start_kind(StartKind::Anchored)
                    // Canonical paths are ASCII, where a Unicode `\b` is decidable; the DFA would stop
                    // (no match) on a non-ASCII byte.
                    .unicode_word_boundary(true)
                    .dfa_size_limit(Some(MAX_REGEX_SET_SIZE))
                    .determinize_size_limit(Some(MAX_REGEX_SET_SIZE)),
            )
            .thompson(thompson::Config::new().nfa_size_limit(Some(REGEX_SET_NFA_LIMIT)))
            .build_many(&sources)
            .map_err(|e| {
                let methods: Vec<&str> = classes.order.iter().map(|m| m.as_str()).collect();
                Error::invalid(format!(
                    "the {} regular expressions that a {} request consults ({}) together compile to an \
                     automaton larger than the limit of {MAX_REGEX_SET_SIZE} bytes; simplify them ({e})",
                    sources.len(),
                    classes.request_method(),
                    methods.join(", "),
                ))
            })?;
        Ok(RegexStage {
            dfa,
            rules: ordered.into_boxed_slice(),
        })
    }

    /// The regular expressions of `rules` (indices into `all`) that each request method consults, in the
    /// order it consults them: by [`Classes::order`], then priority, then id. Indexed by
    /// [`Classes::slot`]; `None` where there are none.
    fn lists(rules: impl IntoIterator<Item = u32>, all: &[MappingRule]) -> [Option<Vec<u32>>; 8] {
        let mut by_method: [Vec<u32>; 8] = Default::default();
        for rule in rules {
            let r = &all[rule as usize];
            if r.pattern.is_regex() {
                by_method[r.method.index()].push(rule);
            }
        }
        for list in &mut by_method {
            list.sort_unstable_by_key(|&rule| (all[rule as usize].priority, all[rule as usize].id));
        }
        CLASSES.each_ref().map(|classes| {
            let list: Vec<u32> = classes
                .order
                .iter()
                .flat_map(|m| by_method[m.index()].iter().copied())
                .collect();
            (!list.is_empty()).then_some(list)
        })
    }

    /// Compiles each distinct list of [`lists`](Self::lists) once: `stages` holds the automata, `slots`
    /// the index of the one each request method uses.
    fn compile(lists: [Option<Vec<u32>>; 8], all: &[MappingRule]) -> Result<RegexStages> {
        let mut stages: Vec<RegexStage> = Vec::new();
        let mut slots = [None; 8];
        for (slot, list) in lists.into_iter().enumerate() {
            let Some(list) = list else { continue };
            slots[slot] = Some(match stages.iter().position(|s| *s.rules == *list) {
                Some(i) => i,
                None => {
                    stages.push(RegexStage::build(&CLASSES[slot], list, all)?);
                    stages.len() - 1
                }
            });
        }
        Ok(RegexStages { stages, slots })
    }

    /// The first expression, by priority then id, that matches the whole of `path`. A search the DFA
    /// cannot finish (a non-ASCII byte with a Unicode `\b`, which canonical paths never hold) matches
    /// nothing.
    fn find(&self, path: &str) -> Option<u32> {
        let m = self
            .dfa
            .try_search_fwd(&Input::new(path).anchored(Anchored::Yes))
            .ok()??;
        self.rules.get(m.pattern().as_usize()).copied()
    }
}

/// The regular expressions of a snapshot: one automaton per distinct list of expressions that a request
/// method consults, so that a request scans its path once, whichever methods' expressions it consults.
#[derive(Debug, Clone, Default)]
struct RegexStages {
    stages: Vec<RegexStage>,
    /// Index into `stages` by [`Classes::slot`].
    slots: [Option<usize>; 8],
}

impl RegexStages {
    fn find(&self, classes: &Classes, path: &str) -> Option<u32> {
        self.stages.get(self.slots[classes.slot()]?)?.find(path)
    }
}

/// The outcome of resolving a request.
#[derive(Debug)]
pub enum Resolution<'a> {
    /// A mapping applies.
    Matched(ResolvedMapping<'a>),
    /// No mapping applies (callers deny by default).
    NoMatch,
    /// The path is not canonical (see [`check_path`](super::check_path)), or the method is not an
    /// upper-case token ([`check_method`](super::check_method)): callers answer 400, a denial.
    Rejected(PathRejection),
}

impl<'a> Resolution<'a> {
    /// The matched mapping, if any.
    pub fn matched(self) -> Option<ResolvedMapping<'a>> {
        match self {
            Resolution::Matched(m) => Some(m),
            _ => None,
        }
    }
}

/// A request's mapping: the rule (borrowed from the snapshot) and the path its parameters come from.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedMapping<'a> {
    rule: &'a MappingRule,
    path: &'a str,
}

impl<'a> ResolvedMapping<'a> {
    /// The mapping's id.
    pub fn id(&self) -> i64 {
        self.rule.id
    }

    /// The action the request needs.
    pub fn action(&self) -> &'a ActionName {
        &self.rule.action
    }

    /// The pattern that matched.
    pub fn pattern(&self) -> &'a PathPattern {
        &self.rule.pattern
    }

    /// The group that owns the mapping.
    pub fn owner_group(&self) -> Option<&'a GroupName> {
        self.rule.owner_group.as_ref()
    }

    /// The whole rule.
    pub fn rule(&self) -> &'a MappingRule {
        self.rule
    }

    /// The path that was matched: the request's path as given, without the query string. Nothing is
    /// rewritten (a path that would need rewriting is rejected instead).
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The value of one parameter (see [`params`](Self::params)).
    pub fn param(&self, name: &str) -> Option<&str> {
        match self.rule.pattern.kind() {
            Kind::Route(segments) => RouteParams::new(segments, self.path)
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v),
            Kind::Regex { regex, .. } => regex.captures(self.path)?.name(name).map(|m| m.as_str()),
        }
    }

    /// The captured parameters, in pattern order: `:name` segments under their names, the rest of the
    /// path matched by `**` under `"**"` (without its leading '/', never empty), and for a regular
    /// expression its named groups that took part in the match. `*` captures nothing. Values are
    /// slices of the path, still percent-encoded as they were received (`caf%C3%A9`). Route parameters
    /// are sliced on demand and never allocate; regular expression captures are computed when asked for.
    pub fn params(&self) -> Params<'a> {
        match self.rule.pattern.kind() {
            Kind::Route(segments) => Params(ParamsInner::Route(RouteParams::new(segments, self.path))),
            Kind::Regex { regex, .. } => {
                let mut found = Vec::new();
                if let Some(caps) = regex.captures(self.path) {
                    for name in regex.capture_names().flatten() {
                        if let Some(m) = caps.name(name) {
                            found.push((name, m.as_str()));
                        }
                    }
                }
                Params(ParamsInner::Regex(found.into_iter()))
            }
        }
    }
}

/// An iterator over a match's parameters, as `(name, value)`.
#[derive(Debug)]
pub struct Params<'r>(ParamsInner<'r>);

#[derive(Debug)]
enum ParamsInner<'r> {
    Route(RouteParams<'r>),
    Regex(std::vec::IntoIter<(&'r str, &'r str)>),
}

impl<'r> Iterator for Params<'r> {
    type Item = (&'r str, &'r str);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            ParamsInner::Route(r) => r.next(),
            ParamsInner::Regex(r) => r.next(),
        }
    }
}

#[derive(Debug)]
struct RouteParams<'r> {
    segments: std::slice::Iter<'r, Segment>,
    rest: &'r str,
}

impl<'r> RouteParams<'r> {
    fn new(segments: &'r [Segment], path: &'r str) -> Self {
        RouteParams {
            segments: segments.iter(),
            rest: if path == "/" { "" } else { path },
        }
    }
}

impl<'r> Iterator for RouteParams<'r> {
    type Item = (&'r str, &'r str);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.segments.next()? {
                Segment::Rest => {
                    let all = self.rest.strip_prefix('/').unwrap_or("");
                    self.rest = "";
                    return Some(("**", all));
                }
                seg => {
                    if self.rest.is_empty() {
                        return None;
                    }
                    let (value, tail) = next_segment(self.rest);
                    self.rest = tail;
                    if let Segment::Param(name) = seg {
                        return Some((name, value));
                    }
                }
            }
        }
    }
}

/// The methods whose mappings a request consults: in order, and as a set (bit [`Method::index`]).
pub(super) struct Classes {
    pub(super) order: &'static [Method],
    pub(super) mask: u8,
}

impl Classes {
    const fn new(order: &'static [Method]) -> Classes {
        let mut mask = 0;
        let mut i = 0;
        while i < order.len() {
            mask |= 1 << order[i] as usize;
            i += 1;
        }
        Classes { order, mask }
    }

    /// Where this request method's entries sit in per-request-method tables: the index of its own
    /// method (of `ANY` for the methods that consult `ANY` alone).
    fn slot(&self) -> usize {
        self.order[0].index()
    }

    /// The request method these classes are for ("another method" for `ANY` alone).
    fn request_method(&self) -> &'static str {
        match self.order {
            [Method::Any] => "request of another method",
            [m, ..] => m.as_str(),
            [] => "",
        }
    }
}

/// The classes of each request method, by [`Classes::slot`].
static CLASSES: [Classes; 8] = [
    Classes::new(&[Method::Get, Method::Any]),
    Classes::new(&[Method::Head, Method::Get, Method::Any]),
    Classes::new(&[Method::Post, Method::Any]),
    Classes::new(&[Method::Put, Method::Any]),
    Classes::new(&[Method::Patch, Method::Any]),
    Classes::new(&[Method::Delete, Method::Any]),
    Classes::new(&[Method::Options, Method::Any]),
    Classes::new(&[Method::Any]),
];

/// [`Classes::mask`] of a method other than the seven known ones: `ANY` alone.
const ANY_ONLY: u8 = 1 << Method::Any as usize;

/// The methods whose mappings a request method consults, in order: its own, `GET` for a `HEAD`
/// request, and `ANY`. An unknown method consults `ANY` only (a lower-case one is refused before).
pub(super) fn method_classes(method: &str) -> &'static Classes {
    &CLASSES[Method::from_request(method).unwrap_or(Method::Any).index()]
}

/// All mappings compiled for resolving: immutable once built; build a new one on change and swap it in
/// (see [`SharedResolver`](super::SharedResolver)).
pub struct Snapshot {
    version: i64,
    rules: Vec<MappingRule>,
    routes: RouteTrie,
    regexes: RegexStages,
    /// `(method, match key)` → rule index, for conflict checks.
    keys: HashMap<(Method, String), u32>,
    /// Mapping id → rule index.
    ids: HashMap<i64, u32>,
    /// [`Snapshot::checksum`].
    checksum: u64,
}

/// One mapping's contribution to [`Snapshot::checksum`]: FNV-1a (64 bits) over its fields, each closed by a
/// byte no field holds, so that followers and servers of any build agree.
fn rule_hash(rule: &MappingRule) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes.iter().chain(&[0xFF]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(&rule.id.to_be_bytes());
    eat(rule.method.as_str().as_bytes());
    eat(rule.pattern.as_str().as_bytes());
    eat(rule.action.as_str().as_bytes());
    eat(rule.owner_group.as_ref().map_or(&b""[..], |g| g.as_str().as_bytes()));
    eat(&[u8::from(rule.owner_group.is_some())]);
    eat(&rule.priority.to_be_bytes());
    h
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("mappings", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Default for Snapshot {
    /// An empty snapshot at version 0: every request is [`Resolution::NoMatch`] (or rejected).
    fn default() -> Self {
        Snapshot {
            version: 0,
            rules: Vec::new(),
            routes: Default::default(),
            regexes: Default::default(),
            keys: HashMap::new(),
            ids: HashMap::new(),
            checksum: 0,
        }
    }
}

impl Snapshot {
    /// Compiles `rules` into a snapshot labelled `version`.
    ///
    /// Fails with [`ErrorKind::Conflict`](crate::ErrorKind::Conflict), naming both ids, when two rules
    /// have the same method and [match key](PathPattern::match_key), that is, match the same requests;
    /// with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when two rules have the same id,
    /// when there are more than [`MAX_REGEX_MAPPINGS`] regular expressions, or when the regular
    /// expressions one request method consults together compile to more than [`MAX_REGEX_SET_SIZE`]
    /// bytes.
    pub fn build(rules: impl IntoIterator<Item = MappingRule>, version: i64) -> Result<Snapshot> {
        let rules: Vec<MappingRule> = rules.into_iter().collect();
        let mut snap = Snapshot {
            version,
            keys: HashMap::with_capacity(rules.len()),
            ..Snapshot::default()
        };
        check_regex_count(rules.iter().filter(|r| r.pattern.is_regex()).count())?;
        snap.ids.reserve(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let idx = node_id(i)?;
            if snap.ids.insert(rule.id, idx).is_some() {
                return Err(Error::invalid(format!("two mappings have the id {}", rule.id)));
            }
            snap.checksum = snap.checksum.wrapping_add(rule_hash(rule));
            match snap.keys.entry((rule.method, rule.pattern.match_key())) {
                Entry::Occupied(e) => return Err(conflict(&rules[*e.get() as usize], rule)),
                Entry::Vacant(e) => {
                    e.insert(idx);
                }
            }
            match rule.pattern.kind() {
                Kind::Route(segments) => {
                    if let Some(old) = snap.routes.insert(segments, rule.method, idx)? {
                        // Unreachable while keys are checked first; kept as a guard.
                        return Err(conflict(&rules[old as usize], rule));
                    }
                }
                Kind::Regex { .. } => {}
            }
        }
        snap.regexes = RegexStage::compile(RegexStage::lists(0..node_id(rules.len())?, &rules), &rules)?;
        snap.rules = rules;
        Ok(snap)
    }

    /// The version the snapshot was built with.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// How many mappings it holds.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether it holds no mappings.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The mappings, in the order they were given.
    pub fn rules(&self) -> &[MappingRule] {
        &self.rules
    }

    /// The mapping with this id.
    pub fn rule(&self, id: i64) -> Option<&MappingRule> {
        self.ids.get(&id).and_then(|&i| self.rules.get(i as usize))
    }

    /// A digest of the mappings (not of the version), the same whatever their order: the sum of a 64-bit FNV-1a
    /// hash of each mapping's fields. A follower that applied a delta compares it with the server's, and
    /// loads the whole export when they differ.
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    /// Checks, before `rule` is stored, that the snapshot's mappings with `rule` added (or replacing the
    /// mapping with the same id) stay within the limits on regular expressions ([`MAX_REGEX_MAPPINGS`],
    /// [`MAX_REGEX_SET_SIZE`]) that [`build`](Self::build) enforces, so that a write cannot make the next
    /// snapshot unbuildable. Compiles only the regular-expression sets of the request methods that
    /// consult `rule`'s method. Route patterns always pass (conflicts are
    /// [`find_conflict`](Self::find_conflict)'s business).
    pub fn check_regex_limits(&self, rule: &MappingRule) -> Result<()> {
        if !rule.pattern.is_regex() {
            return Ok(());
        }
        let regexes: Vec<MappingRule> = self
            .rules
            .iter()
            .filter(|r| r.pattern.is_regex() && r.id != rule.id)
            .chain(std::iter::once(rule))
            .cloned()
            .collect();
        check_regex_count(regexes.len())?;
        let bit = 1u8 << rule.method.index();
        let mut lists = RegexStage::lists(0..node_id(regexes.len())?, &regexes);
        for (classes, list) in CLASSES.iter().zip(&mut lists) {
            if classes.mask & bit == 0 {
                *list = None;
            }
        }
        RegexStage::compile(lists, &regexes).map(|_| ())
    }

    /// The id of the mapping a new mapping `(method, pattern)` would conflict with, if any.
    pub fn find_conflict(&self, method: Method, pattern: &PathPattern) -> Option<i64> {
        self.keys
            .get(&(method, pattern.match_key()))
            .map(|&i| self.rules[i as usize].id)
    }

    /// Resolves a request to its mapping (precedence in the [module docs](super)).
    ///
    /// `method` is the request's method token, matched case-sensitively; a method that is not an
    /// upper-case token (`get`, `Get`, `GE T`: see [`check_method`](super::check_method)) is
    /// [`Resolution::Rejected`]; upper-case methods other than the seven known ones (`PROPFIND`) only
    /// match `ANY` mappings. `raw_path` is the request target as received, path and optional query,
    /// still percent-encoded; a path that is not canonical (see [`check_path`](super::check_path)) is
    /// [`Resolution::Rejected`], never rewritten. No lock is taken and nothing is allocated.
    pub fn resolve<'a>(&'a self, method: &str, raw_path: &'a str) -> Resolution<'a> {
        // One of the seven known methods is a token; anything else is checked.
        let classes = method_classes(method);
        if classes.mask == ANY_ONLY
            && let Err(why) = check_method(method)
        {
            return Resolution::Rejected(why);
        }
        let path = match check_path(raw_path) {
            Ok(p) => p,
            Err(why) => return Resolution::Rejected(why),
        };
        let segments = if path == "/" { "" } else { path };
        let found = self
            .routes
            .find(segments, classes)
            .or_else(|| self.regexes.find(classes, path));
        match found {
            Some(i) => Resolution::Matched(ResolvedMapping {
                rule: &self.rules[i as usize],
                path,
            }),
            None => Resolution::NoMatch,
        }
    }

    /// Every mapping that matches a request, best first: the first is the one [`resolve`](Self::resolve)
    /// answers with, the second the one it would answer were the first deleted, and so on. Arguments and
    /// rejection as for `resolve`.
    ///
    /// For explaining a decision, not for serving requests: it tries every mapping, allocates, and orders
    /// the route patterns that match by asking the resolver itself, again and again, on a snapshot of the
    /// candidates left (so their order is the resolver's by construction). Regular expressions come after
    /// them in the order the resolver's regex stage uses: the request's method classes in turn (its own
    /// method, `GET` for `HEAD`, `ANY`), then priority, then id.
    pub fn candidates<'a>(&'a self, method: &str, raw_path: &str) -> Result<Vec<&'a MappingRule>, PathRejection> {
        check_method(method)?;
        let path = check_path(raw_path)?;
        let classes = method_classes(method);
        let mut routes: Vec<&MappingRule> = Vec::new();
        let mut regexes: Vec<&MappingRule> = Vec::new();
        for rule in &self.rules {
            if classes.mask & (1 << rule.method.index()) == 0 {
                continue;
            }
            match rule.pattern.kind() {
                Kind::Route(segments) if route_matches(segments, path) => routes.push(rule),
                Kind::Regex { regex, .. } if regex.is_match(path) => regexes.push(rule),
                _ => {}
            }
        }
        let mut ordered = Vec::with_capacity(routes.len() + regexes.len());
        while !routes.is_empty() {
            // A subset of a snapshot's rules always builds; were it ever not to, the rest keeps id order.
            let winner = Snapshot::build(routes.iter().map(|r| (*r).clone()), self.version)
                .ok()
                .and_then(|s| s.resolve(method, path).matched().map(|m| m.id()));
            let Some(at) = winner.and_then(|id| routes.iter().position(|r| r.id == id)) else {
                debug_assert!(false, "the resolver found none of the matching routes {routes:?}");
                break;
            };
            ordered.push(routes.remove(at));
        }
        ordered.extend(routes);
        for m in classes.order {
            let mut of_method: Vec<&MappingRule> = regexes.iter().copied().filter(|r| r.method == *m).collect();
            of_method.sort_unstable_by_key(|r| (r.priority, r.id));
            ordered.extend(of_method);
        }
        Ok(ordered)
    }
}

/// Whether a route pattern's `segments` match a canonical `path` on their own (the one-rule version of
/// the trie walk): literals byte for byte, `:name` and `*` one segment, `**` one or more.
fn route_matches(segments: &[Segment], path: &str) -> bool {
    let mut rest = if path == "/" { "" } else { path };
    for seg in segments {
        if matches!(seg, Segment::Rest) {
            return !rest.is_empty();
        }
        if rest.is_empty() {
            return false;
        }
        let (value, tail) = next_segment(rest);
        if let Segment::Lit(lit) = seg
            && **lit != *value
        {
            return false;
        }
        rest = tail;
    }
    rest.is_empty()
}

fn check_regex_count(count: usize) -> Result<()> {
    if count > MAX_REGEX_MAPPINGS {
        return Err(Error::invalid(format!(
            "{count} regular-expression mappings, more than the limit of {MAX_REGEX_MAPPINGS}"
        )));
    }
    Ok(())
}

fn conflict(first: &MappingRule, second: &MappingRule) -> Error {
    Error::conflict(format!(
        "mapping {} ({} {}) conflicts with mapping {} ({} {}): both match exactly the same requests",
        second.id, second.method, second.pattern, first.id, first.method, first.pattern
    ))
}
