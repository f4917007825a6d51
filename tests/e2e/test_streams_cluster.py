"""Live event streams in cluster mode (issue 15): two runtime members as processes on loopback,
against the real control plane (shard-map ConfigMap, Leases), dynalite and MariaDB; the test
plays the operator's side (tests/support/cluster_driver.py).

A thread's stream is served by either member, whichever owns the thread's shard: the owner from
its own appends, the other from the journal's change notes. Its shard is then handed over (the
first member drains and stops); a client of the stopped member reconnects to the other with its
last event id. Every stream's events are the journal's, in order, exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest

from tests.support.backends import production_backends
from tests.support.cluster_driver import ClusterDriver
from tests.support.runtime_process import RuntimeProcess
from tests.support.services import ensure_services
from tests.support.sse_client import SseEvent, connect
from threadweaver.adapters.journal.dynamodb import DynamoDBJournal
from threadweaver.adapters.kube.client import api_client
from threadweaver.domain import new_ulid, thread_persistence_id
from threadweaver.shards import ShardMap

SHARDS = 16
CLUSTER = "tws"


@pytest.fixture
async def backends():
    async with production_backends(ensure_services()) as b:
        yield b.journal_url, b.read_model_url, b.dynamodb


async def post(session: aiohttp.ClientSession, urls: list[str], path: str, body: dict) -> dict:
    """A command, retried (same Idempotency-Key) through the members while a shard moves."""
    key = uuid.uuid4().hex
    deadline = time.monotonic() + 30
    while True:
        url = urls[int(time.monotonic() * 1000) % len(urls)]
        try:
            async with session.post(
                url + path,
                json={**body, "createAt": int(time.time() * 1000)},
                headers={"Idempotency-Key": key},
            ) as r:
                data = await r.json(content_type=None)
                if r.status == 200:
                    return data
                assert r.status == 503, (r.status, data)
        except (aiohttp.ClientError, TimeoutError):
            pass
        assert time.monotonic() < deadline, "the command was not accepted within 30 s"
        await asyncio.sleep(0.1)


async def test_streams_survive_a_range_handoff_and_a_member_stop(
    kube, kube_namespace, backends, tmp_path
):
    journal_url, read_model, dynamo = backends
    api = await api_client(kube.kubeconfig)
    driver = ClusterDriver(api, kube_namespace, CLUSTER)
    members: dict[str, RuntimeProcess] = {}
    for i in range(2):
        name = f"{CLUSTER}-{i}"
        proc = RuntimeProcess(
            tmp_path / name,
            name=name,
            args=[
                *("--cluster", CLUSTER, "--namespace", kube_namespace),
                *("--kubeconfig", kube.kubeconfig, "--journal", journal_url),
                *("--read-model", read_model, "--shards", str(SHARDS)),
                *("--lease-duration", "4", "--lease-renew-every", "1"),
                *("--projection-poll-interval", "0.5", "--stream-heartbeat", "1"),
            ],
        )
        proc.args += ["--peer-address", f"127.0.0.1:{proc.port}"]
        members[name] = proc.start(wait=False)
    m0, m1 = members.values()
    addresses = {n: f"127.0.0.1:{p.port}" for n, p in members.items()}
    try:
        await driver.publish(ShardMap.initial(SHARDS, list(members), addresses))
        for p in members.values():
            p.wait_ready(60)
        admin = new_ulid()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            urls = [m0.url, m1.url]
            created = await post(
                session,
                urls,
                "/v1/threads/create",
                {"accountId": admin, "title": "t", "administratorIds": [admin], "memberIds": []},
            )
            thread = created["thread_id"]
            path = f"/v1/threads/{thread}/events?account_id={admin}&min_seq=1"
            # one stream on each member: one of them owns the thread, the other does not
            on0 = await connect(session, m0.url + path + "&after=0")
            on1 = await connect(session, m1.url + path)  # from the live end (after seq 1)
            assert on0.status == on1.status == 200

            async def say(i: int) -> None:
                body = {"accountId": admin, "messages": [{"text": f"m{i}", "toAccountIds": []}]}
                await post(session, urls, f"/v1/threads/{thread}/messages/add", body)

            for i in range(8):
                await say(i)
            got0: list[SseEvent] = await on0.take(9, timeout=20)
            got1: list[SseEvent] = await on1.take(8, timeout=20)

            # hand every shard over to tws-1 while messages go on, then stop tws-0
            posting = asyncio.gather(*(say(i) for i in range(8, 14)))
            await driver.rebalance([m1.name], {m1.name: addresses[m1.name]})
            await posting
            assert m0.stop() == 0, m0.log_tail()
            got0 += await on0.until_end(timeout=20)  # ended by the stop (whatever it had)
            urls = [m1.url]
            resumed = await connect(session, m1.url + path, last_event_id=got0[-1].id)
            for i in range(14, 17):
                await say(i)
            want = 17 + 1  # the create and 17 messages
            got0 += await resumed.take(want - len(got0), timeout=20)
            got1 += await on1.take(want - 1 - len(got1), timeout=20)
            resumed.close()
            on1.close()

        journal = DynamoDBJournal(dynamo, shards=SHARDS)
        await journal.start()
        try:
            stored = await journal.read(thread_persistence_id(thread))
        finally:
            await journal.close()
        expected = [(e.seq, e.type) for e in stored]
        assert len(expected) == want
        assert [(e.seq, e.event) for e in got0] == expected  # exactly once, in order
        assert [(e.seq, e.event) for e in got1] == expected[1:]
        texts = [e.json["messages"][0]["text"] for e in got0[1:]]
        assert sorted(texts, key=lambda t: int(t[1:])) == [f"m{i}" for i in range(17)]
    finally:
        for p in members.values():
            p.kill()
        await api.close()
