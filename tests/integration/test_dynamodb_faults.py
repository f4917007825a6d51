"""The DynamoDB endpoint misbehaving, between a real runtime process and dynalite (a fault
proxy): throttling, connections dropped before a request and after a write was applied, and a
full outage. Commands either succeed (after the journal's retries) or fail fast with 503 and a
clear message; never a duplicate or partial append, and the aggregates stay consistent."""

from __future__ import annotations

import asyncio
import collections
import time
from urllib.parse import urlsplit

import aiohttp

from tests.support.backends import production_backends
from tests.support.dynamo_fault_proxy import DynamoFaultProxy
from tests.support.runtime_process import RuntimeProcess
from tests.support.services import ensure_services
from threadweaver.adapters.journal.dynamodb import DynamoDBJournal
from threadweaver.domain import new_ulid, thread_persistence_id


async def _post_messages(http, url, tid, admin, n, acked, statuses, latencies):
    for _ in range(n):
        t0 = time.monotonic()
        try:
            async with http.post(
                f"{url}/v1/threads/{tid}/messages/add",
                json={
                    "accountId": admin,
                    "createAt": 1,
                    "messages": [{"text": "x", "toAccountIds": []}],
                },
            ) as r:
                data = await r.json()
                statuses[r.status] += 1
                latencies[r.status].append(time.monotonic() - t0)
                if r.status == 200:
                    acked[tid] += data["messageIds"]
                else:
                    assert r.status == 503 and data["error_messages"], (r.status, data)
        except (TimeoutError, aiohttp.ClientError) as exc:
            statuses[type(exc).__name__] += 1


async def test_throttling_drops_and_outage_never_duplicate_or_lose(tmp_path):
    services = ensure_services()
    async with production_backends(services) as backends:
        upstream = "http://" + urlsplit(backends.journal_url).netloc
        proxy = DynamoFaultProxy(upstream, throttle=0.15, drop_before=0.05, drop_after=0.05).start()
        journal_url = backends.journal_url.replace(
            urlsplit(backends.journal_url).netloc, f"127.0.0.1:{proxy.port}"
        )
        server = RuntimeProcess(
            tmp_path,
            name="faults",
            args=["--journal", journal_url, "--read-model", backends.read_model_url],
        ).start(timeout=60)
        try:
            acked: dict[str, list[str]] = collections.defaultdict(list)
            statuses: collections.Counter = collections.Counter()
            latencies: dict = collections.defaultdict(list)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                threads = {}
                while len(threads) < 8:
                    admin = new_ulid()
                    async with http.post(
                        server.url + "/v1/threads/create",
                        json={
                            "accountId": admin,
                            "title": "faults",
                            "administratorIds": [admin],
                            "memberIds": [],
                            "createAt": 1,
                        },
                    ) as r:
                        if r.status == 200:
                            threads[(await r.json())["thread_id"]] = admin
                        else:
                            assert r.status == 503
                await asyncio.gather(
                    *(
                        _post_messages(http, server.url, t, a, 40, acked, statuses, latencies)
                        for t, a in threads.items()
                    )
                )
                assert proxy.faults["throttle"] and proxy.faults["drop_after_write"], proxy.faults

                # Full outage: commands fail fast with 503 and say why.
                proxy.set(outage=True)
                t, a = next(iter(threads.items()))
                t0 = time.monotonic()
                async with http.post(
                    f"{server.url}/v1/threads/{t}/messages/add",
                    json={
                        "accountId": a,
                        "createAt": 1,
                        "messages": [{"text": "during outage", "toAccountIds": []}],
                    },
                ) as r:
                    outage_status, outage_body = r.status, await r.json()
                outage_latency = time.monotonic() - t0
                proxy.set(outage=False, throttle=0.0, drop_before=0.0, drop_after=0.0)
                assert outage_status == 503 and outage_body["error_messages"], outage_body
                assert outage_latency < 15, f"an outage took {outage_latency:.1f}s to answer"

                # After the faults: every thread accepts commands again (state consistent).
                for tid, admin in threads.items():
                    await _post_messages(
                        http, server.url, tid, admin, 1, acked, statuses, latencies
                    )
        finally:
            assert server.stop() == 0, server.log_tail()
            proxy.close()

        journal = DynamoDBJournal(backends.dynamodb, shards=1024)
        await journal.start()
        try:
            seen = collections.Counter()
            for tid in threads:
                events = await journal.read(thread_persistence_id(tid))
                assert [e.seq for e in events] == list(range(1, len(events) + 1))
                ids = [
                    m["id"]
                    for e in events
                    if e.type == "MessagesAdded"
                    for m in e.payload["messages"]
                ]
                seen.update(ids)
                assert set(acked[tid]) <= set(ids), "an acknowledged message was lost"
                assert all(len(e.payload.get("messages", [None])) == 1 for e in events[1:])
        finally:
            await journal.close()
        assert all(n == 1 for n in seen.values()), "a message was written twice"
        assert statuses[200] > 200
        print(
            f"\nfaults injected {dict(proxy.faults)}; answers {dict(statuses)}; "
            f"503 after an outage in {outage_latency:.1f}s; p50 of 200s "
            f"{sorted(latencies[200])[len(latencies[200]) // 2] * 1000:.0f} ms"
        )
