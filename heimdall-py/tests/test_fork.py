"""Objects made before ``os.fork()`` keep working in both processes (pre-fork servers such as gunicorn build the
app, and so the authorizer, in the parent)."""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

import heimdall
from harness import ISSUER, Courses, Idp, Stack

CHILD_LIMIT = 30.0


def run_in_child(body: Callable[[], None], report: Path, after_fork: Callable[[], None] | None = None) -> None:
    """Forks; the child runs ``body`` and exits 0 (or 1, its traceback in ``report``) without returning into
    pytest; the parent runs ``after_fork``, then waits (at most ``CHILD_LIMIT`` s, then kills the child) and
    fails unless the child exited 0."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        except BaseException:
            report.write_text(traceback.format_exc())
        finally:
            os._exit(code)
    try:
        if after_fork is not None:
            after_fork()
    finally:
        deadline = time.monotonic() + CHILD_LIMIT
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"the forked child did not finish within {CHILD_LIMIT} s (killed it)")
            time.sleep(0.02)
    why = report.read_text() if report.exists() else ""
    assert os.waitstatus_to_exitcode(status) == 0, f"the child failed:\n{why}"


def until_allowed(authz: heimdall.Authorizer, path: str, token: str, within: float = 5.0) -> heimdall.Grant:
    deadline = time.monotonic() + within
    while True:
        try:
            return authz.authorize("GET", path, token)
        except heimdall.HeimdallError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_a_forked_child_authorizes_and_keeps_following(
    stack: Stack, scenario: Courses, idp: Idp, tmp_path: Path
) -> None:
    """The child of a process whose authorizer already decided requests decides too, and sees a mapping
    created after the fork (its follower runs in the child); the parent is unaffected."""
    authz = heimdall.Authorizer(
        jwks_url=idp.jwks_url, heimdall_url=stack.base, credential=scenario.key, issuer=ISSUER
    )
    try:
        assert authz.wait_ready(10.0)
        # The parent is deciding (polled: that wait_ready alone suffices is test_authorizer's concern).
        until_allowed(authz, "/courses/1", idp.token(scenario.alice))
        # Minted before the fork; the child's first use of it is a token never seen by the authorizer.
        fresh = idp.token(scenario.alice)

        def child() -> None:
            g = authz.authorize("GET", "/courses/2", fresh)
            assert (g.subject, g.action, g.params) == (scenario.alice, "course:read", {"id": "2"})
            deadline = time.monotonic() + 10.0
            while True:
                try:
                    g = authz.authorize("GET", "/lessons/3", fresh)
                    break
                except heimdall.Forbidden:
                    assert time.monotonic() < deadline, "the child never saw the mapping created after the fork"
                    time.sleep(0.05)
            assert (g.action, g.params) == ("lesson:read", {"lesson": "3"})

        def create_mapping() -> None:
            stack.rest.mapping("GET", "/lessons/:lesson", "lesson:read")

        run_in_child(child, tmp_path / "child.txt", after_fork=create_mapping)

        # The parent follows too (the change may still be on its way: one feed round trip).
        g = until_allowed(authz, "/lessons/4", idp.token(scenario.alice))
        assert (g.action, g.params) == ("lesson:read", {"lesson": "4"})
        assert authz.authorize("GET", "/courses/5", fresh).params == {"id": "5"}
    finally:
        authz.close()


def test_a_forked_child_uses_the_embedded_facade(tmp_path: Path) -> None:
    """An embedded ``Heimdall`` opened in the parent works in a forked child (reads and writes the same
    database), and in the parent after the child exited."""
    h = heimdall.Heimdall(f"sqlite://{tmp_path / 'embedded.db'}")
    system = h.system_caller("fork-test")
    h.create_group(system, "py:before")

    def names() -> list[str]:
        return [g["name"] for g in h.list_groups()["items"]]

    def child() -> None:
        assert "py:before" in names()
        h.create_group(system, "py:child")
        assert {"py:before", "py:child"} <= set(names())

    run_in_child(child, tmp_path / "child.txt")

    assert {"py:before", "py:child"} <= set(names()), "the parent does not see the child's group"
    h.create_group(h.system_caller("fork-test"), "py:after")
    assert h.get_group("py:after")["name"] == "py:after"
