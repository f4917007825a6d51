"""Issue 5 acceptance: runtime members as separate processes on loopback, against the real
control plane (shard-map ConfigMap, member Leases), dynalite and MariaDB.

The test plays the operator's side of the protocol (tests/support/cluster_driver.py) so that it
checks the runtime alone. Under a steady load sent to every member it scales 3 -> 5 -> 2 and
kills a member with kill -9, then checks that no acknowledged command was lost, no event was
written twice, no request was answered wrongly, and the read model equals the journal.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
import uuid

import aiohttp
import pytest

from tests.support.backends import production_backends
from tests.support.cluster_driver import ClusterDriver
from tests.support.convergence import journaled_messages, read_model_converges
from tests.support.runtime_process import RuntimeProcess
from tests.support.services import ensure_services
from threadweaver.adapters.journal.dynamodb import DynamoDBJournal
from threadweaver.adapters.kube.client import api_client
from threadweaver.domain import new_ulid
from threadweaver.shards import ShardMap

SHARDS = 64
CLUSTER = "tw"


class Load:
    """Clients that create threads and post messages through random members, recording every
    acknowledged command and every answer that is neither a 2xx nor a 503."""

    def __init__(self, members: dict[str, RuntimeProcess]) -> None:
        self.members = members
        self.threads: dict[str, str] = {}  # thread id -> admin
        self.messages: dict[str, list[str]] = collections.defaultdict(list)
        self.wrong: list[str] = []
        self.unavailable = 0
        self.stop = asyncio.Event()

    def url(self) -> str:
        return random.choice([m.url for m in self.members.values() if m.proc.poll() is None])

    async def client(self, session: aiohttp.ClientSession) -> None:
        admin, tid = new_ulid(), None
        while not self.stop.is_set():
            try:
                if tid is None:
                    body = {
                        "accountId": admin,
                        "title": "t",
                        "administratorIds": [admin],
                        "memberIds": [],
                        "createAt": int(time.time() * 1000),
                    }
                    path = "/v1/threads/create"
                else:
                    body = {
                        "accountId": admin,
                        "createAt": int(time.time() * 1000),
                        "messages": [{"text": uuid.uuid4().hex, "toAccountIds": []}],
                    }
                    path = f"/v1/threads/{tid}/messages/add"
                async with session.post(self.url() + path, json=body) as r:
                    data = await r.json(content_type=None)
                    if r.status == 200 and tid is None:
                        tid = data["thread_id"]
                        self.threads[tid] = admin
                    elif r.status == 200:
                        assert len(data["messageIds"]) == 1
                        self.messages[tid] += data["messageIds"]
                    elif r.status == 503:
                        self.unavailable += 1
                        await asyncio.sleep(0.05)
                    else:
                        self.wrong.append(f"{r.status} {path} {data}")
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.05)  # a member being killed: the command is not acked
            await asyncio.sleep(0.005)


@pytest.fixture
async def backends():
    async with production_backends(ensure_services()) as b:
        yield b.journal_url, b.read_model_url, b.dynamodb


async def test_scale_3_5_2_and_kill_9_under_load(kube, kube_namespace, backends, tmp_path):
    journal_url, read_model, dynamo = backends
    api = await api_client(kube.kubeconfig)
    driver = ClusterDriver(api, kube_namespace, CLUSTER)
    members: dict[str, RuntimeProcess] = {}

    def start(i: int) -> RuntimeProcess:
        name = f"{CLUSTER}-{i}"
        proc = RuntimeProcess(
            tmp_path / name,
            name=name,
            args=[
                "--cluster",
                CLUSTER,
                "--namespace",
                kube_namespace,
                "--kubeconfig",
                kube.kubeconfig,
                "--journal",
                journal_url,
                "--read-model",
                read_model,
                "--shards",
                str(SHARDS),
                "--lease-duration",
                "4",
                "--lease-renew-every",
                "1",
                "--projection-poll-interval",
                "0.5",
            ],
        )
        proc.args += ["--peer-address", f"127.0.0.1:{proc.port}"]
        members[name] = proc.start(wait=False)
        return proc

    def addresses() -> dict[str, str]:
        return {n: f"127.0.0.1:{p.port}" for n, p in members.items() if p.proc.poll() is None}

    try:
        for i in range(3):
            start(i)
        await driver.publish(ShardMap.initial(SHARDS, list(members), addresses()))
        for p in members.values():
            p.wait_ready(60)
        load = Load(members)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            clients = [asyncio.create_task(load.client(session)) for _ in range(12)]
            await asyncio.sleep(3)

            for i in (3, 4):  # 3 -> 5
                start(i).wait_ready(60)
            await driver.rebalance(sorted(members), addresses(), max_ranges_per_round=4)
            assert set(driver.map.counts()) == set(members)
            await asyncio.sleep(3)

            keep = [f"{CLUSTER}-0", f"{CLUSTER}-1"]  # 5 -> 2: drain, then stop
            await driver.rebalance(keep, addresses())
            for name in sorted(set(members) - set(keep)):
                assert members[name].stop() == 0, members[name].log_tail()
            await asyncio.sleep(3)

            start(2).wait_ready(60)  # 2 -> 3, then kill -9 one
            await driver.rebalance(sorted(keep + [f"{CLUSTER}-2"]), addresses())
            await asyncio.sleep(2)
            members[f"{CLUSTER}-1"].kill()
            await asyncio.sleep(5)  # its lease expires (4 s)
            survivors = [f"{CLUSTER}-0", f"{CLUSTER}-2"]
            await driver.rebalance(survivors, addresses())  # "acknowledged by absence"
            await asyncio.sleep(3)
            load.stop.set()
            await asyncio.gather(*clients)

        assert not load.wrong, load.wrong[:10]
        acked = sum(map(len, load.messages.values()))
        assert len(load.threads) >= 12 and acked > 200, (len(load.threads), acked)

        # The journal: every acknowledged command once, gap-free, no message written twice;
        # the read model converges to exactly the journal's content.
        journal = DynamoDBJournal(dynamo, shards=SHARDS)
        await journal.start()
        try:
            journaled = await journaled_messages(journal, load.threads)
        finally:
            await journal.close()
        for tid, ids in load.messages.items():
            assert set(ids) <= set(journaled[tid]), f"acknowledged messages of {tid} lost"
        await read_model_converges(read_model, journaled, timeout=60)
        total = sum(map(len, journaled.values()))
        print(
            f"\nthreads {len(load.threads)}, acknowledged messages {acked}, "
            f"503 answers {load.unavailable}, journaled messages {total}"
        )
    finally:
        for p in members.values():
            p.kill()
        await api.close()
