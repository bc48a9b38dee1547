//! Domain values: validated names and the records the facade returns.
//!
//! # Name grammar
//!
//! Group, role, action and API key names are one or more *segments* joined by `:` (`go:course:editor`).
//! A segment is 1 or more of `A-Z a-z 0-9 _ . -` and starts with a letter or a digit. A whole name is
//! at most [`MAX_NAME_LEN`] bytes. Names are case-sensitive.
//!
//! A *subject* (the user's id from the identity provider, such as a CPF or `alice`) is 1 to
//! [`MAX_SUBJECT_LEN`] bytes of printable characters without leading or trailing white space.
//!
//! # Management patterns
//!
//! A group-management right names its target groups with an SQL `LIKE` pattern, as the spec does:
//! `%` matches any run of characters (also none), `_` matches exactly one character, and `\` makes the
//! next character literal (`go:my\_group` matches only `go:my_group`). Any other character must be one
//! a name may contain. Matching is done by Heimdall itself, case-sensitively, so PostgreSQL and SQLite
//! agree, in time linear in the name (see [`GroupPattern::matches_str`]).
//!
//! # Limits
//!
//! Names: [`MAX_NAME_LEN`] bytes; subjects: [`MAX_SUBJECT_LEN`]; management patterns: [`MAX_PATTERN_LEN`];
//! path scopes: [`MAX_SCOPE_LEN`]; descriptions: [`MAX_DESCRIPTION_LEN`]. Longer input is refused as
//! invalid. The built-in PDP and Cerbos are tested to agree at these limits.
//!
//! ```
//! use heimdall_core::model::{GroupName, GroupPattern};
//! let p = GroupPattern::parse("go:%").unwrap();
//! assert!(p.matches(&GroupName::parse("go:course:editor").unwrap()));
//! assert!(!p.matches(&GroupName::parse("rmi:public").unwrap()));
//! ```

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{Error, Result};

mod api_keys;
mod explain;

pub use api_keys::{ApiKey, ApiKeyPrincipal, ApiKeyScope, NewApiKey};
pub use explain::{
    DecidedBy, ExplainCandidate, ExplainDecision, ExplainRequest, Explanation, PathCheck, PatternKind, RoleGrant,
    RoleSource,
};

/// Longest group, role or action name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest subject, in bytes.
pub const MAX_SUBJECT_LEN: usize = 255;
/// Longest management pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 128;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Longest management path scope, in bytes (the same bound as a path pattern's).
pub const MAX_SCOPE_LEN: usize = crate::mapping::MAX_PATH_PATTERN_LEN;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn check_name(what: &str, s: &str) -> Result<()> {
    const RULE: &str = "segments of A-Z a-z 0-9 _ . - joined by ':', each starting with a letter or digit";
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "{what} must be 1 to {MAX_NAME_LEN} bytes long ({RULE})"
        )));
    }
    for seg in s.split(':') {
        let ok = seg.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) && seg.chars().all(is_name_char);
        if !ok {
            return Err(Error::invalid(format!("{what} {s:?} is not valid: use {RULE}")));
        }
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            /// Parses and validates a name (see the module docs for the grammar).
            pub fn parse(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                check_name($what, &s)?;
                Ok($ty(s))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// A name read back from the database, where only validated names are written.
            pub(crate) fn from_db(s: String) -> Self {
                $ty(s)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A group's name, such as `go:authenticated`.
    GroupName,
    "group name"
);
name_type!(
    /// A role's name, such as `go:course:editor`.
    RoleName,
    "role name"
);
name_type!(
    /// An action's name, such as `course:create`.
    ActionName,
    "action name"
);
name_type!(
    /// An API key's name, such as `adapter:go-courses` (the name grammar; unique among keys).
    ApiKeyName,
    "API key name"
);

/// A user's subject: the stable id the identity provider gives them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

impl Subject {
    /// Parses and validates a subject.
    pub fn parse(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        if s.is_empty() || s.len() > MAX_SUBJECT_LEN {
            return Err(Error::invalid(format!(
                "subject must be 1 to {MAX_SUBJECT_LEN} bytes long"
            )));
        }
        if s.chars().any(char::is_control) || s.trim() != s {
            return Err(Error::invalid(
                "subject must not contain control characters or leading/trailing white space",
            ));
        }
        Ok(Subject(s))
    }

    /// The subject as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A subject read back from the database, where only validated subjects are written.
    pub(crate) fn from_db(s: String) -> Self {
        Subject(s)
    }
}

/// The authenticated user on whose behalf an operation runs.
///
/// Only heimdall-core makes one: [`crate::Heimdall::provision`] for an identity a frontend has verified (a
/// token checked against the identity provider's keys), or [`crate::Heimdall::system_caller`] for the
/// operator's own tools. Its fields are private, so no code can claim another user's identity or roles by
/// building one:
///
/// ```compile_fail
/// use heimdall_core::model::{Caller, Subject};
/// let forged = Caller { user_id: 1, subject: Subject::parse("root").unwrap(), token_roles: vec![] };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    subject: Subject,
    who: Who,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    /// A provisioned user, with the roles their token carried.
    User { id: i64, token_roles: Vec<RoleName> },
    /// The operator's own tools: acts as a superadmin without a user row.
    System,
}

impl Caller {
    pub(crate) fn user(id: i64, subject: Subject, token_roles: Vec<RoleName>) -> Caller {
        Caller {
            subject,
            who: Who::User { id, token_roles },
        }
    }

    pub(crate) fn system(subject: Subject) -> Caller {
        Caller {
            subject,
            who: Who::System,
        }
    }

    /// The caller's subject (`system:<purpose>` for the system caller).
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// The caller's user id; `None` for the system caller.
    pub fn user_id(&self) -> Option<i64> {
        match &self.who {
            Who::User { id, .. } => Some(*id),
            Who::System => None,
        }
    }

    /// Roles the caller's token carried (valid role names only), merged into their effective roles when
    /// [`crate::Config::merge_token_roles`] is on.
    pub fn token_roles(&self) -> &[RoleName] {
        match &self.who {
            Who::User { token_roles, .. } => token_roles,
            Who::System => &[],
        }
    }

    /// Whether this is the system caller (see [`crate::Heimdall::system_caller`]).
    pub fn is_system(&self) -> bool {
        self.who == Who::System
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One piece of a parsed [`GroupPattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(char),
    One,
    Any,
}

/// An SQL-`LIKE` pattern over group names (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPattern {
    text: String,
    tokens: Vec<Token>,
}

impl GroupPattern {
    /// Parses and validates a pattern.
    pub fn parse(s: impl Into<String>) -> Result<Self> {
        let text = s.into();
        if text.is_empty() || text.len() > MAX_PATTERN_LEN {
            return Err(Error::invalid(format!(
                "management pattern must be 1 to {MAX_PATTERN_LEN} bytes long"
            )));
        }
        let mut tokens = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let tok = match c {
                '%' => Token::Any,
                '_' => Token::One,
                '\\' => match chars.next() {
                    Some(e @ ('%' | '_' | '\\')) => Token::Lit(e),
                    _ => {
                        return Err(Error::invalid(format!(
                            "management pattern {text:?}: '\\' must be followed by '%', '_' or '\\'"
                        )));
                    }
                },
                c if is_name_char(c) || c == ':' => Token::Lit(c),
                c => {
                    return Err(Error::invalid(format!(
                        "management pattern {text:?} contains {c:?}: use name characters, '%', '_' and '\\'"
                    )));
                }
            };
            tokens.push(tok);
        }
        Ok(GroupPattern { text, tokens })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What every name the pattern matches starts with: its characters before the first wildcard.
    pub(crate) fn literal_prefix(&self) -> String {
        self.tokens
            .iter()
            .map_while(|t| match t {
                Token::Lit(c) => Some(*c),
                Token::One | Token::Any => None,
            })
            .collect()
    }

    /// Whether `name` matches the pattern (case-sensitive, whole name).
    pub fn matches(&self, name: &GroupName) -> bool {
        self.matches_str(name.as_str())
    }

    /// Whether the text `s` matches the pattern (case-sensitive, whole string).
    ///
    /// Costs at most `len(pattern) × len(s)` steps, never exponential: iterative matching that only ever
    /// backtracks to the last `%`. With the pattern bounded by [`MAX_PATTERN_LEN`], that is linear in `s`.
    pub fn matches_str(&self, s: &str) -> bool {
        let s: Vec<char> = s.chars().collect();
        let (mut si, mut pi) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            match self.tokens.get(pi) {
                Some(Token::Lit(c)) if *c == s[si] => {
                    si += 1;
                    pi += 1;
                }
                Some(Token::One) => {
                    si += 1;
                    pi += 1;
                }
                Some(Token::Any) => {
                    star = Some((pi, si));
                    pi += 1;
                }
                _ => match star {
                    Some((sp, ss)) => {
                        pi = sp + 1;
                        si = ss + 1;
                        star = Some((sp, ss + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[pi..].iter().all(|t| *t == Token::Any)
    }

    /// The same pattern as an anchored regular expression (RE2 and `regex` syntax), for policy engines
    /// that match with regular expressions, such as Cerbos' CEL `matches`.
    pub fn to_regex(&self) -> String {
        let mut re = String::from("^");
        for t in &self.tokens {
            match t {
                Token::Any => re.push_str(".*"),
                Token::One => re.push('.'),
                Token::Lit(c) => {
                    if c.is_ascii_alphanumeric() || *c == ':' || *c == '_' {
                        re.push(*c);
                    } else {
                        re.push('\\');
                        re.push(*c);
                    }
                }
            }
        }
        re.push('$');
        re
    }
}

impl fmt::Display for GroupPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where a manager's mappings may lie: literal path segments followed by `/**` (`/go/**`), or `/**` for
/// every path. A route pattern lies inside the scope when every path it can match starts with the scope's
/// segments and has at least one more (`**` matches one or more segments); a regular expression never does.
///
/// ```
/// use heimdall_core::mapping::PathPattern;
/// use heimdall_core::model::PathScope;
/// let scope = PathScope::parse("/go/**").unwrap();
/// assert!(scope.contains(&PathPattern::parse("/go/courses/:id").unwrap()));
/// assert!(!scope.contains(&PathPattern::parse("/go").unwrap()));
/// assert!(!scope.contains(&PathPattern::parse("/:team/courses").unwrap()));
/// assert!(!scope.contains(&PathPattern::parse("/gold/x").unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathScope {
    text: String,
}

/// Whether a canonical route-pattern segment is a literal.
fn is_literal_segment(seg: &str) -> bool {
    !seg.starts_with(':') && seg != "*" && seg != "**"
}

impl PathScope {
    /// Parses a scope: a route pattern of literal segments ending in `/**`, at most [`MAX_SCOPE_LEN`] bytes.
    pub fn parse(s: impl AsRef<str>) -> Result<Self> {
        let s = s.as_ref();
        let rule = "a path scope is literal segments followed by /** (such as /go/**), or /**";
        let pattern = crate::mapping::PathPattern::parse(s)
            .map_err(|e| Error::invalid(format!("path scope: {}", e.message())))?;
        let text = pattern.as_str();
        let Some(prefix) = text.strip_suffix("/**") else {
            return Err(Error::invalid(format!("path scope {s:?}: {rule}")));
        };
        if pattern.is_regex() || !prefix.split('/').skip(1).all(is_literal_segment) {
            return Err(Error::invalid(format!("path scope {s:?}: {rule}")));
        }
        Ok(PathScope { text: text.to_owned() })
    }

    /// The scope as stored (canonical).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What every path inside the scope starts with: the scope without its `**` (`/go/`, or `/`).
    pub fn path_prefix(&self) -> &str {
        &self.text[..self.text.len() - 2]
    }

    /// Whether every path `pattern` can match lies inside the scope.
    pub fn contains(&self, pattern: &crate::mapping::PathPattern) -> bool {
        path_bound(pattern).is_some_and(|b| b.starts_with(self.path_prefix()))
    }
}

impl fmt::Display for PathScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What every path a route pattern matches starts with, such that the pattern lies inside a scope exactly
/// when this starts with the scope's [`PathScope::path_prefix`]: its leading literal segments, followed by
/// `/` when more segments follow (`/go/:id` → `/go/`, `/go` → `/go`, `/:team/x` → `/`, the root → empty).
/// `None` for a regular expression, which lies in no scope.
pub(crate) fn path_bound(pattern: &crate::mapping::PathPattern) -> Option<String> {
    if pattern.is_regex() {
        return None;
    }
    let text = pattern.as_str();
    if text == "/" {
        return Some(String::new());
    }
    let segments: Vec<&str> = text.split('/').skip(1).collect();
    let literals = segments.iter().take_while(|s| is_literal_segment(s)).count();
    let mut bound = String::from("/");
    bound.push_str(&segments[..literals].join("/"));
    if literals < segments.len() && literals > 0 {
        bound.push('/');
    }
    Some(bound)
}

/// Checks a free-text filter or paging cursor from a request: no control characters (PostgreSQL's text holds
/// no NUL), at most [`MAX_DESCRIPTION_LEN`] bytes.
pub(crate) fn check_text(what: &str, value: Option<&str>) -> Result<()> {
    match value {
        Some(v) if v.len() > MAX_DESCRIPTION_LEN => Err(Error::invalid(format!(
            "{what} must be at most {MAX_DESCRIPTION_LEN} bytes long"
        ))),
        Some(v) if v.chars().any(char::is_control) => {
            Err(Error::invalid(format!("{what} must not contain control characters")))
        }
        _ => Ok(()),
    }
}

/// Checks an optional description's length.
pub(crate) fn check_description(d: Option<&str>) -> Result<()> {
    match d {
        Some(d) if d.len() > MAX_DESCRIPTION_LEN => Err(Error::invalid(format!(
            "description must be at most {MAX_DESCRIPTION_LEN} bytes long"
        ))),
        // PostgreSQL's text holds no NUL, and no other control character belongs in a description.
        Some(d) if d.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) => Err(Error::invalid(
            "description must not contain control characters (other than tab and line breaks)",
        )),
        _ => Ok(()),
    }
}

/// A group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Database id.
    pub id: i64,
    /// Its name.
    pub name: GroupName,
    /// Free text.
    pub description: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A role.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    /// Database id.
    pub id: i64,
    /// Its name.
    pub name: RoleName,
    /// Free text.
    pub description: Option<String>,
}

/// Whether a role permission allows or denies its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// The holder may do it.
    Allow,
    /// The holder may not do it, whatever else allows it.
    Deny,
}

impl Effect {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }

    /// Parses `allow` or `deny`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "allow" => Ok(Effect::Allow),
            "deny" => Ok(Effect::Deny),
            other => Err(Error::invalid(format!(
                "effect must be \"allow\" or \"deny\", not {other:?}"
            ))),
        }
    }
}

/// One permission a role grants: an action, on the resource kind the action belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RolePermission {
    /// The role.
    pub role: RoleName,
    /// The action.
    pub action: ActionName,
    /// Allow or deny.
    pub effect: Effect,
}

/// A user, as provisioned from verified token claims.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Database id.
    pub id: i64,
    /// The identity provider's subject.
    pub subject: Subject,
    /// The `name` claim.
    pub display_name: Option<String>,
    /// The `email` claim.
    pub email: Option<String>,
    /// When the user was first seen.
    pub created_at: DateTime<Utc>,
    /// When the user last made an authenticated request; `None` when the user was only named by an
    /// administrator (for example added to a group) and has not signed in yet.
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// A user with the groups they belong to and their effective roles.
#[derive(Debug, Clone, PartialEq)]
pub struct UserDetails {
    /// The user.
    pub user: User,
    /// Groups the user is a member of, sorted by name.
    pub groups: Vec<GroupName>,
    /// Roles from those groups and roles given to the user directly, sorted, without duplicates.
    pub roles: Vec<RoleName>,
}

/// Verified claims from which a user is provisioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The subject (from the configured claim).
    pub subject: Subject,
    /// The `name` claim.
    pub display_name: Option<String>,
    /// The `email` claim.
    pub email: Option<String>,
}

/// What adding a member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// The user was not a member and now is.
    Added,
    /// The user was already a member; nothing changed.
    AlreadyMember,
}

/// A group-management right: members of `manager_group` may manage groups matching `target_pattern`, and
/// the mappings those groups own inside `path_scope`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagementRight {
    /// Database id.
    pub id: i64,
    /// The group whose members hold the right.
    pub manager_group: GroupName,
    /// Which groups they may manage.
    pub target_pattern: GroupPattern,
    /// Where their mappings may lie; `None`: the right lets its holders manage no mappings at all.
    pub path_scope: Option<PathScope>,
    /// When the right was created.
    pub created_at: DateTime<Utc>,
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Database id (increasing).
    pub id: i64,
    /// Who did it (their subject), if known.
    pub actor: Option<String>,
    /// What they did, such as `add_member`.
    pub operation: String,
    /// What kind of thing it was done to, such as `group`.
    pub target_type: String,
    /// Which one, such as `group:go:authenticated`.
    pub target_id: String,
    /// The request, as given.
    pub request: Value,
    /// The result, or the error.
    pub result: Value,
    /// Whether it succeeded.
    pub success: bool,
    /// When.
    pub at: DateTime<Utc>,
}

/// A filter over the audit log; unset fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this actor's rows.
    pub actor: Option<String>,
    /// Only this operation.
    pub operation: Option<String>,
    /// Only this target id.
    pub target_id: Option<String>,
    /// Only rows that succeeded (`true`) or failed (`false`).
    pub success: Option<bool>,
    /// Only rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only rows with an id below this (for paging backwards).
    pub before_id: Option<i64>,
    /// At most this many rows (capped by [`MAX_PAGE_SIZE`]; default [`DEFAULT_PAGE_SIZE`]).
    pub limit: Option<u32>,
}

/// Default page size for listings.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size for listings; a larger request is invalid input.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Validates a requested page size.
pub(crate) fn page_size(limit: Option<u32>) -> Result<i64> {
    match limit {
        None => Ok(i64::from(DEFAULT_PAGE_SIZE)),
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(i64::from(n)),
        Some(n) => Err(Error::invalid(format!(
            "limit must be between 1 and {MAX_PAGE_SIZE}, not {n}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        for ok in ["go:authenticated", "go:course:editor", "a", "A1.b-c_d", "x:9"] {
            assert!(GroupName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ":",
            "go:",
            ":go",
            "go::x",
            "go x",
            "-go",
            "go:_x",
            "gö",
            &"a".repeat(129),
        ] {
            let e = GroupName::parse(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn subjects() {
        assert!(Subject::parse("12345678900").is_ok());
        assert!(Subject::parse("bob@example.com").is_ok());
        assert!(Subject::parse("").is_err());
        assert!(Subject::parse(" bob").is_err());
        assert!(Subject::parse("bo\nb").is_err());
    }

    #[track_caller]
    fn like(p: &str, s: &str) -> bool {
        let pat = GroupPattern::parse(p).unwrap();
        let by_matcher = pat.matches_str(s);
        let by_regex = regex::Regex::new(&pat.to_regex()).unwrap().is_match(s);
        assert_eq!(by_matcher, by_regex, "matcher and regex disagree on {p:?} ~ {s:?}");
        by_matcher
    }

    #[test]
    fn like_patterns() {
        assert!(like("go:%", "go:authenticated"));
        assert!(like("go:%", "go:"));
        assert!(!like("go:%", "rmi:go:x"));
        assert!(like("rmi:public", "rmi:public"));
        assert!(!like("rmi:public", "rmi:publicx"));
        assert!(like("go:_", "go:a"));
        assert!(!like("go:_", "go:ab"));
        assert!(like("%:editor", "go:course:editor"));
        assert!(like("%a%b%", "xxaxxbxx"));
        assert!(!like("%a%b%", "xxbxxaxx"));
        assert!(like("go:my\\_g", "go:my_g"));
        assert!(!like("go:my\\_g", "go:myXg"));
        assert!(like("a.b", "a.b"));
        assert!(!like("a.b", "aXb"));
        assert!(!like("GO:%", "go:x"));
        assert!(like("%", ""));
    }

    #[test]
    fn bad_patterns() {
        for bad in ["", "go:*", "go:\\x", "go:\\", "a b", "go:'"] {
            assert_eq!(
                GroupPattern::parse(bad).unwrap_err().kind(),
                crate::ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }
}

/// One page of a listing, and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass this as `after` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// A page of at most `limit` items; a full page points at its last item.
    pub(crate) fn new(items: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Self {
        let full = i64::try_from(items.len()).unwrap_or(i64::MAX) >= limit;
        let next = if full { items.last().map(key) } else { None };
        Page { items, next }
    }
}

/// An endpoint → action mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// Database id.
    pub id: i64,
    /// The HTTP method, or ANY.
    pub method: crate::mapping::Method,
    /// The path pattern.
    pub path_pattern: crate::mapping::PathPattern,
    /// The action a matching request performs.
    pub action: ActionName,
    /// The group that owns the mapping (its managers may change it).
    pub owner_group: Option<GroupName>,
    /// Order among regular-expression mappings (lower first).
    pub priority: i32,
    /// Free text.
    pub description: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// A mapping to create, or to replace one with; validated by the facade.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MappingInput {
    /// GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or ANY.
    pub method: String,
    /// The path pattern (see [`crate::mapping`]).
    pub path_pattern: String,
    /// The action name.
    pub action: String,
    /// The owner group's name.
    pub owner_group: Option<String>,
    /// Order among regular-expression mappings (lower first); 0 by default.
    pub priority: i32,
    /// Free text.
    pub description: Option<String>,
}

/// How fresh the mapping snapshot that answers lookups is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// The mapping version the snapshot was built from.
    pub version: i64,
    /// How long ago it was last confirmed against the database (it grows while the database is unreachable).
    pub age: std::time::Duration,
}

/// What a request resolves to: the mapping, its action, and the parameters the pattern captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    /// The mapping's id.
    pub mapping_id: i64,
    /// The action the request needs.
    pub action: ActionName,
    /// The pattern that matched.
    pub path_pattern: String,
    /// The group that owns the mapping.
    pub owner_group: Option<GroupName>,
    /// Captured parameters, in pattern order.
    pub params: Vec<(String, String)>,
}
