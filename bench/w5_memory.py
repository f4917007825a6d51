"""Workload 5: memory per active entity, and the process's peak RSS with N threads touched once,
with passivation bounding memory (--max-entities B) vs without a bound (--max-entities > N).

Process figures: `threadweaver serve` (sync-mode normal: durability does not change memory, and
the set-up is faster) on the server core; N threads are created over HTTP by wrk on the load core
(stopped once the journal holds N more events; each create touches one new entity, which stays
in memory until passivated). The bounded and the unbounded server run side by side, each filled
by its own wrk at the same time. VmRSS
and VmHWM (peak) are read from /proc at the start (idle, after warm-up) and at the end.
Per-entity bytes = (RSS unbounded - RSS bounded) / (N - B).

In-process figure: an EntityManager on SqliteJournal creating K threads, tracemalloc's traced
bytes before and after, divided by K (Python objects only: no allocator slack), in a fresh
process.

    python -m bench.w5_memory --path FILE --threads K
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import secrets
import shutil
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from .base import ACCOUNT, PYTHON, SERVER_CORE, log
from .client import create_threads
from .embedded_stores import journal_counter
from .load import wrk_until
from .processes import run_json
from .profiles import Profile
from .servers import start_runtime
from .stats import ratio


async def _in_process(path: Path, count: int) -> dict[str, Any]:
    from threadweaver.adapters.journal.sqlite import SqliteJournal
    from threadweaver.application.entities import EntityManager, EntitySettings
    from threadweaver.domain import CreateThread, new_ulid

    journal = SqliteJournal(path, synchronous="off")
    await journal.start()
    manager = EntityManager(
        journal, EntitySettings(snapshot_every=100, passivate_after=0, max_entities=count * 2)
    )
    ids = [new_ulid() for _ in range(count)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    sem = asyncio.Semaphore(256)

    async def one(tid: str, i: int) -> None:
        async with sem:
            await manager.execute(
                CreateThread(
                    thread_id=tid,
                    account_id=ACCOUNT,
                    title=f"memory {i}",
                    administrator_ids=(ACCOUNT,),
                    at=1_700_000_000_000 + i,
                )
            )

    await asyncio.wait_for(asyncio.gather(*(one(t, i) for i, t in enumerate(ids))), 600)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    entities = len(manager)
    await journal.close()
    return {"entities": entities, "bytes_per_entity": (after - before) / count}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--path", type=Path, required=True)
    p.add_argument("--threads", type=int, default=10_000)
    a = p.parse_args()
    for suffix in ("", "-wal", "-shm"):
        Path(str(a.path) + suffix).unlink(missing_ok=True)
    a.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import uvloop

        res = uvloop.run(_in_process(a.path, a.threads))
    except ImportError:
        res = asyncio.run(_in_process(a.path, a.threads))
    for suffix in ("", "-wal", "-shm"):
        Path(str(a.path) + suffix).unlink(missing_ok=True)
    print(json.dumps(res))
    return 0


def _servers(
    work: Path, threads: int, limits: list[int], max_duration: float
) -> list[dict[str, Any]]:
    """One server per --max-entities value, side by side on the server core, each filled by its
    own wrk on the load core at the same time (each process's RSS is its own)."""
    from concurrent.futures import ThreadPoolExecutor

    servers = []
    try:
        for limit in limits:
            data = work / f"mem-{limit}"
            shutil.rmtree(data, ignore_errors=True)
            servers.append(
                (
                    limit,
                    data,
                    start_runtime(
                        data,
                        [
                            "--sync-mode",
                            "normal",
                            "--max-entities",
                            str(limit),
                            "--passivate-after",
                            "3600",
                        ],
                    ),
                )
            )
        starts = []
        for _, _, server in servers:
            create_threads(server.url, 200, tag="warmup")
        time.sleep(0.5)
        for _, _, server in servers:
            starts.append(server.rss())

        def fill(entry: tuple[int, Path, Any]) -> tuple[float, int]:
            _, data, server = entry
            count = journal_counter(data)
            before = count()
            took = wrk_until(
                server.url,
                count,
                before + threads,
                max_duration=max_duration,
                args=["create", secrets.token_hex(4), "-", str(threads)],
                partial_ok=True,
            )
            return took, count() - before

        with ThreadPoolExecutor(len(servers)) as pool:
            filled = list(pool.map(fill, servers))
        time.sleep(1.0)
        out = []
        for (limit, _, server), start, (took, made) in zip(servers, starts, filled):
            end = server.rss()
            out.append(
                {
                    "max_entities": limit,
                    "threads": made,
                    "create_s": round(took, 1),
                    "start_rss_mib": start["rss_kib"] / 1024,
                    "end_rss_mib": end["rss_kib"] / 1024,
                    "peak_rss_mib": end["peak_rss_kib"] / 1024,
                }
            )
        return out
    finally:
        for _, data, server in servers:
            server.stop()
            shutil.rmtree(data, ignore_errors=True)


def run(p: Profile, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    k = p.memory_in_process
    log(f"w5: in-process memory per entity ({k} entities)")
    inproc = run_json(
        [PYTHON, "-m", "bench.w5_memory", "--path", str(work / "mem.db"), "--threads", str(k)],
        core=SERVER_CORE,
        timeout=600,
    )
    unbounded_limit = p.memory_threads * 10
    log(
        f"w5: {p.memory_threads} threads, --max-entities {p.memory_bound} and "
        f"{unbounded_limit} (no bound), side by side"
    )
    bounded, unbounded = _servers(
        work, p.memory_threads, [p.memory_bound, unbounded_limit], p.memory_max_fill_s
    )
    per_entity = None
    if unbounded["threads"] > p.memory_bound:
        per_entity = (
            (unbounded["end_rss_mib"] - bounded["end_rss_mib"])
            * 1024
            * 1024
            / (unbounded["threads"] - p.memory_bound)
        )
    return {
        "threads": p.memory_threads,
        "bound": p.memory_bound,
        "in_process": inproc,
        "bounded": bounded,
        "unbounded": unbounded,
        "rss_bytes_per_entity": per_entity,
        "peak_ratio_unbounded_over_bounded": ratio(
            unbounded["peak_rss_mib"], bounded["peak_rss_mib"]
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
