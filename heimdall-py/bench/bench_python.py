#!/usr/bin/env python3
"""heimdall-py's benchmark (a script, not a test).

(a) ``Resolver.resolve`` against the naive pure-Python design: 10,000 generated mappings of a realistic REST
    route set, each compiled into one ``re`` pattern and scanned in order until the first match, on a fixed mix
    of 1,000 requests (80 % hits spread over the table, 20 % misses). Both must give the same mapping for every
    request. Prints the median time per call of each and the speed-up; exits 1 when it is below 50x.
(b) The ASGI middleware's overhead: a minimal FastAPI app driven in-process as ASGI (no server, no sockets),
    with and without ``HeimdallMiddleware``, warm (one token, cached decision), deciding locally from a real
    heimdall-http (needs HEIMDALL_BIN; skipped with a message when it is unset, unless CI=true). Prints the
    overhead, its parts (each measured alone) and whether it meets the target (<= 5 us; reported, never fails).

Usage: python bench/bench_python.py [--rounds N] [--skip-middleware]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import heimdall

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

MAPPINGS = 10_000
REQUESTS = 1_000
HIT_SHARE = 0.8
TARGET = 50.0
OVERHEAD_TARGET_US = 5.0

SERVICES = [
    "billing", "catalog", "courses", "crm", "docs", "files", "forum", "grades", "hr", "inventory",
    "invoices", "library", "mail", "media", "orders", "payments", "projects", "reports", "search", "shop",
    "support", "surveys", "tasks", "tickets", "wiki",
]  # fmt: skip
RESOURCES = [
    "accounts", "assets", "comments", "entries", "events", "items", "members", "notes", "records", "teams",
]  # fmt: skip
SUBRESOURCES = ["attachments", "history", "labels", "links", "permissions", "tags", "versions"]


# --------------------------------------------------------------------------------------------------------------
# (a) resolving
# --------------------------------------------------------------------------------------------------------------


def route_set() -> list[dict[str, Any]]:
    """10,000 mappings: per service and resource the collection, the item, sub-collections and sub-items
    (``:param`` segments up to five deep), an export under ``*``, and per service a ``**`` file tree."""
    routes: list[tuple[str, str]] = []
    for svc in SERVICES:
        routes.append(("GET", f"/api/{svc}/files/**"))
        for res in RESOURCES:
            base = f"/api/{svc}/{res}"
            routes += [("GET", base), ("POST", base)]
            item = f"{base}/:{res[:-1]}Id"
            routes += [("GET", item), ("PUT", item), ("PATCH", item), ("DELETE", item)]
            routes.append(("GET", f"{base}/*/export"))
            for sub in SUBRESOURCES:
                coll = f"{item}/{sub}"
                routes += [("GET", coll), ("POST", coll)]
                one = f"{coll}/:{sub[:-1]}Id"
                routes += [("GET", one), ("DELETE", one)]
                routes.append(("PUT", f"{one}/state/:state"))
    routes = routes[:MAPPINGS]
    if len(routes) < MAPPINGS:
        raise SystemExit(f"the generator makes only {len(routes)} mappings")
    out = []
    for i, (method, pattern) in enumerate(routes, start=1):
        words = [w for w in pattern.split("/") if w and not w.startswith(":") and w not in ("*", "**", "api")]
        action = ":".join(words[:3]) + f":{method.lower()}"
        out.append({"id": i, "method": method, "path_pattern": pattern, "action": action})
    return out


def specificity(pattern: str) -> list[int]:
    """Segment by segment from the left: a literal (0) before ``:name``/``*`` (1) before ``**`` (2)."""
    return [2 if s == "**" else 1 if s == "*" or s.startswith(":") else 0 for s in pattern.strip("/").split("/")]


def to_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for seg in pattern.strip("/").split("/"):
        if seg == "**":  # captured under "**", as heimdall-core does
            parts.append("(?P<__rest>[^/]+(?:/[^/]+)*)")
        elif seg == "*":
            parts.append("[^/]+")
        elif seg.startswith(":"):
            parts.append(f"(?P<{seg[1:]}>[^/]+)")
        else:
            parts.append(re.escape(seg))
    return re.compile("/" + "/".join(parts))


@dataclass
class NaiveResolver:
    """The spec's naive design: one regular expression per mapping, tried in order; the first match wins.
    Ordered by specificity (and id), so that first-match gives the same answers as Heimdall's precedence."""

    table: list[tuple[str, re.Pattern[str], int, str]]

    @staticmethod
    def build(mappings: list[dict[str, Any]]) -> NaiveResolver:
        ordered = sorted(mappings, key=lambda m: (specificity(m["path_pattern"]), m["id"]))
        return NaiveResolver([(m["method"], to_regex(m["path_pattern"]), m["id"], m["action"]) for m in ordered])

    def resolve(self, method: str, path: str) -> tuple[int, str, dict[str, str]] | None:
        path = path.split("?", 1)[0]
        for m, rx, ident, action in self.table:
            if m == method or m == "ANY":
                found = rx.fullmatch(path)
                if found:
                    params = found.groupdict()
                    if "__rest" in params:
                        params["**"] = params.pop("__rest")
                    return ident, action, params
        return None


def request_mix(mappings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """1,000 requests: 80 % instantiate a mapping chosen evenly over the table, 20 % match none."""
    rng = random.Random(20240611)
    hits = int(REQUESTS * HIT_SHARE)
    requests = []
    for k in range(hits):
        m = mappings[(k * len(mappings)) // hits + rng.randrange(len(mappings) // hits)]
        segs = []
        for seg in m["path_pattern"].strip("/").split("/"):
            if seg == "**":
                segs += ["2024", "q3", f"report-{rng.randrange(1000)}.pdf"]
            elif seg == "*" or seg.startswith(":"):
                segs.append(str(rng.randrange(1, 10**6)))
            else:
                segs.append(seg)
        requests.append((m["method"], "/" + "/".join(segs)))
    def miss(k: int) -> tuple[str, str]:
        svc, res = rng.choice(SERVICES), rng.choice(RESOURCES)
        return [
            ("GET", f"/api/{svc}/unknown/{rng.randrange(1000)}"),
            ("GET", f"/v2/{svc}/{res}"),
            ("DELETE", f"/api/{svc}/{res}"),
            ("GET", f"/api/{svc}/{res}/1/2/3/4/5/6"),
            ("POST", f"/api/{svc}/files/a/b"),
        ][k % 5]

    requests += [miss(k) for k in range(REQUESTS - hits)]
    rng.shuffle(requests)
    return requests


def per_call_ns(fn: Any, requests: list[tuple[str, str]], rounds: int) -> float:
    """The median, over ``rounds`` passes over every request, of the mean time per call (ns)."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for method, path in requests:
            fn(method, path)
        samples.append((time.perf_counter_ns() - started) / len(requests))
    return statistics.median(samples)


def bench_resolve(rounds: int) -> bool:
    mappings = route_set()
    requests = request_mix(mappings)
    started = time.perf_counter()
    resolver = heimdall.Resolver(mappings, version=1)
    built = time.perf_counter() - started
    naive = NaiveResolver.build(mappings)
    assert len(resolver) == MAPPINGS, len(resolver)

    # Both answer alike (which also checks the mix: 80 % hits).
    hits = 0
    for method, path in requests:
        ours, theirs = resolver.resolve(method, path), naive.resolve(method, path)
        got = (ours.mapping_id, ours.action, ours.params) if ours else None
        assert got == theirs, f"{method} {path}: Resolver {got}, naive {theirs}"
        hits += ours is not None
    print(f"(a) {MAPPINGS} mappings (Resolver built in {built * 1000:.0f} ms), {len(requests)} requests, {hits} hits")

    fast = per_call_ns(resolver.resolve, requests, rounds=max(rounds * 20, 50))
    slow = per_call_ns(naive.resolve, requests, rounds=max(rounds, 3))
    speedup = slow / fast
    met = speedup >= TARGET
    print(f"    Resolver.resolve         {fast:12,.0f} ns/call (median)")
    print(f"    naive re scan (Python)   {slow:12,.0f} ns/call (median)")
    print(f"    speed-up {speedup:,.0f}x; target >= {TARGET:.0f}x: {'met' if met else 'MISSED'}")
    return met


# --------------------------------------------------------------------------------------------------------------
# (b) the middleware
# --------------------------------------------------------------------------------------------------------------


class Driver:
    """Calls an ASGI app with one prepared GET request, as a server would, and checks the status."""

    def __init__(self, app: Any, path: str, token: str) -> None:
        self.app = app
        self.path = path
        self.headers = [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())]
        self.status = 0

    def scope(self) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": self.headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
            "state": {},
        }

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]

    async def median_us(self, n: int) -> float:
        times = []
        for _ in range(n):
            scope = self.scope()
            started = time.perf_counter_ns()
            await self.app(scope, self.receive, self.send)
            times.append(time.perf_counter_ns() - started)
            if self.status != 200:
                raise SystemExit(f"the app answered {self.status}")
        return statistics.median(times) / 1000


class PassThrough:
    """The cheapest ASGI middleware: what one more hop costs; with an authorizer, it makes the middleware's one
    native call (``authorize_asgi``) and passes the request on, so that call is measured in place (the caches as
    they are between two requests, not warm as in a loop)."""

    def __init__(self, app: Any, authorizer: heimdall.Authorizer | None = None) -> None:
        self.app = app
        self.authorizer = authorizer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.authorizer is not None:
            self.authorizer.authorize_asgi(scope)
        await self.app(scope, receive, send)


def per_call_us(fn: Callable[[], None], n: int) -> float:
    """The median over 7 batches of ``n // 7`` calls of the mean time per call (us)."""
    batch, samples = max(n // 7, 1), []
    for _ in range(8):  # the first batch warms
        started = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter_ns() - started) / batch / 1000)
    return statistics.median(samples[1:])


async def per_call_async_us(fn: Callable[[], Awaitable[None]], n: int) -> float:
    """:func:`per_call_us` of an awaited coroutine function."""
    batch, samples = max(n // 7, 1), []
    for _ in range(8):
        started = time.perf_counter_ns()
        for _ in range(batch):
            await fn()
        samples.append((time.perf_counter_ns() - started) / batch / 1000)
    return statistics.median(samples[1:])


def bench_middleware(requests: int) -> None:
    from fastapi import FastAPI
    from harness import ISSUER, Idp, Stack, courses, required_binary

    from heimdall import asgi as heimdall_asgi
    from heimdall.asgi import HeimdallMiddleware

    binary, why = required_binary("HEIMDALL_BIN")
    if binary is None:
        if os.environ.get("CI") == "true":
            raise SystemExit(f"(b) needs a heimdall-http: {why} (CI=true)")
        print(f"(b) NOT RUN: {why}: set it to the heimdall binary to measure the middleware")
        return

    app = FastAPI()

    @app.get("/courses/{course_id}")
    async def course(course_id: str) -> dict[str, str]:
        return {"course": course_id}

    idp = Idp()
    with tempfile.TemporaryDirectory(prefix="heimdall-py-bench-") as tmp:
        stack = Stack(binary, idp, Path(tmp))
        authz = None
        try:
            s = courses(stack, "bench")
            authz = heimdall.Authorizer(
                jwks_url=idp.jwks_url, heimdall_url=stack.base, credential=s.key, issuer=ISSUER
            )
            if not authz.wait_ready(10.0):
                raise SystemExit("(b) the authorizer loaded no snapshot within 10 s")
            token = idp.token(s.alice, ttl=3600)
            deadline = time.monotonic() + 10.0
            while True:  # warm: the token verified and the decision cached
                try:
                    authz.authorize("GET", "/courses/1", token)
                    break
                except heimdall.HeimdallError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            bare = Driver(app, "/courses/1", token)
            hop = Driver(PassThrough(app), "/courses/1", token)
            native_only = Driver(PassThrough(app, authz), "/courses/1", token)
            guarded = Driver(HeimdallMiddleware(app, authz), "/courses/1", token)

            async def measure() -> list[float]:
                # Alternating rounds, so that drift (frequency, garbage) falls on all alike; the median of each
                # one's round medians.
                drivers = (bare, hop, native_only, guarded)
                for warm in drivers:
                    await warm.median_us(500)
                rounds = 7
                sides: list[list[float]] = [[] for _ in drivers]
                for _ in range(rounds):
                    for side, driver in zip(sides, drivers):
                        side.append(await driver.median_us(requests // rounds))
                return [statistics.median(side) for side in sides]

            assert authz is not None
            scope = guarded.scope()

            def native_call() -> None:
                assert authz is not None
                authz.authorize_asgi(scope)

            def decision() -> None:
                assert authz is not None
                authz.authorize("GET", "/courses/1", token)

            def token_only() -> None:
                heimdall_asgi.bearer_token(scope)

            def bookkeeping() -> None:  # what the middleware does with the grant (its code, inlined)
                grant = scope_grant
                scope["heimdall"] = grant
                if "state" in scope:
                    scope["state"]["heimdall"] = grant
                else:
                    scope["state"] = {"heimdall": grant}

            scope_grant = authz.authorize("GET", "/courses/1", token)

            async def awaited() -> None:
                assert authz is not None
                await authz.authorize_async("GET", "/courses/1", token)

            without, hopped, native_in_place, with_ = asyncio.run(measure())
            native = per_call_us(native_call, requests)
            decided = per_call_us(decision, requests)
            token_us = per_call_us(token_only, requests)
            kept = per_call_us(bookkeeping, requests)
            alone = asyncio.run(per_call_async_us(awaited, requests))
            overhead = with_ - without
            hop_us = hopped - without
            call_us = native_in_place - hopped
            own = overhead - hop_us - call_us
            met = overhead <= OVERHEAD_TARGET_US
            print(f"(b) one warm GET through a minimal FastAPI app, in-process ASGI, {requests} requests each:")
            print(f"    without HeimdallMiddleware {without:8.1f} us (median)")
            print(f"    with HeimdallMiddleware    {with_:8.1f} us (median)")
            print(f"    overhead                   {overhead:8.1f} us per request, of which")
            print(f"      the extra ASGI hop (a pass-through async middleware)               {hop_us:6.2f} us")
            print(f"      Authorizer.authorize_asgi(scope), the one native call, in place     {call_us:6.2f} us")
            print(f"        alone in a loop (warm caches)                                   {native:6.2f} us, of which")
            print(f"          the decision: authorize(method, path, token)                  {decided:6.2f} us")
            print(f"          reading the scope (type, method, paths, bearer token)         {native - decided:6.2f} us")
            print(f"          (bearer_token(scope) alone                                    {token_us:6.2f} us)")
            print(f"      the middleware's own code (type check, grant test, bookkeeping)   {own:6.2f} us")
            print(f"        (the bookkeeping, scope['heimdall'] and its state, alone        {kept:6.2f} us)")
            print(f"    (await Authorizer.authorize_async(...) alone, for comparison: {alone:.2f} us)")
            print(
                f"    overhead target <= {OVERHEAD_TARGET_US:.0f} us: {'met' if met else 'MISSED'}"
                " (reported only: this machine may be noisy)"
            )
        finally:
            if authz is not None:
                authz.close()
            stack.stop()
            idp.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="passes of the naive scan over the mix (default 5)")
    parser.add_argument("--requests", type=int, default=5000, help="requests per middleware measurement")
    parser.add_argument("--skip-middleware", action="store_true")
    args = parser.parse_args()
    met = bench_resolve(args.rounds)
    if not args.skip_middleware:
        bench_middleware(args.requests)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
