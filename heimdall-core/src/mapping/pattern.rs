//! The path-pattern language (see the [module docs](super)) and HTTP methods.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use regex::{Regex, RegexBuilder};

use super::path::{PathRejection, escape_at, is_plain, refused_escape};
use crate::error::{Error, Result};

/// Longest path pattern, in bytes, as written.
pub const MAX_PATH_PATTERN_LEN: usize = 1024;
/// Most segments a route pattern may have.
pub const MAX_SEGMENTS: usize = 32;
/// Longest `:name` parameter name, in bytes.
pub const MAX_PARAM_NAME_LEN: usize = 64;
/// Largest compiled regular expression, in bytes (`regex::RegexBuilder::size_limit`). All the regular
/// expressions one request method consults are also compiled together, into a DFA of at most
/// [`MAX_REGEX_SET_SIZE`](super::MAX_REGEX_SET_SIZE) bytes.
pub const MAX_REGEX_SIZE: usize = 64 * 1024;

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
    /// A literal segment in its canonical spelling (still percent-encoded), compared byte for byte
    /// with a request path's segments.
    Lit(Box<str>),
    /// `:name`: any one segment, captured under `name`.
    Param(Box<str>),
    /// `*`: any one segment.
    Wild,
    /// `**`: the rest of the path, one or more segments (last only).
    Rest,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Route(Vec<Segment>),
    Regex {
        /// The anchored, compiled expression (for captures; matching uses the snapshot's sets).
        regex: Regex,
        /// The anchored source, `^(?:...)$`.
        anchored: Box<str>,
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

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escape(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// The canonical spelling of a literal segment as written in a pattern: the only spelling a canonical
/// request path can have for it. Escapes of characters that may stand raw are decoded (`%6F` is `o`,
/// `%3A` is `:`, `%21` is `!`), other escapes get upper-case hex, and characters a URI may not hold
/// raw (space, non-ASCII, ...) are encoded. (A leading `:` is kept raw here, as a request spells it;
/// the pattern's text writes it `%3A`, see [`push_literal`], since a raw one starts a parameter.)
/// Escapes that canonical paths refuse (`%2F`, `%3F`, `%25`, ...) and `.`/`..` segments are errors,
/// as they could never match.
fn canonical_literal(raw: &str) -> std::result::Result<String, String> {
    let bytes = raw.as_bytes();
    let refused = |why: PathRejection| format!("segment {raw:?} could never match a canonical path ({why})");
    let mut out = String::with_capacity(raw.len());
    // Decoded bytes, to check that escapes form UTF-8.
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (v, _) = escape_at(&bytes[i..]).map_err(refused)?;
            if let Some(why) = refused_escape(v) {
                return Err(refused(why));
            }
            if is_plain(v) {
                out.push(char::from(v));
            } else {
                push_escape(&mut out, v);
            }
            decoded.push(v);
            i += 3;
            continue;
        }
        if b < 0x80 {
            if let Some(why) = refused_escape(b) {
                return Err(refused(why));
            }
            if is_plain(b) {
                out.push(char::from(b));
            } else {
                push_escape(&mut out, b);
            }
        } else {
            push_escape(&mut out, b);
        }
        decoded.push(b);
        i += 1;
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(format!("segment {raw:?}: percent-escapes must decode to UTF-8"));
    }
    if out == "." || out == ".." {
        return Err(format!(
            "segment {raw:?}: '.' and '..' segments are refused in request paths, so they could never match"
        ));
    }
    Ok(out)
}

/// Writes a literal segment (as a request spells it) into a pattern's text or match key: a leading
/// `:` is written `%3A` (a raw one starts a parameter) and `*` is written `%2A` (a raw one is a
/// wildcard), so that the text parses back to the same literal.
fn push_literal(out: &mut String, lit: &str) {
    let rest = match lit.strip_prefix(':') {
        Some(rest) => {
            out.push_str("%3A");
            rest
        }
        None => lit,
    };
    for (i, part) in rest.split('*').enumerate() {
        if i > 0 {
            out.push_str("%2A");
        }
        out.push_str(part);
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
        // No trailing slash and no empty segment: canonical request paths have neither (only the root
        // `/` ends with a slash), so such a pattern could never match.
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
                Segment::Lit(lit) => push_literal(&mut text, lit),
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
            "" => {
                return Err(
                    "empty segment ('//' or a trailing slash; canonical paths have neither, except the root '/')"
                        .to_owned(),
                );
            }
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
        Ok(Segment::Lit(canonical_literal(raw)?.into_boxed_str()))
    }

    fn parse_regex(s: &str, src: &str) -> Result<PathPattern> {
        let bad = |why: String| Error::invalid(format!("path pattern {s:?}: {why}"));
        if src.is_empty() {
            return Err(bad("'~' must be followed by a regular expression".to_owned()));
        }
        // Parse the expression on its own first, so that wrapping it in `^(?:...)$` below cannot change
        // its meaning (`a)|(b` is refused here rather than becoming `^(?:a)|(b)$`).
        regex_syntax::Parser::new()
            .parse(src)
            .map_err(|e| bad(format!("bad regular expression: {e}")))?;
        let anchored = format!("^(?:{src})$");
        let regex = RegexBuilder::new(&anchored)
            .size_limit(MAX_REGEX_SIZE)
            .dfa_size_limit(REGEX_CACHE_LIMIT)
            .build()
            .map_err(|e| bad(format!("bad regular expression: {e}")))?;
        Ok(PathPattern {
            text: s.to_owned(),
            kind: Kind::Regex {
                regex,
                anchored: anchored.into_boxed_str(),
            },
        })
    }

    /// The canonical text, as it is stored: route patterns have literal segments in the one spelling a
    /// canonical request path can have (`/caf%C3%A9`, `o` for `%6F`, `!` for `%21`; only a leading `:` is
    /// written `%3A` and `*` is written `%2A`, as raw ones mean a parameter or a wildcard, and they match
    /// a raw `:` or `*` in a request); regular
    /// expressions are kept as written, with their `~`.
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
                        Segment::Lit(lit) => push_literal(&mut key, lit),
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
        ok("/courses/:id", "/courses/:id", "/courses/:");
        ok("/courses/*", "/courses/*", "/courses/:");
        ok("/courses/:id/**", "/courses/:id/**", "/courses/:/**");
        ok("/**", "/**", "/**");
        ok("/c%6Furses", "/courses", "/courses");
        ok("/files/a%20b", "/files/a%20b", "/files/a%20b");
        ok("/files/café", "/files/caf%C3%A9", "/files/caf%C3%A9");
        ok("/files/caf%c3%a9", "/files/caf%C3%A9", "/files/caf%C3%A9");
        ok("/v1/jobs/j:run", "/v1/jobs/j:run", "/v1/jobs/j:run");
        // A literal that starts with ':' is written with %3A and stays distinct from a parameter (it
        // matches a raw ':' in a request: escapes of ':' are needless in request paths).
        ok("/a/%3Aid", "/a/%3Aid", "/a/%3Aid");
        ok("/a/%3aid%3A", "/a/%3Aid:", "/a/%3Aid:");
        ok("/a/%2A", "/a/%2A", "/a/%2A");
        ok("/a/x%2Ay%2a", "/a/x%2Ay%2A", "/a/x%2Ay%2A");
        ok("/a/~x.y-z_", "/a/~x.y-z_", "/a/~x.y-z_");
        // Escapes are kept as written, upper-cased, unless they are needless: every character that may
        // stand raw in a path (sub-delimiters, ':' and '@' too) is decoded, as a canonical request path
        // spells it.
        ok("/a/%21", "/a/!", "/a/!");
        ok("/a/!$&'()+,=@", "/a/!$&'()+,=@", "/a/!$&'()+,=@");
        ok("/a/%21%24%26%27%28%29%2B%2C%3D%40", "/a/!$&'()+,=@", "/a/!$&'()+,=@");
        ok("/a/j%3arun", "/a/j:run", "/a/j:run");
        ok("/users/%40me", "/users/@me", "/users/@me");
        ok("/a/%5B%7B%7C", "/a/%5B%7B%7C", "/a/%5B%7B%7C");
        ok("/a b", "/a%20b", "/a%20b");
        ok("/%7Euser", "/~user", "/~user");
        ok("/a/...", "/a/...", "/a/...");
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
        bad("/courses/", "trailing slash");
        bad("//", "empty segment");
        bad("/a/%3F", "encoded_query_delimiter");
        bad("/a/%5c", "backslash");
        bad("/a/%2E", "'.' and '..'");
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
