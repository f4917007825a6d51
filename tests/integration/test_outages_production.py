"""Outages on the production backends (dynalite + MariaDB), with real processes:

- MariaDB unreachable for 30 s under load (a fault proxy resets and refuses its connections):
  commands keep being accepted (they need only the journal), queries answer 503, the read-model
  updater backs off and catches up, and the read model converges to the journal;
- the runtime restarted (SIGTERM, then start) keeps every acknowledged command and resumes
  projecting from its stored offsets.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from urllib.parse import urlsplit

import aiohttp

from tests.support.backends import production_backends
from tests.support.convergence import journaled_messages, read_model_converges
from tests.support.faultproxy import FaultProxy
from tests.support.runtime_process import RuntimeProcess
from tests.support.services import ensure_services
from threadweaver.adapters.journal.dynamodb import DynamoDBJournal
from threadweaver.domain import new_ulid

OUTAGE_SECONDS = float(os.environ.get("THREADWEAVER_TEST_OUTAGE_SECONDS", "30"))


class Writers:
    def __init__(self, url: str) -> None:
        self.url = url
        self.threads: dict[str, str] = {}
        self.messages: dict[str, list[str]] = collections.defaultdict(list)
        self.acked_at: list[float] = []
        self.failures = collections.Counter()
        self.stop = asyncio.Event()

    async def run(self, session: aiohttp.ClientSession) -> None:
        admin, tid = new_ulid(), None
        while not self.stop.is_set():
            try:
                if tid is None:
                    async with session.post(
                        self.url + "/v1/threads/create",
                        json={
                            "accountId": admin,
                            "title": "outage",
                            "administratorIds": [admin],
                            "memberIds": [],
                            "createAt": 1,
                        },
                    ) as r:
                        if r.status == 200:
                            tid = (await r.json())["thread_id"]
                            self.threads[tid] = admin
                        else:
                            self.failures[r.status] += 1
                    continue
                async with session.post(
                    self.url + f"/v1/threads/{tid}/messages/add",
                    json={
                        "accountId": admin,
                        "createAt": 2,
                        "messages": [{"text": "m", "toAccountIds": []}],
                    },
                ) as r:
                    if r.status == 200:
                        self.messages[tid] += (await r.json())["messageIds"]
                        self.acked_at.append(time.monotonic())
                    else:
                        self.failures[r.status] += 1
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.failures[type(exc).__name__] += 1
            await asyncio.sleep(0.02)


async def _journal_messages(backends, threads) -> dict[str, list[str]]:
    journal = DynamoDBJournal(backends.dynamodb, shards=1024)
    await journal.start()
    try:
        return await journaled_messages(journal, threads)
    finally:
        await journal.close()


async def test_mariadb_outage_and_runtime_restart_under_load(tmp_path):
    services = ensure_services()
    mysql = urlsplit(services.mysql)
    proxy = FaultProxy(mysql.hostname, mysql.port or 3306).start()
    async with production_backends(services) as backends:
        via_proxy = backends.read_model_url.replace(
            f"{mysql.hostname}:{mysql.port or 3306}", f"127.0.0.1:{proxy.port}"
        )
        server = RuntimeProcess(
            tmp_path,
            name="outage",
            args=[
                "--journal",
                backends.journal_url,
                "--read-model",
                via_proxy,
                "--projection-poll-interval",
                "1",
            ],
        ).start()
        try:
            writers = Writers(server.url)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                tasks = [asyncio.create_task(writers.run(http)) for _ in range(6)]
                await asyncio.sleep(3)

                proxy.down()
                down_at = time.monotonic()
                await asyncio.sleep(1)
                some = next(iter(writers.threads.items()))
                async with http.get(
                    f"{server.url}/v1/threads/{some[0]}", params={"account_id": some[1]}
                ) as r:
                    body = await r.json()
                    assert r.status == 503 and "read model" in body["error_messages"][0], body
                async with http.get(server.url + "/ready") as r:
                    assert r.status == 200  # commands still flow: stay in the Service
                await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
                acked_during = sum(
                    1 for t in writers.acked_at if down_at < t < down_at + OUTAGE_SECONDS
                )
                proxy.up()
                up_at = time.monotonic()
                await asyncio.sleep(3)
                writers.stop.set()
                await asyncio.gather(*tasks)

            assert acked_during > 50, (
                f"commands stopped during the read-model outage ({acked_during})"
            )
            assert not [k for k in writers.failures if k not in (503,)], writers.failures
            journaled = await _journal_messages(backends, writers.threads)
            for tid, ids in writers.messages.items():
                assert set(ids) <= set(journaled[tid])
            recovered = await read_model_converges(via_proxy, journaled, timeout=60)
            print(
                f"\noutage {OUTAGE_SECONDS:.0f}s: {acked_during} commands acknowledged during it; "
                f"read model caught up {time.monotonic() - up_at:.1f}s after the database "
                f"came back ({recovered:.1f}s after the load stopped)"
            )

            # Restart the runtime: everything stays, projection resumes from stored offsets.
            assert server.stop() == 0, server.log_tail()
            server.start()
            async with aiohttp.ClientSession(server.url) as http:
                tid, admin = next(iter(writers.threads.items()))
                async with http.post(
                    f"/v1/threads/{tid}/messages/add",
                    json={
                        "accountId": admin,
                        "createAt": 3,
                        "messages": [{"text": "after restart", "toAccountIds": []}],
                    },
                ) as r:
                    assert r.status == 200, await r.text()
                    writers.messages[tid] += (await r.json())["messageIds"]
            journaled = await _journal_messages(backends, writers.threads)
            await read_model_converges(via_proxy, journaled, timeout=30)
        finally:
            server.kill()
            proxy.close()
