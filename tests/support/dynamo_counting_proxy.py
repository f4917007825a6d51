"""An HTTP proxy for the DynamoDB API that counts the requests passing through, by operation
(``PutItem``, ``Query``, ...; a Query on an index counts as ``Query:<index>``) and, optionally,
by the access key id each request was signed with. ``GET /__counts`` answers the counts as JSON
and ``POST /__counts/reset`` zeroes them, so that another process can read them (the benchmarks
run it as ``python -m tests.support.dynamo_counting_proxy UPSTREAM [PORT]``). Binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["CountingProxy", "running_proxy"]

_CREDENTIAL = re.compile(r"Credential=([^/]+)/")


class CountingProxy:
    """Forwards everything to `upstream`, counting. `inspect(request_headers, body)`, if given,
    is called for every request before it is forwarded (the credential tests check signatures
    with it)."""

    def __init__(
        self, upstream: str, *, inspect: Callable[[dict[str, str], bytes], None] | None = None
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.inspect = inspect
        self.counts: Counter[str] = Counter()
        self.keys: Counter[str] = Counter()  # access key id -> requests signed with it
        self.since = time.monotonic()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "total": sum(self.counts.values()),
            "keys": dict(self.keys),
            "seconds": round(time.monotonic() - self.since, 3),
        }

    def reset(self) -> None:
        self.counts.clear()
        self.keys.clear()
        self.since = time.monotonic()

    async def start(self, port: int = 0) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256), auto_decompress=False
        )
        app = web.Application(client_max_size=64 << 20)
        app.router.add_get("/__counts", self._counts)
        app.router.add_post("/__counts/reset", self._reset)
        app.router.add_post("/", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{bound}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _counts(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({})

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        op = headers.get("X-Amz-Target", "").rsplit(".", 1)[-1] or "?"
        if op == "Query" and b'"IndexName"' in body:
            try:
                op = f"Query:{json.loads(body).get('IndexName')}"
            except ValueError:
                pass
        self.counts[op] += 1
        found = _CREDENTIAL.search(headers.get("Authorization", ""))
        if found:
            self.keys[found.group(1)] += 1
        if self.inspect is not None:
            self.inspect(headers, body)
        forward = {k: v for k, v in headers.items() if k.lower() not in ("content-length",)}
        assert self._session is not None
        async with self._session.post(self.upstream + "/", data=body, headers=forward) as resp:
            data = await resp.read()
            keep = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() in ("content-type", "x-amzn-requestid", "x-amz-crc32")
            }
            return web.Response(status=resp.status, body=data, headers=keep)


@contextlib.asynccontextmanager
async def running_proxy(
    upstream: str, *, inspect: Callable[[dict[str, str], bytes], None] | None = None
) -> AsyncIterator[CountingProxy]:
    """A counting proxy in front of `upstream` (http://...) on an ephemeral loopback port."""
    proxy = CountingProxy(upstream, inspect=inspect)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def _serve(upstream: str, port: int) -> None:
    proxy = CountingProxy(upstream)
    await proxy.start(port)
    print(proxy.url, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":  # python -m tests.support.dynamo_counting_proxy UPSTREAM [PORT]
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
