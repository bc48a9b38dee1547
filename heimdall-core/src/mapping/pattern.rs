//! The path-pattern language (see the [module docs](super)) and HTTP methods.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use regex::{Regex, RegexBuilder};

use super::normalize::decode_segment_into;
use crate::error::{Error, Result};

/// Longest path pattern, in bytes, as written.
pub const MAX_PATH_PATTERN_LEN: usize = 1024;
/// Most segments a route pattern may have.
pub const MAX_SEGMENTS: usize = 32;
/// Longest `:name` parameter name, in bytes.
pub const MAX_PARAM_NAME_LEN: usize = 64;
/// Largest compiled regular expression, in bytes (`regex::RegexBuilder::size_limit`).
pub const MAX_REGEX_SIZE: usize = 256 * 1024;

/// Cap on one expression's lazy-DFA cache per thread (the `regex` default is 2 MiB); past it the
/// search falls back to slower engines instead of growing.
const REGEX_CACHE_LIMIT: usize = 256 * 1024;

/// An HTTP method a mapping applies to, or `ANY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// Any method, including ones not listed here.
    Any,
}

impl Method {
    /// Every method, in a fixed order.
    pub const ALL: [Method; 8] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Options,
        Method::Any,
    ];

    /// Parses a method name as written by an administrator. Any letter case is accepted (`get`, `Get`)
    /// and normalised: the method's text is always upper case. (A *request's* method, by contrast, is
    /// matched case-sensitively, as HTTP requires: see [`Snapshot::resolve`](super::Snapshot::resolve).)
    pub fn parse(s: &str) -> Result<Method> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "method {s:?} is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or ANY"
                ))
            })
    }

    /// The method as an exact, upper-case request method token (`GET`); `None` for anything else,
    /// including `get` and extension methods such as `PROPFIND`.
    pub(crate) fn from_request(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => return None,
        })
    }

    /// The upper-case name (`GET`, ..., `ANY`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Any => "ANY",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Method> {
        Method::parse(s)
    }
}

/// One segment of a route pattern.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    /// A literal segment, percent-decoded (the form request paths are normalised to).
    Lit(Box<str>),
    /// `:name`: any one segment, captured under `name`.
    Param(Box<str>),
    /// `*`: any one segment.
    Wild,
    /// `**`: the rest of the path, zero or more segments (last only).
    Rest,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Route(Vec<Segment>),
    Regex {
        /// The anchored, compiled expression.
        regex: Regex,
        /// Whole literal segments every match starts with (used to index regexes).
        prefix: Vec<Box<str>>,
        /// If known, a set of literals one of which every match ends with (a cheap pre-check).
        suffixes: Option<Box<[Box<[u8]>]>>,
        /// If every match has the same number of segments, the segments: `Some(literal)` where the
        /// segment is a fixed literal, `None` where it varies (used to index regexes like routes).
        skeleton: Option<Vec<Option<Box<str>>>>,
    },
}

/// A validated path pattern: a route pattern (`/courses/:id/**`) or a regular expression (`~...`).
///
/// Two patterns are equal when their canonical texts ([`as_str`](PathPattern::as_str)) are.
#[derive(Debug, Clone)]
pub struct PathPattern {
    text: String,
    kind: Kind,
}

impl PartialEq for PathPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for PathPattern {}

impl Hash for PathPattern {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for PathPattern {
    type Err = Error;

    fn from_str(s: &str) -> Result<PathPattern> {
        PathPattern::parse(s)
    }
}

/// Bytes a literal segment keeps as they are in canonical text; everything else is percent-encoded.
fn keep_in_canonical(b: u8, first: bool) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()+,=@".contains(&b) || (b == b':' && !first)
}

fn push_encoded_literal(out: &mut String, decoded: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (i, b) in decoded.bytes().enumerate() {
        if keep_in_canonical(b, i == 0) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_PARAM_NAME_LEN
}

impl PathPattern {
    /// Parses and validates a pattern (grammar and limits in the [module docs](super)).
    ///
    /// Errors are [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) and say what is wrong; for
    /// a bad regular expression the message includes the regex parser's own.
    pub fn parse(s: &str) -> Result<PathPattern> {
        if s.is_empty() || s.len() > MAX_PATH_PATTERN_LEN {
            return Err(Error::invalid(format!(
                "path pattern must be 1 to {MAX_PATH_PATTERN_LEN} bytes long (got {} bytes)",
                s.len()
            )));
        }
        if let Some(src) = s.strip_prefix('~') {
            return Self::parse_regex(s, src);
        }
        Self::parse_route(s)
    }

    fn parse_route(s: &str) -> Result<PathPattern> {
        let bad = |why: String| Error::invalid(format!("path pattern {s:?}: {why}"));
        let Some(body) = s.strip_prefix('/') else {
            return Err(bad(
                "must start with '/' (or with '~' for a regular expression)".to_owned()
            ));
        };
        // One trailing slash is dropped, as it is from request paths.
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut segments = Vec::new();
        if !body.is_empty() {
            for raw in body.split('/') {
                if segments.len() == MAX_SEGMENTS {
                    return Err(bad(format!("has more than {MAX_SEGMENTS} segments")));
                }
                if matches!(segments.last(), Some(Segment::Rest)) {
                    return Err(bad("'**' may only be the last segment".to_owned()));
                }
                segments.push(Self::parse_segment(raw, &segments).map_err(bad)?);
            }
        }
        let mut text = String::with_capacity(s.len());
        for seg in &segments {
            text.push('/');
            match seg {
                Segment::Lit(lit) => push_encoded_literal(&mut text, lit),
                Segment::Param(name) => {
                    text.push(':');
                    text.push_str(name);
                }
                Segment::Wild => text.push('*'),
                Segment::Rest => text.push_str("**"),
            }
        }
        if text.is_empty() {
            text.push('/');
        }
        if text.len() > MAX_PATH_PATTERN_LEN {
            // Percent-encoding raw characters (`é` becomes `%C3%A9`) can lengthen a pattern.
            return Err(bad(format!(
                "is {} bytes long once canonical ({text:.40}...), more than {MAX_PATH_PATTERN_LEN}",
                text.len()
            )));
        }
        Ok(PathPattern {
            text,
            kind: Kind::Route(segments),
        })
    }

    fn parse_segment(raw: &str, before: &[Segment]) -> std::result::Result<Segment, String> {
        match raw {
            "" => return Err("empty segment ('//')".to_owned()),
            "*" => return Ok(Segment::Wild),
            "**" => return Ok(Segment::Rest),
            _ => {}
        }
        if let Some(name) = raw.strip_prefix(':') {
            if !is_param_name(name) {
                return Err(format!(
                    "parameter {raw:?}: a name is 1 to {MAX_PARAM_NAME_LEN} of A-Z a-z 0-9 _, not starting with a digit"
                ));
            }
            if before.iter().any(|s| matches!(s, Segment::Param(n) if **n == *name)) {
                return Err(format!("parameter name {name:?} is used twice"));
            }
            return Ok(Segment::Param(name.into()));
        }
        if raw.contains('*') {
            return Err(format!(
                "segment {raw:?}: '*' and '**' must be whole segments; use a regular expression ('~...') for partial wildcards"
            ));
        }
        if raw.contains(['?', '#']) {
            return Err(format!(
                "segment {raw:?}: a pattern has no query string or fragment (write a literal '?' as %3F, '#' as %23)"
            ));
        }
        if raw.contains(['{', '}']) {
            return Err(format!("segment {raw:?}: write parameters as ':name', not '{{name}}'"));
        }
        let mut decoded = Vec::with_capacity(raw.len());
        decode_segment_into(raw.as_bytes(), &mut decoded)
            .map_err(|why| format!("segment {raw:?} is not allowed in a path ({why})"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| format!("segment {raw:?}: percent-escapes must decode to UTF-8"))?;
        if decoded == "." || decoded == ".." {
            return Err(format!(
                "segment {raw:?}: '.' and '..' never reach the resolver (paths are normalised first)"
            ));
        }
        Ok(Segment::Lit(decoded.into_boxed_str()))
    }

    fn parse_regex(s: &str, src: &str) -> Result<PathPattern> {
        let bad = |why: String| Error::invalid(format!("path pattern {s:?}: {why}"));
        if src.is_empty() {
            return Err(bad("'~' must be followed by a regular expression".to_owned()));
        }
        // Parse the expression on its own first, so that wrapping it in `^(?:...)$` below cannot change
        // its meaning (`a)|(b` is refused here rather than becoming `^(?:a)|(b)$`).
        let hir = regex_syntax::Parser::new()
            .parse(src)
            .map_err(|e| bad(format!("bad regular expression: {e}")))?;
        let regex = RegexBuilder::new(&format!("^(?:{src})$"))
            .size_limit(MAX_REGEX_SIZE)
            .dfa_size_limit(REGEX_CACHE_LIMIT)
            .build()
            .map_err(|e| bad(format!("bad regular expression: {e}")))?;
        Ok(PathPattern {
            text: s.to_owned(),
            kind: Kind::Regex {
                regex,
                prefix: literal_prefix_segments(&hir),
                suffixes: literal_suffixes(&hir),
                skeleton: skeleton(&hir),
            },
        })
    }

    /// The canonical text, as it is stored: route patterns have literal segments re-encoded in one way
    /// (`/caf%C3%A9`, `%3A` for a leading `:`) and no trailing slash; regular expressions are kept as
    /// written, with their `~`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is a regular expression (`~...`).
    pub fn is_regex(&self) -> bool {
        matches!(self.kind, Kind::Regex { .. })
    }

    /// A key such that two route patterns have equal keys exactly when they match the same paths:
    /// parameter names are dropped (`:id` and `*` both become `:`). For a regular expression the key is
    /// its text, so the same expression twice conflicts, while different expressions (even equivalent
    /// ones) are allowed and ordered by priority. Never longer than [`as_str`](Self::as_str), so at most
    /// [`MAX_PATH_PATTERN_LEN`] bytes.
    pub fn match_key(&self) -> String {
        match &self.kind {
            Kind::Regex { .. } => self.text.clone(),
            Kind::Route(segments) => {
                let mut key = String::with_capacity(self.text.len());
                for seg in segments {
                    key.push('/');
                    match seg {
                        Segment::Lit(lit) => push_encoded_literal(&mut key, lit),
                        Segment::Param(_) | Segment::Wild => key.push(':'),
                        Segment::Rest => key.push_str("**"),
                    }
                }
                if key.is_empty() {
                    key.push('/');
                }
                key
            }
        }
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }
}

/// Whether some match of `hir` contains a '/'.
fn can_match_slash(hir: &regex_syntax::hir::Hir) -> bool {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(l) => l.0.contains(&b'/'),
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().any(|r| r.start() <= '/' && '/' <= r.end()),
        HirKind::Class(Class::Bytes(c)) => c.ranges().iter().any(|r| r.start() <= b'/' && b'/' <= r.end()),
        HirKind::Repetition(r) => can_match_slash(&r.sub),
        HirKind::Capture(c) => can_match_slash(&c.sub),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().any(can_match_slash),
    }
}

/// The segment skeleton of an expression whose matches all have the same shape: it starts with a
/// literal '/', and every '/' it can match is a literal one at the top level, so each match has
/// exactly one segment per skeleton entry, and literal-only segments are fixed. `None` otherwise.
fn skeleton(hir: &regex_syntax::hir::Hir) -> Option<Vec<Option<Box<str>>>> {
    use regex_syntax::hir::HirKind;
    let parts = match hir.kind() {
        HirKind::Concat(parts) => parts.as_slice(),
        _ => std::slice::from_ref(hir),
    };
    let mut segments: Vec<Option<Vec<u8>>> = Vec::new();
    for part in parts {
        match part.kind() {
            HirKind::Literal(l) => {
                for &b in l.0.iter() {
                    if b == b'/' {
                        segments.push(Some(Vec::new()));
                    } else {
                        match segments.last_mut() {
                            Some(Some(lit)) => lit.push(b),
                            Some(None) => {}
                            None => return None,
                        }
                    }
                }
            }
            HirKind::Look(_) | HirKind::Empty => {}
            _ => {
                if segments.is_empty() || can_match_slash(part) {
                    return None;
                }
                if let Some(last) = segments.last_mut() {
                    *last = None;
                }
            }
        }
    }
    if segments.is_empty() || segments.len() > 2 * MAX_SEGMENTS {
        return None;
    }
    segments
        .into_iter()
        .map(|seg| match seg {
            Some(lit) => String::from_utf8(lit).ok().map(|s| Some(s.into_boxed_str())),
            None => Some(None),
        })
        .collect()
}

/// Most suffix literals kept for the pre-check.
const MAX_SUFFIXES: usize = 16;

/// A finite set of non-empty literals one of which every match of `hir` ends with, if there is one
/// (`["/lock"]` for `/repos/[^/]+/lock`, the ten digits for `/issues/[0-9]+`).
fn literal_suffixes(hir: &regex_syntax::hir::Hir) -> Option<Box<[Box<[u8]>]>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let mut extractor = Extractor::new();
    extractor.kind(ExtractKind::Suffix);
    let seq = extractor.extract(hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.len() > MAX_SUFFIXES || lits.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    Some(lits.iter().map(|l| Box::from(l.as_bytes())).collect())
}

/// The whole literal segments at the start of every match of `hir`, e.g. `["courses"]` for
/// `/courses/[0-9]+/admin`. Conservative: stops at anything that is not a plain literal.
fn literal_prefix_segments(hir: &regex_syntax::hir::Hir) -> Vec<Box<str>> {
    use regex_syntax::hir::HirKind;
    let mut lit: Vec<u8> = Vec::new();
    let mut complete = true;
    match hir.kind() {
        HirKind::Literal(l) => lit.extend_from_slice(&l.0),
        HirKind::Concat(parts) => {
            for part in parts {
                match part.kind() {
                    HirKind::Literal(l) => lit.extend_from_slice(&l.0),
                    _ => {
                        complete = false;
                        break;
                    }
                }
            }
        }
        _ => complete = false,
    }
    let Ok(lit) = String::from_utf8(lit) else {
        return Vec::new();
    };
    let Some(body) = lit.strip_prefix('/') else {
        return Vec::new();
    };
    // Only segments followed by a '/' are whole (a match could go on `/coursesX` otherwise), unless the
    // literal is the entire expression.
    let whole = if complete {
        body
    } else {
        body.rfind('/').map_or("", |i| &body[..i])
    };
    let mut out = Vec::new();
    if whole.is_empty() {
        return out;
    }
    for seg in whole.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            break;
        }
        out.push(seg.into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[track_caller]
    fn ok(input: &str, canonical: &str, key: &str) {
        let p = PathPattern::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(p.as_str(), canonical, "canonical text of {input:?}");
        assert_eq!(p.match_key(), key, "match key of {input:?}");
        // The canonical text parses to itself.
        let again = PathPattern::parse(p.as_str()).unwrap();
        assert_eq!(again.as_str(), canonical, "canonical text of canonical {canonical:?}");
        assert_eq!(again.match_key(), key);
    }

    #[track_caller]
    fn bad(input: &str, message_part: &str) {
        let e = PathPattern::parse(input).expect_err(input);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{input:?}");
        assert!(
            e.message().contains(message_part),
            "{input:?}: {:?} lacks {message_part:?}",
            e.message()
        );
    }

    #[test]
    fn route_patterns() {
        ok("/", "/", "/");
        ok("/courses", "/courses", "/courses");
        ok("/courses/", "/courses", "/courses");
        ok("/courses/:id", "/courses/:id", "/courses/:");
        ok("/courses/*", "/courses/*", "/courses/:");
        ok("/courses/:id/**", "/courses/:id/**", "/courses/:/**");
        ok("/**", "/**", "/**");
        ok("/c%6Furses", "/courses", "/courses");
        ok("/files/a%20b", "/files/a%20b", "/files/a%20b");
        ok("/files/café", "/files/caf%C3%A9", "/files/caf%C3%A9");
        ok("/files/caf%c3%a9", "/files/caf%C3%A9", "/files/caf%C3%A9");
        ok("/v1/jobs/j:run", "/v1/jobs/j:run", "/v1/jobs/j:run");
        // A literal that starts with ':' is written with %3A and stays distinct from a parameter.
        ok("/a/%3Aid", "/a/%3Aid", "/a/%3Aid");
        ok("/a/%2A", "/a/%2A", "/a/%2A");
        ok("/a/~x.y-z_", "/a/~x.y-z_", "/a/~x.y-z_");
    }

    #[test]
    fn regex_patterns() {
        ok(
            "~/courses/[0-9]+/admin",
            "~/courses/[0-9]+/admin",
            "~/courses/[0-9]+/admin",
        );
        let p = PathPattern::parse("~/courses/[0-9]+").unwrap();
        assert!(p.is_regex());
        assert!(!PathPattern::parse("/courses").unwrap().is_regex());
    }

    #[test]
    fn keys_ignore_parameter_names_only() {
        let key = |s: &str| PathPattern::parse(s).unwrap().match_key();
        assert_eq!(key("/a/:x/b"), key("/a/:y/b"));
        assert_eq!(key("/a/:x/b"), key("/a/*/b"));
        assert_ne!(key("/a/:x"), key("/a/**"));
        assert_ne!(key("/a/:x"), key("/a/%3Ax"));
        assert_ne!(key("/a"), key("/a/**"));
        assert_ne!(key("~/a"), key("/a"));
    }

    #[test]
    fn invalid_patterns() {
        bad("", "1 to 1024 bytes");
        bad(&format!("/{}", "a".repeat(1024)), "1 to 1024 bytes");
        bad("courses", "must start with '/'");
        bad("/courses//7", "empty segment");
        bad("/a/**/b", "'**' may only be the last segment");
        bad("/a/:", "parameter");
        bad("/a/:1x", "parameter");
        bad("/a/:x-y", "parameter");
        bad("/a/:id/b/:id", "used twice");
        bad("/a/x*", "whole segments");
        bad("/a/{id}", "':name'");
        bad("/a?x=1", "query string");
        bad("/a/b#c", "query string");
        bad("/a/./b", "'.' and '..'");
        bad("/a/%2e%2E", "'.' and '..'");
        bad("/a%2Fb", "encoded_slash");
        bad("/a/%00", "control_character");
        bad("/a/%25", "encoded_percent");
        bad("/a;b", "semicolon");
        bad("/a/%zz", "bad_percent_escape");
        bad("/a/%C3", "UTF-8");
        bad("~", "regular expression");
        bad("~/a/(b", "bad regular expression");
        bad("~/a)|(/b", "bad regular expression");
        bad("~/a/[z-a]", "bad regular expression");
    }

    #[test]
    fn limits() {
        let deep = "/a".repeat(MAX_SEGMENTS);
        assert!(PathPattern::parse(&deep).is_ok());
        bad(&format!("{deep}/a"), "more than 32 segments");
        let name = "n".repeat(MAX_PARAM_NAME_LEN);
        assert!(PathPattern::parse(&format!("/:{name}")).is_ok());
        bad(&format!("/:{name}n"), "parameter");
        // A compact expression that compiles to far more than the size limit.
        bad(r"~/(\w{100}){20}", "size limit");
        assert!(PathPattern::parse(r"~/repos/[^/]+/[^/]+/issues/[0-9]+/\w+").is_ok());
        // Keys fit the store's unique index: canonical text is limited too, after percent-encoding.
        let long = format!("/{}", "%C3%A9".repeat(170));
        assert!(long.len() <= MAX_PATH_PATTERN_LEN);
        assert!(PathPattern::parse(&long).unwrap().match_key().len() <= MAX_PATH_PATTERN_LEN);
        let raw = format!("/{}", "é".repeat(400));
        assert!(raw.len() <= MAX_PATH_PATTERN_LEN);
        bad(&raw, "once canonical");
        bad(&format!("/{}", " ".repeat(400)), "once canonical");
    }

    #[test]
    fn literal_prefixes_of_regexes() {
        #[track_caller]
        fn prefix(src: &str, expect: &[&str]) {
            let p = PathPattern::parse(src).unwrap();
            let Kind::Regex { prefix, .. } = p.kind() else {
                panic!("not a regex")
            };
            let got: Vec<&str> = prefix.iter().map(|s| &**s).collect();
            assert_eq!(got, expect, "{src}");
        }
        prefix("~/courses/[0-9]+/admin", &["courses"]);
        prefix("~/repos/a/b/issues/[0-9]+", &["repos", "a", "b", "issues"]);
        prefix("~/courses", &["courses"]);
        prefix("~/courses/x", &["courses", "x"]);
        prefix("~/courses(/x)?", &[]);
        prefix("~/coursesX?", &[]);
        prefix("~/c/coursesX?", &["c"]);
        prefix("~(?i)/courses/x", &[]);
        prefix("~/a/x|/b/y", &[]);
        prefix("~.*", &[]);
        prefix("~/a//b/c+", &["a"]);
    }

    #[test]
    fn literal_suffixes_of_regexes() {
        #[track_caller]
        fn suffixes(src: &str, expect: Option<&[&str]>) {
            let p = PathPattern::parse(src).unwrap();
            let Kind::Regex { suffixes, .. } = p.kind() else {
                panic!("not a regex")
            };
            let got: Option<Vec<&str>> = suffixes
                .as_ref()
                .map(|s| s.iter().map(|l| std::str::from_utf8(l).unwrap()).collect());
            assert_eq!(got.as_deref(), expect, "{src}");
        }
        suffixes("~/a/[^/]+/lock", Some(&["/lock"]));
        suffixes("~/a/(x|yz)", Some(&["/a/x", "/a/yz"]));
        suffixes("~/a/[0-9]+", Some(&["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]));
        suffixes("~/a/[^/]+", None);
        suffixes("~/a(/.*)?", None);
        suffixes("~/a/b?", Some(&["/a/b", "/a/"]));
        suffixes("~.*", None);
    }

    #[test]
    fn regex_skeletons() {
        #[track_caller]
        fn shape(src: &str, expect: Option<&[Option<&str>]>) {
            let p = PathPattern::parse(src).unwrap();
            let Kind::Regex { skeleton, .. } = p.kind() else {
                panic!("not a regex")
            };
            let got: Option<Vec<Option<&str>>> =
                skeleton.as_ref().map(|s| s.iter().map(|seg| seg.as_deref()).collect());
            assert_eq!(got.as_deref(), expect, "{src}");
        }
        shape(
            "~/repos/[^/]+/x-[0-9]+/lock",
            Some(&[Some("repos"), None, None, Some("lock")]),
        );
        shape("~/", Some(&[Some("")]));
        shape("~/[a-z]*", Some(&[None]));
        shape("~/a/(b|c)/d", Some(&[Some("a"), None, Some("d")]));
        shape("~^/a/b$", Some(&[Some("a"), Some("b")]));
        shape("~/a/(b|c/d)", None);
        shape("~/a/.*", None);
        shape("~/a(/b)?", None);
        shape("~.*/a", None);
        shape("~[a-z]/a", None);
        shape("~/a/[^a]", None);
    }

    #[test]
    fn methods() {
        for (s, m) in [
            ("GET", Method::Get),
            ("get", Method::Get),
            ("Delete", Method::Delete),
            ("any", Method::Any),
        ] {
            assert_eq!(Method::parse(s).unwrap(), m, "{s}");
        }
        for m in Method::ALL {
            assert_eq!(Method::parse(m.as_str()).unwrap(), m);
            assert_eq!(m.to_string(), m.as_str());
        }
        for bad in ["", "TRACE", "GETX", "*"] {
            assert_eq!(Method::parse(bad).unwrap_err().kind(), ErrorKind::InvalidInput, "{bad}");
        }
        assert_eq!(Method::from_request("GET"), Some(Method::Get));
        assert_eq!(Method::from_request("get"), None);
        assert_eq!(Method::from_request("ANY"), None);
    }
}
