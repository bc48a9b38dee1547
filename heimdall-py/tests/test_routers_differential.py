"""Differential test: what the middleware authorises is what Starlette (FastAPI's router) and Django run.

Heimdall resolves the **raw** request path (percent-encoding intact), as axum routes it; Starlette and Django
route the percent-**decoded** ``scope["path"]``, and Django upper-cases the method before dispatching. Core
therefore refuses every path with more than one raw spelling for its decoded form (``%3A``, ``%40``, ...) and
every method that is not an upper-case token (``get``). This test checks that claim against the real
routers: each app runs under a real uvicorn on 127.0.0.1 (both HTTP/1.1 parsers, h11 and httptools; with and
without a ``root_path``) behind :class:`heimdall.asgi.HeimdallMiddleware`,
and thousands of raw request targets are written on a raw TCP socket (so that no client normalises them),
with methods in every case. Every handler answers with its own route name (``x-route``) and the mapping the
middleware's grant was decided on (``x-mapping``). For every request, either no handler ran (the middleware
refused it with 400/401/403, uvicorn refused it, or the router found nothing), or the handler that ran is
the one whose mapping the decision was made on.

Decisions are not what is under test, the mapping they are made on is: a real heimdall-http (SQLite) holds the
mappings, and a role that allows every mapped action to the test's user, and the middleware's authorizer
follows it and decides locally from its grants export.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import heimdall
from harness import ISSUER, Idp, Stack, free_port, wait_until
from heimdall.asgi import HeimdallMiddleware


def _require(module: str) -> None:
    """Imports ``module`` or fails (with ``CI=true``) or skips, saying why: never a silent pass."""
    try:
        __import__(module)
    except ImportError as e:
        reason = f"{module} is not installed ({e}): pip install -r heimdall-py/requirements-test.txt"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the routers' differential test must run in CI)", pytrace=False)
        pytest.skip(f"NOT RUN: {reason}")


# --------------------------------------------------------------------------------------------------------------
# The routes: the same endpoints as mappings, as Starlette routes and as Django URL patterns
# --------------------------------------------------------------------------------------------------------------

ANY = None
# (route name, mapping method, mapping pattern, Starlette path, Starlette methods, Django regex, Django methods)
ROUTES: list[tuple[str, str, str, str, list[str] | None, str, set[str] | None]] = [
    ("root", "GET", "/", "/", ["GET"], r"^\Z", {"GET", "HEAD"}),
    ("jobs_purge", "POST", "/v1/jobs:purge", "/v1/jobs:purge", ["POST"], r"^v1/jobs:purge\Z", {"POST"}),
    ("jobs_get", "GET", "/v1/jobs/:id", "/v1/jobs/{id}", ["GET"], r"^v1/jobs/(?P<id>[^/]+)\Z", {"GET", "HEAD"}),
    ("v1_any", "ANY", "/v1/**", "/v1/{rest:path}", ANY, r"^v1/(?P<rest>.+)\Z", ANY),
    ("users_me", "GET", "/users/@me", "/users/@me", ["GET"], r"^users/@me\Z", {"GET", "HEAD"}),
    ("users_get", "GET", "/users/:name", "/users/{name}", ["GET"], r"^users/(?P<name>[^/]+)\Z", {"GET", "HEAD"}),
    ("files_get", "GET", "/files/:name", "/files/{name}", ["GET"], r"^files/(?P<name>[^/]+)\Z", {"GET", "HEAD"}),
    ("admin_users", "POST", "/admin/users", "/admin/users", ["POST"], r"^admin/users\Z", {"POST"}),
]

METHODS = [
    "GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "M-SEARCH",
    "get", "Get", "gET", "post", "Post", "head", "delete", "propfind",
]  # fmt: skip


def _markers(scope: Any) -> list[tuple[str, str]]:
    """What every handler answers with: which mapping the middleware's grant names, and the path it routed."""
    grant = scope.get("heimdall")
    mapping = "none" if grant is None or grant.mapping_id is None else str(grant.mapping_id)
    return [
        ("x-mapping", mapping),
        ("x-method", urllib.parse.quote(str(scope.get("method")), safe="")),
        ("x-path", urllib.parse.quote(str(scope.get("path")), safe="")),
    ]


def starlette_app(authorizer: heimdall.Authorizer) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def handler(name: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return Response(name, headers=dict([("x-route", name), *_markers(request.scope)]))

        return endpoint

    class AnyMethod:
        """An ASGI endpoint: Starlette routes every method to it (a function endpoint defaults to GET)."""

        def __init__(self, name: str) -> None:
            self.name = name

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            headers = dict([("x-route", self.name), *_markers(scope)])
            await Response(self.name, headers=headers)(scope, receive, send)

    routes = [
        Route(path, handler(name) if methods is not None else AnyMethod(name), methods=methods)
        for name, _, _, path, methods, _, _ in ROUTES
    ]
    return HeimdallMiddleware(Starlette(routes=routes), authorizer)


def django_app(authorizer: heimdall.Authorizer) -> Any:
    import django  # type: ignore[import-untyped]
    from django.conf import settings  # type: ignore[import-untyped]

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="differential-test",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            APPEND_SLASH=False,
            USE_TZ=True,
        )
        django.setup()
    from django.core.asgi import get_asgi_application  # type: ignore[import-untyped]

    return HeimdallMiddleware(get_asgi_application(), authorizer)


def _django_urlpatterns() -> list[Any]:
    from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed  # type: ignore[import-untyped]
    from django.urls import re_path  # type: ignore[import-untyped]

    def view(name: str, methods: set[str] | None) -> Callable[..., HttpResponse]:
        def endpoint(request: HttpRequest, **_: str) -> HttpResponse:
            if methods is not None and request.method not in methods:
                return HttpResponseNotAllowed(sorted(methods))
            response = HttpResponse(name)
            response["x-route"] = name
            for key, value in _markers(request.scope):
                response[key] = value
            return response

        return endpoint

    return [re_path(regex, view(name, methods)) for name, _, _, _, _, regex, methods in ROUTES]


def __getattr__(name: str) -> Any:
    # Django's ROOT_URLCONF is this module; its URL patterns are built on first use (Django may not be
    # installed when this module is collected).
    if name == "urlpatterns":
        return _django_urlpatterns()
    raise AttributeError(name)


# --------------------------------------------------------------------------------------------------------------
# uvicorn, and a client that sends request targets byte for byte
# --------------------------------------------------------------------------------------------------------------


class Uvicorn:
    """A real uvicorn serving ``app`` on 127.0.0.1, in a thread of this process, with the HTTP/1.1 parser
    ``http``: ``h11`` (uvicorn's own dependency) or ``httptools`` (what ``uvicorn[standard]`` uses)."""

    def __init__(self, app: Any, root_path: str = "", http: str = "h11") -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            http=http,
            lifespan="off",
            log_level="critical",
            access_log=False,
            root_path=root_path,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()
        wait_until("uvicorn to start", lambda: self._server.started or None, timeout=20)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def send_raw(port: int, method: str, target: bytes, token: str) -> Answer:
    """Writes one request with exactly this method and request target, and reads the whole answer."""
    request = (
        method.encode("latin-1")
        + b" "
        + target
        + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + token.encode()
        + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return Answer(status, headers, body)


# --------------------------------------------------------------------------------------------------------------
# The request targets
# --------------------------------------------------------------------------------------------------------------

BASES = ["/v1/jobs/7", "/v1/jobs:purge", "/v1/x/y", "/users/@me", "/users/alice", "/files/a", "/admin/users", "/"]


def request_targets() -> list[bytes]:
    """Raw request targets: every route as is; each of its characters percent-encoded (upper- and lower-case
    hex); every ASCII byte, raw and percent-encoded, in several positions of several routes; and the known
    confusions (``%3A``, ``%40``, ``%2F``, ``%25``, ``;``, ``..``, ``//``, trailing slashes, non-ASCII raw and
    encoded, ``#``, overlong targets)."""
    targets: list[bytes] = []

    def add(t: str | bytes) -> None:
        targets.append(t.encode("latin-1") if isinstance(t, str) else t)

    for base in BASES:
        add(base)
        add(base + "?q=/../admin")
        for i in range(1, len(base)):
            c = ord(base[i])
            add(f"{base[:i]}%{c:02X}{base[i + 1 :]}")
            add(f"{base[:i]}%{c:02x}{base[i + 1 :]}")
    # Every ASCII byte, percent-encoded (both hex cases) and raw, at the start, in the middle and at the end of
    # the last segment of some routes, and as a segment of its own.
    for base in ["/users/@me", "/v1/jobs:purge", "/files/a"]:
        cut = base.rindex("/") + 1
        last = base[cut:]
        spots = [
            (base[:cut], last),
            (base[:cut] + last[: len(last) // 2], last[len(last) // 2 :]),
            (base, ""),
        ]
        for b in range(128):
            for before, after in spots:
                add(f"{before}%{b:02X}{after}")
                if f"{b:02X}" != f"{b:02x}":
                    add(f"{before}%{b:02x}{after}")
                if b not in (0x0A, 0x0D, 0x20):  # these would end the request line rather than sit in it
                    add(before.encode() + bytes([b]) + after.encode())
        for b in range(0x20, 0x7F):
            add(f"{base}/%{b:02X}")
    specials = [
        "/v1/jobs%3Apurge", "/v1/jobs%3apurge", "/users/%40me", "/users/%40%6De", "/v1/jobs%2Fpurge",
        "/v1/jobs/7%2F..%2F..%2Fadmin", "/v1/%2e%2e/admin/users", "/v1/../admin/users", "/admin/users/..",
        "/v1/jobs/7/", "/v1//jobs/7", "//admin/users", "/admin//users", "/admin/users/", "/v1/jobs:purge/",
        "/v1/jobs/7;x=1", "/users/@me;jsessionid=1", "/admin;/users", "/v1/jobs%253Apurge", "/users/%2540me",
        "/admin/users%23", "/users/@me#x", "/users/@me#/../alice", "/admin/users#", "/users/alice?x#y",
        "/users/a+b", "/users/a%2Bb", "/users/a%20b", "/users/@me%20", "/users/%C3%A9", "/users/%c3%a9",
        "/users/%C3", "/users/%C0%AF", "/users/%E2%80%AE", "/files/caf%C3%A9", "/files/a%00", "/files/%",
        "/files/%zz", "/v1/jobs%3A", "/v1/%3A", "/users/%21%24%26%27%28%29%2A%2B%2C%3B%3D",
        "/users/!$&'()*+,=", "/users/a%5Cb", "/users/a\\b", "/USERS/@me", "/Users/@me", "/v1/JOBS:purge",
        "/v1/jobs%3Apurge?x=1", "/users/%40me?q=1", "http://127.0.0.1/users/@me", "*", "users/@me", "",
    ]  # fmt: skip
    for s in specials:
        add(s)
    add("/users/caf\u00e9".encode())
    add(b"/users/\xff")
    add(b"/v1/jobs\xef\xbc\x9apurge")  # a full-width colon, raw
    add("/v1/" + "a" * 3000)
    add("/v1/" + "a/" * 1200 + "b")
    add("/users/" + "%C3%A9" * 500)
    add("/users/" + "x" * 2040)
    return targets


# --------------------------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------------------------


@dataclass
class World:
    authorizer: heimdall.Authorizer
    route_of_mapping: dict[str, str]
    token: str


@pytest.fixture(scope="module")
def world(heimdall_bin: str, idp: Idp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    stack = Stack(heimdall_bin, idp, tmp_path_factory.mktemp("differential"))
    try:
        rest = stack.rest
        route_of_mapping = {}
        for name, method, pattern, *_ in ROUTES:
            route_of_mapping[str(rest.mapping(method, pattern, f"route:{name}"))] = name
        rest.role("differential", *(f"route:{name}" for name, *_ in ROUTES))
        rest.group("differential")
        rest.group_role("differential", "differential")
        rest.add_member("differential", "alice")
        key = rest.api_key("differential", ["mappings:read", "grants:read"])
        authorizer = heimdall.Authorizer(
            jwks_url=idp.jwks_url, heimdall_url=stack.base, credential=key, issuer=ISSUER, decision_ttl=600
        )
        try:
            assert authorizer.wait_ready(20), "the authorizer never loaded heimdall-http's mappings"
            token = idp.token("alice", ttl=3600)
            grant = wait_until(
                "alice's grants", lambda: _allowed(authorizer, "POST", "/admin/users", token), timeout=10
            )
            assert route_of_mapping[str(grant.mapping_id)] == "admin_users"
            yield World(authorizer, route_of_mapping, token)
        finally:
            authorizer.close()
    finally:
        stack.stop()


def _allowed(authorizer: heimdall.Authorizer, method: str, path: str, token: str) -> heimdall.Grant | None:
    try:
        return authorizer.authorize(method, path, token)
    except heimdall.HeimdallError:
        return None


def drive(world: World, port: int, framework: str) -> None:
    """Sends every target (each with one method, in turn; the known confusions with every method) and checks
    every answer: no handler ran, or the one that ran is the route of the mapping the decision was made on."""
    targets = request_targets()
    requests: list[tuple[str, bytes]] = [(METHODS[i % len(METHODS)], t) for i, t in enumerate(targets)]
    every_method = [t.encode() for t in BASES] + [
        b"/v1/jobs%3Apurge", b"/users/%40me", b"/v1/jobs%3apurge", b"/users/%40%6De", b"/users/@me#x",
    ]
    requests += [(m, t) for t in every_method for m in METHODS]
    assert len(targets) >= 2000

    def one(request: tuple[str, bytes]) -> tuple[str, bytes, Answer]:
        method, target = request
        return method, target, send_raw(port, method, target, world.token)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(one, requests))
    elapsed = time.monotonic() - started

    outcomes: Counter[str] = Counter()
    wrong: list[str] = []
    ran: dict[tuple[str, bytes], str] = {}
    for method, target, answer in answers:
        route = answer.headers.get("x-route")
        if route is None:
            code = ""
            if answer.headers.get("content-type") == "application/json" and answer.body:
                code = json.loads(answer.body).get("error", {}).get("code", "")
            outcomes[f"no handler: {answer.status} {code}".strip()] += 1
            if answer.status >= 500:
                wrong.append(f"{method} {target!r}: {answer.status} {answer.body[:200]!r}")
            continue
        outcomes[f"handler ran: {route}"] += 1
        ran[(method, target)] = route
        decided_on = world.route_of_mapping.get(answer.headers.get("x-mapping", ""), "no mapping")
        if decided_on != route:
            wrong.append(
                f"{method} {target!r}: authorised on {decided_on}, but {framework} ran {route} "
                f"(routed {urllib.parse.unquote(answer.headers.get('x-method', ''))} "
                f"{urllib.parse.unquote(answer.headers.get('x-path', ''))})"
            )
    summary = "\n".join(f"  {n:6d}  {what}" for what, n in sorted(outcomes.items()))
    print(f"\n{framework}: {len(requests)} requests ({len(targets)} targets) in {elapsed:.1f}s\n{summary}")
    assert not wrong, f"{len(wrong)} requests ran another handler than the one authorised:\n" + "\n".join(wrong[:40])

    # Not vacuous: the canonical requests reach their handlers, and the known confusions are refused.
    assert ran.get(("GET", b"/v1/jobs/7")) == "jobs_get"
    assert ran.get(("POST", b"/v1/jobs:purge")) == "jobs_purge"
    # Starlette tries the next route when a path matches but the method doesn't, as the resolver does; Django
    # runs the first view whose URL matches, which answers 405 here.
    fallback = "v1_any" if framework == "Starlette" else None
    assert ran.get(("GET", b"/v1/jobs:purge")) == fallback
    assert ran.get(("POST", b"/v1/jobs/7")) == fallback
    assert ran.get(("GET", b"/users/@me")) == "users_me"
    assert ran.get(("GET", b"/users/alice")) == "users_get"
    assert ran.get(("HEAD", b"/users/@me")) == "users_me"
    assert ran.get(("PROPFIND", b"/v1/x/y")) == "v1_any"
    for method, target in [
        ("POST", b"/v1/jobs%3Apurge"),
        ("GET", b"/users/%40me"),
        ("get", b"/users/@me"),
        ("get", b"/v1/jobs/7"),
        ("Get", b"/users/alice"),
        ("post", b"/v1/jobs:purge"),
    ]:
        assert (method, target) not in ran, f"{method} {target!r} reached {ran[(method, target)]}"
    # h11 hands '/users/@me#x' to the app whole (refused: a '#' before the query), httptools drops '#x'.
    assert ran.get(("GET", b"/users/@me#x")) in (None, "users_me")
    assert sum(n for what, n in outcomes.items() if what.startswith("handler ran")) >= 100

    # '+' is not decoded in a path (by uvicorn, Starlette or Django): it is a plain character, its escape
    # %2B is needless, hence refused.
    plus = send_raw(port, "GET", b"/users/a+b", world.token)
    assert plus.headers.get("x-route") == "users_get"
    assert urllib.parse.unquote(plus.headers["x-path"]).endswith("/users/a+b")
    assert send_raw(port, "GET", b"/users/a%2Bb", world.token).status == 400


# With a root_path, uvicorn puts it in front of path and raw_path, and the routers match what follows it: the
# same targets must reach the same handlers, authorised on the same mappings (written without the prefix).
ROOT_PATHS = pytest.mark.parametrize("root_path", ["", "/api"], ids=["no-root-path", "root-path"])
# uvicorn's two HTTP/1.1 parsers read a request target differently (httptools drops a '#fragment' and refuses
# lower-case methods itself; h11 passes both on): both are checked.
PARSERS = pytest.mark.parametrize("http", ["h11", "httptools"])


@ROOT_PATHS
@PARSERS
def test_starlette_runs_only_what_was_authorised(world: World, root_path: str, http: str) -> None:
    _require("starlette")
    _require("uvicorn")
    _require(http)
    server = Uvicorn(starlette_app(world.authorizer), root_path=root_path, http=http)
    try:
        drive(world, server.port, "Starlette")
    finally:
        server.stop()


@ROOT_PATHS
@PARSERS
def test_django_runs_only_what_was_authorised(world: World, root_path: str, http: str) -> None:
    _require("django")
    _require("uvicorn")
    _require(http)
    server = Uvicorn(django_app(world.authorizer), root_path=root_path, http=http)
    try:
        drive(world, server.port, "Django")
    finally:
        server.stop()


def _through_middleware(world: World, scope: dict[str, Any]) -> tuple[int, Any]:
    """Drives the middleware with one scope (no server): (status, the grant the app got) or (status, None)."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["heimdall"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    headers = [(b"authorization", f"Bearer {world.token}".encode())]
    asyncio.run(HeimdallMiddleware(app, world.authorizer)({"type": "http", "headers": headers, **scope}, receive, send))
    return sent[0]["status"], (seen[0] if seen else None)


@pytest.mark.parametrize(
    ("scope", "route"),
    [
        # The prefix followed by '/': authorised as the rest, as both routers read it.
        ({"method": "GET", "root_path": "/api", "path": "/api/users/@me", "raw_path": b"/api/users/@me"}, "users_me"),
        # Not under the prefix: both routers read the whole path.
        ({"method": "GET", "root_path": "/api", "path": "/users/@me", "raw_path": b"/users/@me"}, "users_me"),
        # Starlette reads /apix/users/@me whole, Django strips '/api': refused.
        ({"method": "GET", "root_path": "/api", "path": "/apix/users/@me", "raw_path": b"/apix/users/@me"}, None),
        ({"method": "GET", "root_path": "/api", "path": "/api", "raw_path": b"/api"}, None),
        # The prefix spelled otherwise in the raw path.
        ({"method": "GET", "root_path": "/api", "path": "/api/users/@me", "raw_path": b"/%61pi/users/@me"}, None),
        ({"method": "GET", "root_path": "/api/", "path": "/api/users/@me", "raw_path": b"/api/users/@me"}, None),
        # No raw_path: the decoded path in its canonical spelling.
        ({"method": "GET", "path": "/users/@me"}, "users_me"),
        ({"method": "GET", "path": "/users/a b"}, "users_get"),
        ({"method": "GET", "path": "/users/caf\u00e9"}, "users_get"),
        ({"method": "GET", "path": "/users/a%40b"}, None),
        ({"method": "GET", "path": "/users/a?b"}, None),
        # The method exactly as received.
        ({"method": "get", "path": "/users/@me", "raw_path": b"/users/@me"}, None),
    ],
)
def test_the_middleware_authorises_the_path_the_router_reads(
    world: World, scope: dict[str, Any], route: str | None
) -> None:
    status, grant = _through_middleware(world, scope)
    if route is None:
        assert (status, grant) == (400, None)
    else:
        assert status == 200 and grant is not None
        assert world.route_of_mapping[str(grant.mapping_id)] == route
