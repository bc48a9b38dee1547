//! Endpoint → action mappings: the pattern language and the compiled resolver.
//!
//! This module is pure: no I/O, no clock, no async. The store keeps [`MappingRule`]s; whoever serves
//! requests compiles them into a [`Snapshot`], publishes it through a [`SharedResolver`] and resolves
//! `(method, raw path)` against it.
//!
//! # Pattern language
//!
//! A *route pattern* starts with `/` and is a list of segments separated by `/`:
//!
//! | segment  | matches                                                                  |
//! |----------|--------------------------------------------------------------------------|
//! | `courses`| exactly that segment (case-sensitive; percent-escapes allowed: `a%20b`)  |
//! | `:name`  | any one segment, captured as `name` (`A-Z a-z 0-9 _`, not starting with a digit) |
//! | `*`      | any one segment, not captured                                            |
//! | `**`     | the rest of the path: zero or more segments; only as the last segment    |
//!
//! `/` alone matches the root. A trailing slash is ignored (`/courses/` is stored as `/courses`).
//! Literal segments are stored in one canonical spelling ([`PathPattern::as_str`]): unreserved
//! characters and `!$&'()+,=@:` as they are, everything else percent-encoded with upper-case hex
//! (`/caf%C3%A9`), and a literal that starts with `:` written `%3A...`. `*` may not appear inside a
//! literal segment, nor `{` or `}`; `.` and `..` segments are refused (paths are normalised first, so
//! they could never match).
//!
//! A *regular expression* is marked by a leading `~`: `~/courses/[0-9]+/admin`. It must match the
//! whole normalised (percent-decoded) path, as if written `^(?:...)$`; the syntax is the `regex`
//! crate's (linear time, no backtracking, no look-around).
//!
//! A mapping applies to one method (`GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE`, `OPTIONS`) or to
//! `ANY`. [`Method::parse`] accepts any letter case; a request's method is matched exactly.
//!
//! # Precedence
//!
//! At most one mapping answers a request. Candidates are ordered by, in turn:
//!
//! 1. **Kind**: route patterns before regular expressions. Regular expressions are only consulted
//!    when no route pattern matches.
//! 2. **Method**: a mapping for the request's own method before `ANY`. A `HEAD` request also consults
//!    `GET` mappings, after `HEAD` ones and before `ANY` (routers serve `HEAD` with the `GET` handler).
//!    A method other than the seven known ones (or not in upper case) only matches `ANY` mappings.
//! 3. For route patterns, **shape**, segment by segment from the left: a literal segment beats
//!    `:name`/`*`, which beats `**`; a pattern that ends where the path ends beats one whose `**`
//!    matches nothing (`/files` beats `/files/**` for `/files`).
//! 4. For regular expressions, **priority** ([`MappingRule::priority`], lower first), then **id**
//!    (lower first).
//!
//! Two mappings *conflict* when they have the same method and match exactly the same requests: the
//! same [`PathPattern::match_key`] (route patterns of the same shape, whatever their parameter names;
//! or the same regular expression text). [`Snapshot::build`] refuses conflicts, and the store puts a
//! unique index on `(method, match_key)`. Overlaps that are not conflicts (a literal beside a
//! `:param`, `GET` beside `ANY`, two different regular expressions) are legal and resolved as above.
//!
//! # Path normalisation
//!
//! The raw request target is normalised by [`normalize`] before matching. The rule: a request must
//! never resolve to a mapping that a router given the same raw path would not route it to, and when
//! routers could disagree, the path is refused ([`Resolution::Rejected`], which callers treat as a
//! denial).
//!
//! - The query string (`?...`) and fragment (`#...`) are dropped. The path must start with `/` and be at
//!   most [`MAX_PATH_LEN`] bytes.
//! - Percent-escapes are decoded once, per segment after splitting on raw `/` (`%63ourses` is
//!   `courses`; `%2e%2e` is `..`; `%C3%A9` is `é`). Escapes that decode to invalid UTF-8 are refused.
//! - Refused outright, raw or encoded: `%2F` (an encoded `/`), `%25` (an encoded `%`, i.e. double
//!   encoding such as `%252e`), `\` (`%5C`), `;` (`%3B`; servlet containers strip `;jsessionid=...`
//!   from segments), NUL and other control characters; also a `%` not followed by two hex digits.
//! - Empty segments (`//`) and `.` segments are dropped; `..` removes the segment before it
//!   (RFC 3986 §5.2.4); a `..` that would climb above the root is refused.
//! - A trailing slash is dropped (`/courses/` is `/courses`); `/` stays `/`.
//! - Matching is case-sensitive; no case folding and no Unicode normalisation.
//!
//! So `/courses/7/../../admin` and `/courses/%2e%2e/admin` are `/admin`, `/courses//7` is `/courses/7`,
//! and `/courses/..%2Fadmin` is refused. A gateway should forward the normalised path
//! ([`ResolvedMapping::normalized_path`]) so that the upstream routes exactly what was authorised.
//!
//! # Limits
//!
//! A pattern is at most [`MAX_PATH_PATTERN_LEN`] bytes, both as written and in canonical form; a route
//! pattern has at most [`MAX_SEGMENTS`] segments and parameter names of at most [`MAX_PARAM_NAME_LEN`]
//! bytes; a regular expression compiles to at most [`MAX_REGEX_SIZE`] bytes. A violation is
//! [`ErrorKind::InvalidInput`](crate::ErrorKind) with the reason. A match key is never longer than the
//! canonical pattern.
//!
//! # Resolving
//!
//! A snapshot keeps, per method, a segment trie of the route patterns. A request walks it depth-first
//! in precedence order (literal child, then parameter child, then `**`), visiting each node at most
//! once, so the cost depends on the path and the shape of the patterns, not on how many there are.
//! Regular expressions are indexed too, so that a request tries only those that could match it: one
//! whose every match has the same segments (`~/repos/[^/]+/issues/[0-9]+`: literal `/`s only, and
//! pieces that cannot match `/`) sits in a segment trie where its varying segments are wildcards; any
//! other sits under its literal leading segments (`~/courses/.*` is tried only under `/courses`). A
//! cheap check of the literals every match must end with comes before running an expression.
//!
//! Resolving takes no lock and allocates nothing unless the path needs rewriting (a regular
//! expression's search cache is allocated on its first use in each thread); parameters are sliced
//! from the path when asked for.
//!
//! # Example
//!
//! ```
//! use heimdall_core::mapping::{MappingRule, Method, PathPattern, Resolution, Snapshot};
//! use heimdall_core::model::ActionName;
//!
//! let rule = |id, method: &str, pattern: &str, action: &str| -> heimdall_core::Result<MappingRule> {
//!     Ok(MappingRule {
//!         id,
//!         method: Method::parse(method)?,
//!         pattern: PathPattern::parse(pattern)?,
//!         action: ActionName::parse(action)?,
//!         owner_group: None,
//!         priority: 0,
//!     })
//! };
//! let snapshot = Snapshot::build(
//!     [
//!         rule(1, "GET", "/courses/:id", "course:read")?,
//!         rule(2, "GET", "/courses/new", "course:create")?,
//!         rule(3, "ANY", "/courses/:id/**", "course:manage")?,
//!         rule(4, "GET", "~/admin/[0-9]+", "admin:read")?,
//!     ],
//!     1,
//! )?;
//!
//! let Resolution::Matched(m) = snapshot.resolve("GET", "/courses/7?tab=info") else { panic!() };
//! assert_eq!((m.id(), m.action().as_str(), m.param("id")), (1, "course:read", Some("7")));
//!
//! // A literal beats a parameter.
//! let m = snapshot.resolve("GET", "/courses/new").matched().unwrap();
//! assert_eq!(m.id(), 2);
//!
//! // Normalised before matching: `..` climbs out of /courses, and nothing maps /admin.
//! assert!(matches!(snapshot.resolve("GET", "/courses/7/%2e%2e/%2e%2e/admin"), Resolution::NoMatch));
//! assert!(matches!(snapshot.resolve("DELETE", "/courses/7%2Fx"), Resolution::Rejected(_)));
//!
//! // A conflicting mapping is refused, naming both ids.
//! let err = Snapshot::build([rule(1, "GET", "/a/:x", "a:read")?, rule(2, "GET", "/a/:y", "a:read")?], 2)
//!     .unwrap_err();
//! assert_eq!(err.kind(), heimdall_core::ErrorKind::Conflict);
//! # Ok::<(), heimdall_core::Error>(())
//! ```

mod normalize;
mod pattern;
mod resolver;
mod shared;

#[cfg(test)]
mod tests;

pub use self::normalize::{MAX_PATH_LEN, PathRejection, normalize};
pub use self::pattern::{MAX_PARAM_NAME_LEN, MAX_PATH_PATTERN_LEN, MAX_REGEX_SIZE, MAX_SEGMENTS, Method, PathPattern};
pub use self::resolver::{MappingRule, Params, Resolution, ResolvedMapping, Snapshot};
pub use self::shared::SharedResolver;
