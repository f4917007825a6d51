"""Idempotency-Key against a real `threadweaver serve` process: a command answered 200, then
kill -9, restart, and the retry with the same key answers the same ids; the journal and the read
model hold the command once. Keys kept in a snapshot survive the same way. On the embedded
SQLite default and on the production backends (dynalite + MariaDB, from hack/services.sh)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sqlite3
import time

import aiohttp
import pytest

from tests.support.backends import production_backends
from tests.support.runtime_process import RuntimeProcess
from tests.support.services import ensure_services
from threadweaver.application.idempotency import derive_thread_id
from threadweaver.domain import new_ulid

KEY = "Idempotency-Key"


async def post(http, path, body, key=None, status=200):
    headers = {KEY: key} if key else {}
    async with http.post(path, json=body, headers=headers) as r:
        data = await r.json()
        assert r.status == status, (r.status, data)
        return data


def create_body(admin, at=1_700_000_000_000):
    return {
        "accountId": admin,
        "title": "idempotent",
        "administratorIds": [admin],
        "memberIds": [],
        "createAt": at,
    }


def add_body(sender, text, at=1_700_000_000_001):
    return {"accountId": sender, "createAt": at, "messages": [{"text": text, "toAccountIds": []}]}


def journal_rows(path):
    """(pid, seq, type, payload, idempotency key or None) of every row of the journal file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = []
        for pid, seq, kind, payload, metadata in conn.execute(
            "SELECT pid, seq, type, payload, metadata FROM journal ORDER BY ordering"
        ):
            payload = json.loads(payload)
            assert "_meta" not in payload  # the key is on the envelope, not in the event
            record = json.loads(metadata).get("idempotency") if metadata else None
            rows.append((pid, seq, kind, payload, record["idempotencyKey"] if record else None))
        return rows
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def backend_args(kind):
    """serve args for the embedded SQLite default, or fresh dynalite tables + MariaDB database."""
    if kind == "sqlite":
        yield []
        return
    async with production_backends(ensure_services()) as prod:
        yield prod.serve_args()


async def read_journal(tmp_path, args, pids):
    """{pid: [StoredEvent]} and {pid: Snapshot} through the journal adapter the server used."""
    if args:
        from threadweaver.adapters.journal.dynamodb import DynamoDBJournal, DynamoDBSettings

        journal = DynamoDBJournal(DynamoDBSettings.from_url(args[args.index("--journal") + 1]))
    else:
        from threadweaver.adapters.journal.sqlite import SqliteJournal

        journal = SqliteJournal(tmp_path / "journal.db")
    await journal.start()
    try:
        return (
            {pid: await journal.read(pid) for pid in pids},
            {pid: await journal.load_snapshot(pid) for pid in pids},
        )
    finally:
        await journal.close()


@pytest.mark.parametrize("backend", ["sqlite", "dynamodb+mysql"])
async def test_a_retry_after_kill_9_answers_the_first_result(tmp_path, backend):
    async with backend_args(backend) as args:
        await _retry_after_kill_9(tmp_path, args)


async def _retry_after_kill_9(tmp_path, args):
    server = RuntimeProcess(
        tmp_path, name="idempotency", args=["--sync-mode", "full", "--snapshot-every", "3", *args]
    ).start()
    admin = new_ulid()
    try:
        async with aiohttp.ClientSession(server.url) as http:
            # a thread whose keys end up in a snapshot (seq 3) and after it (seq 4)
            t2 = (await post(http, "/v1/threads/create", create_body(admin, 5), key="create-2"))[
                "thread_id"
            ]
            snapped = [
                await post(
                    http,
                    f"/v1/threads/{t2}/messages/add",
                    add_body(admin, f"s{i}", 10 + i),
                    key=f"snap-{i}",
                )
                for i in range(3)
            ]
            created = await post(http, "/v1/threads/create", create_body(admin), key="create-1")
            tid = created["thread_id"]
            assert tid == derive_thread_id(admin, "create-1")
            first = await post(
                http, f"/v1/threads/{tid}/messages/add", add_body(admin, "once"), key="add-1"
            )
        server.kill()  # right after the 200: no shutdown
        pids = [f"thread-{tid}", f"thread-{t2}"]
        events, _ = await read_journal(tmp_path, args, pids)
        assert [e.metadata["idempotency"]["idempotencyKey"] for e in events[pids[0]]] == [
            "create-1",
            "add-1",
        ]

        server.start()  # same data: replay (and snapshot)
        async with aiohttp.ClientSession(server.url) as http:
            retry = await post(
                http, f"/v1/threads/{tid}/messages/add", add_body(admin, "once"), key="add-1"
            )
            assert retry == first
            assert (
                await post(http, "/v1/threads/create", create_body(admin), key="create-1")
                == created
            )
            for i, answer in enumerate(snapped):
                assert (
                    await post(
                        http,
                        f"/v1/threads/{t2}/messages/add",
                        add_body(admin, f"s{i}", 10 + i),
                        key=f"snap-{i}",
                    )
                    == answer
                )
            reused = await post(
                http,
                f"/v1/threads/{tid}/messages/add",
                add_body(admin, "different"),
                key="add-1",
                status=422,
            )
            assert reused == {
                "error_messages": ["Idempotency-Key was used for a different request"]
            }
            fresh = await post(
                http, f"/v1/threads/{tid}/messages/add", add_body(admin, "new"), key="add-2"
            )
            assert fresh["messageIds"] != first["messageIds"]

            async def listed():
                async with http.get(
                    f"/v1/threads/{tid}/messages", params={"account_id": admin}
                ) as r:
                    data = await r.json()
                    return [m["id"] for m in data.get("result", [])]

            deadline = time.monotonic() + 20
            # ASYNC110: the read model is another process's, so polling is the only way to wait.
            while len(ids := await listed()) < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            assert ids == first["messageIds"] + fresh["messageIds"]  # read model: once each
    finally:
        assert server.stop() == 0, server.log_tail()

    events, snapshots = await read_journal(tmp_path, args, pids)
    messages = collections.Counter(
        m["id"]
        for evs in events.values()
        for e in evs
        if e.type == "MessagesAdded"
        for m in e.payload["messages"]
    )
    assert messages[first["messageIds"][0]] == 1
    assert all(messages[a["messageIds"][0]] == 1 for a in snapped)
    assert [e.type for e in events[pids[0]]] == ["ThreadCreated", "MessagesAdded", "MessagesAdded"]
    assert len(events[pids[1]]) == 4  # create-2 and 3 snap adds, nothing twice
    assert [row[1] for row in snapshots[pids[1]].state["_recent"]] == [
        "create-2",
        "snap-0",
        "snap-1",
    ]


WORKERS = 8


async def _keyed_worker(w, session, url, acked, pending, stop):
    """Create a thread, then post one message per request, each with its own key. A request
    whose answer is lost (the server dies) goes to `pending`, to be retried after the restart."""
    admin = new_ulid()
    create = (f"create-{w}", "/v1/threads/create", create_body(admin))
    tid = None
    i = 0
    while not stop.is_set():
        if tid is None:
            key, path, body = create
        else:
            key, path, body = (
                f"w{w}-{i}",
                f"/v1/threads/{tid}/messages/add",
                add_body(admin, f"w{w}-m{i}", i),
            )
        try:
            async with session.post(url + path, json=body, headers={KEY: key}) as r:
                data = await r.json()
                assert r.status == 200, (r.status, data)
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            pending.append((key, path, body))
            return
        acked[key] = data
        if tid is None:
            tid = data["thread_id"]
        else:
            i += 1


async def test_clients_retrying_after_kill_9_get_exactly_once(tmp_path):
    """A stream of keyed commands, kill -9 mid-stream, restart; each client retries the one
    request whose answer it lost: every request is in the journal exactly once, and every
    answer names what the journal holds."""
    server = RuntimeProcess(tmp_path, name="retries", args=["--sync-mode", "full"]).start()
    acked: dict[str, dict] = {}
    pending: list[tuple[str, str, dict]] = []
    stop = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            workers = [
                asyncio.create_task(_keyed_worker(w, session, server.url, acked, pending, stop))
                for w in range(WORKERS)
            ]
            await asyncio.sleep(1.5)
            server.kill()  # requests are in flight
            stop.set()
            await asyncio.gather(*workers)
        before = journal_rows(tmp_path / "journal.db")
        committed_keys = {key for *_, key in before if key is not None}
        in_flight_committed = sum(1 for key, *_ in pending if key in committed_keys)

        server.start()
        async with aiohttp.ClientSession(server.url) as http:
            retried = {key: await post(http, path, body, key=key) for key, path, body in pending}
    finally:
        assert server.stop() == 0, server.log_tail()

    rows = journal_rows(tmp_path / "journal.db")
    by_key = {key: p for *_, p, key in rows if key is not None}
    assert len(rows) == len(by_key) == len(acked) + len(retried)  # once each, nothing else
    for key, answer in {**acked, **retried}.items():
        payload = by_key[key]
        if "thread_id" in answer:
            assert payload["threadId"] == answer["thread_id"]
        else:
            assert [m["id"] for m in payload["messages"]] == answer["messageIds"]
    texts = collections.Counter(m["text"] for p in by_key.values() for m in p.get("messages", ()))
    assert set(texts.values()) == {1}
    assert len(acked) > 100 and pending, (len(acked), len(pending))
    print(
        f"\nidempotency under kill -9: {len(acked)} commands acknowledged before the kill, "
        f"{len(pending)} in flight (answers lost), of which {in_flight_committed} had been "
        f"committed; after the restart every retry answered 200 and the journal holds "
        f"{len(rows)} events = {len(acked)} + {len(retried)}, each key and message once"
    )
