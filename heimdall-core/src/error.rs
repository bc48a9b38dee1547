//! The one error type of heimdall-core, classified by [`ErrorKind`].

use std::fmt;

/// What went wrong, in the terms a caller acts on.
///
/// Frontends map kinds to their own vocabulary (HTTP status codes, Python exception classes) in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input was malformed or broke a documented rule; the message says what is allowed.
    InvalidInput,
    /// The thing named does not exist.
    NotFound,
    /// The change clashes with what exists (a duplicate name, an overlapping mapping).
    Conflict,
    /// The caller may not do this.
    Forbidden,
    /// The caller's credential is missing, malformed, expired or not trusted.
    Unauthenticated,
    /// A service Heimdall depends on (database, policy decision point) could not be reached in time.
    Unavailable,
    /// The configuration is incomplete or contradictory.
    Config,
    /// Anything else: a bug or an unexpected answer from a dependency.
    Unexpected,
}

impl ErrorKind {
    /// A short, stable, machine-readable name (used in JSON error bodies).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Config => "config",
            ErrorKind::Unexpected => "unexpected",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from heimdall-core: a kind, a message for humans, and optionally the underlying cause.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// A lost race with a concurrent writer: the whole operation may be tried again at once.
    race: bool,
    /// The mappings the error is about (the one a new mapping conflicts with, the one it would shadow).
    mappings: Vec<i64>,
    /// The input field the error is about, when it is about one.
    field: Option<&'static str>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            race: false,
            mappings: Vec::new(),
            field: None,
            source: None,
        }
    }

    /// Names the mappings the error is about, so that a frontend can link them.
    pub fn about_mappings(mut self, ids: impl IntoIterator<Item = i64>) -> Self {
        self.mappings.extend(ids);
        self
    }

    /// The mappings the error is about: the existing mapping a new one conflicts with, the one it would
    /// shadow; empty for most errors.
    pub fn mappings(&self) -> &[i64] {
        &self.mappings
    }

    /// Names the input field the error is about (such as `method` of a mapping), unless one is named already.
    pub fn about_field(mut self, field: &'static str) -> Self {
        self.field.get_or_insert(field);
        self
    }

    /// The input field the error is about, so that a form can show it beside that field; `None` when it is
    /// about the input as a whole, or about no input.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying the same thing again later may succeed: true for [`ErrorKind::Unavailable`] (a
    /// dependency was unreachable, timed out, refused the credentials or failed on its side), false for
    /// everything else, such as a request the dependency rejected as invalid. The outbox worker retries
    /// only these.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unavailable, message)
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    pub(crate) fn unexpected(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unexpected, message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Conflict, message)
    }

    /// A conflict with a concurrent writer that trying the whole operation again may resolve: the database
    /// asked for a retry (deadlock, serialization failure), or what a decision read moved before its write.
    pub(crate) fn race(message: impl Into<String>) -> Self {
        Error {
            race: true,
            ..Error::conflict(message)
        }
    }

    /// Whether this is a conflict with concurrent writers that outlasted the operation's own retries: the same
    /// request may succeed when sent again (nothing was changed).
    pub fn is_race(&self) -> bool {
        self.race
    }
}
