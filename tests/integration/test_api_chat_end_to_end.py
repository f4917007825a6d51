"""Edits, read markers, unread counts and cursor pages end to end: over real HTTP against a real
`threadweaver serve` process, through the domain, the journal, the read-model updater and the
read model, on the embedded SQLite default and on the production backends (dynalite + MariaDB,
migrated by `threadweaver migrate`). The server snapshots every thread after each event and is
restarted in the middle, so that markers and edited texts must come back from its snapshots."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.support.backends import production_backends
from tests.support.runtime_process import RuntimeProcess
from tests.support.services import ensure_services
from tests.support.waiting import eventually
from threadweaver.domain import new_ulid

PORTS = {"sqlite": 27210, "dynamodb+mysql": 27211}  # this suite's own ports
SNAPSHOT_EVERY_EVENT = ["--snapshot-every", "1"]


@pytest.fixture(scope="module", params=list(PORTS))
def server(request, tmp_path_factory):
    port = PORTS[request.param]
    if request.param == "sqlite":
        proc = RuntimeProcess(
            tmp_path_factory.mktemp("embedded"), port=port, args=SNAPSHOT_EVERY_EVENT
        ).start()
        yield proc
        assert proc.stop() == 0, proc.log_tail()
        return
    with asyncio.Runner() as runner:
        backends = production_backends(ensure_services())
        prod = runner.run(backends.__aenter__())
        proc = RuntimeProcess(
            tmp_path_factory.mktemp("production"),
            port=port,
            args=[*prod.serve_args(), *SNAPSHOT_EVERY_EVENT],
        ).start()
        try:
            yield proc
            assert proc.stop() == 0, proc.log_tail()
        finally:
            proc.kill()
            runner.run(backends.__aexit__(None, None, None))


class Client:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.clock = int(time.time() * 1000)

    def at(self) -> int:
        self.clock += 1
        return self.clock

    async def post(self, path: str, body: dict, status: int = 200) -> dict:
        async with self.session.post(path, json={**body, "createAt": self.at()}) as r:
            data = await r.json()
            assert r.status == status, (r.status, data)
            return data

    async def get(self, path: str, **params) -> tuple[int, dict]:
        async with self.session.get(path, params=params) as r:
            return r.status, await r.json()

    async def thread(self, tid: str, account: str) -> dict | None:
        status, data = await self.get(f"/v1/threads/{tid}", account_id=account)
        return data["result"] if status == 200 else None

    async def unread(self, tid: str, account: str) -> int | None:
        one = await self.thread(tid, account)
        status, listed = await self.get("/v1/threads", account_id=account)
        assert status == 200
        counts = [t["unreadCount"] for t in listed["results"] if t["id"] == tid]
        return one["unreadCount"] if one is not None and counts == [one["unreadCount"]] else None

    async def messages(self, tid: str, account: str) -> list[dict] | None:
        """The messages, or None while the read model does not show the thread yet."""
        status, data = await self.get(f"/v1/threads/{tid}/messages", account_id=account)
        assert status in (200, 404), data
        return data["result"] if status == 200 else None

    async def until_unread(self, tid: str, account: str, count: int) -> None:
        async def probe() -> bool:
            return await self.unread(tid, account) == count

        await eventually(probe, what=f"unreadCount {count} for {account}", timeout=15)

    async def until_bodies(self, tid: str, account: str, bodies: list[str]) -> list[dict]:
        async def probe() -> list[dict] | None:
            found = await self.messages(tid, account)
            return found if found is not None and [m["body"] for m in found] == bodies else None

        return await eventually(probe, what=f"the bodies {bodies}", timeout=15)


async def test_edits_markers_unread_counts_and_cursor_pages(server):
    admin, member = new_ulid(), new_ulid()
    async with aiohttp.ClientSession(server.url) as session:
        api = Client(session)
        created = await api.post(
            "/v1/threads/create",
            {
                "accountId": admin,
                "title": "chat",
                "administratorIds": [admin],
                "memberIds": [member],
            },
        )
        tid = created["thread_id"]
        path = f"/v1/threads/{tid}"
        a1, a2, a3 = await post_messages(api, path, admin, "a1", "a2", "a3")
        (b1,) = await post_messages(api, path, member, "b1")
        await api.until_bodies(tid, admin, ["a1", "a2", "a3", "b1"])
        assert await api.unread(tid, member) == 3  # own messages never count
        assert await api.unread(tid, admin) == 1

        # an edit: the sender only, body and updatedAt change
        edit = {"accountId": member, "messageId": b1, "text": "b1, edited ✓"}
        assert await api.post(f"{path}/messages/edit", edit) == {
            "messageIds": [b1],
            "error_messages": [],
            "seq": 4,  # created 1, a1-a3 2, b1 3
        }
        edited_at = api.clock
        found = await api.until_bodies(tid, admin, ["a1", "a2", "a3", "b1, edited ✓"])
        assert found[-1]["updatedAt"] == edited_at > found[-1]["createdAt"]
        refused = await api.post(f"{path}/messages/edit", {**edit, "accountId": admin}, 403)
        assert refused == {"error_messages": ["The editorId is not the senderId"]}
        too_long = await api.post(f"{path}/messages/edit", {**edit, "text": "x" * 256}, 400)
        assert too_long == {"error_messages": ["text: too long text"]}

        # a read marker: unread counts follow it
        marker = {"accountId": member, "messageId": a2}
        assert await api.post(f"{path}/read-marker", marker) == {
            "threadId": tid,
            "error_messages": [],
            "seq": 5,
        }
        await api.until_unread(tid, member, 1)  # a3
        updated_at = (await api.thread(tid, admin))["updatedAt"]
        assert updated_at == edited_at  # reading does not change the thread

        # cursor pages: stable while messages are posted and removed
        status, first = await api.get(f"{path}/messages", account_id=admin, cursor="", limit=2)
        assert status == 200 and [m["id"] for m in first["result"]] == [a1, a2]
        await api.post(f"{path}/messages/remove", {"accountId": admin, "messageIds": [a1, a3]})
        (a4,) = await post_messages(api, path, admin, "a4")
        await api.until_bodies(tid, admin, ["a2", "b1, edited ✓", "a4"])
        status, second = await api.get(
            f"{path}/messages", account_id=admin, cursor=first["next_cursor"], limit=2
        )
        assert status == 200 and [m["id"] for m in second["result"]] == [b1, a4]
        assert second["next_cursor"] is None
        status, bad = await api.get(f"{path}/messages", account_id=admin, cursor="nope")
        assert status == 400 and bad["error_messages"][0].startswith("cursor: ")
        await api.until_unread(tid, member, 1)  # a4 (a3 was removed)
        await api.post(f"{path}/read-marker", {**marker, "messageId": a4})
        await api.until_unread(tid, member, 0)

    # restart: the aggregate comes back from its snapshot, markers and edits included
    assert server.stop() == 0, server.log_tail()
    server.start()
    async with aiohttp.ClientSession(server.url) as session:
        api = Client(session)
        # backwards (a2 is before a4): accepted, changes nothing, also after the restart
        back = {"accountId": member, "messageId": a2}
        assert await api.post(f"{path}/read-marker", back) == {
            "threadId": tid,
            "error_messages": [],
            "seq": 8,  # no event: the thread's seq (5 + the removal, a4, the marker on a4)
        }
        await api.post(f"{path}/messages/edit", edit)  # the same text: changes nothing
        (a5,) = await post_messages(api, path, admin, "a5")
        await api.until_bodies(tid, admin, ["a2", "b1, edited ✓", "a4", "a5"])
        assert await api.unread(tid, member) == 1  # a5: the marker did not move back
        await api.post(f"{path}/read-marker", {**back, "messageId": a5})
        await api.until_unread(tid, member, 0)
        gone = await api.post(f"{path}/messages/edit", {**edit, "messageId": a1}, 404)
        assert gone == {"error_messages": ["message is not found"]}
        stranger = await api.post(f"{path}/read-marker", {**back, "accountId": new_ulid()}, 403)
        assert stranger == {"error_messages": ["The readerId is not the member"]}


async def post_messages(api: Client, path: str, sender: str, *texts: str) -> list[str]:
    messages = [{"toAccountIds": [], "text": t} for t in texts]
    data = await api.post(f"{path}/messages/add", {"accountId": sender, "messages": messages})
    return data["messageIds"]
