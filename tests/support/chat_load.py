"""Load for the tests that run a real runtime process: threads created over HTTP, then messages
posted to each, one at a time per thread and all threads at once, keeping what was acknowledged;
and the journal URL that reaches DynamoDB through a fault proxy."""

from __future__ import annotations

import asyncio
import collections
from urllib.parse import urlsplit

import aiohttp

from threadweaver.domain import new_ulid

from .backends import ProductionBackends
from .dynamo_fault_proxy import DynamoFaultProxy


def via(proxy: DynamoFaultProxy, backends: ProductionBackends) -> str:
    """The backends' journal URL, through `proxy`."""
    netloc = urlsplit(backends.journal_url).netloc
    return backends.journal_url.replace(netloc, f"127.0.0.1:{proxy.port}")


class Load:
    """Threads created, then messages posted to each, one at a time per thread; what was
    acknowledged is kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.threads: dict[str, str] = {}
        self.acked: dict[str, list[str]] = collections.defaultdict(list)
        self.answers: collections.Counter[object] = collections.Counter()

    async def create(self, http: aiohttp.ClientSession, n: int) -> None:
        while len(self.threads) < n:
            admin = new_ulid()
            body = {
                "accountId": admin,
                "title": "converge",
                "administratorIds": [admin],
                "memberIds": [],
                "createAt": 1,
            }
            async with http.post(self.url + "/v1/threads/create", json=body) as r:
                if r.status == 200:
                    self.threads[(await r.json())["thread_id"]] = admin

    async def post(self, http: aiohttp.ClientSession, tid: str, n: int) -> None:
        admin = self.threads[tid]
        for i in range(n):
            body = {
                "accountId": admin,
                "createAt": 2,
                "messages": [{"text": f"m{i}", "toAccountIds": []}],
            }
            try:
                async with http.post(f"{self.url}/v1/threads/{tid}/messages/add", json=body) as r:
                    self.answers[r.status] += 1
                    if r.status == 200:
                        self.acked[tid] += (await r.json())["messageIds"]
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.answers[type(exc).__name__] += 1

    async def post_everywhere(self, http: aiohttp.ClientSession, n: int) -> None:
        await asyncio.gather(*(self.post(http, tid, n) for tid in self.threads))
