"""`threadweaver serve` under pyinstrument: profiles the event-loop thread (where every request,
entity and projection step runs) until SIGTERM, then writes the call tree (text) and a flat
summary (JSON: self time by function and by component).

    python -m bench.profile_server --out DIR -- serve --host 127.0.0.1 --port P --data-dir D ...
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

# Component of a frame, by the path of its file: first match wins.
COMPONENTS = (
    ("threadweaver/adapters/http", "threadweaver HTTP adapter (validation, wire, errors, metrics)"),
    ("threadweaver/adapters/readmodel", "threadweaver read model (projection writes)"),
    ("threadweaver/adapters/journal", "threadweaver journal (group commit, event loop side)"),
    ("threadweaver/application/projector", "threadweaver projector"),
    ("threadweaver/application/projection", "threadweaver projector"),
    ("threadweaver/application", "threadweaver entities"),
    ("threadweaver/domain", "threadweaver domain (decide/evolve/events/ids)"),
    ("threadweaver/", "threadweaver (other)"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("aiosqlite/", "aiosqlite"),
    ("prometheus_client/", "prometheus_client"),
    ("aiohttp/", "aiohttp"),
    ("multidict/", "aiohttp"),
    ("yarl/", "aiohttp"),
    ("orjson", "orjson"),
    ("asyncio/", "asyncio"),
    ("uvloop/", "uvloop"),
    ("concurrent/futures", "executor hand-off"),
    ("threading.py", "executor hand-off"),
    ("logging/", "logging"),
)


LOOP_FUNCTIONS = {"run_until_complete", "run_forever", "run", "select", "poll", "_run_once"}


def component(path: str) -> str:
    for needle, name in COMPONENTS:
        if needle in path:
            return name
    return "other"


TASKS = (
    (
        "projector",
        "projector: the RMU on the event loop (read-model batches are written in their own thread)",
    ),
    ("journal/sqlite", "journal: group-commit loop (hand-off to the writer thread)"),
    ("aiohttp/", "HTTP: aiohttp protocol, middlewares, handlers, commands"),
    ("sharding", "HTTP: aiohttp protocol, middlewares, handlers, commands"),
    ("entities", "entities: snapshots, passivation"),
    (
        "sqlalchemy/",
        "projector: the RMU on the event loop (read-model batches are written in their own thread)",
    ),  # its greenlets
    (
        "aiosqlite/",
        "projector: the RMU on the event loop (read-model batches are written in their own thread)",
    ),
)


def _task_of(path: str, function: str) -> str:
    for needle, name in TASKS:
        if needle in path:
            return name
    return f"other ({function})"


def _is_loop_machinery(path: str) -> bool:
    return (
        not path
        or path.startswith("<")
        or "asyncio/" in path
        or "uvloop" in path
        or "profile_server" in path
        or "threadweaver/server.py" in path
        or "runpy" in path
    )


def flat(session: Any) -> dict[str, Any]:
    """Where the event-loop thread's busy time goes: by task (request handling, projector,
    journal loop), by component (self time; a C function's time is charged to the component of
    its Python caller), by function (self time), and inclusive time of threadweaver functions.
    The loop's own idle time (epoll wait, or waiting for the CPU) is excluded."""
    root = session.root_frame()
    by_fn: dict[str, float] = defaultdict(float)
    by_comp: dict[str, float] = defaultdict(float)
    by_task: dict[str, float] = defaultdict(float)
    c_calls: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)
    total = root.time if root else 0.0
    loop_self = 0.0

    def walk(frame: Any, on_stack: frozenset, caller_path: str, task: str | None) -> None:
        nonlocal loop_self
        child_time = sum(c.time for c in frame.children)
        self_time = max(0.0, frame.time - child_time)
        owner = frame
        if frame.identifier.startswith("[") and frame.parent is not None:
            owner = frame.parent  # a synthetic [self] frame: charge its caller
        path = owner.file_path or ""
        fpath = frame.file_path or ""
        if task is None and not frame.identifier.startswith("[") and not _is_loop_machinery(fpath):
            task = _task_of(fpath, frame.function)
        if self_time:
            if (
                task is None
                and owner.function in LOOP_FUNCTIONS
                and (path.startswith("<") or "asyncio/" in path or "uvloop" in path)
            ):
                loop_self += self_time  # inside the C event loop: I/O, idle, descheduled
            else:
                name = f"{owner.function} ({owner.file_path_short}:{owner.line_no})"
                by_fn[name] += self_time
                is_c = not path or path.startswith("<")
                comp_path = caller_path if is_c else path
                by_comp[component(comp_path) if comp_path else "other"] += self_time
                if is_c:
                    c_calls[f"{owner.function} <- {component(caller_path)}"] += self_time
                by_task[task or "event loop machinery"] += self_time
        key = f"{frame.function} ({frame.file_path_short})"
        if "threadweaver" in fpath and key not in on_stack:
            inclusive[key] += frame.time
            on_stack = on_stack | {key}
        next_caller = fpath if fpath and not fpath.startswith("<") else caller_path
        for c in frame.children:
            walk(c, on_stack, next_caller, task)

    if root is not None:
        walk(root, frozenset(), "", None)
    busy = total - loop_self

    def rows(d: dict[str, float], key: str, n: int = 40) -> list[dict[str, Any]]:
        return [
            {key: k, "s": round(v, 3), "pct": round(100 * v / busy, 1) if busy else 0}
            for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]
        ]

    return {
        "wall_s": round(total, 3),
        "loop_idle_s": round(loop_self, 3),
        "total_s": round(busy, 3),  # percentages are of this: the loop thread's busy time
        "self_by_task": rows(by_task, "task"),
        "self_by_component": rows(by_comp, "component"),
        "self_by_function": rows(by_fn, "function"),
        "c_calls": rows(c_calls, "call", 15),
        "inclusive_threadweaver": rows(inclusive, "function"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--interval", type=float, default=0.0005)
    parser.add_argument("serve_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    rest = [a for a in args.serve_args if a != "--"]
    from pyinstrument import Profiler

    from threadweaver import logs
    from threadweaver.cli import build_parser, settings_from
    from threadweaver.server import run, serve

    ns = build_parser().parse_args(rest)
    logs.configure(ns.log_level, ns.log_format)
    settings = settings_from(ns)
    if settings.server.host != "127.0.0.1":
        raise SystemExit("profiling listens on 127.0.0.1 only")
    profiler = Profiler(interval=args.interval, async_mode="disabled")

    async def profiled() -> None:
        # Profile the serving only: start once the server is ready (after imports, migrations).
        import asyncio

        ready = asyncio.Event()

        async def start_when_ready() -> None:
            await ready.wait()
            profiler.start()

        starter = asyncio.create_task(start_when_ready())
        try:
            await serve(settings, ready=ready)
        finally:
            starter.cancel()

    try:
        run(profiled())
    finally:
        if profiler.is_running:
            profiler.stop()
        session = profiler.last_session
        args.out.mkdir(parents=True, exist_ok=True)
        if session is not None:
            (args.out / "profile.txt").write_text(
                profiler.output_text(unicode=False, color=False, show_all=False)
            )
            (args.out / "profile.json").write_text(json.dumps(flat(session), indent=1))
            session.save(str(args.out / "session.pyisession"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
