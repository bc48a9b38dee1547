"""Heimdall's native module: thin bindings over heimdall-core (see the package docs)."""

from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, ClassVar, Literal, final

__version__: str
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
    "_complete",
    "bearer_token",
]

def _complete(future: Any, setter: str, value: Any) -> None:
    """Internal: completes an asyncio future from Heimdall's runtime."""

def bearer_token(scope: Mapping[str, Any]) -> str | None:
    """The token of the request's ``Authorization: Bearer`` header, or ``None``."""

class HeimdallError(Exception):
    """Every error Heimdall raises. ``code`` is the project's stable error code, ``status`` its HTTP status."""

    code: ClassVar[str]
    status: ClassVar[int]

class InvalidInput(HeimdallError):
    """400: malformed input or a non-canonical path (never rewritten)."""

class Unauthenticated(HeimdallError):
    """401: the token is missing, malformed, expired or not trusted."""

class Forbidden(HeimdallError):
    """403: the policy does not allow it (or no mapping covers the request)."""

class NotFound(HeimdallError):
    """404: the thing named does not exist."""

class Conflict(HeimdallError):
    """409: the change clashes with what exists."""

class Unavailable(HeimdallError):
    """503: a dependency (database, PDP, heimdall-http) could not answer, or no snapshot is loaded yet."""

class ConfigError(HeimdallError):
    """500: the configuration is incomplete or contradictory."""

class UnexpectedError(HeimdallError):
    """500: anything else."""

@final
class Match:
    """What a request resolved to."""

    @property
    def mapping_id(self) -> int: ...
    @property
    def action(self) -> str: ...
    @property
    def path_pattern(self) -> str: ...
    @property
    def owner_group(self) -> str | None: ...
    @property
    def params(self) -> dict[str, str]: ...

@final
class Resolver:
    """A compiled mapping snapshot: resolves (method, path) to a mapping, as every Heimdall frontend does."""

    def __new__(cls, mappings: Sequence[Mapping[str, Any]], version: int = 0) -> Resolver: ...
    @staticmethod
    def from_export_json(body: str | bytes) -> Resolver: ...
    @staticmethod
    def from_export(base_url: str, credential: str, timeout: float = 10.0) -> Resolver: ...
    @property
    def version(self) -> int: ...
    def __len__(self) -> int: ...
    def resolve(self, method: str, path: str) -> Match | None: ...

@final
class Grant:
    """A request the authorizer let through."""

    @property
    def subject(self) -> str: ...
    @property
    def action(self) -> str | None: ...
    @property
    def mapping_id(self) -> int | None: ...
    @property
    def params(self) -> dict[str, str]: ...

@final
class Authorizer:
    """The per-request decision of heimdall-core (what heimdall-adapter's tower Layer runs)."""

    def __new__(
        cls,
        *,
        jwks_url: str,
        heimdall_url: str | None = None,
        credential: str | None = None,
        embedded: Heimdall | None = None,
        cerbos_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        unmapped: Literal["deny", "allow"] = "deny",
        allow_before_snapshot: bool = False,
        before_snapshot_deadline: float = 30.0,
        poll_interval: float = 30.0,
        decision_ttl: float = 5.0,
        allow_plain_http: bool = False,
        grants_cache_capacity: int | None = None,
    ) -> Authorizer: ...
    def authorize(self, method: str, path: str, token: str | None) -> Grant: ...
    def authorize_async(self, method: str, path: str, token: str | None) -> Awaitable[Grant]: ...
    def authorize_asgi(
        self, scope: MutableMapping[str, Any], token: Callable[[MutableMapping[str, Any]], str | None] | None = None
    ) -> Grant | Awaitable[Grant]: ...
    def wait_ready(self, timeout: float = 10.0) -> bool: ...
    @property
    def snapshot_version(self) -> int | None: ...
    @property
    def snapshot_age(self) -> float | None: ...
    @property
    def credential_refused(self) -> str | None: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...

@final
class Caller:
    """Who performs an admin operation: an authenticated, provisioned user, or the system caller."""

    @property
    def subject(self) -> str: ...

@final
class Heimdall:
    """The embedded facade, blocking (each call releases the GIL)."""

    def __new__(
        cls,
        database_url: str = "sqlite://heimdall.db",
        *,
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        superadmin_role: str = "superadmin",
        bootstrap_superadmins: Sequence[str] | None = None,
        max_connections: int = 10,
    ) -> Heimdall: ...
    @property
    def backend(self) -> str: ...
    def to_async(self) -> AsyncHeimdall: ...
    def system_caller(self, purpose: str) -> Caller: ...
    def authenticate(self, token: str) -> Caller: ...
    def get_user(self, subject: str) -> dict[str, Any]: ...
    def create_group(self, caller: Caller, name: str, description: str | None = None) -> dict[str, Any]: ...
    def get_group(self, name: str) -> dict[str, Any]: ...
    def list_groups(
        self, prefix: str | None = None, after: str | None = None, limit: int | None = None
    ) -> dict[str, Any]: ...
    def delete_group(self, caller: Caller, name: str) -> None: ...
    def add_member(self, caller: Caller, group: str, subject: str) -> bool: ...
    def remove_member(self, caller: Caller, group: str, subject: str) -> None: ...
    def group_members(self, group: str, after: str | None = None, limit: int | None = None) -> dict[str, Any]: ...
    def create_role(self, caller: Caller, name: str, description: str | None = None) -> dict[str, Any]: ...
    def list_roles(self, after: str | None = None, limit: int | None = None) -> dict[str, Any]: ...
    def delete_role(self, caller: Caller, name: str) -> None: ...
    def assign_group_role(self, caller: Caller, group: str, role: str) -> bool: ...
    def remove_group_role(self, caller: Caller, group: str, role: str) -> None: ...
    def group_roles(self, group: str) -> list[str]: ...
    def assign_user_role(self, caller: Caller, subject: str, role: str) -> bool: ...
    def remove_user_role(self, caller: Caller, subject: str, role: str) -> None: ...
    def grant_permission(self, caller: Caller, role: str, action: str, effect: str = "allow") -> None: ...
    def revoke_permission(self, caller: Caller, role: str, action: str) -> None: ...
    def role_permissions(self, role: str) -> list[dict[str, Any]]: ...
    def create_mapping(
        self,
        caller: Caller,
        method: str,
        path_pattern: str,
        action: str,
        owner_group: str | None = None,
        priority: int = 0,
        description: str | None = None,
    ) -> dict[str, Any]: ...
    def get_mapping(self, id: int) -> dict[str, Any]: ...
    def list_mappings(self, after: int | None = None, limit: int | None = None) -> dict[str, Any]: ...
    def delete_mapping(self, caller: Caller, id: int) -> None: ...
    def resolve(self, method: str, path: str) -> dict[str, Any] | None: ...
    def audit_log(
        self,
        caller: Caller,
        actor: str | None = None,
        operation: str | None = None,
        target_id: str | None = None,
        before_id: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]: ...

@final
class AsyncHeimdall:
    """The embedded facade for asyncio: the same operations as :class:`Heimdall`, awaitable."""

    def __new__(
        cls,
        database_url: str = "sqlite://heimdall.db",
        *,
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        superadmin_role: str = "superadmin",
        bootstrap_superadmins: Sequence[str] | None = None,
        max_connections: int = 10,
    ) -> AsyncHeimdall: ...
    @property
    def backend(self) -> str: ...
    def system_caller(self, purpose: str) -> Caller: ...
    def authenticate(self, token: str) -> Awaitable[Caller]: ...
    def get_user(self, subject: str) -> Awaitable[dict[str, Any]]: ...
    def create_group(
        self, caller: Caller, name: str, description: str | None = None
    ) -> Awaitable[dict[str, Any]]: ...
    def get_group(self, name: str) -> Awaitable[dict[str, Any]]: ...
    def list_groups(
        self, prefix: str | None = None, after: str | None = None, limit: int | None = None
    ) -> Awaitable[dict[str, Any]]: ...
    def delete_group(self, caller: Caller, name: str) -> Awaitable[None]: ...
    def add_member(self, caller: Caller, group: str, subject: str) -> Awaitable[bool]: ...
    def remove_member(self, caller: Caller, group: str, subject: str) -> Awaitable[None]: ...
    def group_members(
        self, group: str, after: str | None = None, limit: int | None = None
    ) -> Awaitable[dict[str, Any]]: ...
    def create_role(
        self, caller: Caller, name: str, description: str | None = None
    ) -> Awaitable[dict[str, Any]]: ...
    def list_roles(self, after: str | None = None, limit: int | None = None) -> Awaitable[dict[str, Any]]: ...
    def delete_role(self, caller: Caller, name: str) -> Awaitable[None]: ...
    def assign_group_role(self, caller: Caller, group: str, role: str) -> Awaitable[bool]: ...
    def remove_group_role(self, caller: Caller, group: str, role: str) -> Awaitable[None]: ...
    def group_roles(self, group: str) -> Awaitable[list[str]]: ...
    def assign_user_role(self, caller: Caller, subject: str, role: str) -> Awaitable[bool]: ...
    def remove_user_role(self, caller: Caller, subject: str, role: str) -> Awaitable[None]: ...
    def grant_permission(
        self, caller: Caller, role: str, action: str, effect: str = "allow"
    ) -> Awaitable[None]: ...
    def revoke_permission(self, caller: Caller, role: str, action: str) -> Awaitable[None]: ...
    def role_permissions(self, role: str) -> Awaitable[list[dict[str, Any]]]: ...
    def create_mapping(
        self,
        caller: Caller,
        method: str,
        path_pattern: str,
        action: str,
        owner_group: str | None = None,
        priority: int = 0,
        description: str | None = None,
    ) -> Awaitable[dict[str, Any]]: ...
    def get_mapping(self, id: int) -> Awaitable[dict[str, Any]]: ...
    def list_mappings(self, after: int | None = None, limit: int | None = None) -> Awaitable[dict[str, Any]]: ...
    def delete_mapping(self, caller: Caller, id: int) -> Awaitable[None]: ...
    def resolve(self, method: str, path: str) -> Awaitable[dict[str, Any] | None]: ...
    def audit_log(
        self,
        caller: Caller,
        actor: str | None = None,
        operation: str | None = None,
        target_id: str | None = None,
        before_id: int | None = None,
        limit: int | None = None,
    ) -> Awaitable[list[dict[str, Any]]]: ...
