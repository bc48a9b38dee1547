"""The embedded facade from Python, blocking and asyncio, on SQLite and on PostgreSQL.

PostgreSQL comes from ``HEIMDALL_TEST_DATABASE_URL`` (a server where the tests may create databases; set by
``scripts/test``); without it the PostgreSQL cases fail under ``CI=true`` and are skipped loudly elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import heimdall
from harness import Idp
from heimdall import AsyncHeimdall, Heimdall


def _postgres_url() -> str:
    server = os.environ.get("HEIMDALL_TEST_DATABASE_URL")
    if not server:
        reason = "HEIMDALL_TEST_DATABASE_URL is not set: no PostgreSQL for the facade tests"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: these tests must run in CI)", pytrace=False)
        pytest.skip("NOT RUN: " + reason)
    name = "py_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", server, "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE DATABASE {name}"], check=True)
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/heimdall.db"
    return _postgres_url()


@pytest.fixture
def idp() -> Iterator[Idp]:
    provider = Idp()
    yield provider
    provider.stop()


def test_groups_members_roles_and_permissions(database_url: str) -> None:
    h = Heimdall(database_url)
    assert h.backend == database_url.split(":")[0].replace("postgresql", "postgres")
    root = h.system_caller("tests")
    group = h.create_group(root, "go:readers", "people who read")
    assert group["name"] == "go:readers" and group["description"] == "people who read"
    assert h.add_member(root, "go:readers", "alice") is True
    assert h.add_member(root, "go:readers", "alice") is False
    assert h.group_members("go:readers") == {"items": ["alice"], "next": None}
    h.create_role(root, "go:reader")
    assert h.assign_group_role(root, "go:readers", "go:reader") is True
    h.grant_permission(root, "go:reader", "course:read")
    h.grant_permission(root, "go:reader", "course:delete", "deny")
    perms = {(p["action"], p["effect"]) for p in h.role_permissions("go:reader")}
    assert perms == {("course:read", "allow"), ("course:delete", "deny")}
    assert h.group_roles("go:readers") == ["go:reader"]
    user = h.get_user("alice")
    assert user["groups"] == ["go:readers"] and user["roles"] == ["go:reader"]
    h.remove_member(root, "go:readers", "alice")
    assert h.group_members("go:readers")["items"] == []
    h.revoke_permission(root, "go:reader", "course:delete")
    assert [p["action"] for p in h.role_permissions("go:reader")] == ["course:read"]


def test_mappings_resolve_and_the_audit_log(database_url: str) -> None:
    h = Heimdall(database_url)
    root = h.system_caller("tests")
    h.create_group(root, "go:courses")
    m = h.create_mapping(root, "GET", "/courses/:id", "course:read", owner_group="go:courses")
    assert (m["method"], m["path_pattern"], m["owner_group"]) == ("GET", "/courses/:id", "go:courses")
    assert h.get_mapping(m["id"])["action"] == "course:read"
    assert [x["id"] for x in h.list_mappings()["items"]] == [m["id"]]
    found = h.resolve("GET", "/courses/9")
    assert found is not None and found["params"] == {"id": "9"} and found["mapping_id"] == m["id"]
    assert h.resolve("GET", "/elsewhere") is None
    with pytest.raises(heimdall.InvalidInput):
        h.resolve("GET", "/courses/%2e%2e")
    with pytest.raises(heimdall.Conflict):
        h.create_mapping(root, "GET", "/courses/:other", "course:write")
    with pytest.raises(heimdall.Conflict):
        h.delete_group(root, "go:courses")  # it owns a mapping
    h.delete_mapping(root, m["id"])
    with pytest.raises(heimdall.NotFound):
        h.get_mapping(m["id"])
    audit = h.audit_log(root, operation="create_mapping")
    # Newest first: the refused duplicate, then the creation; both by the system caller.
    assert [row["success"] for row in audit] == [False, True]
    assert {row["actor"] for row in audit} == {"system:tests"}


def test_errors_are_typed_and_change_nothing(database_url: str) -> None:
    h = Heimdall(database_url)
    root = h.system_caller("tests")
    with pytest.raises(heimdall.InvalidInput):
        h.create_group(root, "no spaces allowed")
    with pytest.raises(heimdall.NotFound):
        h.get_group("go:missing")
    with pytest.raises(heimdall.NotFound):
        h.add_member(root, "go:missing", "alice")
    with pytest.raises(heimdall.InvalidInput):
        h.list_groups(limit=100_000)
    assert h.list_groups()["items"] == []


def test_asyncio_form_shares_the_facade(database_url: str) -> None:
    h = Heimdall(database_url)
    root = h.system_caller("tests")
    a = h.to_async()

    async def main() -> dict[str, Any]:
        created = await a.create_group(root, "go:async")
        assert await a.add_member(root, "go:async", "bob") is True
        # Many at once: each is its own task on Heimdall's runtime.
        results = await asyncio.gather(*(a.add_member(root, "go:async", f"u{i}") for i in range(20)))
        assert results == [True] * 20
        with pytest.raises(heimdall.Conflict):
            await a.create_group(root, "go:async")
        return created

    created = asyncio.run(main())
    assert created["name"] == "go:async"
    assert len(h.group_members("go:async")["items"]) == 21
    # An AsyncHeimdall made directly works too.
    b = AsyncHeimdall(database_url)

    async def read() -> dict[str, Any]:
        return await b.get_group("go:async")

    assert asyncio.run(read())["name"] == "go:async"
    # The awaitables are asyncio futures of the running loop: made outside one, they say so.
    with pytest.raises(RuntimeError, match="no running event loop"):
        b.get_group("go:async")


def test_callers_from_tokens_are_provisioned_and_authorized(database_url: str, idp: Idp) -> None:
    h = Heimdall(database_url, jwks_url=idp.jwks_url, bootstrap_superadmins=["root"])
    admin = h.authenticate(idp.token("root"))
    assert admin.subject == "root"
    h.create_group(admin, "go:team")
    alice = h.authenticate(idp.token("alice"))
    assert h.get_user("alice")["subject"] == "alice"  # provisioned on first sight (JIT)
    with pytest.raises(heimdall.Forbidden):
        h.create_group(alice, "go:alice")
    with pytest.raises(heimdall.Unauthenticated):
        h.authenticate(idp.expired_token("alice"))
    with pytest.raises(heimdall.Unauthenticated):
        h.authenticate("not-a-token")
    assert [g["name"] for g in h.list_groups()["items"]] == ["go:team"]
    audit = h.audit_log(admin, actor="alice")
    assert audit and audit[0]["success"] is False  # the refused attempt is audited
    with pytest.raises(heimdall.ConfigError):
        Heimdall(database_url).authenticate(idp.token("root"))


def test_a_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(heimdall.HeimdallError):
        Heimdall("mysql://nowhere/db")


def test_an_embedded_authorizer_reads_the_facade_and_fails_closed(tmp_path: Path, idp: Idp) -> None:
    """``Authorizer(embedded=...)`` resolves on the facade's own mappings and asks the given PDP; without one it
    is a configuration error, and a PDP that can't be reached refuses (503), never allows."""
    h = Heimdall(f"sqlite://{tmp_path}/heimdall.db")
    root = h.system_caller("tests")
    h.create_mapping(root, "GET", "/courses/:id", "course:read")
    with pytest.raises(heimdall.ConfigError):
        heimdall.Authorizer(jwks_url=idp.jwks_url, embedded=h)
    authorizer = heimdall.Authorizer(jwks_url=idp.jwks_url, embedded=h, cerbos_url="http://127.0.0.1:9")
    token = idp.token("alice")
    with pytest.raises(heimdall.Unavailable):
        authorizer.authorize("GET", "/courses/1", token)
    with pytest.raises(heimdall.Forbidden):
        authorizer.authorize("GET", "/elsewhere", token)
    assert authorizer.stats()["pdp_errors"] == 1
    # A mapping added through the facade is what the embedded authorizer resolves next.
    h.create_mapping(root, "GET", "/elsewhere", "elsewhere:read")
    with pytest.raises(heimdall.Unavailable):
        authorizer.authorize("GET", "/elsewhere", token)
