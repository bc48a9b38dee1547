//! One Python exception class per error kind, under `HeimdallError`; each carries the project's error code and
//! HTTP status as class attributes (what the ASGI middleware answers with).

use heimdall_core::authorizer::Refusal;
use heimdall_core::{Error, ErrorKind};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyType;

pyo3::create_exception!(_heimdall, HeimdallError, PyException, "Every error Heimdall raises.");
pyo3::create_exception!(
    _heimdall,
    InvalidInput,
    HeimdallError,
    "400: malformed input or a non-canonical path."
);
pyo3::create_exception!(_heimdall, Unauthenticated, HeimdallError, "401: no valid token.");
pyo3::create_exception!(_heimdall, Forbidden, HeimdallError, "403: not allowed.");
pyo3::create_exception!(
    _heimdall,
    NotFound,
    HeimdallError,
    "404: the thing named does not exist."
);
pyo3::create_exception!(
    _heimdall,
    Conflict,
    HeimdallError,
    "409: the change clashes with what exists."
);
pyo3::create_exception!(
    _heimdall,
    Unavailable,
    HeimdallError,
    "503: a dependency could not answer."
);
pyo3::create_exception!(
    _heimdall,
    ConfigError,
    HeimdallError,
    "500: the configuration is incomplete."
);
pyo3::create_exception!(_heimdall, UnexpectedError, HeimdallError, "500: anything else.");

/// Adds the classes to the module, with their `code` and `status`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let classes: [(&str, Bound<'_, PyType>, &str, u16); 9] = [
        ("HeimdallError", py.get_type::<HeimdallError>(), "unexpected", 500),
        ("InvalidInput", py.get_type::<InvalidInput>(), "invalid_input", 400),
        (
            "Unauthenticated",
            py.get_type::<Unauthenticated>(),
            "unauthenticated",
            401,
        ),
        ("Forbidden", py.get_type::<Forbidden>(), "forbidden", 403),
        ("NotFound", py.get_type::<NotFound>(), "not_found", 404),
        ("Conflict", py.get_type::<Conflict>(), "conflict", 409),
        ("Unavailable", py.get_type::<Unavailable>(), "unavailable", 503),
        ("ConfigError", py.get_type::<ConfigError>(), "config", 500),
        ("UnexpectedError", py.get_type::<UnexpectedError>(), "unexpected", 500),
    ];
    for (name, class, code, status) in classes {
        class.setattr("code", code)?;
        class.setattr("status", status)?;
        m.add(name, class)?;
    }
    Ok(())
}

/// A core error as the exception of its kind (the message is core's: it never holds a credential).
pub(crate) fn to_py(e: Error) -> PyErr {
    let message = e.message().to_owned();
    match e.kind() {
        ErrorKind::InvalidInput => InvalidInput::new_err(message),
        ErrorKind::NotFound => NotFound::new_err(message),
        ErrorKind::Conflict => Conflict::new_err(message),
        ErrorKind::Forbidden => Forbidden::new_err(message),
        ErrorKind::Unauthenticated => Unauthenticated::new_err(message),
        ErrorKind::Unavailable => Unavailable::new_err(message),
        ErrorKind::Config => ConfigError::new_err(message),
        _ => UnexpectedError::new_err(message),
    }
}

/// A refused request as the exception of its code.
pub(crate) fn refusal(r: Refusal) -> PyErr {
    match r.status {
        400 => InvalidInput::new_err(r.message),
        401 => Unauthenticated::new_err(r.message),
        403 => Forbidden::new_err(r.message),
        _ => Unavailable::new_err(r.message),
    }
}

/// A configuration mistake found by the bindings themselves.
pub(crate) fn config(message: impl Into<String>) -> PyErr {
    ConfigError::new_err(message.into())
}
