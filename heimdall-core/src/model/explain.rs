//! Explanations: why a request would be allowed or denied ([`crate::Heimdall::explain`]).

/// What to explain: would `subject` be allowed `method path`? See [`crate::Heimdall::explain`].
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExplainRequest {
    /// The user's subject.
    pub subject: String,
    /// The request's method, as an adapter receives it (`GET`; case-sensitive, as in resolving).
    pub method: String,
    /// The request's path as received, still percent-encoded; a query string is allowed and ignored.
    pub path: String,
}

/// Why a request would be allowed or denied: the path check, the mappings that match, the subject's roles
/// and the decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Explanation {
    /// The subject, as asked.
    pub subject: String,
    /// The method, as asked.
    pub method: String,
    /// The canonical-path check.
    pub path: PathCheck,
    /// The mapping version the candidates come from.
    pub mapping_version: i64,
    /// Every mapping that matches, in the resolver's precedence order: the first is the one that decides.
    pub candidates: Vec<ExplainCandidate>,
    /// The id of the mapping that decides (the first candidate), if any.
    pub winner: Option<i64>,
    /// The action the request needs (the winner's), if any.
    pub action: Option<String>,
    /// Whether Heimdall knows the subject; an unknown one holds no roles.
    pub known_user: bool,
    /// The subject's roles in the database, each with where it comes from (a role held twice is listed
    /// twice).
    pub roles: Vec<RoleGrant>,
    /// The outcome.
    pub decision: ExplainDecision,
    /// Who decided; `None` when no policy was asked (no mapping, rejected path).
    pub decided_by: Option<DecidedBy>,
    /// Why, in a sentence.
    pub reason: String,
}

/// The outcome of the canonical-path check (see [`crate::mapping::check_path`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PathCheck {
    /// The path is canonical.
    Ok {
        /// The path without its query string.
        path: String,
    },
    /// The path is not canonical, so every request to it is refused before any mapping is consulted.
    Rejected {
        /// Why ([`crate::mapping::PathRejection::as_str`]).
        reason: String,
    },
}

/// One mapping that matches the request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExplainCandidate {
    /// The mapping's id.
    pub mapping_id: i64,
    /// Its method (`GET`, ..., `ANY`).
    pub method: String,
    /// Its pattern (canonical).
    pub path_pattern: String,
    /// Its action.
    pub action: String,
    /// Its owner group.
    pub owner_group: Option<String>,
    /// Its priority (orders regular expressions only).
    pub priority: i32,
    /// Route pattern or regular expression.
    pub kind: PatternKind,
}

/// Whether a pattern is a route pattern or a regular expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    /// A route pattern (`/courses/:id`).
    Route,
    /// A regular expression (`~/courses/[0-9]+`).
    Regex,
}

/// One role a user holds, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleGrant {
    /// The role.
    pub role: String,
    /// Through a group, or given directly.
    pub source: RoleSource,
    /// The group it comes through (for [`RoleSource::Group`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Where a user's role comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RoleSource {
    /// A group the user belongs to holds it.
    Group,
    /// It was given to the user directly.
    Direct,
}

/// The outcome of an explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExplainDecision {
    /// The request would be allowed.
    Allow,
    /// The request would be denied by the policy (or because the PDP could not decide).
    Deny,
    /// No mapping matches: the request would be denied as unmapped.
    NoMapping,
    /// The path is not canonical, or the method is not an upper-case token (`get`): the request would be
    /// refused (400).
    RejectedPath,
}

/// Which policy decision point decided an explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The configured Cerbos, from the principal policy pushed for the subject.
    Cerbos,
    /// Heimdall, from the subject's role permissions in the database (no Cerbos configured).
    Builtin,
}
