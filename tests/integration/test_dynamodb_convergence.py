"""The read model converges whatever the DynamoDB endpoint does: a real `threadweaver serve`
on dynalite behind the fault proxy (tests/support/dynamo_fault_proxy.py) and MariaDB, with 1
and 1,024 shards. Under each fault (delayed and reordered writes, lost answers, throttling,
server errors, connection resets), while commands run at concurrency: every acknowledged
command is in the journal once, and the read model holds exactly the journal's messages within
5 s after the faults stop. A member killed -9 in the middle of its appends loses nothing and
doubles nothing after a restart."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.support.backends import production_backends
from tests.support.chat_load import Load, via
from tests.support.convergence import journaled_messages, read_model_converges
from tests.support.dynamo_fault_proxy import DynamoFaultProxy
from tests.support.runtime_process import RuntimeProcess
from tests.support.services import ensure_services
from tests.support.waiting import eventually
from threadweaver.adapters.journal.dynamodb import DynamoDBJournal

CONVERGED_WITHIN = 5.0  # seconds after the faults stop: the acceptance criterion
THREADS = 16
POSTS = 10  # per thread, one at a time per thread, all threads at once

FAULTS = {
    "delayed-writes": dict(delay=0.3, delay_seconds=0.05),
    "reordered-writes": dict(reorder=0.3),
    "lost-answers": dict(drop_after=0.1),
    "throttling": dict(throttle=0.15),
    "server-errors": dict(server_error=0.05, server_error_after=0.05),
    "connection-resets": dict(drop_before=0.1),
}


def runtime(tmp_path, proxy, backends, shards: int) -> RuntimeProcess:
    return RuntimeProcess(
        tmp_path,
        name="converge",
        args=[
            "--journal",
            via(proxy, backends),
            "--read-model",
            backends.read_model_url,
            "--shards",
            str(shards),
        ],
    )


async def check_journal_and_read_model(backends, shards, load) -> float:
    """Every acknowledged message in the journal once (no gap, no double), and the read
    model exactly the journal's within CONVERGED_WITHIN seconds; returns how long it took."""
    journal = DynamoDBJournal(backends.dynamodb, shards=shards)
    await journal.start()
    try:
        journaled = await journaled_messages(journal, load.threads)
    finally:
        await journal.close()
    for tid, ids in load.acked.items():
        assert set(ids) <= set(journaled[tid]), f"{tid}: an acknowledged message was lost"
    return await read_model_converges(backends.read_model_url, journaled, CONVERGED_WITHIN)


@pytest.mark.parametrize("shards", [1, 1024])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_the_read_model_converges_after_faults(fault, shards, tmp_path):
    services = ensure_services()
    async with production_backends(services) as backends:
        proxy = DynamoFaultProxy("http://" + urlsplit(backends.journal_url).netloc).start()
        server = runtime(tmp_path, proxy, backends, shards).start(timeout=60)
        try:
            load = Load(server.url)
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                await load.create(http, THREADS)
                proxy.set(**FAULTS[fault])
                await load.post_everywhere(http, POSTS)
                proxy.calm()
            injected = dict(proxy.faults)
            assert injected, f"no {fault} injected"
            assert load.answers[200] >= THREADS * POSTS // 2, load.answers
            took = await check_journal_and_read_model(backends, shards, load)
        finally:
            assert server.stop() == 0, server.log_tail()
            proxy.close()
    print(
        f"\n{fault}, {shards} shards: {injected}; answers {dict(load.answers)}; converged {took:.2f}s"
    )


@pytest.mark.parametrize("shards", [1, 1024])
async def test_a_member_killed_mid_append_loses_and_doubles_nothing(shards, tmp_path):
    services = ensure_services()
    async with production_backends(services) as backends:
        # Delayed writes: at the kill, appends are in flight (some applied, unanswered).
        proxy = DynamoFaultProxy(
            "http://" + urlsplit(backends.journal_url).netloc, delay=0.5, delay_seconds=0.2
        ).start()
        server = runtime(tmp_path, proxy, backends, shards).start(timeout=60)
        try:
            load = Load(server.url)
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                proxy.calm()
                await load.create(http, THREADS)
                proxy.set(delay=0.5)
                posting = asyncio.ensure_future(load.post_everywhere(http, 1000))
                await eventually(
                    lambda: load.answers[200] >= THREADS * 3, what="commands before the kill"
                )
                server.kill()
                await asyncio.gather(posting, return_exceptions=True)
                proxy.calm()
                server.start(timeout=60)
                await load.post_everywhere(http, 1)  # every thread takes commands again
                assert load.answers[200] >= THREADS * 4, load.answers
            await check_journal_and_read_model(backends, shards, load)
        finally:
            assert server.stop() == 0, server.log_tail()
            proxy.close()
