"""Heimdall for Python: who may call which endpoint.

Thin bindings over heimdall-core (Rust): :class:`Resolver` (endpoint → action), :class:`Authorizer` (the
per-request decision that heimdall-adapter's tower Layer also runs), :class:`Heimdall` / :class:`AsyncHeimdall`
(the embedded admin facade on SQLite or PostgreSQL) and, in :mod:`heimdall.asgi`, a middleware for
Starlette/FastAPI. Every error is a :class:`HeimdallError`, one subclass per kind.
"""

from ._heimdall import (
    AsyncHeimdall,
    Authorizer,
    Caller,
    ConfigError,
    Conflict,
    Forbidden,
    Grant,
    Heimdall,
    HeimdallError,
    InvalidInput,
    Match,
    NotFound,
    Resolver,
    Unauthenticated,
    Unavailable,
    UnexpectedError,
    __version__,
)

__all__ = [
    "AsyncHeimdall",
    "Authorizer",
    "Caller",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "Grant",
    "Heimdall",
    "HeimdallError",
    "InvalidInput",
    "Match",
    "NotFound",
    "Resolver",
    "Unauthenticated",
    "Unavailable",
    "UnexpectedError",
    "__version__",
]
