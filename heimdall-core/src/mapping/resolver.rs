//! The compiled, immutable resolver snapshot.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::{Anchored, Input, MatchKind};

use super::path::{PathRejection, check_method, check_path, eq_bytes, find_slash, word};
use super::pattern::{Kind, Method, PathPattern, Segment};
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

/// Largest compiled set of the regular expressions of one method, in bytes: they are compiled ahead of
/// time into one deterministic automaton (a DFA), so that matching costs one table lookup per byte of
/// the path, whatever the expressions and the path. An expression set whose DFA would be larger (the
/// number of DFA states can grow exponentially: `.*a.{20}`) is refused when the snapshot is built.
pub const MAX_REGEX_SET_SIZE: usize = 4 * 1024 * 1024;

/// Largest intermediate NFA of one method's regular-expression set, in bytes.
const REGEX_SET_NFA_LIMIT: usize = 1024 * 1024;

/// Up to this many literal children are kept in a vector and compared one by one.
const SMALL_CHILDREN: usize = 8;

/// Passes a precomputed 64-bit hash through.
#[derive(Default, Clone, Copy)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A small, fast, non-cryptographic hash of a literal segment (FxHash over eight-byte words, plus the
/// length). Unkeyed on purpose: only the snapshot's own literals are stored, so a client cannot
/// lengthen a bucket by choosing request paths.
#[inline]
fn fx_hash(s: &str) -> u64 {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let add = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(SEED);
    s.as_bytes()
        .chunks(8)
        .fold(add(0, s.len() as u64), |h, c| add(h, word(c)))
}

/// A literal child stored for fast comparison: its length and first eight bytes sit inline, beside
/// the child's node, so most comparisons (segments of up to eight bytes, or any mismatch in length or
/// start) read no other memory; the rest of a longer literal is in [`HashedChildren::texts`]. Sixteen
/// bytes, so that a node's few children share a cache line or two.
#[derive(Debug, Clone, Copy)]
struct Key {
    head: u64,
    /// The literal's length (saturated: a request path is far shorter).
    len: u32,
    /// The child node.
    node: u32,
}

impl Key {
    fn new(text: &str, node: u32) -> Key {
        Key {
            head: word(text.as_bytes()),
            len: u32::try_from(text.len()).unwrap_or(u32::MAX),
            node,
        }
    }

    // Forced inline, like `Children::get` and `next_segment`: the compiler kept them as calls, and on
    // misses and regular-expression hits, which walk up to six tries, the calls cost about a tenth.
    #[inline(always)]
    fn matches(&self, seg: &str, seg_head: u64, texts: &[Box<str>]) -> bool {
        self.len as usize == seg.len()
            && self.head == seg_head
            && (self.len <= 8
                || texts
                    .get(self.node as usize)
                    .is_some_and(|t| t.len() == seg.len() && eq_bytes(&t.as_bytes()[8..], &seg.as_bytes()[8..])))
    }
}

/// The literal children of all nodes with many of them, in one table: found by the hash of (node,
/// segment), then compared (the key sits in the table's bucket, so a lookup reads the control bytes and
/// one bucket, and no per-node table). A literal whose hash another entry already has goes to
/// `collided`, searched one by one (in practice it stays empty). Also holds the text of every literal
/// child, by node, for comparing literals longer than eight bytes.
#[derive(Debug, Clone, Default)]
struct HashedChildren {
    by_hash: HashMap<u64, HashedEntry, BuildHasherDefault<IdentityHasher>>,
    collided: Vec<HashedEntry>,
    texts: Vec<Box<str>>,
}

/// A child in [`HashedChildren`]: its parent node and its key.
#[derive(Debug, Clone)]
struct HashedEntry {
    parent: u32,
    key: Key,
}

/// The table hash of literal `seg` under node `parent`.
#[inline(always)]
fn child_hash(parent: u32, seg: &str) -> u64 {
    (fx_hash(seg).rotate_left(5) ^ u64::from(parent)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

impl HashedChildren {
    // Forced inline: called at every trie node (see `Key::matches`).
    #[inline(always)]
    fn get(&self, parent: u32, seg: &str, head: u64) -> Option<u32> {
        let found = |e: &HashedEntry| e.parent == parent && e.key.matches(seg, head, &self.texts);
        if let Some(e) = self.by_hash.get(&child_hash(parent, seg))
            && found(e)
        {
            return Some(e.key.node);
        }
        if self.collided.is_empty() {
            return None;
        }
        self.collided.iter().find(|e| found(e)).map(|e| e.key.node)
    }

    /// Records the text of the literal child `node`.
    fn set_text(&mut self, node: u32, seg: &str) {
        let i = node as usize;
        if self.texts.len() <= i {
            self.texts.resize(i + 1, Box::default());
        }
        self.texts[i] = seg.into();
    }

    fn insert(&mut self, parent: u32, seg: &str, node: u32) {
        self.set_text(node, seg);
        let entry = HashedEntry {
            parent,
            key: Key::new(seg, node),
        };
        match self.by_hash.entry(child_hash(parent, seg)) {
            Entry::Vacant(e) => {
                e.insert(entry);
            }
            Entry::Occupied(_) => self.collided.push(entry),
        }
    }
}

/// The literal children of a trie node.
#[derive(Debug, Clone)]
enum Children {
    /// Few children: compared one by one.
    Small(Vec<Key>),
    /// Many: in the trie's [`HashedChildren`].
    Hashed,
}

impl Default for Children {
    fn default() -> Self {
        Children::Small(Vec::new())
    }
}

impl Children {
    // Forced inline: called at every trie node (see `Key::matches`).
    #[inline(always)]
    fn get(&self, hashed: &HashedChildren, parent: u32, seg: &str) -> Option<u32> {
        match self {
            Children::Small(v) if v.is_empty() => None,
            Children::Small(v) => {
                let head = word(seg.as_bytes());
                v.iter().find(|k| k.matches(seg, head, &hashed.texts)).map(|k| k.node)
            }
            Children::Hashed => hashed.get(parent, seg, word(seg.as_bytes())),
        }
    }

    fn insert(&mut self, hashed: &mut HashedChildren, parent: u32, seg: &str, node: u32) {
        if let Children::Small(v) = self
            && v.len() >= SMALL_CHILDREN
        {
            for k in std::mem::take(v) {
                let text = hashed.texts[k.node as usize].clone();
                hashed.insert(parent, &text, k.node);
            }
            *self = Children::Hashed;
        }
        match self {
            Children::Small(v) => {
                hashed.set_text(node, seg);
                v.push(Key::new(seg, node));
            }
            Children::Hashed => hashed.insert(parent, seg, node),
        }
    }
}

/// "No rule" in a method slot (and in a node, while it has none).
const NONE: u32 = u32::MAX;

/// A node of the route trie: one segment position of the patterns that share the segments before it.
#[derive(Debug, Clone)]
struct Node {
    lits: Children,
    /// The child for `:name` and `*`.
    param: Option<u32>,
    /// The rules whose pattern ends here: when one method has one (the usual case), that rule itself,
    /// read without touching `RouteTrie::slots`; when several do, an index into `RouteTrie::slots`
    /// (see [`RouteTrie::pick`]). Meaningless while `terminal_methods` is empty.
    terminal: u32,
    /// The rules whose pattern has `**` here, held like `terminal`.
    rest: u32,
    /// The methods (bit [`Method::index`]) with a rule in `terminal`, in `rest`, and anywhere at or
    /// below this node: a search skips what cannot hold a rule for the request's methods.
    terminal_methods: u8,
    rest_methods: u8,
    subtree_methods: u8,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            lits: Children::default(),
            param: None,
            terminal: NONE,
            rest: NONE,
            terminal_methods: 0,
            rest_methods: 0,
            subtree_methods: 0,
        }
    }
}

/// The route patterns of all methods: one segment trie whose end points hold a rule per method
/// ([`Method::index`]), so that a request walks it once, in path-precedence order.
#[derive(Debug, Clone)]
struct RouteTrie {
    nodes: Vec<Node>,
    slots: Vec<[u32; 8]>,
    hashed: HashedChildren,
}

impl Default for RouteTrie {
    fn default() -> Self {
        RouteTrie {
            nodes: vec![Node::default()],
            slots: Vec::new(),
            hashed: HashedChildren::default(),
        }
    }
}

/// Splits `/seg/tail...` into `seg` and `/tail...`; `rest` must start with '/'. Forced inline: called at
/// every trie node (see `Key::matches`).
#[inline(always)]
fn next_segment(rest: &str) -> (&str, &str) {
    let body = &rest[1..];
    match find_slash(body.as_bytes()) {
        Some(i) => (&body[..i], &body[i..]),
        None => (body, ""),
    }
}

fn node_id(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::invalid("too many mappings for one snapshot"))
}

impl RouteTrie {
    /// Inserts a route for `method`; returns the index of a rule already there with the same shape
    /// and method.
    fn insert(&mut self, segments: &[Segment], method: Method, rule: u32) -> Result<Option<u32>> {
        let mut node = 0usize;
        let mut at_rest = false;
        let bit = 1u8 << method.index();
        self.nodes[0].subtree_methods |= bit;
        for seg in segments {
            let next = match seg {
                Segment::Lit(lit) => self.nodes[node].lits.get(&self.hashed, node_id(node)?, lit),
                Segment::Param(_) | Segment::Wild => self.nodes[node].param,
                Segment::Rest => {
                    at_rest = true;
                    break;
                }
            };
            node = match next {
                Some(n) => n as usize,
                None => {
                    let n = node_id(self.nodes.len())?;
                    self.nodes.push(Node::default());
                    match seg {
                        Segment::Lit(lit) => {
                            let parent = node_id(node)?;
                            self.nodes[node].lits.insert(&mut self.hashed, parent, lit, n)
                        }
                        _ => self.nodes[node].param = Some(n),
                    }
                    n as usize
                }
            };
            self.nodes[node].subtree_methods |= bit;
        }
        let RouteTrie { nodes, slots, .. } = self;
        let n = &mut nodes[node];
        let (field, methods) = if at_rest {
            (&mut n.rest, &mut n.rest_methods)
        } else {
            (&mut n.terminal, &mut n.terminal_methods)
        };
        if *methods & bit != 0 {
            return Ok(Some(if methods.is_power_of_two() {
                *field
            } else {
                slots[*field as usize][method.index()]
            }));
        }
        if *methods == 0 {
            *field = rule;
        } else {
            if methods.is_power_of_two() {
                // A second method: the first one's rule moves to a slot row.
                let mut row = [NONE; 8];
                row[methods.trailing_zeros() as usize] = *field;
                *field = node_id(slots.len())?;
                slots.push(row);
            }
            slots[*field as usize][method.index()] = rule;
        }
        *methods |= bit;
        Ok(None)
    }

    /// The rule of the first method in `classes` that has one at an end point: `methods` are the
    /// methods that have one, and `field` is that rule if there is one method, else the index of their
    /// row in `slots`.
    #[inline(always)]
    fn pick(&self, field: u32, methods: u8, classes: &Classes) -> Option<u32> {
        if methods & classes.mask == 0 {
            return None;
        }
        if methods.is_power_of_two() {
            return Some(field);
        }
        let slots = self.slots.get(field as usize)?;
        classes.order.iter().map(|m| slots[m.index()]).find(|&r| r != NONE)
    }

    /// The most specific rule matching `rest` (a canonical path, or "" for the root) for one of the
    /// methods `classes` (in preference order), searched depth-first in path-precedence order:
    /// literal child, then parameter child, then `**` (which needs at least one segment). The first
    /// end point in that order with a rule for one of the methods wins; there, the earliest method in
    /// `classes` wins. Each node is visited at most once per call, since a node sits at one depth and
    /// the path has one segment there.
    ///
    /// A node none of whose end points below has a rule for one of the methods is not entered.
    fn find(&self, node: u32, rest: &str, classes: &Classes) -> Option<u32> {
        let n = &self.nodes[node as usize];
        if n.subtree_methods & classes.mask == 0 {
            return None;
        }
        if rest.is_empty() {
            return self.pick(n.terminal, n.terminal_methods, classes);
        }
        let (seg, tail) = next_segment(rest);
        if let Some(c) = n.lits.get(&self.hashed, node, seg)
            && let Some(r) = self.find(c, tail, classes)
        {
            return Some(r);
        }
        if let Some(c) = n.param
            && let Some(r) = self.find(c, tail, classes)
        {
            return Some(r);
        }
        self.pick(n.rest, n.rest_methods, classes)
    }
}

/// The regular expressions of one method, compiled into one multi-pattern DFA; pattern `i` is
/// `rules[i]`, sorted by priority then id. Every pattern is anchored at both ends, so all matches span
/// the whole path, and leftmost-first semantics report the first pattern (the best by priority and
/// id) that matches: one pass over the path, one table lookup per byte, whatever the expressions.
#[derive(Debug, Clone)]
struct RegexStage {
    dfa: dense::DFA<Vec<u32>>,
    rules: Box<[u32]>,
}

impl RegexStage {
    fn build(method: Method, mut entries: Vec<(i32, i64, u32)>, all: &[MappingRule]) -> Result<RegexStage> {
        entries.sort_unstable_by_key(|&(priority, id, _)| (priority, id));
        let sources: Vec<&str> = entries
            .iter()
            .filter_map(|&(_, _, rule)| match all[rule as usize].pattern.kind() {
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
                Error::invalid(format!(
                    "the {} regular expressions for {method} together compile to an automaton larger than \
                     the limit of {MAX_REGEX_SET_SIZE} bytes; simplify them ({e})",
                    sources.len()
                ))
            })?;
        Ok(RegexStage {
            dfa,
            rules: entries.into_iter().map(|(_, _, rule)| rule).collect(),
        })
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
    mask: u8,
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
}

/// The methods whose mappings a request method consults, in order: its own, `GET` for a `HEAD`
/// request, and `ANY`. An unknown method consults `ANY` only (a lower-case one is refused before).
pub(super) fn method_classes(method: &str) -> &'static Classes {
    static GET: Classes = Classes::new(&[Method::Get, Method::Any]);
    static HEAD: Classes = Classes::new(&[Method::Head, Method::Get, Method::Any]);
    static POST: Classes = Classes::new(&[Method::Post, Method::Any]);
    static PUT: Classes = Classes::new(&[Method::Put, Method::Any]);
    static PATCH: Classes = Classes::new(&[Method::Patch, Method::Any]);
    static DELETE: Classes = Classes::new(&[Method::Delete, Method::Any]);
    static OPTIONS: Classes = Classes::new(&[Method::Options, Method::Any]);
    static ANY: Classes = Classes::new(&[Method::Any]);
    match Method::from_request(method) {
        Some(Method::Get) => &GET,
        Some(Method::Head) => &HEAD,
        Some(Method::Post) => &POST,
        Some(Method::Put) => &PUT,
        Some(Method::Patch) => &PATCH,
        Some(Method::Delete) => &DELETE,
        Some(Method::Options) => &OPTIONS,
        Some(Method::Any) | None => &ANY,
    }
}

/// All mappings compiled for resolving: immutable once built; build a new one on change and swap it in
/// (see [`SharedResolver`](super::SharedResolver)).
pub struct Snapshot {
    version: i64,
    rules: Vec<MappingRule>,
    routes: RouteTrie,
    regexes: [Option<RegexStage>; 8],
    /// `(method, match key)` → rule index, for conflict checks.
    keys: HashMap<(Method, String), u32>,
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
    /// expressions of one method together compile to more than [`MAX_REGEX_SET_SIZE`] bytes.
    pub fn build(rules: impl IntoIterator<Item = MappingRule>, version: i64) -> Result<Snapshot> {
        let rules: Vec<MappingRule> = rules.into_iter().collect();
        let mut snap = Snapshot {
            version,
            keys: HashMap::with_capacity(rules.len()),
            ..Snapshot::default()
        };
        check_regex_count(rules.iter().filter(|r| r.pattern.is_regex()).count())?;
        let mut regex_entries: [Vec<(i32, i64, u32)>; 8] = Default::default();
        let mut ids = std::collections::HashSet::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let idx = node_id(i)?;
            if !ids.insert(rule.id) {
                return Err(Error::invalid(format!("two mappings have the id {}", rule.id)));
            }
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
                Kind::Regex { .. } => regex_entries[rule.method.index()].push((rule.priority, rule.id, idx)),
            }
        }
        for (method, entries) in Method::ALL.into_iter().zip(regex_entries) {
            if !entries.is_empty() {
                snap.regexes[method.index()] = Some(RegexStage::build(method, entries, &rules)?);
            }
        }
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

    /// Checks, before `rule` is stored, that the snapshot's mappings with `rule` added (or replacing the
    /// mapping with the same id) stay within the limits on regular expressions ([`MAX_REGEX_MAPPINGS`],
    /// [`MAX_REGEX_SET_SIZE`]) that [`build`](Self::build) enforces, so that a write cannot make the next
    /// snapshot unbuildable. Compiles only the regular expressions of `rule`'s method. Route patterns
    /// always pass (conflicts are [`find_conflict`](Self::find_conflict)'s business).
    pub fn check_regex_limits(&self, rule: &MappingRule) -> Result<()> {
        if !rule.pattern.is_regex() {
            return Ok(());
        }
        let others = self.rules.iter().filter(|r| r.pattern.is_regex() && r.id != rule.id);
        check_regex_count(others.clone().count() + 1)?;
        let same: Vec<MappingRule> = others
            .filter(|r| r.method == rule.method)
            .chain(std::iter::once(rule))
            .cloned()
            .collect();
        let entries = (0..same.len())
            .map(|i| Ok((same[i].priority, same[i].id, node_id(i)?)))
            .collect::<Result<Vec<_>>>()?;
        RegexStage::build(rule.method, entries, &same).map(|_| ())
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
        if let Err(why) = check_method(method) {
            return Resolution::Rejected(why);
        }
        let path = match check_path(raw_path) {
            Ok(p) => p,
            Err(why) => return Resolution::Rejected(why),
        };
        let classes = method_classes(method);
        let segments = if path == "/" { "" } else { path };
        let found = self.routes.find(0, segments, classes).or_else(|| {
            classes
                .order
                .iter()
                .find_map(|m| self.regexes[m.index()].as_ref()?.find(path))
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_find_every_literal() {
        let mut hashed = HashedChildren::default();
        // Two nodes with the same literals: each finds its own children.
        let mut c = [Children::default(), Children::default()];
        let keys: Vec<String> = (0..200).map(|i| format!("seg-{i}-{}", "x".repeat(i % 19))).collect();
        for (i, k) in keys.iter().enumerate() {
            for (parent, c) in c.iter_mut().enumerate() {
                c.insert(&mut hashed, parent as u32, k, (1000 * parent + i) as u32);
                if i == SMALL_CHILDREN {
                    assert!(matches!(c, Children::Hashed));
                }
            }
        }
        for (i, k) in keys.iter().enumerate() {
            for (parent, c) in c.iter().enumerate() {
                assert_eq!(
                    c.get(&hashed, parent as u32, k),
                    Some((1000 * parent + i) as u32),
                    "{k}"
                );
            }
        }
        for miss in ["", "seg", "seg-1-", "seg-1-xx", "seg-200-"] {
            assert_eq!(c[0].get(&hashed, 0, miss), None, "{miss}");
        }
        // A node that has no hashed children finds none of the others'.
        assert_eq!(Children::Hashed.get(&hashed, 2, &keys[0]), None);
    }

    #[test]
    fn children_search_hash_collisions() {
        // `by_hash` entries are (the hash of this parent and text, the parent and literal stored there,
        // its node).
        let entry = |parent: u32, k: &str, node: u32| HashedEntry {
            parent,
            key: Key::new(k, node),
        };
        // ((hashed parent, hashed text), (stored parent, stored literal), node)
        type Stored<'a> = ((u32, &'a str), (u32, &'a str), u32);
        let hashed = |by_hash: &[Stored<'_>], collided: &[(u32, &str, u32)]| {
            let mut texts: Vec<Box<str>> = vec![Box::default(); 12];
            for &(_, (_, k), n) in by_hash {
                texts[n as usize] = k.into();
            }
            for &(_, k, n) in collided {
                texts[n as usize] = k.into();
            }
            HashedChildren {
                by_hash: by_hash
                    .iter()
                    .map(|((hp, h), (p, k), n)| (child_hash(*hp, h), entry(*p, k, *n)))
                    .collect(),
                collided: collided.iter().map(|(p, k, n)| entry(*p, k, *n)).collect(),
                texts,
            }
        };
        let c = Children::Hashed;
        // Two literals with one hash: the second is found in `collided`.
        let h = hashed(&[((0, "a"), (0, "a"), 10)], &[(0, "b", 11)]);
        assert_eq!(c.get(&h, 0, "a"), Some(10));
        assert_eq!(c.get(&h, 0, "b"), Some(11));
        assert_eq!(c.get(&h, 0, "c"), None);
        assert_eq!(c.get(&h, 1, "b"), None);
        // A literal whose hash is taken by another is not mistaken for it.
        let h = hashed(&[((0, "zz"), (0, "a"), 10)], &[]);
        assert_eq!(c.get(&h, 0, "zz"), None);
        // Nor one of another parent whose hash is taken.
        let h = hashed(&[((1, "a"), (0, "a"), 10)], &[]);
        assert_eq!(c.get(&h, 1, "a"), None);
        // Long literals compare their tails.
        let h = hashed(&[((0, "abcdefgh-1"), (0, "abcdefgh-1"), 10)], &[(0, "abcdefgh-2", 11)]);
        assert_eq!(c.get(&h, 0, "abcdefgh-1"), Some(10));
        assert_eq!(c.get(&h, 0, "abcdefgh-2"), Some(11));
        assert_eq!(c.get(&h, 0, "abcdefgh-3"), None);
    }
}
