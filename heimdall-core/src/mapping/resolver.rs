//! The compiled, immutable resolver snapshot.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use super::normalize::{PathRejection, eq_bytes, find_slash, normalize, word};
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

/// A literal segment stored for fast comparison: its length and first eight bytes sit inline, so
/// most comparisons (segments of up to eight bytes, or any mismatch in length or start) read no other
/// memory.
#[derive(Debug, Clone)]
struct Key {
    len: usize,
    head: u64,
    text: Box<str>,
}

impl Key {
    fn new(text: &str) -> Key {
        Key {
            len: text.len(),
            head: word(text.as_bytes()),
            text: text.into(),
        }
    }

    // Forced inline, like `Children::get` and `next_segment`: the compiler kept them as calls, and on
    // misses and regular-expression hits, which walk up to six tries, the calls cost about a tenth.
    #[inline(always)]
    fn matches(&self, seg: &str, seg_head: u64) -> bool {
        self.len == seg.len()
            && self.head == seg_head
            && (self.len <= 8 || eq_bytes(&self.text.as_bytes()[8..], &seg.as_bytes()[8..]))
    }
}

/// Many literal children, found by hash, then compared (the key sits in the table's bucket, so a
/// lookup reads the control bytes and one bucket). A literal whose hash another literal of the node
/// already has goes to `collided`, searched one by one (in practice it stays empty).
#[derive(Debug, Clone, Default)]
struct HashedChildren {
    by_hash: HashMap<u64, (Key, u32), BuildHasherDefault<IdentityHasher>>,
    collided: Vec<(Key, u32)>,
}

/// The literal children of a trie node.
#[derive(Debug, Clone)]
enum Children {
    /// Few children: compared one by one.
    Small(Vec<(Key, u32)>),
    /// Many: hashed (boxed, to keep nodes small).
    Hashed(Box<HashedChildren>),
}

impl Default for Children {
    fn default() -> Self {
        Children::Small(Vec::new())
    }
}

impl Children {
    // Forced inline: called at every trie node (see `Key::matches`).
    #[inline(always)]
    fn get(&self, seg: &str) -> Option<u32> {
        match self {
            Children::Small(v) if v.is_empty() => None,
            Children::Small(v) => {
                let head = word(seg.as_bytes());
                v.iter().find(|(k, _)| k.matches(seg, head)).map(|(_, n)| *n)
            }
            Children::Hashed(h) => {
                let head = word(seg.as_bytes());
                if let Some((k, n)) = h.by_hash.get(&fx_hash(seg))
                    && k.matches(seg, head)
                {
                    return Some(*n);
                }
                h.collided.iter().find(|(k, _)| k.matches(seg, head)).map(|(_, n)| *n)
            }
        }
    }

    fn insert(&mut self, seg: &str, node: u32) {
        if let Children::Small(v) = self
            && v.len() >= SMALL_CHILDREN
        {
            let old = std::mem::take(v);
            *self = Children::Hashed(Box::default());
            for (k, n) in old {
                self.insert(&k.text, n);
            }
        }
        match self {
            Children::Small(v) => v.push((Key::new(seg), node)),
            Children::Hashed(h) => match h.by_hash.entry(fx_hash(seg)) {
                Entry::Vacant(e) => {
                    e.insert((Key::new(seg), node));
                }
                Entry::Occupied(_) => h.collided.push((Key::new(seg), node)),
            },
        }
    }
}

/// A node of a route trie: one segment position of the patterns that share the segments before it.
#[derive(Debug, Clone, Default)]
struct Node {
    lits: Children,
    /// The child for `:name` and `*`.
    param: Option<u32>,
    /// The rule whose pattern ends here.
    terminal: Option<u32>,
    /// The rule whose pattern has `**` here.
    rest: Option<u32>,
}

/// The route patterns of one method: a segment trie.
#[derive(Debug, Clone)]
struct RouteTrie {
    nodes: Vec<Node>,
}

impl Default for RouteTrie {
    fn default() -> Self {
        RouteTrie {
            nodes: vec![Node::default()],
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

/// Puts `rule` in an empty slot; returns the occupant otherwise.
fn claim(slot: &mut Option<u32>, rule: u32) -> Option<u32> {
    match *slot {
        Some(old) => Some(old),
        None => {
            *slot = Some(rule);
            None
        }
    }
}

impl RouteTrie {
    /// Inserts a route; returns the index of a rule already there with the same shape.
    fn insert(&mut self, segments: &[Segment], rule: u32) -> Result<Option<u32>> {
        let mut node = 0usize;
        for seg in segments {
            let next = match seg {
                Segment::Lit(lit) => self.nodes[node].lits.get(lit),
                Segment::Param(_) | Segment::Wild => self.nodes[node].param,
                Segment::Rest => return Ok(claim(&mut self.nodes[node].rest, rule)),
            };
            node = match next {
                Some(n) => n as usize,
                None => {
                    let n = node_id(self.nodes.len())?;
                    self.nodes.push(Node::default());
                    match seg {
                        Segment::Lit(lit) => self.nodes[node].lits.insert(lit, n),
                        _ => self.nodes[node].param = Some(n),
                    }
                    n as usize
                }
            };
        }
        Ok(claim(&mut self.nodes[node].terminal, rule))
    }

    /// The most specific rule matching `rest` (a normalised path, or "" for the root), searched
    /// depth-first in precedence order: literal child, then parameter child, then `**`. Each node is
    /// visited at most once per call, since a node sits at one depth and the path has one segment there.
    fn find(&self, node: u32, rest: &str) -> Option<u32> {
        let n = &self.nodes[node as usize];
        if rest.is_empty() {
            return n.terminal.or(n.rest);
        }
        let (seg, tail) = next_segment(rest);
        if let Some(c) = n.lits.get(seg)
            && let Some(r) = self.find(c, tail)
        {
            return Some(r);
        }
        if let Some(c) = n.param
            && let Some(r) = self.find(c, tail)
        {
            return Some(r);
        }
        n.rest
    }
}

/// A regular expression rule in the order of its stage: priority, then id.
#[derive(Debug, Clone, Copy)]
struct RegexEntry {
    priority: i32,
    id: i64,
    rule: u32,
}

impl RegexEntry {
    fn key(&self) -> (i32, i64) {
        (self.priority, self.id)
    }
}

#[derive(Debug, Clone, Default)]
struct RegexNode {
    lits: Children,
    /// The child for a segment that is not a fixed literal (skeleton trie only).
    wild: Option<u32>,
    /// Expressions that end at this node, sorted by priority then id.
    entries: Vec<RegexEntry>,
}

/// The regular expressions of one method, indexed so that a request only tries the expressions that
/// could match it:
///
/// - an expression with a [skeleton](super::pattern) (every match has the same segments, some fixed)
///   sits in a segment trie, like a route whose varying segments are wildcards;
/// - any other sits at the node of its literal leading segments in a second trie (`~/courses/.*`
///   is tried only for paths under `/courses`; `~.*` for every path).
#[derive(Debug, Clone)]
struct RegexIndex {
    shaped: Vec<RegexNode>,
    prefixed: Vec<RegexNode>,
}

impl Default for RegexIndex {
    fn default() -> Self {
        RegexIndex {
            shaped: vec![RegexNode::default()],
            prefixed: vec![RegexNode::default()],
        }
    }
}

/// Follows (or makes) the child of `node` for `seg` (`None`: the wildcard child).
fn regex_child(nodes: &mut Vec<RegexNode>, node: usize, seg: Option<&str>) -> Result<usize> {
    let existing = match seg {
        Some(lit) => nodes[node].lits.get(lit),
        None => nodes[node].wild,
    };
    if let Some(n) = existing {
        return Ok(n as usize);
    }
    let n = node_id(nodes.len())?;
    nodes.push(RegexNode::default());
    match seg {
        Some(lit) => nodes[node].lits.insert(lit, n),
        None => nodes[node].wild = Some(n),
    }
    Ok(n as usize)
}

/// Tries `entries` (sorted) against `path` while they could beat `best`.
#[inline]
fn try_entries(entries: &[RegexEntry], path: &str, rules: &[MappingRule], best: &mut Option<RegexEntry>) {
    for e in entries {
        if best.is_some_and(|b| b.key() <= e.key()) {
            return;
        }
        if let Kind::Regex { regex, suffixes, .. } = rules[e.rule as usize].pattern.kind()
            && suffixes
                .as_ref()
                .is_none_or(|s| s.iter().any(|l| path.as_bytes().ends_with(l)))
            && regex.is_match(path)
        {
            *best = Some(*e);
            return;
        }
    }
}

impl RegexIndex {
    fn insert(&mut self, pattern: &PathPattern, entry: RegexEntry) -> Result<()> {
        let Kind::Regex { prefix, skeleton, .. } = pattern.kind() else {
            return Ok(());
        };
        let (nodes, node) = match skeleton {
            Some(skeleton) => {
                let mut node = 0;
                for seg in skeleton {
                    node = regex_child(&mut self.shaped, node, seg.as_deref())?;
                }
                (&mut self.shaped, node)
            }
            None => {
                let mut node = 0;
                for seg in prefix {
                    node = regex_child(&mut self.prefixed, node, Some(seg))?;
                }
                (&mut self.prefixed, node)
            }
        };
        nodes[node].entries.push(entry);
        Ok(())
    }

    fn sort(&mut self) {
        for n in self.shaped.iter_mut().chain(&mut self.prefixed) {
            n.entries.sort_by_key(RegexEntry::key);
        }
    }

    fn is_empty(&self) -> bool {
        self.shaped.len() == 1 && self.prefixed.len() == 1 && self.prefixed[0].entries.is_empty()
    }

    /// The first expression, by priority then id, that matches `path` in full.
    fn find(&self, path: &str, rules: &[MappingRule]) -> Option<u32> {
        let mut best: Option<RegexEntry> = None;
        // The root path is one empty segment to a skeleton (`~/`, `~/[a-z]*`).
        self.find_shaped(0, path, path, rules, &mut best);
        let mut node = &self.prefixed[0];
        let mut rest = if path == "/" { "" } else { path };
        loop {
            try_entries(&node.entries, path, rules, &mut best);
            if rest.is_empty() {
                break;
            }
            let (seg, tail) = next_segment(rest);
            match node.lits.get(seg) {
                Some(n) => node = &self.prefixed[n as usize],
                None => break,
            }
            rest = tail;
        }
        best.map(|e| e.rule)
    }

    /// Depth-first over the skeleton trie: every branch that fits, literal and wildcard.
    fn find_shaped(&self, node: u32, rest: &str, path: &str, rules: &[MappingRule], best: &mut Option<RegexEntry>) {
        let n = &self.shaped[node as usize];
        if rest.is_empty() {
            try_entries(&n.entries, path, rules, best);
            return;
        }
        let (seg, tail) = next_segment(rest);
        if let Some(c) = n.lits.get(seg) {
            self.find_shaped(c, tail, path, rules, best);
        }
        if let Some(c) = n.wild {
            self.find_shaped(c, tail, path, rules, best);
        }
    }
}

/// The outcome of resolving a request.
#[derive(Debug)]
pub enum Resolution<'a> {
    /// A mapping applies.
    Matched(ResolvedMapping<'a>),
    /// No mapping applies (callers deny by default).
    NoMatch,
    /// The normaliser refused the path (callers deny).
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

/// A request's mapping: the rule (borrowed from the snapshot) and the normalised path its parameters
/// come from.
#[derive(Debug, Clone)]
pub struct ResolvedMapping<'a> {
    rule: &'a MappingRule,
    path: Cow<'a, str>,
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

    /// The normalised path that was matched. A gateway should forward this path (not the raw one), so
    /// that the upstream routes exactly what was authorised.
    pub fn normalized_path(&self) -> &str {
        &self.path
    }

    /// The value of one parameter (see [`params`](Self::params)).
    pub fn param(&self, name: &str) -> Option<&str> {
        match self.rule.pattern.kind() {
            Kind::Route(segments) => RouteParams::new(segments, &self.path)
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v),
            Kind::Regex { regex, .. } => regex.captures(&self.path)?.name(name).map(|m| m.as_str()),
        }
    }

    /// The captured parameters, in pattern order: `:name` segments under their names, the rest of the
    /// path matched by `**` under `"**"` (without its leading '/', possibly empty), and for a regular
    /// expression its named groups that took part in the match. `*` captures nothing. Values are
    /// percent-decoded. Route parameters are sliced from the path on demand and never allocate; regular
    /// expression captures are computed when asked for.
    pub fn params(&self) -> Params<'_> {
        match self.rule.pattern.kind() {
            Kind::Route(segments) => Params(ParamsInner::Route(RouteParams::new(segments, &self.path))),
            Kind::Regex { regex, .. } => {
                let mut found = Vec::new();
                if let Some(caps) = regex.captures(&self.path) {
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

/// The methods whose mappings a request method consults, in order: its own, `GET` for a `HEAD`
/// request, and `ANY`. An unknown or lower-case method consults `ANY` only.
fn method_classes(method: &str) -> &'static [Method] {
    match Method::from_request(method) {
        Some(Method::Get) => &[Method::Get, Method::Any],
        Some(Method::Head) => &[Method::Head, Method::Get, Method::Any],
        Some(Method::Post) => &[Method::Post, Method::Any],
        Some(Method::Put) => &[Method::Put, Method::Any],
        Some(Method::Patch) => &[Method::Patch, Method::Any],
        Some(Method::Delete) => &[Method::Delete, Method::Any],
        Some(Method::Options) => &[Method::Options, Method::Any],
        Some(Method::Any) | None => &[Method::Any],
    }
}

/// All mappings compiled for resolving: immutable once built; build a new one on change and swap it in
/// (see [`SharedResolver`](super::SharedResolver)).
pub struct Snapshot {
    version: i64,
    rules: Vec<MappingRule>,
    routes: [RouteTrie; 8],
    regexes: [RegexIndex; 8],
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
    /// with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when two rules have the same id.
    pub fn build(rules: impl IntoIterator<Item = MappingRule>, version: i64) -> Result<Snapshot> {
        let rules: Vec<MappingRule> = rules.into_iter().collect();
        let mut snap = Snapshot {
            version,
            keys: HashMap::with_capacity(rules.len()),
            ..Snapshot::default()
        };
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
            let m = rule.method.index();
            match rule.pattern.kind() {
                Kind::Route(segments) => {
                    if let Some(old) = snap.routes[m].insert(segments, idx)? {
                        // Unreachable while keys are checked first; kept as a guard.
                        return Err(conflict(&rules[old as usize], rule));
                    }
                }
                Kind::Regex { .. } => snap.regexes[m].insert(
                    &rule.pattern,
                    RegexEntry {
                        priority: rule.priority,
                        id: rule.id,
                        rule: idx,
                    },
                )?,
            }
        }
        for index in &mut snap.regexes {
            index.sort();
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

    /// The id of the mapping a new mapping `(method, pattern)` would conflict with, if any.
    pub fn find_conflict(&self, method: Method, pattern: &PathPattern) -> Option<i64> {
        self.keys
            .get(&(method, pattern.match_key()))
            .map(|&i| self.rules[i as usize].id)
    }

    /// Resolves a request to its mapping (precedence in the [module docs](super)).
    ///
    /// `method` is the request's method token, matched case-sensitively (`GET`, not `get`); methods
    /// other than the seven known ones only match `ANY` mappings. `raw_path` is the request target as
    /// received, path and optional query, still percent-encoded. No lock is taken; nothing is allocated
    /// unless the path needs rewriting (percent-escapes, `//`, `.` or `..` segments).
    pub fn resolve<'a>(&'a self, method: &str, raw_path: &'a str) -> Resolution<'a> {
        let path = match normalize(raw_path) {
            Ok(p) => p,
            Err(why) => return Resolution::Rejected(why),
        };
        let classes = method_classes(method);
        let segments = if path == "/" { "" } else { &*path };
        let mut found = classes.iter().find_map(|m| self.routes[m.index()].find(0, segments));
        if found.is_none() {
            found = classes.iter().find_map(|m| {
                let index = &self.regexes[m.index()];
                if index.is_empty() {
                    None
                } else {
                    index.find(&path, &self.rules)
                }
            });
        }
        match found {
            Some(i) => Resolution::Matched(ResolvedMapping {
                rule: &self.rules[i as usize],
                path,
            }),
            None => Resolution::NoMatch,
        }
    }
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
        let mut c = Children::default();
        let keys: Vec<String> = (0..200).map(|i| format!("seg-{i}-{}", "x".repeat(i % 19))).collect();
        for (i, k) in keys.iter().enumerate() {
            c.insert(k, i as u32);
            if i == SMALL_CHILDREN {
                assert!(matches!(c, Children::Hashed { .. }));
            }
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(c.get(k), Some(i as u32), "{k}");
        }
        for miss in ["", "seg", "seg-1-", "seg-1-xx", "seg-200-"] {
            assert_eq!(c.get(miss), None, "{miss}");
        }
    }

    #[test]
    fn children_search_hash_collisions() {
        // `by_hash` entries are (the hash of this text, the literal stored there, its node).
        let hashed = |by_hash: &[(&str, &str, u32)], collided: &[(&str, u32)]| {
            Children::Hashed(Box::new(HashedChildren {
                by_hash: by_hash
                    .iter()
                    .map(|(h, k, n)| (fx_hash(h), (Key::new(k), *n)))
                    .collect(),
                collided: collided.iter().map(|(k, n)| (Key::new(k), *n)).collect(),
            }))
        };
        // Two literals with one hash: the second is found in `collided`.
        let c = hashed(&[("a", "a", 10)], &[("b", 11)]);
        assert_eq!(c.get("a"), Some(10));
        assert_eq!(c.get("b"), Some(11));
        assert_eq!(c.get("c"), None);
        // A literal whose hash is taken by another is not mistaken for it.
        let c = hashed(&[("zz", "a", 10)], &[]);
        assert_eq!(c.get("zz"), None);
        // Long literals compare their tails.
        let c = hashed(&[("abcdefgh-1", "abcdefgh-1", 10)], &[("abcdefgh-2", 11)]);
        assert_eq!(c.get("abcdefgh-1"), Some(10));
        assert_eq!(c.get("abcdefgh-2"), Some(11));
        assert_eq!(c.get("abcdefgh-3"), None);
    }
}
