"""Process helpers shared by the tests (conftest.py) and the benchmark (bench/bench_python.py).

What they start, each on 127.0.0.1 only and each stopped by its own PID:

- :class:`Idp`: an identity provider in a daemon thread: serves a JWKS (one RSA key, kid ``py-1``) and mints
  RS256 tokens with PyJWT;
- :class:`Cerbos`: the real Cerbos PDP (``HEIMDALL_CERBOS_BIN``) under ``timeout --kill-after=5 900``, configured
  as heimdall-core's ``test_utils/cerbos.rs`` configures it;
- :class:`HeimdallProcess`: the ``heimdall`` binary (``HEIMDALL_BIN``), as ``serve``, ``worker`` or
  ``install-policies``;
- :class:`Stack`: a heimdall-http (and, on Cerbos, its push worker) on a fresh SQLite database, with a
  superadmin token and a small REST client (:class:`Rest`).

Nothing here depends on pytest.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://idp.heimdall-py.test/realms/test"
AUDIENCE = "heimdall"
KID = "py-1"
SUPERADMIN = "root"

# The Admin API credentials of every test PDP: the same as heimdall-core's test_utils/cerbos.rs.
CERBOS_ADMIN_USER = "heimdall"
CERBOS_ADMIN_PASSWORD = "heimdall-test-admin"
# Base64 of a bcrypt hash (cost 4) of CERBOS_ADMIN_PASSWORD.
CERBOS_ADMIN_PASSWORD_HASH_B64 = "JDJiJDA0JGwzVC83TWFkbXNubjhqR1RXOHhyL085OWE1THl3YXBRUFBWNllDZm9UdEhPdlpyRkJpTmg2"

T = TypeVar("T")


class HarnessError(RuntimeError):
    """A helper process did not start or stop as it should; the message carries its log."""


def required_binary(variable: str) -> tuple[str | None, str]:
    """The executable named by ``variable``, or ``None`` and the reason it can't be used."""
    path = os.environ.get(variable, "")
    if not path:
        return None, f"{variable} is not set"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return None, f"{variable}={path} is not an executable file"
    return path, ""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.02) -> T:
    """Calls ``probe`` until it returns something other than ``None`` (returned), for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            got = probe()
            if got is not None:
                return got
        except Exception as e:  # noqa: BLE001 - reported when the deadline passes
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout} s" + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


def stop_pid(proc: subprocess.Popen[Any], grace: float = 5.0) -> int | None:
    """SIGTERM to ``proc`` (by its PID), then SIGKILL after ``grace`` s; returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


# --------------------------------------------------------------------------------------------------------------
# The identity provider
# --------------------------------------------------------------------------------------------------------------


class Idp:
    """A JWKS on loopback (``jwks_url``) and the key that signs this provider's tokens."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})
        body = json.dumps({"keys": [jwk]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path.split("?")[0] != "/certs":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="jwks", daemon=True)
        self._thread.start()
        self.jwks_url = f"http://127.0.0.1:{self._server.server_port}/certs"

    def token(self, subject: str, *, ttl: float = 600, issuer: str = ISSUER, other_key: bool = False) -> str:
        """A token for ``subject`` (its ``preferred_username``, Heimdall's subject), valid for ``ttl`` s
        (negative: expired that long ago)."""
        now = int(time.time())
        claims = {
            "sub": f"id-{subject}",
            "preferred_username": subject,
            "iss": issuer,
            "aud": AUDIENCE,
            "iat": now - 60 + min(0, int(ttl)),
            "exp": now + int(ttl),
            "jti": uuid.uuid4().hex,
        }
        key = self._other_key if other_key else self._key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})

    def expired_token(self, subject: str) -> str:
        """A token for ``subject`` that expired ten minutes ago (well past any clock-skew leeway)."""
        return self.token(subject, ttl=-600)

    def env(self) -> dict[str, str]:
        """The settings with which a heimdall-http trusts this provider."""
        return {"KEYCLOAK_JWKS_URL": self.jwks_url, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------------------------------------------
# Cerbos
# --------------------------------------------------------------------------------------------------------------


class Cerbos:
    """The real Cerbos PDP on free loopback ports, with its policies in a sqlite3 file under ``workdir``."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        grpc_port = free_port()
        while grpc_port == self.http_port:
            grpc_port = free_port()
        store = workdir / "cerbos.sqlite"
        # busy_timeout: Cerbos 0.55's sqlite3 store otherwise answers back-to-back Admin API writes with 500
        # (SQLITE_BUSY) on a loaded machine (see heimdall-core's test_utils/cerbos.rs).
        config = f"""server:
  httpListenAddr: "127.0.0.1:{self.http_port}"
  grpcListenAddr: "127.0.0.1:{grpc_port}"
  adminAPI:
    enabled: true
    adminCredentials:
      username: {CERBOS_ADMIN_USER}
      passwordHash: {CERBOS_ADMIN_PASSWORD_HASH_B64}
storage:
  driver: sqlite3
  sqlite3:
    dsn: "file:{store}?mode=rwc&_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)"
telemetry:
  disabled: true
"""
        (workdir / "config.yaml").write_text(config)
        self.log_path = workdir / "cerbos.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self) -> dict[str, str]:
        """The settings that connect a heimdall-http (or its worker) to this PDP."""
        return {
            "CERBOS_CHECK_URL": f"{self.base_url}/api/check/resources",
            "CERBOS_ADMIN_URL": f"{self.base_url}/admin/policy",
            "CERBOS_ADMIN_USER": CERBOS_ADMIN_USER,
            "CERBOS_ADMIN_PASSWORD": CERBOS_ADMIN_PASSWORD,
        }

    def start(self, timeout: float = 20.0) -> None:
        """Starts the PDP under ``timeout(1)`` (so it can't outlive a killed test run) and waits until healthy."""
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [
                    "timeout",
                    "--kill-after=5",
                    "900",
                    self.binary,
                    "server",
                    f"--config={self.workdir / 'config.yaml'}",
                ],
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CERBOS_NO_TELEMETRY": "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

        def healthy() -> bool | None:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise HarnessError(f"Cerbos exited during start ({self._proc.returncode}); log:\n{self.log()}")
            try:
                r = httpx.get(f"{self.base_url}/_cerbos/health", timeout=1.0)
            except httpx.HTTPError:
                return None
            return True if r.status_code == 200 and "SERVING" in r.text else None

        try:
            wait_until("Cerbos healthy", healthy, timeout)
        except TimeoutError as e:
            self.stop()
            raise HarnessError(f"{e}; Cerbos log:\n{self.log()}") from None

    def stop(self) -> None:
        """SIGTERM to the ``timeout`` process (which passes it on); after 5 s, SIGKILL to the PDP and to it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            pass
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        for pid in children.read_text().split() if children.exists() else []:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
        proc.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# --------------------------------------------------------------------------------------------------------------
# The heimdall binary
# --------------------------------------------------------------------------------------------------------------


class HeimdallProcess:
    """``heimdall <args>`` with exactly ``env`` (plus PATH and JSON logs); its log (stderr) goes to a file."""

    def __init__(self, binary: str, args: list[str], env: Mapping[str, str], workdir: Path, name: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        self.args = args
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LOG_FORMAT": "json", "RUST_LOG": "info"}
        full_env.update(env)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, *args],
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self.stdout: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, name=f"heimdall-{name}-stdout", daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode(errors="replace").rstrip("\n"))
        self._lines.put(None)

    def wait_for_line(self, needle: str, timeout: float = 60.0) -> str:
        """The first stdout line containing ``needle``; a :class:`HarnessError` (with the log) if none comes."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = None
                left = 0
            if line is not None:
                self.stdout.append(line)
                if needle in line:
                    return line
                continue
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise HarnessError(
                    f"heimdall {self.args} printed no line with {needle!r} (exit {self.proc.returncode}); "
                    f"stdout {self.stdout!r}; log:\n{self.log()}"
                )

    def wait(self, timeout: float = 60.0) -> int:
        """Waits for the process to exit by itself; its exit status."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise HarnessError(f"heimdall {self.args} did not finish in {timeout} s; log:\n{self.log()}") from None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 20 s (a graceful stop lets the requests in flight finish)."""
        return stop_pid(self.proc, grace=20.0)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def install_policies(binary: str, cerbos: Cerbos, workdir: Path) -> None:
    """``heimdall install-policies``: heimdall-http does not install its admin policy pack into Cerbos by itself,
    and decides admin operations with it once CERBOS_CHECK_URL is set."""
    p = HeimdallProcess(binary, ["install-policies"], cerbos.env(), workdir, "install-policies")
    status = p.wait()
    if status != 0:
        raise HarnessError(f"heimdall install-policies failed ({status}); log:\n{p.log()}")


# --------------------------------------------------------------------------------------------------------------
# The REST API
# --------------------------------------------------------------------------------------------------------------


class Rest:
    """A client of heimdall-http's REST API acting as one credential (by default, the superadmin's token)."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token
        self.http = httpx.Client(base_url=base, timeout=30.0)

    def call(self, method: str, path: str, body: Any = None, *, expect: int | None = None) -> httpx.Response:
        r = self.http.request(
            method,
            path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if expect is not None and r.status_code != expect:
            raise AssertionError(f"{method} {path}: expected {expect}, got {r.status_code}: {r.text}")
        return r

    def group(self, name: str) -> None:
        self.call("POST", "/api/v1/groups", {"name": name}, expect=201)

    def role(self, name: str, *actions: str) -> None:
        self.call("POST", "/api/v1/roles", {"name": name}, expect=201)
        for action in actions:
            self.call("PUT", f"/api/v1/roles/{name}/permissions/{action}", {"effect": "allow"}, expect=200)

    def group_role(self, group: str, role: str) -> None:
        self.call("POST", f"/api/v1/groups/{group}/roles", {"role": role}, expect=201)

    def add_member(self, group: str, subject: str) -> None:
        self.call("POST", f"/api/v1/groups/{group}/members", {"subject": subject}, expect=201)

    def remove_member(self, group: str, subject: str) -> None:
        self.call("DELETE", f"/api/v1/groups/{group}/members/{subject}", expect=204)

    def mapping(self, method: str, pattern: str, action: str) -> int:
        r = self.call(
            "POST", "/api/v1/mappings", {"method": method, "path_pattern": pattern, "action": action}, expect=201
        )
        return int(r.json()["id"])

    def api_key(self, name: str, scopes: list[str]) -> str:
        r = self.call("POST", "/api/v1/api-keys", {"name": name, "scopes": scopes}, expect=201)
        return str(r.json()["secret"])

    def export_version(self, credential: str) -> int:
        r = self.http.get("/api/v1/mappings/export", headers={"Authorization": f"Bearer {credential}"})
        r.raise_for_status()
        return int(r.json()["version"])

    def close(self) -> None:
        self.http.close()


# --------------------------------------------------------------------------------------------------------------
# A heimdall-http with everything around it
# --------------------------------------------------------------------------------------------------------------


class Stack:
    """A heimdall-http on a fresh SQLite database under ``workdir``, trusting ``idp``, with ``root`` as its
    bootstrapped superadmin; on ``cerbos``, also its push worker (which pushes principal policies to Cerbos)."""

    def __init__(self, binary: str, idp: Idp, workdir: Path, cerbos: Cerbos | None = None) -> None:
        self.idp = idp
        self.cerbos = cerbos
        env = {
            "DB_DSN": f"sqlite://{workdir / 'h.db'}",
            "HEIMDALL_BOOTSTRAP_SUPERADMINS": SUPERADMIN,
            "HOST": "127.0.0.1",
            "PORT": "0",
            "SYNC_RETRY_INTERVAL_SECONDS": "1",
            **idp.env(),
        }
        if cerbos is not None:
            env.update(cerbos.env())
        self.server = HeimdallProcess(binary, ["serve"], env, workdir, "serve")
        self.worker: HeimdallProcess | None = None
        try:
            line = self.server.wait_for_line("listening on")
            url = next(w for w in line.split() if w.startswith("http://127.0.0.1:"))
            self.base = url.rstrip("/")
            if cerbos is not None:
                self.worker = HeimdallProcess(binary, ["worker"], env, workdir, "worker")
        except BaseException:
            self.stop()
            raise
        self.root_token = idp.token(SUPERADMIN, ttl=3600)
        self.rest = Rest(self.base, self.root_token)

    def stop(self) -> None:
        if getattr(self, "rest", None) is not None:
            self.rest.close()
        if self.worker is not None:
            self.worker.stop()
        self.server.stop()

    def logs(self) -> str:
        text = f"--- heimdall serve ---\n{self.server.log()}"
        if self.worker is not None:
            text += f"\n--- heimdall worker ---\n{self.worker.log()}"
        return text


@dataclass
class Courses:
    """The scenario most tests share (see :func:`courses`)."""

    alice: str
    """A member of ``py:readers``: may ``course:read`` and ``lesson:read``."""
    bob: str
    """In no group: may do nothing."""
    group: str
    course_mapping: int
    """``GET /courses/:id`` → ``course:read``."""
    admin_mapping: int
    """``GET /admin/:section`` → ``admin:read`` (nobody holds it)."""
    key: str
    """An API key with ``mappings:read`` and ``grants:read``: what an adapter follows heimdall-http with."""


def courses(stack: Stack, suffix: str) -> Courses:
    """Sets up, through the REST API: the role ``py:reader`` (``course:read``, ``lesson:read``) of the group
    ``py:readers``, whose member is ``alice-<suffix>``; the mappings ``GET /courses/:id`` and
    ``GET /admin/:section``; an adapter API key. (Subjects carry ``suffix`` because a Cerbos is shared by
    several heimdall-http databases during a run.)"""
    rest = stack.rest
    alice, bob = f"alice-{suffix}", f"bob-{suffix}"
    rest.role("py:reader", "course:read", "lesson:read")
    rest.group("py:readers")
    rest.group_role("py:readers", "py:reader")
    rest.add_member("py:readers", alice)
    course_mapping = rest.mapping("GET", "/courses/:id", "course:read")
    admin_mapping = rest.mapping("GET", "/admin/:section", "admin:read")
    key = rest.api_key(f"adapter-{suffix}", ["mappings:read", "grants:read"])
    return Courses(alice, bob, "py:readers", course_mapping, admin_mapping, key)
