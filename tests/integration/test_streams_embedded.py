"""Live event streams and read-your-writes against a real `threadweaver serve` (embedded SQLite),
over real HTTP with an SSE client (tests/support/sse_client.py): resume after a disconnect and
after a restart (kill -9), ordering and exactly-once checked against the journal, the account
stream across joins and leaves, permissions and bad input, the per-account cap, and min_seq."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.runtime_process import RuntimeProcess
from tests.support.sse_client import connect
from threadweaver.adapters.journal.sqlite import SqliteJournal
from threadweaver.domain import new_ulid, thread_persistence_id

ARGS = ["--sync-mode", "normal", "--streams-per-account", "3", "--stream-heartbeat", "0.5"]


@pytest.fixture
def runtime(tmp_path: Path) -> AsyncIterator[RuntimeProcess]:
    proc = RuntimeProcess(tmp_path / "data", args=ARGS, name="streams").start()
    yield proc
    proc.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def now() -> int:
    return int(time.time() * 1000)


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def post(self, path: str, body: dict) -> dict:
        async with self.session.post(self.url + path, json={**body, "createAt": now()}) as r:
            data = await r.json()
            assert r.status == 200, data
            return data

    async def create(self, admin: str, members: tuple[str, ...] = ()) -> tuple[str, int]:
        body = {"accountId": admin, "title": "s", "administratorIds": [admin]}
        data = await self.post("/v1/threads/create", {**body, "memberIds": list(members)})
        return data["thread_id"], data["seq"]

    async def say(self, thread: str, account: str, text: str) -> int:
        data = await self.post(
            f"/v1/threads/{thread}/messages/add",
            {"accountId": account, "messages": [{"text": text, "toAccountIds": []}]},
        )
        return data["seq"]

    async def members(self, thread: str, admin: str, verb: str, ids: list[str]) -> int:
        body = {"accountId": admin, "accountIds": ids}
        return (await self.post(f"/v1/threads/{thread}/member-ids/{verb}", body))["seq"]

    def events_url(self, thread: str, account: str, query: str = "&min_seq=1") -> str:
        """The thread's stream; `min_seq=1`: once the read model shows the new thread (a
        stream is refused as the thread's queries are, before the projection created it)."""
        return f"{self.url}/v1/threads/{thread}/events?account_id={account}{query}"


async def journal_seqs(data_dir: Path, thread: str) -> list[tuple[int, str]]:
    journal = SqliteJournal(data_dir / "journal.db", synchronous="off")
    await journal.start()
    try:
        return [(e.seq, e.type) for e in await journal.read(thread_persistence_id(thread))]
    finally:
        await journal.close()


async def test_a_stream_resumes_after_a_disconnect_and_a_restart_exactly_once(runtime, http):
    api = Api(http, runtime.url)
    admin = new_ulid()
    thread, _ = await api.create(admin)
    live = await connect(http, api.events_url(thread, admin))  # from the live end
    assert live.status == 200
    for i in range(3):
        await api.say(thread, admin, f"m{i}")
    got = await live.take(2)
    assert [e.seq for e in got] == [2, 3]
    live.close()  # disconnect with seq 3 seen; the 4th event stays unread
    for i in range(3, 6):
        await api.say(thread, admin, f"m{i}")
    again = await connect(http, api.events_url(thread, admin), last_event_id=got[-1].id)
    got += await again.take(4)
    assert [e.seq for e in got] == [2, 3, 4, 5, 6, 7]
    again.close()

    runtime.kill()  # kill -9, then a restart on the same data and port
    runtime.start()
    await api.say(thread, admin, "after the restart")
    resumed = await connect(http, api.events_url(thread, admin), last_event_id=got[-1].id)
    got += await resumed.take(1)
    resumed.close()
    replay = await connect(http, api.events_url(thread, admin, "&min_seq=1&after=0"))
    everything = await replay.take(8)
    replay.close()
    journal = await journal_seqs(runtime.data_dir, thread)
    assert [(e.seq, e.event) for e in everything] == journal  # in order, exactly once
    assert [e.seq for e in got] == [s for s, _ in journal][1:]
    texts = [e.json["messages"][0]["text"] for e in everything[1:]]
    assert texts == [f"m{i}" for i in range(6)] + ["after the restart"]
    first = everything[0].json
    assert first["type"] == "ThreadCreated" and first["threadId"] == thread
    assert first["seq"] == 1 and first["administratorIds"] == [admin] and "occurredAt" in first


async def test_after_resumes_anywhere_and_the_header_wins(runtime, http):
    api = Api(http, runtime.url)
    admin = new_ulid()
    thread, _ = await api.create(admin)
    for i in range(4):
        await api.say(thread, admin, f"m{i}")
    s = await connect(http, api.events_url(thread, admin, "&min_seq=1&after=3"))
    assert [e.seq for e in await s.take(2)] == [4, 5]
    s.close()
    s = await connect(http, api.events_url(thread, admin, "&min_seq=1&after=1"), last_event_id="4")
    assert [e.seq for e in await s.take(1)] == [5]
    s.close()


async def test_who_may_stream_and_bad_resume_points(runtime, http):
    api = Api(http, runtime.url)
    admin, outsider = new_ulid(), new_ulid()
    thread, _ = await api.create(admin)
    await connect(http, api.events_url(thread, admin))  # the read model shows the thread
    cases = [
        (api.events_url(thread, outsider, ""), None, 404, "thread is not found"),
        (api.events_url(new_ulid(), admin, ""), None, 404, "thread is not found"),
        (api.events_url(thread, admin, "&after=-1"), None, 400, "after: must be an integer"),
        (api.events_url(thread, admin), "seven", 400, "Last-Event-ID: must be an integer"),
        (f"{runtime.url}/v1/threads/{thread}/events", None, 400, "account_id: is required"),
        (api.events_url(thread, admin, "&min_seq=x"), None, 400, "min_seq: must be an integer"),
        (api.events_url("nope", admin), None, 400, "thread_id:"),
        (f"{runtime.url}/v1/accounts/nope/events", None, 400, "account_id:"),
    ]
    for url, last_id, status, message in cases:
        s = await connect(http, url, last_event_id=last_id)
        assert s.status == status, url
        assert message in (await s.response.json())["error_messages"][0]
        s.close()


async def test_streams_per_account_are_capped(runtime, http):
    api = Api(http, runtime.url)
    admin = new_ulid()
    thread, _ = await api.create(admin)
    open_streams = [await connect(http, api.events_url(thread, admin)) for _ in range(3)]
    refused = await connect(http, f"{runtime.url}/v1/accounts/{admin}/events")
    assert refused.status == 429 and refused.response.headers["Retry-After"]
    open_streams.pop().close()
    async with aiohttp.ClientSession() as other:  # a fresh connection: the server saw the close
        for _ in range(50):
            s = await connect(other, f"{runtime.url}/v1/accounts/{admin}/events")
            if s.status == 200:
                break
            s.close()
            await asyncio.sleep(0.1)  # the server notices the close at its next heartbeat
        assert s.status == 200
        s.close()
    for s in open_streams:
        s.close()


async def test_an_account_stream_follows_joins_and_leaves(runtime, http):
    api = Api(http, runtime.url)
    admin, member = new_ulid(), new_ulid()
    feed = await connect(http, f"{runtime.url}/v1/accounts/{member}/events")
    t1, _ = await api.create(admin, (member,))  # created with the member in it
    t2, _ = await api.create(admin)  # not yet
    await api.say(t2, admin, "before the join")
    await api.members(t2, admin, "join", [member])
    await api.say(t2, admin, "after the join")
    await api.say(t1, admin, "in t1")
    got = await feed.take(4)
    assert [(e.json["threadId"], e.event) for e in got] == [
        (t1, "ThreadCreated"),
        (t2, "MemberIdsJoined"),
        (t2, "MessagesAdded"),
        (t1, "MessagesAdded"),
    ]
    assert got[2].json["messages"][0]["text"] == "after the join"
    last_id = got[-1].id
    assert last_id is not None and last_id.startswith("a1.")
    feed.close()

    # away: t2 gets a message, t1 loses the member, a new thread t3 takes it in
    await api.say(t2, admin, "while away")
    await api.members(t1, admin, "leave", [member])
    t1_seq = await api.say(t1, admin, "not for the member")
    t3, _ = await api.create(admin, (member,))
    for thread, seq in ((t1, t1_seq), (t3, 1)):  # read your writes: the read model has them
        async with http.get(f"{runtime.url}/v1/threads/{thread}?account_id={admin}&min_seq={seq}"):
            pass
    feed = await connect(http, f"{runtime.url}/v1/accounts/{member}/events", last_event_id=last_id)
    got = await feed.take(2)
    assert sorted((e.json["threadId"], e.event) for e in got) == sorted(
        [(t2, "MessagesAdded"), (t3, "ThreadCreated")]
    )
    # while connected: a leave is delivered, then nothing more of that thread
    await api.members(t2, admin, "leave", [member])
    await api.say(t2, admin, "gone")
    await api.say(t3, admin, "still here")
    got = await feed.take(2)
    assert [(e.json["threadId"], e.event) for e in got] == [
        (t2, "MemberIdsLeft"),
        (t3, "MessagesAdded"),
    ]
    feed.close()


async def test_min_seq_reads_your_writes(runtime, http):
    api = Api(http, runtime.url)
    admin = new_ulid()
    thread, seq = await api.create(admin)
    assert seq == 1
    for i in range(20):
        seq = await api.say(thread, admin, f"m{i}")
        assert seq == i + 2
        url = f"{runtime.url}/v1/threads/{thread}/messages?account_id={admin}&min_seq={seq}"
        async with http.get(url + "&limit=1000") as r:
            body = await r.json()
            assert r.status == 200
            assert body["result"][-1]["body"] == f"m{i}"  # always sees its own post
    ahead = f"{runtime.url}/v1/threads/{thread}?account_id={admin}&min_seq={seq + 5}"
    async with http.get(ahead) as r:
        assert r.status == 503 and r.headers["Retry-After"] == "1"
    async with http.get(f"{runtime.url}/v1/threads/{thread}?account_id={admin}&min_seq=x") as r:
        assert r.status == 400
        assert (await r.json())["error_messages"][0].startswith("min_seq: must be an integer")


async def test_with_jwt_the_stream_account_must_be_the_subject(tmp_path, http):
    import jwt

    secret = "streams-secret-0123456789abcdef-0123456789"
    (tmp_path / "secret").write_text(secret)
    proc = RuntimeProcess(
        tmp_path / "jwt",
        args=[*ARGS, "--auth", "jwt", "--jwt-hs256-secret-file", str(tmp_path / "secret")],
        name="streams-jwt",
    ).start()
    try:
        admin, other = new_ulid(), new_ulid()

        def bearer(sub: str) -> dict[str, str]:
            token = jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, secret, "HS256")
            return {"Authorization": f"Bearer {token}"}

        body = {"accountId": admin, "title": "j", "administratorIds": [admin], "memberIds": []}
        async with http.post(
            proc.url + "/v1/threads/create", json={**body, "createAt": now()}, headers=bearer(admin)
        ) as r:
            thread = (await r.json())["thread_id"]
        url = f"{proc.url}/v1/threads/{thread}/events?account_id={admin}&min_seq=1"
        for target, token_of, status in (
            (url, admin, 200),
            (url, other, 403),  # the query's account_id is not the subject
            (f"{proc.url}/v1/accounts/{admin}/events", admin, 200),
            (f"{proc.url}/v1/accounts/{admin}/events", other, 403),  # the path's account
        ):
            s = await connect(http, target, headers=bearer(token_of))
            assert s.status == status, (target, token_of)
            s.close()
        s = await connect(http, url)  # no token
        assert s.status == 401
        s.close()
    finally:
        proc.stop()


async def test_a_slow_consumer_is_cut_off_and_resumes_without_a_gap(tmp_path, http):
    """A client that stops reading: the member's writes block, its thread's tail (8 events
    here) moves on, and the stream ends after the last event the client was sent; resuming
    from it yields the rest, exactly once."""
    import socket

    proc = RuntimeProcess(
        tmp_path / "slow", args=[*ARGS, "--stream-buffer", "8"], name="streams-slow"
    ).start()
    try:
        api = Api(http, proc.url)
        admin = new_ulid()
        thread, _ = await api.create(admin)
        async with http.get(f"{proc.url}/v1/threads/{thread}?account_id={admin}&min_seq=1"):
            pass
        # a raw client with a tiny receive window, which reads nothing for now
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", proc.port))
        path = f"/v1/threads/{thread}/events?account_id={admin}"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.settimeout(10)
        received = b""
        while b": connected" not in received:  # the stream is open (from the live end)
            received += sock.recv(4096)
        big = [{"text": "x" * 250, "toAccountIds": []} for _ in range(1000)]  # ~270 KB
        for _ in range(12):  # ~13 MB of events, well past the socket buffers
            posted = []
            for _ in range(4):  # (a thread holds at most 5,000 live messages)
                body = {"accountId": admin, "messages": big}
                posted.append(
                    (await api.post(f"/v1/threads/{thread}/messages/add", body))["messageIds"]
                )
            for ids in posted:
                removed = {"accountId": admin, "messageIds": ids}
                await api.post(f"/v1/threads/{thread}/messages/remove", removed)
        last_seq = (
            await api.post(
                f"/v1/threads/{thread}/messages/add",
                {"accountId": admin, "messages": [{"text": "the end", "toAccountIds": []}]},
            )
        )["seq"]
        # now read everything the member had sent, until it ends the stream
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(60):
            while not received.endswith(b"0\r\n\r\n"):  # the chunked response's end
                chunk = await loop.sock_recv(sock, 1 << 20)
                if not chunk:
                    break
                received += chunk
        sock.close()
        ids = [int(line[4:]) for line in received.split(b"\n") if line.startswith(b"id: ")]
        assert ids and ids == list(range(2, ids[-1] + 1))  # in order, no gap
        assert ids[-1] < last_seq  # cut off before the end
        resumed = await connect(http, f"{proc.url}{path}", last_event_id=str(ids[-1]))
        rest = await resumed.take(last_seq - ids[-1], timeout=30)
        resumed.close()
        assert [e.seq for e in rest] == list(range(ids[-1] + 1, last_seq + 1))
        async with http.get(proc.url + "/metrics") as r:
            metrics = await r.text()
        dropped = [
            line
            for line in metrics.splitlines()
            if line.startswith('threadweaver_stream_events_dropped_total{kind="thread"}')
        ]
        assert dropped and float(dropped[0].split()[-1]) > 0
    finally:
        proc.stop()
