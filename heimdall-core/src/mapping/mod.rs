//! Endpoint → action mappings: the pattern language and the compiled resolver.
//!
//! This module is pure: no I/O, no clock, no async. The store keeps [`MappingRule`]s; whoever serves
//! requests compiles them into a [`Snapshot`], publishes it through a [`SharedResolver`] and resolves
//! `(method, raw path)` against it.
//!
//! # Pattern language
//!
//! A *route pattern* starts with `/` and is a list of non-empty segments separated by `/`:
//!
//! | segment  | matches                                                                  |
//! |----------|--------------------------------------------------------------------------|
//! | `courses`| exactly that segment, byte for byte (case-sensitive; escapes allowed: `a%20b`) |
//! | `:name`  | any one segment, captured as `name` (`A-Z a-z 0-9 _`, not starting with a digit) |
//! | `*`      | any one segment, not captured                                            |
//! | `**`     | the rest of the path: **one or more** segments; only as the last segment |
//!
//! `/` alone matches the root only. A pattern with an empty segment or a trailing slash (`/a//b`,
//! `/courses/`) is invalid input: canonical request paths have neither, so it could never match (axum
//! routes `/courses/` and `/courses` apart, too). `/files/**` does not match `/files` (as axum's
//! `/files/{*rest}` does not): map both if both are meant.
//!
//! Literal segments are compared with the request's path as received, still percent-encoded, so they
//! are stored in the one spelling a [canonical path](check_path) can have ([`PathPattern::as_str`]):
//! escapes of characters that may stand raw (unreserved, sub-delimiters, `:`, `@`) are decoded
//! (`/c%6Furses` is stored `/courses`, `/jobs%3Apurge` is `/jobs:purge`), other escapes get upper-case
//! hex (`%c3%a9` → `%C3%A9`), characters a URI cannot hold raw are encoded (`/café` → `/caf%C3%A9`, a
//! space → `%20`); a literal that starts with `:` is written `%3A...` and a literal `*` is written
//! `%2A` (raw, they would be a parameter or a wildcard), and they match a raw `:` or `*` in a request.
//! A raw `*` may not appear inside a literal segment, nor `{` or `}`; literals that no canonical path can hold
//! (`.`, `..`, `%2F`, `%3F`, `%25`, `;`, ...) are refused.
//!
//! A *regular expression* is marked by a leading `~`: `~/courses/[0-9]+/admin`. It must match the
//! whole canonical path as received (still percent-encoded: `é` is `%C3%A9`), as if written
//! `^(?:...)$`; the syntax is the `regex` crate's (linear time, no backtracking, no look-around).
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
//! 2. For route patterns, **path specificity**, segment by segment from the left: a literal segment
//!    beats `:name`/`*`, which beats `**`. (So `ANY /admin/**` beats `GET /**` for `GET /admin/users`.)
//! 3. **Method**, between equally specific paths (for regular expressions: between all of them): a
//!    mapping for the request's own method before `ANY`. A `HEAD` request also consults `GET`
//!    mappings, after `HEAD` ones and before `ANY` (routers serve `HEAD` with the `GET` handler). An
//!    upper-case method other than the seven known ones (`PROPFIND`) only matches `ANY` mappings; a
//!    method that is not an upper-case token (`get`) is refused ([`check_method`]).
//! 4. For regular expressions, **priority** ([`MappingRule::priority`], lower first), then **id**
//!    (lower first).
//!
//! Two mappings *conflict* when they have the same method and match exactly the same requests: the
//! same [`PathPattern::match_key`] (route patterns of the same shape, whatever their parameter names;
//! or the same regular expression text). [`Snapshot::build`] refuses conflicts, and the store puts a
//! unique index on `(method, match_key)`. Overlaps that are not conflicts (a literal beside a
//! `:param`, `GET` beside `ANY`, two different regular expressions) are legal and resolved as above.
//!
//! A mapping *shadows* (takes requests from) another when some request matches both and it answers first.
//! [`would_take_from`] decides it for a pair; [`Snapshot::shadowed_by`] lists the mappings that would lose a
//! request to a write (exact for route patterns, sound everywhere); the facade refuses a write that would
//! shadow a mapping its caller may not edit.
//!
//! # Canonical paths: what is authorised is what is routed
//!
//! The resolver answers only for *canonical* paths and rejects every other path
//! ([`Resolution::Rejected`], which frontends answer with 400); it never rewrites a path, because a
//! router given the raw path would dispatch it elsewhere. [`check_path`] is the check:
//!
//! - The query string (from the first `?`) is not part of the path. A `#` before it is refused:
//!   clients don't send fragments, and uvicorn hands `/a#b` to Starlette or Django as that path.
//! - The path starts with `/` and is at most [`MAX_PATH_LEN`] bytes.
//! - No empty segment: no `//` and no trailing slash, except the root `/` itself.
//! - No `.` or `..` segment, raw or encoded (`%2E%2E`).
//! - Raw characters are those a URI path allows (unreserved, `!$&'()*+,=:@`), except `;` (servlet
//!   containers strip `;jsessionid=...`); no `\`, no control characters, no raw non-ASCII.
//! - Percent-escapes: two upper-case hex digits, only of characters that may not stand raw in a path
//!   (space, `"<>[]^`{|}` and non-ASCII UTF-8, e.g. `%20`, `%C3%A9`), decoding to valid UTF-8 (no
//!   overlong forms). An escape of a character that may stand raw is needless, hence refused: an
//!   unreserved character (`%41`, `%2E`, `%7E`), a sub-delimiter (`%21`, `%2B`, `%3D`, ...), `:`
//!   (`%3A`) or `@` (`%40`); so is one of `/`, `\`, `?`, `#`, `%` (double encoding), `;` or a control
//!   character. So every decoded path has exactly one canonical spelling, and a router that matches
//!   the raw path (axum) and one that matches the decoded path (Starlette, Django) dispatch a
//!   canonical path alike: `POST /v1/jobs%3Apurge`, which Starlette runs as `/v1/jobs:purge`, is
//!   refused rather than resolved as something else.
//! - The request method is an upper-case RFC 9110 token ([`check_method`]): `get`, `Get`, `GE T` or
//!   an empty method are refused (Django upper-cases the method before dispatching, axum doesn't).
//! - Matching is case-sensitive; no case folding and no Unicode normalisation.
//!
//! The rules are checked differentially against axum's `Router` (`heimdall-http/tests/paths.rs`) and
//! against Starlette and Django under uvicorn (`heimdall-py/tests/test_routers_differential.py`).
//!
//! # Limits
//!
//! A pattern is at most [`MAX_PATH_PATTERN_LEN`] bytes, both as written and in canonical form; a route
//! pattern has at most [`MAX_SEGMENTS`] segments and parameter names of at most [`MAX_PARAM_NAME_LEN`]
//! bytes; a regular expression compiles to at most [`MAX_REGEX_SIZE`] bytes. A snapshot holds at most
//! [`MAX_REGEX_MAPPINGS`] regular expressions, and those one request method consults (its own, `GET`'s for
//! `HEAD`, `ANY`'s) compile together into a DFA of at most [`MAX_REGEX_SET_SIZE`] bytes (expressions
//! whose DFA blows up, like `.*a.{20}`, are refused). A violation is [`ErrorKind::InvalidInput`](crate::ErrorKind) with the
//! reason. A match key is never longer than the canonical pattern. A request path is at most
//! [`MAX_PATH_LEN`] bytes, so the cost of resolving one request is bounded.
//!
//! # Resolving
//!
//! A snapshot keeps one segment trie of the route patterns of all methods, whose end points hold a
//! rule per method. A request walks it depth-first in path-precedence order (literal child, then
//! parameter child, then `**`), visiting each node at most once; the first end point with a rule for
//! the request's method (or `GET` for `HEAD`, or `ANY`) wins, and there the method order decides. The
//! cost depends on the path and the shape of the patterns, not on how many there are. The regular
//! expressions of each method are compiled ahead of time into one multi-pattern DFA, sorted by priority
//! then id, and run in one pass over the path, one table lookup per byte (anchored at both ends, the
//! first pattern that matches wins); so a request costs at most three such passes over at most
//! [`MAX_PATH_LEN`] bytes, whatever the expressions.
//!
//! Resolving takes no lock and allocates nothing; parameters are sliced from the path when asked for
//! (a regular expression's named groups are computed, with its own `regex::Regex`, when asked for).
//!
//! # Example
//!
//! ```
//! use heimdall_core::mapping::{MappingRule, Method, PathPattern, PathRejection, Resolution, Snapshot};
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
//!         rule(5, "GET", "/**", "everything:read")?,
//!     ],
//!     1,
//! )?;
//!
//! let Resolution::Matched(m) = snapshot.resolve("GET", "/courses/7?tab=info") else { panic!() };
//! assert_eq!((m.id(), m.action().as_str(), m.param("id")), (1, "course:read", Some("7")));
//! assert_eq!(m.path(), "/courses/7");
//!
//! // A literal beats a parameter.
//! assert_eq!(snapshot.resolve("GET", "/courses/new").matched().unwrap().id(), 2);
//!
//! // The path decides before the method: `ANY /courses/:id/**` beats `GET /**`.
//! assert_eq!(snapshot.resolve("GET", "/courses/7/files/a").matched().unwrap().id(), 3);
//!
//! // Non-canonical paths are rejected, never rewritten.
//! assert!(matches!(
//!     snapshot.resolve("GET", "/courses/7/%2E%2E/%2E%2E/admin/1"),
//!     Resolution::Rejected(PathRejection::DotSegment)
//! ));
//! assert!(matches!(snapshot.resolve("GET", "/courses/7/"), Resolution::Rejected(PathRejection::EmptySegment)));
//! assert!(matches!(snapshot.resolve("DELETE", "/courses/7%2Fx"), Resolution::Rejected(_)));
//!
//! // A conflicting mapping is refused, naming both ids.
//! let err = Snapshot::build([rule(1, "GET", "/a/:x", "a:read")?, rule(2, "GET", "/a/:y", "a:read")?], 2)
//!     .unwrap_err();
//! assert_eq!(err.kind(), heimdall_core::ErrorKind::Conflict);
//! # Ok::<(), heimdall_core::Error>(())
//! ```

mod path;
mod pattern;
mod resolver;
mod shadow;
mod shared;
mod trie;

#[cfg(test)]
mod tests;

pub use self::path::{MAX_PATH_LEN, PathRejection, check_method, check_path};
pub use self::pattern::{MAX_PARAM_NAME_LEN, MAX_PATH_PATTERN_LEN, MAX_REGEX_SIZE, MAX_SEGMENTS, Method, PathPattern};
pub use self::resolver::{
    MAX_REGEX_MAPPINGS, MAX_REGEX_SET_SIZE, MappingRule, Params, Resolution, ResolvedMapping, Snapshot,
};
pub use self::shadow::{MAX_PRODUCT_STATES, MAX_WITNESS_REQUESTS, Overlap, Shadow, would_take_from};
pub use self::shared::SharedResolver;
