"""Workload 7: live event streams (application/streams.py) on one member.

A. Idle: `stream_idle` subscribers (thread streams over `stream_threads` threads, nothing
   posted) held open; the server's RSS before and after they connected, per subscriber.
B. Active: `stream_active` subscribers spread evenly over `stream_threads` threads, posts sent
   open-loop at `stream_rate` per second to those threads for `stream_seconds`; the delivery
   latency of every (post, subscriber): from the post's acknowledgement (its 200 read by the
   poster) to the event read by the subscriber (0 when the event came first: the tail is fed
   as the append becomes durable, before the command answers). p50/p99/max.
C. Fan-out: `stream_fanout` subscribers of ONE thread, posts at `stream_fanout_rate` per
   second; the same latency.

B and C run on the embedded runtime (SQLite journal and read model) and, with the services (full
runs), on the production backends (DynamoDB API on dynalite, MySQL read model on MariaDB). Server on the
server core, the bench's clients (uvloop, aiohttp) on the load core; every loop is bounded.

    python -m bench --only w8 [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Any

import aiohttp

from .base import ACCOUNT, HOST, BenchError, log
from .client import create_body, post_body
from .profiles import Profile
from .servers import Server, start_runtime

WAVE = 250  # streams opened at once (the listen backlog is 128 in aiohttp)
SERVER_ARGS = [
    "--sync-mode",
    "normal",
    "--streams-per-account",
    "1000000",  # every subscriber is the bench's one account
    "--stream-heartbeat",
    "15",
]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latency_summary(samples: list[float], expected: int) -> dict[str, Any]:
    ms = [max(0.0, s) * 1000 for s in samples]
    return {
        "samples": len(ms),
        "expected": expected,
        "p50_ms": _percentile(ms, 0.50),
        "p99_ms": _percentile(ms, 0.99),
        "max_ms": max(ms) if ms else None,
        "before_ack_fraction": round(sum(1 for s in samples if s <= 0) / len(samples), 3)
        if samples
        else None,
    }


# the bench's posts carry the text p<i>: found in the stream's bytes without parsing every
# event (the client, one core for up to 1,000 streams, must not be what is measured)
_POST_TEXT = re.compile(rb'"text":"(p[0-9]+)"')


class Subscriber:
    """One SSE connection; records when each post (by its text) arrived. The frames' format
    is checked by the tests (tests/support/sse_client.py); here only the texts are found."""

    def __init__(self, arrivals: dict[bytes, list[float]] | None) -> None:
        self.arrivals = arrivals
        self.opened = asyncio.Event()

    async def run(self, session: aiohttp.ClientSession, url: str) -> None:
        async with session.get(url, headers={"Accept": "text/event-stream"}) as r:
            if r.status != 200:
                raise BenchError(f"stream answered {r.status}: {await r.text()}")
            tail = b""
            while True:
                chunk = await r.content.readany()
                if not chunk:
                    return
                now = time.monotonic()
                self.opened.set()  # the server's first bytes: `: connected`
                if self.arrivals is None:
                    continue
                data = tail + chunk
                end = data.rfind(b"\n\n")
                cut = end + 2 if end >= 0 else 0  # complete frames only
                tail = data[cut:]
                for text in _POST_TEXT.findall(data, 0, cut):
                    self.arrivals.setdefault(text, []).append(now)


async def _threads(session: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    ids = []
    for i in range(count):
        async with session.post(url + "/v1/threads/create", json=create_body(f"s{i}", i)) as r:
            if r.status != 200:
                raise BenchError(f"create answered {r.status}")
            ids.append((await r.json())["thread_id"])
    return ids


async def _subscribe(
    session: aiohttp.ClientSession,
    url: str,
    threads: list[str],
    count: int,
    arrivals: dict[bytes, list[float]] | None,
    timeout: float,
) -> tuple[list[Subscriber], list[asyncio.Task[None]]]:
    subs: list[Subscriber] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        async with asyncio.timeout(timeout):
            for i in range(count):
                thread = threads[i % len(threads)]
                sub = Subscriber(arrivals)
                stream = f"{url}/v1/threads/{thread}/events?account_id={ACCOUNT}&min_seq=1"
                subs.append(sub)
                tasks.append(asyncio.create_task(sub.run(session, stream)))
                if i % WAVE == WAVE - 1 or i == count - 1:  # opened in waves, not all at once
                    await asyncio.gather(*(s.opened.wait() for s in subs[-WAVE:]))
    except TimeoutError:
        opened = sum(s.opened.is_set() for s in subs)
        failed = [t.exception() for t in tasks if t.done() and t.exception()]
        raise BenchError(f"{opened}/{count} streams opened in {timeout}s: {failed[:3]}") from None
    return subs, tasks


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _post_open_loop(
    session: aiohttp.ClientSession, url: str, threads: list[str], rate: float, seconds: float
) -> tuple[dict[bytes, float], dict[bytes, float], int]:
    """Posts at `rate`/s for `seconds`, open loop; text -> acknowledgement time, and text ->
    the time it was sent."""
    acks: dict[bytes, float] = {}
    sent: dict[bytes, float] = {}
    errors = 0
    in_flight: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        nonlocal errors
        text = f"p{i}"
        path = f"/v1/threads/{threads[i % len(threads)]}/messages/add"
        key = text.encode()
        sent[key] = time.monotonic()
        try:
            async with session.post(url + path, json=post_body(text, i)) as r:
                await r.read()
                if r.status == 200:
                    acks[key] = time.monotonic()
                else:
                    errors += 1
        except aiohttp.ClientError:
            errors += 1

    started = time.monotonic()
    total = int(rate * seconds)
    for i in range(total):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*in_flight)
    except TimeoutError:
        raise BenchError(
            f"{len(in_flight)} of {total} posts unanswered 60 s after the last was sent"
        ) from None
    return acks, sent, errors


async def _latency(
    server: Server, threads_count: int, subscribers: int, rate: float, seconds: float
) -> dict[str, Any]:
    url = server.url
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        threads = await _threads(session, url, threads_count)
        arrivals: dict[bytes, list[float]] = {}
        _, tasks = await _subscribe(session, url, threads, subscribers, arrivals, 120)
        try:
            server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
            acks, sent, errors = await _post_open_loop(session, url, threads, rate, seconds)
            per_thread = subscribers / threads_count
            expected = int(len(acks) * per_thread)
            deadline = time.monotonic() + 30
            while sum(map(len, arrivals.values())) < expected and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            # CPU per post while posting and delivering: the server's (every subscriber's
            # write of it) and the bench's one client process (the poster and every read)
            posts = max(1, len(acks))
            server_ms = (server.cpu_seconds() - server_cpu) * 1000 / posts
            client_ms = (time.process_time() - client_cpu) * 1000 / posts
        finally:
            await _stop(tasks)
    samples = [t - acks[text] for text, times in arrivals.items() if text in acks for t in times]
    from_send = [t - sent[text] for text, times in arrivals.items() if text in acks for t in times]
    sent_ms = [s * 1000 for s in from_send]
    return {
        "threads": threads_count,
        "subscribers": subscribers,
        "rate": rate,
        "seconds": seconds,
        "posts_acknowledged": len(acks),
        "post_errors": errors,
        **_latency_summary(samples, expected),
        # from the post being sent (the command's own time included): an upper bound
        "from_send_p50_ms": _percentile(sent_ms, 0.50),
        "from_send_p99_ms": _percentile(sent_ms, 0.99),
        "server_cpu_ms_per_post": round(server_ms, 2),
        "client_cpu_ms_per_post": round(client_ms, 2),
    }


async def _idle(server: Server, threads_count: int, subscribers: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        threads = await _threads(session, server.url, threads_count)
        # one stream per thread first: the tails exist, what follows is per subscriber
        _, warm = await _subscribe(session, server.url, threads, threads_count, None, 60)
        await asyncio.sleep(1)
        before = server.rss()
        subs, tasks = await _subscribe(
            session, server.url, threads, subscribers, None, max(60, subscribers / 50)
        )
        await asyncio.sleep(2)
        after = server.rss()
        await _stop(tasks + warm)
    grown = (after["rss_kib"] - before["rss_kib"]) * 1024
    return {
        "threads": threads_count,
        "subscribers": len(subs),
        "rss_before_mib": round(before["rss_kib"] / 1024, 1),
        "rss_after_mib": round(after["rss_kib"] / 1024, 1),
        "bytes_per_subscriber": round(grown / len(subs)),
    }


def _production_args(
    work: Path, wanted: bool
) -> contextlib.AbstractContextManager[list[str] | None]:
    """The production backends' server flags (fresh tables and database), or None without
    the services (or not `wanted`: quick runs)."""

    @contextlib.contextmanager
    def backends() -> Any:
        if not wanted:
            yield None
            return
        try:
            from .services import ensure_services, fresh_production_backends
        except ImportError:
            yield None
            return
        try:
            services = ensure_services()
        except BenchError as exc:
            log(f"w8: production backends skipped: {exc}")
            yield None
            return
        loop = asyncio.new_event_loop()
        cm = fresh_production_backends(services.mysql, services.dynamodb, "streams")
        b = loop.run_until_complete(cm.__aenter__())
        try:
            # 64 shards: a production member's start reads its whole range, a query a shard
            yield ["--journal", b.journal_url, "--read-model", b.read_model_url, "--shards", "64"]
        finally:
            loop.run_until_complete(cm.__aexit__(None, None, None))
            loop.close()

    return backends()


def _run_async(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _part(coro: Any) -> dict[str, Any]:
    """One measurement; its failure is recorded in its place (the others are kept)."""
    try:
        return _run_async(coro)
    except Exception as exc:
        log(f"w7: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"[:2000]}


def run(p: Profile, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    server = start_runtime(work / "idle", SERVER_ARGS)
    try:
        log(f"w7 A: {p.stream_idle} idle subscribers over {p.stream_threads} threads")
        result["idle"] = _part(_idle(server, p.stream_threads, p.stream_idle))
    finally:
        server.stop()
    stacks: list[tuple[str, list[str] | None]] = [("embedded", [])]
    with _production_args(work, p.stream_production) as production:
        if production is not None:
            stacks.append(("production", production))
        for name, extra in stacks:
            assert extra is not None
            server = start_runtime(work / name, [*SERVER_ARGS, *extra])
            try:
                log(f"w7 B ({name}): {p.stream_active} subscribers, {p.stream_rate}/s posts")
                result[f"active_{name}"] = _part(
                    _latency(
                        server,
                        p.stream_threads,
                        p.stream_active,
                        p.stream_rate,
                        p.stream_seconds,
                    )
                )
                log(f"w7 C ({name}): {p.stream_fanout} subscribers of one thread")
                result[f"fanout_{name}"] = _part(
                    _latency(server, 1, p.stream_fanout, p.stream_fanout_rate, p.stream_seconds)
                )
            finally:
                server.stop()
    failed = [k for k, v in result.items() if "error" in v]
    if failed:
        result["failed_parts"] = failed
    assert HOST == "127.0.0.1"
    return result
