//! The route trie: route patterns (literal segments, `:params`, `**` tails) compiled for resolving, one node per
//! segment, literal children hashed when there are many. [`Snapshot`](super::Snapshot) builds one and asks it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};

use super::path::{eq_bytes, find_slash, word};
use super::pattern::{Method, Segment};
use super::resolver::Classes;
use crate::error::{Error, Result};

/// Up to this many literal children are kept in a vector and compared one by one.
pub(super) const SMALL_CHILDREN: usize = 8;

/// Passes a precomputed 64-bit hash through.
#[derive(Default, Clone, Copy)]
pub(super) struct IdentityHasher(u64);

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
pub(super) fn fx_hash(s: &str) -> u64 {
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
pub(super) struct Key {
    head: u64,
    /// The literal's length (saturated: a request path is far shorter).
    len: u32,
    /// The child node.
    node: u32,
}

impl Key {
    pub(super) fn new(text: &str, node: u32) -> Key {
        Key {
            head: word(text.as_bytes()),
            len: u32::try_from(text.len()).unwrap_or(u32::MAX),
            node,
        }
    }

    // Forced inline, like `Children::get` and `next_segment`: the compiler kept them as calls, and on
    // misses and regular-expression hits, which walk up to six tries, the calls cost about a tenth.
    #[inline(always)]
    pub(super) fn matches(&self, seg: &str, seg_head: u64, texts: &[Box<str>]) -> bool {
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
pub(super) struct HashedChildren {
    by_hash: HashMap<u64, HashedEntry, BuildHasherDefault<IdentityHasher>>,
    collided: Vec<HashedEntry>,
    texts: Vec<Box<str>>,
}

/// A child in [`HashedChildren`]: its parent node and its key.
#[derive(Debug, Clone)]
pub(super) struct HashedEntry {
    parent: u32,
    key: Key,
}

/// The table hash of literal `seg` under node `parent`.
#[inline(always)]
pub(super) fn child_hash(parent: u32, seg: &str) -> u64 {
    (fx_hash(seg).rotate_left(5) ^ u64::from(parent)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

impl HashedChildren {
    // Forced inline: called at every trie node (see `Key::matches`).
    #[inline(always)]
    pub(super) fn get(&self, parent: u32, seg: &str, head: u64) -> Option<u32> {
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
    pub(super) fn set_text(&mut self, node: u32, seg: &str) {
        let i = node as usize;
        if self.texts.len() <= i {
            self.texts.resize(i + 1, Box::default());
        }
        self.texts[i] = seg.into();
    }

    pub(super) fn insert(&mut self, parent: u32, seg: &str, node: u32) {
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
pub(super) enum Children {
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
    pub(super) fn get(&self, hashed: &HashedChildren, parent: u32, seg: &str) -> Option<u32> {
        match self {
            Children::Small(v) if v.is_empty() => None,
            Children::Small(v) => {
                let head = word(seg.as_bytes());
                // A plain loop: `Iterator::find` was left as a call, which cost more than the search.
                for k in v {
                    if k.matches(seg, head, &hashed.texts) {
                        return Some(k.node);
                    }
                }
                None
            }
            Children::Hashed => hashed.get(parent, seg, word(seg.as_bytes())),
        }
    }

    pub(super) fn insert(&mut self, hashed: &mut HashedChildren, parent: u32, seg: &str, node: u32) {
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

/// What [`RouteTrie::descend`] found.
enum Descent {
    /// The rule the full search answers with.
    Found(u32),
    /// No rule: the full search would find none either.
    Nothing,
    /// No rule on the first path; the full search may find one on another.
    Elsewhere,
}

/// "No rule" in a method slot (and in a node, while it has none).
pub(super) const NONE: u32 = u32::MAX;

/// A node of the route trie: one segment position of the patterns that share the segments before it.
#[derive(Debug, Clone)]
pub(super) struct Node {
    lits: Children,
    /// The child for `:name` and `*`.
    param: Option<u32>,
    /// That child's `subtree_methods`, kept here so that a search deciding where to go reads one node.
    param_methods: u8,
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
            param_methods: 0,
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
pub(super) struct RouteTrie {
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
pub(super) fn next_segment(rest: &str) -> (&str, &str) {
    let body = &rest[1..];
    match find_slash(body.as_bytes()) {
        Some(i) => (&body[..i], &body[i..]),
        None => (body, ""),
    }
}

pub(super) fn node_id(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::invalid("too many mappings for one snapshot"))
}

impl RouteTrie {
    /// Inserts a route for `method`; returns the index of a rule already there with the same shape
    /// and method.
    pub(super) fn insert(&mut self, segments: &[Segment], method: Method, rule: u32) -> Result<Option<u32>> {
        let mut node = 0usize;
        let mut at_rest = false;
        let bit = 1u8 << method.index();
        self.nodes[0].subtree_methods |= bit;
        for seg in segments {
            let from = node;
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
            if !matches!(seg, Segment::Lit(_)) {
                self.nodes[from].param_methods |= bit;
            }
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
    pub(super) fn pick(&self, field: u32, methods: u8, classes: &Classes) -> Option<u32> {
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
    ///
    /// Most requests are answered by the first path that search goes down: [`descend`](Self::descend)
    /// follows it in a loop, and only when it leads nowhere while the search had other ways to try does the
    /// full search (with its backtracking) run, from the root.
    #[inline]
    pub(super) fn find(&self, rest: &str, classes: &Classes) -> Option<u32> {
        match self.descend(rest, classes) {
            Descent::Found(rule) => Some(rule),
            Descent::Nothing => None,
            Descent::Elsewhere => self.search(0, rest, classes),
        }
    }

    /// The first path [`search`](Self::search) goes down, without backtracking: at each node the literal
    /// child if one matches the segment and holds a rule for one of the methods below it, else the
    /// parameter child on the same condition, else the node's `**` rules; at the end of the path, the
    /// node's end-point rules. Where this path holds a rule, it is the one `search` answers with (it finds
    /// nothing earlier in its order). Where it does not, the search would go on with the ways it passed
    /// by (a parameter child beside the literal taken, `**` rules beside a child taken): when there were
    /// none, there is no rule.
    #[inline(always)]
    fn descend(&self, mut rest: &str, classes: &Classes) -> Descent {
        let mut node = 0u32;
        let mut passed_by = false;
        let viable = |c: u32| self.nodes[c as usize].subtree_methods & classes.mask != 0;
        loop {
            let n = &self.nodes[node as usize];
            if rest.is_empty() {
                return self.pick(n.terminal, n.terminal_methods, classes).map_or(
                    if passed_by {
                        Descent::Elsewhere
                    } else {
                        Descent::Nothing
                    },
                    Descent::Found,
                );
            }
            let (seg, tail) = next_segment(rest);
            let param = n.param.filter(|_| n.param_methods & classes.mask != 0);
            let next = match n.lits.get(&self.hashed, node, seg).filter(|&c| viable(c)) {
                Some(c) => {
                    passed_by |= param.is_some();
                    Some(c)
                }
                None => param,
            };
            match next {
                Some(c) => {
                    passed_by |= n.rest_methods & classes.mask != 0;
                    node = c;
                    rest = tail;
                }
                None => {
                    return match self.pick(n.rest, n.rest_methods, classes) {
                        Some(rule) => Descent::Found(rule),
                        None if passed_by => Descent::Elsewhere,
                        None => Descent::Nothing,
                    };
                }
            }
        }
    }

    /// The depth-first search [`find`](Self::find) describes, from `node`.
    fn search(&self, node: u32, rest: &str, classes: &Classes) -> Option<u32> {
        let n = &self.nodes[node as usize];
        if n.subtree_methods & classes.mask == 0 {
            return None;
        }
        if rest.is_empty() {
            return self.pick(n.terminal, n.terminal_methods, classes);
        }
        let (seg, tail) = next_segment(rest);
        if let Some(c) = n.lits.get(&self.hashed, node, seg)
            && let Some(r) = self.search(c, tail, classes)
        {
            return Some(r);
        }
        if let Some(c) = n.param
            && let Some(r) = self.search(c, tail, classes)
        {
            return Some(r);
        }
        self.pick(n.rest, n.rest_methods, classes)
    }
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
