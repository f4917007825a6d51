"""What the runtime's metrics cost per command, in one process, without HTTP: two embedded
runtimes (`Runtime` of server.py, `--sync-mode normal`, each on its own data directory), one as
built and one with `install_metrics` a no-op (as bench/nometrics_server.py), run the same
commands through their command gateway (`Member.execute`, where the HTTP handlers hand them),
interleaved round by round. The figure is the process's CPU time per command (every thread: the
journal's writer and the read model's included, alike in both) and that of the event loop's
thread alone (where the instrumentation runs); the difference is what `install_metrics` adds
to a command (the lag tracker, the remaining wrappers and recorders; the counts the gateway and
the entities keep inline, application/stats.py, are in both). Pinned to the server core.

    python -m bench.metrics_overhead [--rounds 8] [--commands 4000] [--concurrency 64]

Workload 1 measures the same over HTTP (`python -m bench --only w1 --set
http_modes=full,normal,full-nometrics`), where the machine's noise is larger than this
difference; this measurement has no HTTP stack, no wrk and no second process around it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import ACCOUNT, SERVER_CORE


@contextlib.contextmanager
def _metrics_off() -> Iterator[None]:
    import threadweaver.observability as observability

    install = observability.install
    observability.install = lambda runtime, registry=None: None  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        observability.install = install


def _settings(data_dir: Path) -> Any:
    from threadweaver.cli import build_parser, settings_from

    args = ["serve", "--data-dir", str(data_dir), "--sync-mode", "normal", "--log-level", "warning"]
    return settings_from(build_parser().parse_args(args))


async def _threads(runtime: Any, count: int) -> list[str]:
    from threadweaver.domain import CreateThread, new_ulid

    out = []
    for _ in range(count):
        tid = new_ulid()
        await runtime.member.execute(CreateThread(tid, ACCOUNT, "hot", (ACCOUNT,)))
        out.append(tid)
    return out


async def _round(runtime: Any, commands: int, concurrency: int) -> tuple[float, float]:
    """CPU seconds per command of the process and of the event loop's thread (where the
    instrumentation runs), for `commands` posts to fresh threads (a hundred posts each: a
    thread holds a bounded number of messages)."""
    from threadweaver.domain import AddMessages, NewMessage, new_ulid

    threads = await _threads(runtime, max(16, commands // 100))
    queue = list(range(commands))

    async def worker(w: int) -> None:
        while queue:
            i = queue.pop()
            tid = threads[(w + i) % len(threads)]
            await runtime.member.execute(
                AddMessages(tid, ACCOUNT, (NewMessage(new_ulid(), f"m{i}"),), at=i)
            )

    cpu0, loop0 = time.process_time(), time.thread_time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return (time.process_time() - cpu0) / commands, (time.thread_time() - loop0) / commands


async def _main(rounds: int, commands: int, concurrency: int, work: Path) -> dict[str, Any]:
    from threadweaver.gc_tuning import tune_for_serving
    from threadweaver.server import Runtime

    runtimes: dict[str, Any] = {}
    runtimes["with metrics"] = Runtime(_settings(work / "on"))
    with _metrics_off():
        runtimes["without"] = Runtime(_settings(work / "off"))
    assert runtimes["without"].metrics is None and runtimes["with metrics"].metrics is not None
    for runtime in runtimes.values():
        await runtime.start()
    tune_for_serving()  # as `threadweaver serve` does once started (gc_tuning.py)
    for runtime in runtimes.values():
        await _round(runtime, commands // 4, concurrency)  # warm-up
    per: dict[str, list[tuple[float, float]]] = {name: [] for name in runtimes}
    try:
        for r in range(rounds):
            order = list(runtimes) if r % 2 == 0 else list(reversed(runtimes))
            for name in order:
                per[name].append(await _round(runtimes[name], commands, concurrency))
    finally:
        for runtime in runtimes.values():
            await runtime.stop()
    out: dict[str, Any] = {
        "rounds": rounds,
        "commands_per_round": commands,
        "concurrency": concurrency,
    }
    for i, what in enumerate(("process", "event_loop_thread")):
        on = [x[i] for x in per["with metrics"]]
        off = [x[i] for x in per["without"]]
        out[what] = {
            "cpu_us_per_command": {
                "with metrics": round(statistics.median(on) * 1e6, 1),
                "without": round(statistics.median(off) * 1e6, 1),
            },
            "runs_us": {
                "with metrics": [round(x * 1e6, 1) for x in on],
                "without": [round(x * 1e6, 1) for x in off],
            },
            "overhead_us_per_command": round(
                statistics.median(a - b for a, b in zip(on, off)) * 1e6, 1
            ),
            "ratio": round(statistics.median(a / b for a, b in zip(on, off)), 3),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--commands", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    os.sched_setaffinity(0, {SERVER_CORE})
    import uvloop

    with tempfile.TemporaryDirectory(prefix="threadweaver-metrics-cost-") as tmp:
        result = uvloop.run(_main(args.rounds, args.commands, args.concurrency, Path(tmp)))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
