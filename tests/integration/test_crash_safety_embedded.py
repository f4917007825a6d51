"""kill -9 the embedded runtime in the middle of a stream of commands, restart it: every command
that was answered 2xx is in the journal exactly once and, after catch-up, in the read model
exactly once."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sqlite3
import time

import aiohttp

from tests.support.runtime_process import RuntimeProcess
from threadweaver.domain import new_ulid

WORKERS = 16
LOAD_SECONDS = float(os.environ.get("THREADWEAVER_TEST_CRASH_SECONDS", "2"))


async def _worker(session, url, acked_threads, acked_messages, stop: asyncio.Event):
    admin = new_ulid()
    tid = None
    while not stop.is_set():
        try:
            if tid is None:
                async with session.post(
                    url + "/v1/threads/create",
                    json={
                        "accountId": admin,
                        "title": "crash",
                        "administratorIds": [admin],
                        "memberIds": [],
                        "createAt": int(time.time() * 1000),
                    },
                ) as r:
                    if r.status == 200:
                        tid = (await r.json())["thread_id"]
                        acked_threads[tid] = admin
                continue
            async with session.post(
                url + f"/v1/threads/{tid}/messages/add",
                json={
                    "accountId": admin,
                    "createAt": int(time.time() * 1000),
                    "messages": [{"text": f"m{time.monotonic_ns()}", "toAccountIds": []}],
                },
            ) as r:
                if r.status == 200:
                    acked_messages[tid].extend((await r.json())["messageIds"])
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            await asyncio.sleep(0.01)


def _journal_contents(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT pid, seq, type, payload FROM journal ORDER BY ordering"
        ).fetchall()
    finally:
        conn.close()
    created, message_ids = set(), collections.Counter()
    for _pid, _seq, kind, payload in rows:
        p = json.loads(payload)
        if kind == "ThreadCreated":
            created.add(p["threadId"])
        elif kind == "MessagesAdded":
            message_ids.update(m["id"] for m in p["messages"])
    return created, message_ids


async def test_kill_9_loses_no_acknowledged_command(tmp_path):
    server = RuntimeProcess(tmp_path, name="crash", args=["--sync-mode", "full"]).start()
    acked_threads: dict[str, str] = {}
    acked_messages: dict[str, list[str]] = collections.defaultdict(list)
    stop = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        workers = [
            asyncio.create_task(_worker(session, server.url, acked_threads, acked_messages, stop))
            for _ in range(WORKERS)
        ]
        await asyncio.sleep(LOAD_SECONDS)
        server.kill()  # mid-stream: requests are in flight
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*workers)

    total_acked = sum(map(len, acked_messages.values()))
    assert len(acked_threads) == WORKERS and total_acked > 100, (len(acked_threads), total_acked)

    created, journal_messages = _journal_contents(tmp_path / "journal.db")
    assert set(acked_threads) <= created
    for tid, ids in acked_messages.items():
        for mid in ids:
            assert journal_messages[mid] == 1, (
                f"acknowledged message {mid} of {tid} lost or doubled"
            )
    assert all(n == 1 for n in journal_messages.values())

    server.start()  # same data dir: replay, catch-up from stored offsets
    try:
        rm = sqlite3.connect(f"file:{tmp_path / 'readmodel.db'}?mode=ro", uri=True)
        deadline = time.monotonic() + 20
        while True:
            rows = rm.execute("SELECT id FROM thread_message").fetchall()
            if len(rows) == sum(journal_messages.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        projected = collections.Counter(r[0] for r in rows)
        assert projected == journal_messages  # every journaled message exactly once
        threads = {r[0] for r in rm.execute("SELECT id FROM thread").fetchall()}
        assert threads == created
        rm.close()

        # and the restarted runtime keeps serving the recovered aggregates
        async with aiohttp.ClientSession(server.url) as http:
            tid, admin = next(iter(acked_threads.items()))
            async with http.post(
                f"/v1/threads/{tid}/messages/add",
                json={
                    "accountId": admin,
                    "createAt": 1,
                    "messages": [{"text": "after restart", "toAccountIds": []}],
                },
            ) as r:
                assert r.status == 200, await r.text()
    finally:
        assert server.stop() == 0, server.log_tail()
