"""Fixtures of heimdall-py's tests: the identity provider, the real Cerbos, and heimdall-http processes.

``HEIMDALL_BIN`` names the ``heimdall`` binary and ``HEIMDALL_CERBOS_BIN`` the Cerbos 0.55 binary. A test that
needs one that is missing fails with ``CI=true`` and is skipped, with the reason shown, otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import Cerbos, Courses, Idp, Stack, courses, install_policies, required_binary


def pytest_configure(config: pytest.Config) -> None:
    # A skip is never silent: its reason is always in the summary, whatever -r the run asked for.
    chars = getattr(config.option, "reportchars", "") or ""
    if "s" not in chars and "a" not in chars and "A" not in chars:
        config.option.reportchars = chars + "s"


def _binary(variable: str, what: str) -> str:
    path, why = required_binary(variable)
    if path is not None:
        return path
    reason = f"{why}: {what}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: these tests must run in CI)", pytrace=False)
    pytest.skip(f"NOT RUN: {reason}")


@pytest.fixture(scope="session")
def heimdall_bin() -> str:
    """The ``heimdall`` binary (the REST server)."""
    return _binary("HEIMDALL_BIN", "set it to the built heimdall-http binary (target/debug/heimdall)")


@pytest.fixture(scope="session")
def cerbos_bin() -> str:
    """The real Cerbos 0.55 binary."""
    return _binary(
        "HEIMDALL_CERBOS_BIN",
        "set it to the binary of the npm package @cerbos/cerbos-linux-x64@0.55.0",
    )


@pytest.fixture(scope="session")
def idp() -> Iterator[Idp]:
    """The identity provider: a JWKS on loopback and a token minter."""
    provider = Idp()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def cerbos(cerbos_bin: str, heimdall_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cerbos]:
    """One real Cerbos for the session, with Heimdall's admin policy pack installed."""
    workdir = tmp_path_factory.mktemp("cerbos")
    pdp = Cerbos(cerbos_bin, workdir)
    pdp.start()
    try:
        install_policies(heimdall_bin, pdp, workdir)
        yield pdp
    finally:
        pdp.stop()


StackFactory = Callable[..., Stack]


@pytest.fixture
def start_stack(heimdall_bin: str, idp: Idp, tmp_path: Path) -> Iterator[StackFactory]:
    """Starts heimdall-http stacks (``start_stack(cerbos=None)``), each on its own fresh database; all are
    stopped when the test ends."""
    started: list[Stack] = []

    def start(cerbos: Cerbos | None = None) -> Stack:
        stack = Stack(heimdall_bin, idp, tmp_path / f"stack-{len(started)}", cerbos)
        started.append(stack)
        return stack

    yield start
    for stack in reversed(started):
        stack.stop()


@pytest.fixture
def stack(start_stack: StackFactory) -> Stack:
    """A heimdall-http without Cerbos (admin operations by the built-in PDP)."""
    return start_stack()


@pytest.fixture
def suffix() -> str:
    """A suffix unique to this test, for subjects that a shared Cerbos sees."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def scenario(stack: Stack, suffix: str) -> Courses:
    """The shared scenario (see ``harness.courses``) on a heimdall-http without Cerbos."""
    return courses(stack, suffix)
