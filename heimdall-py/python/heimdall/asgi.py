"""An ASGI middleware that authorizes every request before the application sees it.

It does what heimdall-adapter's tower Layer does, with the same core code (:meth:`Authorizer.authorize_async`):
the bearer token is verified, the **raw** path is checked to be canonical (a path a router could read
differently is refused with 400, never rewritten), ``(method, path)`` is resolved and decided. An allowed
request reaches the application unchanged, with the :class:`~heimdall.Grant` in ``scope["heimdall"]`` and in
``scope["state"]["heimdall"]`` (``request.state.heimdall`` in Starlette and FastAPI); a refused one is answered
with the status and the project's JSON error body ``{"error": {"code": ..., "message": ...}}`` and never
reaches it. Lifespan events pass through; a WebSocket handshake is authorized as a ``GET`` and closed with
code 1008 when refused.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, MutableMapping, Optional

from ._heimdall import Authorizer, HeimdallError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["HeimdallMiddleware", "bearer_token"]


def bearer_token(scope: Scope) -> Optional[str]:
    """The token of the request's ``Authorization: Bearer`` header, or ``None``."""
    for name, value in scope.get("headers") or ():
        if bytes(name).lower() == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _raw_path(scope: Scope) -> str:
    """The path as the client sent it, percent-encoding intact: what the resolver checks for canonical form.

    ``raw_path`` is optional in ASGI; a server that gives none is judged on the decoded ``path``, which is
    what its router reads.
    """
    raw = scope.get("raw_path")
    if raw is not None:
        return bytes(raw).decode("latin-1")
    return str(scope.get("path", ""))


class HeimdallMiddleware:
    """``app = HeimdallMiddleware(app, authorizer)``, or ``app.add_middleware(HeimdallMiddleware, authorizer=...)``.

    ``token`` reads the credential from the scope (default: :func:`bearer_token`).
    """

    def __init__(
        self,
        app: ASGIApp,
        authorizer: Authorizer,
        token: Callable[[Scope], Optional[str]] = bearer_token,
    ) -> None:
        self.app = app
        self.authorizer = authorizer
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        method = scope["method"] if kind == "http" else "GET"
        try:
            grant = await self.authorizer.authorize_async(method, _raw_path(scope), self.token(scope))
        except HeimdallError as refused:
            if kind == "http":
                await _refuse(send, refused)
            else:
                await send({"type": "websocket.close", "code": 1008, "reason": refused.code})
            return
        scope["heimdall"] = grant
        state = scope.setdefault("state", {})
        state["heimdall"] = grant
        await self.app(scope, receive, send)


async def _refuse(send: Send, refused: HeimdallError) -> None:
    body = json.dumps({"error": {"code": refused.code, "message": str(refused)}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if refused.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
