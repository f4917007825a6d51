"""Edits, read markers and cursor pages in cluster mode: two runtime members as processes on
loopback against the real control plane (shard-map ConfigMap, Leases), dynalite and MariaDB.
Every command is sent to both members, so that one runs it and the other forwards it to the
owner of the thread's shard; then every shard moves to one member (a handoff) and the other
stops: the thread's aggregate, rebuilt on the survivor from the journal, still knows its read
markers."""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.support.backends import production_backends
from tests.support.cluster_driver import ClusterDriver
from tests.support.runtime_process import RuntimeProcess
from tests.support.services import ensure_services
from tests.support.waiting import eventually
from threadweaver.adapters.kube.client import api_client
from threadweaver.domain import new_ulid, thread_persistence_id
from threadweaver.shards import ShardMap
from threadweaver.shards.hashing import shard_of

SHARDS = 16
CLUSTER = "twchat"
PORTS = (27220, 27221)  # this test's own ports


@pytest.fixture
async def backends():
    async with production_backends(ensure_services()) as b:
        yield b


async def test_chat_commands_are_forwarded_and_survive_a_handoff(
    kube, kube_namespace, backends, tmp_path
):
    api = await api_client(kube.kubeconfig)
    driver = ClusterDriver(api, kube_namespace, CLUSTER)
    members: dict[str, RuntimeProcess] = {}
    for i, port in enumerate(PORTS):
        name = f"{CLUSTER}-{i}"
        members[name] = RuntimeProcess(
            tmp_path / name,
            name=name,
            port=port,
            args=[
                *backends.serve_args(),
                *("--cluster", CLUSTER, "--namespace", kube_namespace),
                *("--kubeconfig", kube.kubeconfig, "--shards", str(SHARDS)),
                *("--lease-duration", "4", "--lease-renew-every", "1"),
                *("--projection-poll-interval", "0.5", "--peer-address", f"127.0.0.1:{port}"),
            ],
        ).start(wait=False)
    addresses = {n: f"127.0.0.1:{p.port}" for n, p in members.items()}
    clock = int(time.time() * 1000)
    try:
        initial = ShardMap.initial(SHARDS, list(members), addresses)
        await driver.publish(initial)
        for p in members.values():
            p.wait_ready(60)
        urls = [p.url for p in members.values()]
        admin, member = new_ulid(), new_ulid()
        async with aiohttp.ClientSession() as http:

            async def post(url: str, path: str, body: dict, status: int = 200) -> dict:
                nonlocal clock
                clock += 1
                async with http.post(url + path, json={**body, "createAt": clock}) as r:
                    data = await r.json()
                    assert r.status == status, (url, path, r.status, data)
                    return data

            async def get(url: str, path: str, **params) -> dict | None:
                async with http.get(url + path, params=params) as r:
                    return await r.json() if r.status == 200 else None

            owner = None
            while owner != f"{CLUSTER}-0":  # a thread of member 0, which stops later
                created = await post(
                    urls[0],
                    "/v1/threads/create",
                    {
                        "accountId": admin,
                        "title": "t",
                        "administratorIds": [admin],
                        "memberIds": [],
                    },
                )
                tid = created["thread_id"]
                owner = initial.owner_of(shard_of(thread_persistence_id(tid), SHARDS))
            t = f"/v1/threads/{tid}"
            await post(
                urls[1], f"{t}/member-ids/join", {"accountId": admin, "accountIds": [member]}
            )
            ids = []
            for url in urls:
                data = await post(
                    url,
                    f"{t}/messages/add",
                    {"accountId": admin, "messages": [{"toAccountIds": [], "text": url}]},
                )
                ids += data["messageIds"]
            # each command through both members: one runs it, the other forwards it
            for url, message_id in zip(urls, ids):
                edit = {"accountId": admin, "messageId": message_id, "text": f"edited {url}"}
                assert (await post(url, f"{t}/messages/edit", edit))["messageIds"] == [message_id]
            marker = {"accountId": member}
            await post(urls[1], f"{t}/read-marker", {**marker, "messageId": ids[1]})
            await post(urls[0], f"{t}/read-marker", {**marker, "messageId": ids[0]})  # backwards

            async def converged(url: str) -> bool:
                thread = await get(url, t, account_id=member)
                page = await get(url, f"{t}/messages", account_id=member, cursor="", limit=1)
                return (
                    thread is not None
                    and thread["result"]["unreadCount"] == 0
                    and page is not None
                    and [m["body"] for m in page["result"]] == [f"edited {urls[0]}"]
                    and page["next_cursor"] is not None
                )

            for url in urls:
                await eventually(lambda u=url: converged(u), what=f"{url} to converge", timeout=30)

            # every shard to member 1, member 0 stops: the aggregate is rebuilt on member 1
            survivor = f"{CLUSTER}-1"
            await driver.rebalance([survivor], addresses)
            assert members[f"{CLUSTER}-0"].stop() == 0, members[f"{CLUSTER}-0"].log_tail()
            last = members[survivor].url
            await post(last, f"{t}/read-marker", {**marker, "messageId": ids[0]})  # backwards
            (late,) = (
                await post(
                    last,
                    f"{t}/messages/add",
                    {"accountId": admin, "messages": [{"toAccountIds": [], "text": "late"}]},
                )
            )["messageIds"]

            async def one_unread() -> bool:
                messages = await get(last, f"{t}/messages", account_id=member)
                thread = await get(last, t, account_id=member)
                return (
                    messages is not None
                    and [m["id"] for m in messages["result"]] == [*ids, late]
                    and thread["result"]["unreadCount"] == 1  # the marker stayed on ids[1]
                )

            await eventually(one_unread, what="the late message, unread", timeout=30)
    finally:
        for p in members.values():
            p.kill()
        await api.close()
