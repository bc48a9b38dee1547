//! [`HeimdallError`]: every error the bindings raise, one variant per core error kind (Kotlin:
//! `HeimdallException` and its subclasses; heimdall-jvm adds their `code` and `status`).

/// An error of Heimdall's: the variant is core's error kind, the message core's (it never holds a credential).
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum HeimdallError {
    /// 400: malformed input or a non-canonical path.
    #[error("{0}")]
    InvalidInput(String),
    /// 401: no valid token.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: the thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the change clashes with what exists.
    #[error("{0}")]
    Conflict(String),
    /// 503: a dependency could not answer, or the object was closed.
    #[error("{0}")]
    Unavailable(String),
    /// 500: the configuration is incomplete or wrong.
    #[error("{0}")]
    Config(String),
    /// 500: anything else.
    #[error("{0}")]
    Unexpected(String),
}

impl From<heimdall_core::Error> for HeimdallError {
    fn from(e: heimdall_core::Error) -> Self {
        use heimdall_core::ErrorKind;
        let message = e.message().to_owned();
        match e.kind() {
            ErrorKind::InvalidInput => HeimdallError::InvalidInput(message),
            ErrorKind::NotFound => HeimdallError::NotFound(message),
            ErrorKind::Conflict => HeimdallError::Conflict(message),
            ErrorKind::Forbidden => HeimdallError::Forbidden(message),
            ErrorKind::Unauthenticated => HeimdallError::Unauthenticated(message),
            ErrorKind::Unavailable => HeimdallError::Unavailable(message),
            ErrorKind::Config => HeimdallError::Config(message),
            _ => HeimdallError::Unexpected(message),
        }
    }
}

/// A configuration mistake found by the bindings themselves.
pub(crate) fn config(message: impl Into<String>) -> HeimdallError {
    HeimdallError::Config(message.into())
}
