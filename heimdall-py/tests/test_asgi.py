"""``heimdall.asgi.HeimdallMiddleware`` end to end: a FastAPI app behind it, served by uvicorn in a subprocess,
following a real heimdall-http, asked over real HTTP — once deciding locally from the grants export, once
asking the real Cerbos for the principal policies heimdall-http's worker pushed."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness import ISSUER, Courses, Idp, Stack, free_port, stop_pid, wait_until

APP = textwrap.dedent(
    '''
    """A service protected by Heimdall: every request that reaches the app is written to SEEN_LOG."""
    import os

    from fastapi import FastAPI, Request

    import heimdall
    from heimdall.asgi import HeimdallMiddleware

    api = FastAPI()


    @api.get("/courses/{course_id}")
    async def course(course_id: str, request: Request) -> dict:
        grant = request.state.heimdall
        return {
            "course": course_id,
            "subject": grant.subject,
            "action": grant.action,
            "mapping_id": grant.mapping_id,
            "params": grant.params,
            "same_grant_in_scope": request.scope.get("heimdall") is grant,
        }


    @api.get("/unmapped")
    async def unmapped() -> dict:
        return {"reached": True}


    @api.get("/admin/{section}")
    async def admin(section: str) -> dict:
        return {"reached": True}


    class Recorder:
        """Writes each HTTP request that gets past the middleware."""

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                with open(os.environ["SEEN_LOG"], "a") as f:
                    f.write(scope["method"] + " " + scope["raw_path"].decode() + "\\n")
            await self.app(scope, receive, send)


    authorizer = heimdall.Authorizer(
        jwks_url=os.environ["JWKS_URL"],
        heimdall_url=os.environ["HEIMDALL_URL"],
        credential=os.environ["HEIMDALL_CREDENTIAL"],
        issuer=os.environ["JWT_ISSUER"],
        cerbos_url=os.environ.get("CERBOS_URL"),
    )
    if not authorizer.wait_ready(10.0):
        raise SystemExit("no mapping snapshot within 10 s")
    app = HeimdallMiddleware(Recorder(api), authorizer)
    '''
)


@dataclass
class Service:
    base: str
    port: int
    seen_log: Path

    def seen(self) -> list[str]:
        """The requests that reached the app, in order."""
        return self.seen_log.read_text().splitlines() if self.seen_log.exists() else []

    def raw(self, method: str, target: str, token: str | None) -> tuple[int, dict[str, str], bytes]:
        """Sends ``target`` byte for byte (httpx would normalise dot segments and escapes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            if token is not None:
                conn.putheader("Authorization", f"Bearer {token}")
            conn.endheaders()
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()


# Cerbos shows a pushed principal policy within a moment, not at once: how long an allowed request may take
# to become allowed, by mode.
PATIENCE = {"local": 5.0, "cerbos": 30.0}


@pytest.fixture(params=["local", "cerbos"])
def stack(request: pytest.FixtureRequest, start_stack: Callable[..., Stack]) -> Stack:
    """This module's heimdall-http: deciding locally (no Cerbos), or with the real Cerbos and a push worker."""
    cerbos = request.getfixturevalue("cerbos") if request.param == "cerbos" else None
    return start_stack(cerbos)


def allowed_once_pushed(service: Service, stack: Stack, path: str, token: str) -> httpx.Response:
    """The first answer to ``path`` that is not a 403 while Cerbos may not have the pushed policy yet."""
    deadline = time.monotonic() + PATIENCE["cerbos" if stack.cerbos else "local"]
    while True:
        r = httpx.get(f"{service.base}{path}", headers={"Authorization": f"Bearer {token}"})
        if r.status_code != 403 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


@pytest.fixture
def service(stack: Stack, scenario: Courses, idp: Idp, tmp_path: Path) -> Iterator[Service]:
    """The app above under uvicorn, in its own process, on a free loopback port."""
    (tmp_path / "protected_app.py").write_text(APP)
    port = free_port()
    seen_log = tmp_path / "seen.log"
    env = {
        **os.environ,
        "JWKS_URL": idp.jwks_url,
        "HEIMDALL_URL": stack.base,
        "HEIMDALL_CREDENTIAL": scenario.key,
        "JWT_ISSUER": ISSUER,
        "SEEN_LOG": str(seen_log),
    }
    if stack.cerbos is not None:
        env["CERBOS_URL"] = stack.cerbos.base_url
    log_path = tmp_path / "uvicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "protected_app:app",
                "--app-dir",
                str(tmp_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "on",
                "--no-access-log",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool | None:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited ({proc.returncode}):\n{log_path.read_text(errors='replace')}")
        try:
            httpx.get(f"{base}/unmapped", timeout=1.0)  # any answer: it is listening
            return True
        except httpx.TransportError:
            return None

    try:
        wait_until("uvicorn listening", up, 30.0, interval=0.05)
        seen_log.write_text("")  # the probe above is not part of the test
        yield Service(base, port, seen_log)
    finally:
        stop_pid(proc)
        # Shown when a test fails: what uvicorn (and the app) said.
        print(log_path.read_text(errors="replace")[-4000:])


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


def test_an_allowed_request_reaches_the_app_with_its_grant(
    service: Service, stack: Stack, scenario: Courses, idp: Idp
) -> None:
    """A member is let through; the route sees the grant as ``request.state.heimdall`` (and ``scope["heimdall"]``)."""
    r = allowed_once_pushed(service, stack, "/courses/42", idp.token(scenario.alice))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "course": "42",
        "subject": scenario.alice,
        "action": "course:read",
        "mapping_id": scenario.course_mapping,
        "params": {"id": "42"},
        "same_grant_in_scope": True,
    }
    assert service.seen() == ["GET /courses/42"]


def test_refused_requests_never_reach_the_app(service: Service, stack: Stack, scenario: Courses, idp: Idp) -> None:
    """Denied (403), unmapped (403), expired or missing token (401 with ``WWW-Authenticate: Bearer``) and a
    non-canonical path (400) are answered by the middleware with the JSON error body; the app sees none."""
    alice = idp.token(scenario.alice)
    # Once alice is allowed (with Cerbos: once her policy is pushed), what follows is refused for its own reason.
    assert allowed_once_pushed(service, stack, "/courses/1", alice).status_code == 200
    service.seen_log.write_text("")

    def get(path: str, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.get(f"{service.base}{path}", headers=headers)

    assert_error(get("/courses/1", idp.token(scenario.bob)), 403, "forbidden")
    assert_error(get("/admin/users", alice), 403, "forbidden")
    assert_error(get("/unmapped", alice), 403, "forbidden")

    for token in (idp.expired_token(scenario.alice), None):
        r = get("/courses/1", token)
        assert_error(r, 401, "unauthenticated")
        assert r.headers.get("www-authenticate", "").startswith("Bearer"), r.headers

    for target in ("/courses/%2e%2e/admin", "/courses//1", "/courses/1/../2"):
        status, headers, body = service.raw("GET", target, alice)
        assert status == 400, (target, body)
        assert headers["content-type"].startswith("application/json"), headers
        assert b'"invalid_input"' in body, body

    assert service.seen() == [], "a refused request reached the app"

    # The middleware still lets the allowed request through afterwards.
    assert get("/courses/9", alice).status_code == 200
    assert service.seen() == ["GET /courses/9"]


def test_a_revocation_reaches_the_running_service(
    service: Service, stack: Stack, scenario: Courses, idp: Idp
) -> None:
    """Removing the member through heimdall-http's API refuses her at the running service within seconds."""
    alice = {"Authorization": f"Bearer {idp.token(scenario.alice)}"}
    assert allowed_once_pushed(service, stack, "/courses/1", idp.token(scenario.alice)).status_code == 200
    stack.rest.remove_member(scenario.group, scenario.alice)
    deadline = time.monotonic() + PATIENCE["cerbos" if stack.cerbos else "local"]
    while (status := httpx.get(f"{service.base}/courses/1", headers=alice).status_code) != 403:
        assert status == 200, status
        assert time.monotonic() < deadline, "still allowed after the revocation"
        time.sleep(0.05)
