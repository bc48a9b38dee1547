"""An ASGI middleware that authorizes every request before the application sees it.

It does what heimdall-adapter's tower Layer does, with the same core code (:meth:`Authorizer.authorize_asgi`,
which reads the scope natively and applies the rules below):
the bearer token is verified, the **raw** path is checked to be canonical (a path a router could read
differently is refused with 400, never rewritten), ``(method, path)`` is resolved and decided. An allowed
request reaches the application unchanged, with the :class:`~heimdall.Grant` in ``scope["heimdall"]`` and in
``scope["state"]["heimdall"]`` (``request.state.heimdall`` in Starlette and FastAPI); a refused one is answered
with the status and the project's JSON error body ``{"error": {"code": ..., "message": ...}}`` and never
reaches it. Lifespan events pass through; a WebSocket handshake is authorized as a ``GET`` and closed with
code 1008 when refused. The method is passed on exactly as received: core refuses one that is not an
upper-case token (``get``; Django upper-cases the method before dispatching, Starlette doesn't).

**What is authorised is what is routed.** Starlette (so FastAPI) and Django route the percent-*decoded*
``scope["path"]``; the resolver judges the raw path, and refuses every raw path that is not the one canonical
spelling of its decoded form, so both read a path the middleware lets through the same way.

- With a ``root_path`` (uvicorn's ``--root-path``, or a Starlette ``Mount``), servers put it in front of
  ``path`` and ``raw_path``, and the routers match what follows it: the middleware authorises the raw path
  without the ``root_path`` prefix, so mappings are written as the application's routes are. When the
  prefix is not followed by ``/`` (``/api`` itself, ``/apix/...``, where Starlette and Django disagree), is
  spelled differently in the raw path, or is not a plain path, the request is refused (400). A path that
  does not start with the ``root_path`` is routed whole, and authorised whole. (Django's
  ``FORCE_SCRIPT_NAME`` overrides the ``root_path`` behind the middleware's back: don't combine them.)
- Without ``raw_path`` (optional in ASGI), the decoded ``path`` is authorised in its canonical spelling
  (``/a b`` as ``/a%20b``); a decoded ``%``, ``?`` or ``#`` becomes an escape that core refuses.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, MutableMapping, Optional

from ._heimdall import Authorizer, Grant, HeimdallError, bearer_token

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["HeimdallMiddleware", "bearer_token"]


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
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        try:
            # One native call reads the method, the routed path and (by default) the token, and decides: the
            # grant at once when the decision is cached, else an awaitable of it.
            decided = self.authorizer.authorize_asgi(scope, None if self.token is bearer_token else self.token)
            grant = decided if type(decided) is Grant else await decided
        except HeimdallError as refused:
            await _refuse(send, kind, refused.status, refused.code, str(refused))
            return
        scope["heimdall"] = grant
        if "state" in scope:
            scope["state"]["heimdall"] = grant
        else:
            scope["state"] = {"heimdall": grant}
        await self.app(scope, receive, send)


async def _refuse(send: Send, kind: str, status: int, code: str, message: str) -> None:
    if kind != "http":
        await send({"type": "websocket.close", "code": 1008, "reason": code})
        return
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
