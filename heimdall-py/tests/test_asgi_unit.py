"""The middleware's ASGI plumbing, driven directly (no server): what passes through, how refusals look."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest

import heimdall
from harness import free_port
from heimdall.asgi import HeimdallMiddleware, bearer_token


@pytest.fixture
def closed_authorizer() -> heimdall.Authorizer:
    """An authorizer that has no snapshot (nothing to follow answers): every request is refused."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    return heimdall.Authorizer(jwks_url=nowhere + "/certs", heimdall_url=nowhere, credential="hk_none")


class App:
    """Records every scope that reaches it."""

    def __init__(self) -> None:
        self.seen: list[MutableMapping[str, Any]] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        self.seen.append(scope)


def drive(app: Any, scope: MutableMapping[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/courses/1", "raw_path": b"/courses/1", "headers": headers}


def test_lifespan_passes_through(closed_authorizer: heimdall.Authorizer) -> None:
    app = App()
    drive(HeimdallMiddleware(app, closed_authorizer), {"type": "lifespan"})
    assert [s["type"] for s in app.seen] == ["lifespan"]


def test_a_missing_token_is_401_with_the_json_body(closed_authorizer: heimdall.Authorizer) -> None:
    app = App()
    sent = drive(HeimdallMiddleware(app, closed_authorizer), http_scope([]))
    start, body = sent
    assert start["status"] == 401
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"www-authenticate"] == b"Bearer"
    assert int(headers[b"content-length"]) == len(body["body"])
    assert json.loads(body["body"])["error"]["code"] == "unauthenticated"
    assert app.seen == []


def test_a_refused_websocket_is_closed_with_1008(closed_authorizer: heimdall.Authorizer) -> None:
    app = App()
    scope = {"type": "websocket", "path": "/courses/1", "raw_path": b"/courses/1", "headers": []}
    sent = drive(HeimdallMiddleware(app, closed_authorizer), scope)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "unauthenticated"}]
    assert app.seen == []


def test_the_token_can_come_from_elsewhere(closed_authorizer: heimdall.Authorizer) -> None:
    # A custom extractor reads a cookie; with a token present the request gets past the 401 and is refused by
    # the next rule (a token that does not verify, since no keys can be fetched): still 401, never the app.
    seen_tokens: list[str | None] = []

    def from_cookie(scope: MutableMapping[str, Any]) -> str | None:
        token = dict(scope["headers"]).get(b"cookie", b"").decode().removeprefix("session=") or None
        seen_tokens.append(token)
        return token

    app = App()
    sent = drive(HeimdallMiddleware(app, closed_authorizer, token=from_cookie), http_scope([(b"cookie", b"session=abc")]))
    assert seen_tokens == ["abc"]
    assert sent[0]["status"] == 401 and app.seen == []


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ([(b"authorization", b"Bearer abc")], "abc"),
        ([(b"authorization", b"bearer  abc ")], "abc"),
        ([(b"authorization", b"Basic abc")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([], None),
    ],
)
def test_bearer_token(headers: list[tuple[bytes, bytes]], token: str | None) -> None:
    assert bearer_token({"headers": headers}) == token


def test_ready_answers_are_awaitables_of_the_running_loop_too(closed_authorizer: heimdall.Authorizer) -> None:
    """An answer known at once (here: no token) is awaited without suspending, and raises through ``await``;
    like every awaitable of the module, it is only made inside a running event loop."""

    async def ask() -> None:
        pending = closed_authorizer.authorize_async("GET", "/courses/1", None)
        with pytest.raises(heimdall.Unauthenticated):
            await pending

    asyncio.run(ask())
    with pytest.raises(RuntimeError, match="no running event loop"):
        closed_authorizer.authorize_async("GET", "/courses/1", None)
