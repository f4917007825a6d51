"""A small asyncio HTTP client for set-up work wrk cannot do (an exact number of creates whose
ids we need). Runs in the bench process, which sits on the load core. Bounded in count and time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp

from .base import ACCOUNT, HOST, BenchError


def create_body(title: str, at: int) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT,
        "title": title,
        "remarks": None,
        "parentThreadId": None,
        "administratorIds": [ACCOUNT],
        "memberIds": [],
        "createAt": at,
    }


def post_body(text: str, at: int) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT,
        "messages": [{"text": text, "replyMessageId": None, "toAccountIds": []}],
        "createAt": at,
    }


async def _create_threads(
    url: str, count: int, concurrency: int, deadline: float, tag: str
) -> list[str]:
    assert url.startswith(f"http://{HOST}:"), url
    ids: list[str] = []
    counter = itertools.count()
    conn = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

        async def worker() -> None:
            while True:
                i = next(counter)
                if i >= count:
                    return
                if time.monotonic() > deadline:
                    raise BenchError(f"creating {count} threads took too long ({len(ids)} made)")
                body = create_body(f"seed {tag} {i}", 1_700_000_000_000 + i)
                for attempt in range(5):
                    async with session.post(f"{url}/v1/threads/create", json=body) as r:
                        data = await r.json()
                        if r.status == 200:
                            ids.append(data["thread_id"])
                            break
                        if r.status != 503 or attempt == 4:
                            raise BenchError(f"create answered {r.status}: {data}")
                    await asyncio.sleep(0.2)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids


def create_threads(
    url: str, count: int, *, concurrency: int = 32, timeout: float = 600.0, tag: str = "seed"
) -> list[str]:
    """Create `count` threads (administered by ACCOUNT); returns their ids."""
    return asyncio.run(_create_threads(url, count, concurrency, time.monotonic() + timeout, tag))
