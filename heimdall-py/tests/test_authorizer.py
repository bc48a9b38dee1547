"""``heimdall.Authorizer`` against a real heimdall-http, deciding locally (from the grants export) and with the
real Cerbos (from the principal policies heimdall-http's push worker writes there)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import heimdall
from harness import ISSUER, Cerbos, Courses, Idp, Stack, courses, free_port

# How long a change made through the REST API may take to reach a decision: locally one change-feed round trip;
# with Cerbos also the worker's push, and a cached decision's TTL (5 s).
PATIENCE = {"local": 5.0, "on_demand": 5.0, "cerbos": 30.0}

Outcome = heimdall.Grant | heimdall.HeimdallError


def outcome(authz: heimdall.Authorizer, method: str, path: str, token: str | None) -> Outcome:
    """The grant, or the refusal raised."""
    try:
        return authz.authorize(method, path, token)
    except heimdall.HeimdallError as e:
        return e


def describe(o: Outcome) -> str:
    if isinstance(o, heimdall.Grant):
        return f"Grant(subject={o.subject!r}, action={o.action!r}, mapping_id={o.mapping_id!r}, params={o.params!r})"
    return f"{type(o).__name__}({o})"


@dataclass
class World:
    """A heimdall-http with the shared scenario, and a way to build authorizers following it."""

    mode: str
    stack: Stack
    idp: Idp
    s: Courses
    cerbos_url: str | None
    patience: float
    grants_cache_capacity: int | None = None
    made: list[heimdall.Authorizer] = field(default_factory=list)

    def authorizer(self, **overrides: Any) -> heimdall.Authorizer:
        settings: dict[str, Any] = {
            "jwks_url": self.idp.jwks_url,
            "heimdall_url": self.stack.base,
            "credential": self.s.key,
            "cerbos_url": self.cerbos_url,
            "issuer": ISSUER,
            "grants_cache_capacity": self.grants_cache_capacity,
        }
        settings.update(overrides)
        authz = heimdall.Authorizer(**settings)
        self.made.append(authz)
        return authz

    def ready(self, **overrides: Any) -> heimdall.Authorizer:
        """An authorizer with its snapshot loaded, by which alice is allowed ``GET /courses/1`` already."""
        authz = self.authorizer(**overrides)
        assert authz.wait_ready(10.0), "no snapshot within 10 s"
        self.until(authz, "GET", "/courses/1", self.idp.token(self.s.alice), allowed=True)
        return authz

    def until(
        self, authz: heimdall.Authorizer, method: str, path: str, token: str | None, *, allowed: bool
    ) -> Outcome:
        """Asks until the request is allowed (or refused with 403), for at most ``patience`` seconds."""

        def done(o: Outcome) -> bool:
            return isinstance(o, heimdall.Grant) if allowed else isinstance(o, heimdall.Forbidden)

        deadline = time.monotonic() + self.patience
        while True:
            o = outcome(authz, method, path, token)
            if done(o):
                return o
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{method} {path} still {describe(o)} after {self.patience} s "
                    f"(wanted {'a grant' if allowed else 'Forbidden'}); logs:\n{self.stack.logs()[-6000:]}"
                )
            time.sleep(0.05)


@pytest.fixture(params=["local", "on_demand", "cerbos"])
def world(request: pytest.FixtureRequest, start_stack: Callable[..., Stack], idp: Idp, suffix: str) -> Iterator[World]:
    """The scenario on a fresh heimdall-http, decided locally (from the grants export, or with grants fetched on
    demand) or by the real Cerbos."""
    cerbos: Cerbos | None = request.getfixturevalue("cerbos") if request.param == "cerbos" else None
    stack = start_stack(cerbos)
    w = World(
        mode=request.param,
        stack=stack,
        idp=idp,
        s=courses(stack, suffix),
        cerbos_url=cerbos.base_url if cerbos else None,
        patience=PATIENCE[request.param],
        grants_cache_capacity=100 if request.param == "on_demand" else None,
    )
    yield w
    for authz in w.made:
        authz.close()


def test_an_allowed_request_yields_the_grant(world: World) -> None:
    """A member of the group whose role holds the mapped action is let through; the grant names the subject,
    the action, the mapping that decided and what its pattern captured (a query string is ignored)."""
    authz = world.ready()
    g = authz.authorize("GET", "/courses/42?tab=lessons", world.idp.token(world.s.alice))
    assert isinstance(g, heimdall.Grant)
    assert g.subject == world.s.alice
    assert g.action == "course:read"
    assert g.mapping_id == world.s.course_mapping
    assert g.params == {"id": "42"}


def test_a_subject_without_the_action_is_forbidden(world: World) -> None:
    """A subject in no group, and a member asking for an action her role lacks, are refused with 403."""
    authz = world.ready()
    with pytest.raises(heimdall.Forbidden) as bob:
        authz.authorize("GET", "/courses/1", world.idp.token(world.s.bob))
    assert bob.value.status == 403 and bob.value.code == "forbidden"
    assert isinstance(bob.value, heimdall.HeimdallError)
    with pytest.raises(heimdall.Forbidden):
        authz.authorize("GET", "/admin/users", world.idp.token(world.s.alice))


def test_unmapped_requests_are_refused_unless_allowed(world: World) -> None:
    """No mapping covers the request: 403 by default; with ``unmapped="allow"`` a grant without an action,
    counted as ``unmapped_allowed``."""
    alice = world.idp.token(world.s.alice)
    authz = world.ready()
    with pytest.raises(heimdall.Forbidden):
        authz.authorize("GET", "/nowhere/1", alice)
    with pytest.raises(heimdall.Forbidden):
        authz.authorize("DELETE", "/courses/1", alice)

    lenient = world.authorizer(unmapped="allow")
    assert lenient.wait_ready(10.0)
    g = lenient.authorize("GET", "/nowhere/1", alice)
    assert (g.subject, g.action, g.mapping_id, g.params) == (world.s.alice, None, None, {})
    assert lenient.stats()["unmapped_allowed"] == 1
    # A mapped request is still decided.
    with pytest.raises(heimdall.Forbidden):
        lenient.authorize("GET", "/admin/users", alice)


@pytest.mark.parametrize("kind", ["expired", "other key", "other issuer", "garbage"])
def test_a_bad_token_is_unauthenticated(world: World, kind: str) -> None:
    """An expired token, one signed by a key the JWKS doesn't hold, one from another issuer, and a string that
    is no JWT are all refused with 401."""
    authz = world.ready()
    idp, alice = world.idp, world.s.alice
    if kind == "expired":
        token = idp.expired_token(alice)
    elif kind == "other key":
        token = idp.token(alice, other_key=True)
    elif kind == "other issuer":
        token = idp.token(alice, issuer="https://elsewhere.test/realms/x")
    else:
        token = "not-a-jwt"
    with pytest.raises(heimdall.Unauthenticated) as e:
        authz.authorize("GET", "/courses/1", token)
    assert e.value.status == 401 and e.value.code == "unauthenticated"


@pytest.mark.parametrize("token", [None, ""])
def test_no_token_is_unauthenticated(world: World, token: str | None) -> None:
    """Without a bearer token (or with an empty one) the request is refused with 401."""
    authz = world.ready()
    with pytest.raises(heimdall.Unauthenticated):
        authz.authorize("GET", "/courses/1", token)


@pytest.mark.parametrize(
    "path",
    ["/courses/%2e%2e/x", "/courses//1", "/courses/1/../2", "/courses/./1", "/courses/%2E%2E", "/courses/1/"],
)
def test_a_non_canonical_path_is_invalid_input(world: World, path: str) -> None:
    """A path a router could read otherwise (dot segments, raw or encoded; empty segments; a trailing slash)
    is refused with 400, never rewritten."""
    authz = world.ready()
    with pytest.raises(heimdall.InvalidInput) as e:
        authz.authorize("GET", path, world.idp.token(world.s.alice))
    assert e.value.status == 400 and e.value.code == "invalid_input"


def test_a_revoked_membership_stops_being_allowed(world: World) -> None:
    """Removing alice from the group while the authorizer runs refuses her within the patience of the mode;
    adding her back lets her through again."""
    authz = world.ready()
    alice = world.idp.token(world.s.alice)
    started = time.monotonic()
    world.stack.rest.remove_member(world.s.group, world.s.alice)
    world.until(authz, "GET", "/courses/7", alice, allowed=False)
    print(f"[{world.mode}] revocation took effect after {time.monotonic() - started:.2f} s")
    world.stack.rest.add_member(world.s.group, world.s.alice)
    world.until(authz, "GET", "/courses/7", alice, allowed=True)


def test_a_new_mapping_is_followed(world: World) -> None:
    """A mapping created while the authorizer runs is resolved (and decided) without a restart."""
    authz = world.ready()
    alice = world.idp.token(world.s.alice)
    with pytest.raises(heimdall.Forbidden):
        authz.authorize("GET", "/lessons/3", alice)
    before = authz.snapshot_version
    lesson = world.stack.rest.mapping("GET", "/lessons/:lesson", "lesson:read")
    g = world.until(authz, "GET", "/lessons/3", alice, allowed=True)
    assert isinstance(g, heimdall.Grant)
    assert (g.action, g.mapping_id, g.params) == ("lesson:read", lesson, {"lesson": "3"})
    assert before is not None and authz.snapshot_version is not None and authz.snapshot_version > before


def test_the_async_form_decides_alike(world: World) -> None:
    """``authorize_async`` answers inside a running event loop, many requests at once, grants and refusals
    alike (a refusal is raised from the awaitable)."""
    authz = world.ready()
    alice = world.idp.token(world.s.alice)
    bob = world.idp.token(world.s.bob)

    async def main() -> list[Any]:
        first = await authz.authorize_async("GET", "/courses/5", alice)
        assert first.params == {"id": "5"}
        asks = [authz.authorize_async("GET", f"/courses/{i}", alice) for i in range(20)]
        asks.append(authz.authorize_async("GET", "/courses/1", bob))
        asks.append(authz.authorize_async("GET", "/courses//1", alice))
        return await asyncio.gather(*asks, return_exceptions=True)

    results = asyncio.run(main())
    grants, (denied, invalid) = results[:20], results[20:]
    assert [g.params for g in grants] == [{"id": str(i)} for i in range(20)], results
    assert all(g.subject == world.s.alice and g.action == "course:read" for g in grants)
    assert isinstance(denied, heimdall.Forbidden), denied
    assert isinstance(invalid, heimdall.InvalidInput), invalid


def test_stats_count_what_was_decided(world: World) -> None:
    """``stats()`` counts allowed and denied requests as they happen."""
    authz = world.ready()
    alice = world.idp.token(world.s.alice)
    before = authz.stats()
    assert {"allowed", "denied", "unmapped_allowed", "pdp_errors", "no_snapshot"} <= set(before)
    for _ in range(3):
        authz.authorize("GET", "/courses/1", alice)
    for token in (world.idp.token(world.s.bob), None):
        with pytest.raises(heimdall.HeimdallError):
            authz.authorize("GET", "/courses/1", token)
    after = authz.stats()
    assert after["allowed"] - before["allowed"] == 3
    assert after["denied"] - before["denied"] == 2
    assert after["pdp_errors"] == before["pdp_errors"]


def test_wait_ready_loads_the_current_snapshot(world: World) -> None:
    """``wait_ready`` returns True once the export is loaded: the authorizer then shows the export's version
    and a fresh snapshot age."""
    authz = world.authorizer()
    assert authz.wait_ready(10.0) is True
    assert authz.snapshot_version == world.stack.rest.export_version(world.s.key)
    age = authz.snapshot_age
    assert age is not None and 0.0 <= age < 30.0


def test_after_wait_ready_requests_are_decided(stack: Stack, scenario: Courses, idp: Idp) -> None:
    """Deciding locally: once ``wait_ready`` said True, the very next request is decided (allowed here), not
    refused with 503 because the grants export is not loaded yet: what a service that waits for readiness
    before taking traffic relies on. Tried with many fresh authorizers: it guards against a race with the
    follower's first load (the mapping export, then the grants export)."""
    alice = idp.token(scenario.alice)
    failures = []
    for attempt in range(40):
        authz = heimdall.Authorizer(
            jwks_url=idp.jwks_url, heimdall_url=stack.base, credential=scenario.key, issuer=ISSUER
        )
        try:
            assert authz.wait_ready(10.0)
            o = outcome(authz, "GET", "/courses/1", alice)
            if not isinstance(o, heimdall.Grant):
                failures.append(f"attempt {attempt}: {describe(o)}")
        finally:
            authz.close()
    assert not failures, f"{len(failures)} of 40 requests right after wait_ready() = True were not decided: {failures}"


def test_without_heimdall_http_nothing_is_let_through(idp: Idp) -> None:
    """No heimdall-http to follow: ``wait_ready`` gives up (False), there is no snapshot, and every request is
    refused with 503 (fail closed) and counted; with ``allow_before_snapshot`` an authenticated request is let
    through without an action, an unauthenticated one still refused."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    common: dict[str, Any] = {
        "jwks_url": idp.jwks_url,
        "heimdall_url": nowhere,
        "credential": "no-such-key",
        "issuer": ISSUER,
    }
    authz = heimdall.Authorizer(**common)
    lenient = heimdall.Authorizer(**common, allow_before_snapshot=True)
    try:
        started = time.monotonic()
        assert authz.wait_ready(0.5) is False
        assert time.monotonic() - started < 5.0, "wait_ready overran its timeout"
        assert authz.snapshot_version is None and authz.snapshot_age is None
        with pytest.raises(heimdall.Unavailable) as e:
            authz.authorize("GET", "/courses/1", idp.token("carol"))
        assert e.value.status == 503 and e.value.code == "unavailable"
        assert authz.stats()["no_snapshot"] == 1

        g = lenient.authorize("GET", "/courses/1", idp.token("carol"))
        assert (g.subject, g.action, g.mapping_id) == ("carol", None, None)
        with pytest.raises(heimdall.Unauthenticated):
            lenient.authorize("GET", "/courses/1", None)
    finally:
        authz.close()
        lenient.close()


def test_allow_before_snapshot_ends_at_its_deadline(idp: Idp) -> None:
    """``allow_before_snapshot`` lets authenticated requests through only until ``before_snapshot_deadline``;
    after it, no snapshot means no."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    authz = heimdall.Authorizer(
        jwks_url=idp.jwks_url,
        heimdall_url=nowhere,
        credential="no-such-key",
        issuer=ISSUER,
        allow_before_snapshot=True,
        before_snapshot_deadline=0.3,
    )
    try:
        g = authz.authorize("GET", "/courses/1", idp.token("carol"))
        assert (g.action, g.mapping_id) == (None, None)
        time.sleep(0.4)
        with pytest.raises(heimdall.Unavailable):
            authz.authorize("GET", "/courses/1", idp.token("carol"))
    finally:
        authz.close()


def test_grants_on_demand_need_room_for_a_subject(idp: Idp) -> None:
    """A capacity of 0 subjects is a configuration error, not a cache that fetches on every request."""
    with pytest.raises(heimdall.ConfigError, match="at least one subject"):
        heimdall.Authorizer(
            jwks_url=idp.jwks_url, heimdall_url="http://127.0.0.1:1", credential="hk_x", grants_cache_capacity=0
        )


def test_plain_http_to_another_host_needs_allow_plain_http(idp: Idp) -> None:
    """A JWKS or heimdall-http URL over plain HTTP to a host other than loopback is a configuration error,
    unless ``allow_plain_http=True`` says the operator means it."""
    for jwks_url, heimdall_url in [
        ("http://idp.example/certs", "https://heimdall.example"),
        (idp.jwks_url, "http://heimdall.example:8080"),
    ]:
        with pytest.raises(heimdall.ConfigError, match="plain http"):
            heimdall.Authorizer(jwks_url=jwks_url, heimdall_url=heimdall_url, credential="hk_x")
        heimdall.Authorizer(
            jwks_url=jwks_url, heimdall_url=heimdall_url, credential="hk_x", allow_plain_http=True
        ).close()


def test_a_refused_credential_closes_the_authorizer(stack: Stack, scenario: Courses, idp: Idp) -> None:
    """heimdall-http refuses the follower's API key (revoked while it follows): the authorizer says why, stops
    being ready and refuses every request, also the ones its last snapshot could decide."""
    authz = heimdall.Authorizer(
        jwks_url=idp.jwks_url,
        heimdall_url=stack.base,
        credential=scenario.key,
        issuer=ISSUER,
        poll_interval=0.5,
    )
    try:
        assert authz.wait_ready(10.0)
        assert authz.credential_refused is None
        keys = stack.rest.call("GET", "/api/v1/api-keys", expect=200).json()
        key_id = next(k["id"] for k in keys if k["name"].startswith("adapter-"))
        stack.rest.call("DELETE", f"/api/v1/api-keys/{key_id}", expect=204)
        deadline = time.monotonic() + 10.0
        while authz.credential_refused is None:
            assert time.monotonic() < deadline, "the follower did not notice its revoked key"
            time.sleep(0.05)
        assert "refused" in authz.credential_refused
        assert authz.wait_ready(0.1) is False
        with pytest.raises(heimdall.Unavailable):
            authz.authorize("GET", "/courses/1", idp.token(scenario.alice))
    finally:
        authz.close()


def test_an_unreachable_pdp_is_unavailable(stack: Stack, scenario: Courses, idp: Idp) -> None:
    """Deciding with a Cerbos that does not answer refuses with 503 (fail closed) and counts a PDP error."""
    authz = heimdall.Authorizer(
        jwks_url=idp.jwks_url,
        heimdall_url=stack.base,
        credential=scenario.key,
        cerbos_url=f"http://127.0.0.1:{free_port()}",
        issuer=ISSUER,
    )
    try:
        assert authz.wait_ready(10.0)
        with pytest.raises(heimdall.Unavailable):
            authz.authorize("GET", "/courses/1", idp.token(scenario.alice))
        assert authz.stats()["pdp_errors"] >= 1
    finally:
        authz.close()


def test_errors_carry_their_status_and_code() -> None:
    """Each error class states the project's stable code and HTTP status, and all are ``HeimdallError``s."""
    expected = {
        heimdall.InvalidInput: (400, "invalid_input"),
        heimdall.Unauthenticated: (401, "unauthenticated"),
        heimdall.Forbidden: (403, "forbidden"),
        heimdall.NotFound: (404, "not_found"),
        heimdall.Conflict: (409, "conflict"),
        heimdall.Unavailable: (503, "unavailable"),
    }
    for cls, (status, code) in expected.items():
        assert issubclass(cls, heimdall.HeimdallError) and issubclass(cls, Exception)
        assert (cls.status, cls.code) == (status, code), cls


def test_close_is_final(stack: Stack, scenario: Courses, idp: Idp) -> None:
    """A closed authorizer stops following and refuses every later request (deny when unsure)."""
    authorizer = heimdall.Authorizer(
        jwks_url=idp.jwks_url, heimdall_url=stack.base, credential=scenario.key
    )
    assert authorizer.wait_ready(10.0)
    token = idp.token(scenario.alice)
    assert authorizer.authorize("GET", "/courses/1", token).subject == scenario.alice
    authorizer.close()
    with pytest.raises(heimdall.Unavailable, match="closed"):
        authorizer.authorize("GET", "/courses/1", token)
    with pytest.raises(heimdall.Unavailable, match="closed"):
        authorizer.wait_ready(0.1)
