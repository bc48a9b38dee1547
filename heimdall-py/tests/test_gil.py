"""Blocking calls release the GIL while they wait: Python threads run meanwhile."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from heimdall import Resolver

EXPORT = {"version": 4, "mappings": [
    {"id": 1, "method": "GET", "path_pattern": "/courses/:id", "action": "course:read", "owner_group": None, "priority": 0},
]}


@pytest.fixture
def slow_export() -> Iterator[str]:
    """heimdall-http's export, served by a Python thread that takes 300 ms to answer."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            time.sleep(0.3)
            body = json.dumps(EXPORT).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("etag", '"m4"')
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_blocking_call_lets_python_threads_run(slow_export: str) -> None:
    # The export is answered by a Python thread: were the GIL held while Rust waits, it could never answer.
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    started = time.monotonic()
    resolver = Resolver.from_export(slow_export, "hk_test", timeout=5.0)
    waited = time.monotonic() - started
    stop.set()
    counter.join()
    assert resolver.version == 4
    m = resolver.resolve("GET", "/courses/3")
    assert m is not None and m.params == {"id": "3"}
    assert waited >= 0.3
    # The counter thread ran while the call waited (it ticks about every millisecond).
    assert ticks > 50, ticks
