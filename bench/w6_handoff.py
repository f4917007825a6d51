"""Workload 6 B: the handoff of one shard range between two members, under load.

As tests/e2e/test_sharded_runtime.py does (and with its helpers: tests/support/
{runtime_process,cluster_driver}.py; fresh backends from bench/services.py): two `threadweaver
serve --cluster` members (default settings otherwise) against the DynamoDB API (our dynalite,
pinned to the server core), a fresh MariaDB read model and the local Kubernetes control plane
(shard map in a ConfigMap, member Leases, in a fresh namespace). The bench plays the operator
(tests/support/cluster_driver.py): it publishes `ShardMap.initial` (A: the lower half of the
shards, B: the upper half), and then, for each move, a map that gives ONE range (the last eighth
of A's initial half) to the other member, waits for the losing member's acknowledgement,
publishes the completed handoff and waits until the gaining member's Lease says it serves the
range; the range then moves back, and so on.

Load (the bench process, load core): an open-loop client sends `handoff_rate` commands per
second, alternately to A and B (so half of them are forwarded), each a post to a thread of the
moving range or to one of the other threads (half and half), and every tenth a create. Every
command is timed; any non-2xx answer (503 included) or connection error is a failed request.

Per move: the handoff's duration from publishing the new map to the gaining member serving the
range (with the time of the acknowledgement and of the completed map), and, for the commands of
the moving range sent from the publication until one second after the gaining member served it,
their count, p50, p99 and max latency and the failed ones. Steady-state latency (commands sent
outside every such window) is reported beside it.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import ACCOUNT, SERVER_CORE, BenchError, log
from .processes import proc_cpu_seconds
from .profiles import Profile
from .services import ensure_kube, fresh_production_backends, tests_support_importable
from .stats import median, percentile
from .w6_production import CpuMeter, Dynalite, core_busy_seconds, wait_idle

CLUSTER = "twbench"
WINDOW_TAIL_S = 1.0  # a move's window ends this long after the gaining member serves
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Record:
    sent: float  # monotonic
    latency: float  # seconds
    status: int | str  # HTTP status, or the exception's name
    kind: str  # create | post
    group: str  # moving | other | new (a create)
    member: str
    detail: str = ""  # the answer's body (or the exception), failed requests only


def _pin(pid: int, core: int) -> None:
    """Pin every thread of a process we started (its threads inherit from the main one, but
    some may have started before the first call)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tasks = [str(pid)]
    for tid in tasks:
        try:
            os.sched_setaffinity(int(tid), {core})
        except OSError:
            pass


class CoreSampler:
    """Every 0.25 s: the server core's busy time (all processes) and the CPU time of our
    processes on it (members, dynalite), to tell, per move, how much of the core something
    else took (this machine is shared)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, float, float]] = []
        self.stop = asyncio.Event()

    def _sample(self) -> None:
        self.samples.append(
            (time.monotonic(), core_busy_seconds(), sum(proc_cpu_seconds(pid) for pid in self.pids))
        )

    async def run(self) -> None:
        while not self.stop.is_set():
            self._sample()
            try:
                await asyncio.wait_for(self.stop.wait(), 0.25)
            except TimeoutError:
                pass
        self._sample()

    def others_pct(self, lo: float, hi: float) -> float | None:
        """% of the server core used by anything but our processes between lo and hi."""
        inside = [x for x in self.samples if lo <= x[0] <= hi]
        before = [x for x in self.samples if x[0] < lo]
        after = [x for x in self.samples if x[0] > hi]
        first = before[-1] if before else (inside[0] if inside else None)
        last = after[0] if after else (inside[-1] if inside else None)
        if first is None or last is None or last[0] - first[0] <= 0:
            return None
        dt = last[0] - first[0]
        return round(max(0.0, 100 * ((last[1] - first[1]) - (last[2] - first[2])) / dt), 1)


class Load:
    """Open-loop commands at a steady rate, every one timed and kept."""

    def __init__(
        self, urls: dict[str, str], moving: list[str], other: list[str], rate: float, shards: int
    ) -> None:
        self.urls = urls
        self.names = sorted(urls)
        self.moving = moving
        self.other = other
        self.rate = rate
        self.shards = shards
        self.records: list[Record] = []
        self.stop = asyncio.Event()
        self.rng = random.Random(7)
        self.outstanding = 0

    async def _one(self, session: Any, i: int) -> None:
        member = self.names[i % len(self.names)]
        at = int(time.time() * 1000)
        if i % 10 == 9:
            kind, group, tid = "create", "new", None
            path = "/v1/threads/create"
            body: dict[str, Any] = {
                "accountId": ACCOUNT,
                "title": f"handoff {i}",
                "remarks": None,
                "parentThreadId": None,
                "administratorIds": [ACCOUNT],
                "memberIds": [],
                "createAt": at,
            }
        else:
            kind = "post"
            group = "moving" if self.rng.random() < 0.5 else "other"
            tid = self.rng.choice(self.moving if group == "moving" else self.other)
            path = f"/v1/threads/{tid}/messages/add"
            body = {
                "accountId": ACCOUNT,
                "createAt": at,
                "messages": [{"text": f"handoff {i}", "replyMessageId": None, "toAccountIds": []}],
            }
        t0 = time.monotonic()
        self.outstanding += 1
        detail = ""
        try:
            async with session.post(self.urls[member] + path, json=body) as r:
                data = await r.read()
                status: int | str = r.status
                if not 200 <= r.status < 300:
                    detail = data.decode(errors="replace")[:300]
        except Exception as exc:  # connection refused/reset, timeout: a failed request
            status = type(exc).__name__
            detail = str(exc)[:300]
        finally:
            self.outstanding -= 1
        self.records.append(Record(t0, time.monotonic() - t0, status, kind, group, member, detail))

    async def run(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session:
            tasks: set[asyncio.Task] = set()
            t0 = time.monotonic()
            i = 0
            while not self.stop.is_set():
                delay = t0 + i / self.rate - time.monotonic()
                if delay > 0:
                    try:
                        await asyncio.wait_for(self.stop.wait(), delay)
                        break
                    except TimeoutError:
                        pass
                task = asyncio.create_task(self._one(session, i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if tasks:
                await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S + 5)


async def _create_threads(
    urls: dict[str, str], shards: int, moving_range: Any, want: int, timeout: float = 120.0
) -> tuple[list[str], list[str]]:
    """Create threads (through both members) until `want` are in the moving range and `want`
    elsewhere."""
    import aiohttp

    from threadweaver.domain import thread_persistence_id
    from threadweaver.shards import shard_of

    moving: list[str] = []
    other: list[str] = []
    deadline = time.monotonic() + timeout
    names = sorted(urls)
    counter = iter(range(10**9))

    async def worker(session: aiohttp.ClientSession) -> None:
        while len(moving) < want or len(other) < want:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"w6 handoff: creating the threads took over {timeout:.0f}s "
                    f"({len(moving)} in the moving range, {len(other)} elsewhere)"
                )
            i = next(counter)
            body = {
                "accountId": ACCOUNT,
                "title": f"handoff seed {i}",
                "remarks": None,
                "parentThreadId": None,
                "administratorIds": [ACCOUNT],
                "memberIds": [],
                "createAt": 1_700_000_000_000 + i,
            }
            async with session.post(
                urls[names[i % len(names)]] + "/v1/threads/create", json=body
            ) as r:
                data = await r.json(content_type=None)
                if r.status != 200:
                    raise BenchError(f"w6 handoff: a create answered {r.status}: {data}")
            tid = data["thread_id"]
            if shard_of(thread_persistence_id(tid), shards) in moving_range:
                if len(moving) < want:
                    moving.append(tid)
            elif len(other) < want:
                other.append(tid)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(worker(session) for _ in range(8)))
    return moving, other


async def _move(driver: Any, rng: Any, source: str, target: str) -> dict[str, Any]:
    """Give `rng` from `source` to `target` as the operator does; returns the timeline."""
    from threadweaver.shards import Handoff, Move, RangeSet, ShardMap

    cur = driver.map
    moved = RangeSet((rng,))
    assignments = dict(cur.assignments)
    assignments[source] = assignments[source].difference(moved)
    assignments[target] = assignments[target].union(moved)
    epoch = cur.epoch + 1
    nxt = ShardMap(
        epoch,
        cur.shards,
        assignments,
        Handoff(epoch, (Move(rng, source, target),)),
        cur.restarts,
        cur.addresses,
    )
    t0 = time.monotonic()
    await driver.publish(nxt)
    t_published = time.monotonic()
    deadline = t0 + 60
    t_acked = None
    while t_acked is None:  # the losing member's acknowledgement (its Lease)
        members = await driver.members()
        status = members.get(source)
        if status is not None and status[0].acked_epoch >= epoch:
            t_acked = time.monotonic()
            break
        if time.monotonic() > deadline:
            raise BenchError(f"w6 handoff: {source} did not acknowledge epoch {epoch}: {members}")
        await asyncio.sleep(0.05)
    await driver.wait_acks_and_complete(timeout=60)  # publishes the completed handoff
    t_complete = time.monotonic()
    while True:  # the gaining member serves the range (its Lease)
        members = await driver.members()
        status = members.get(target)
        if (
            status is not None
            and status[0].acked_epoch >= epoch
            and moved.issubset(status[0].owned)
        ):
            t_served = time.monotonic()
            break
        if time.monotonic() > deadline:
            raise BenchError(
                f"w6 handoff: {target} does not serve {rng} after the completed "
                f"handoff of epoch {epoch}: {members}"
            )
        await asyncio.sleep(0.05)
    return {
        "direction": f"{source} -> {target}",
        "range": str(rng),
        "epoch": epoch,
        "t0": t0,
        "t_served": t_served,
        "publish_s": round(t_published - t0, 3),
        "acked_s": round(t_acked - t0, 3),
        "complete_s": round(t_complete - t0, 3),
        "duration_s": round(t_served - t0, 3),
    }


def _failed(r: Record) -> bool:
    return not (isinstance(r.status, int) and 200 <= r.status < 300)


def _lat_stats(records: list[Record]) -> dict[str, Any]:
    lat = sorted(r.latency * 1000 for r in records)
    return {
        "count": len(lat),
        "p50_ms": _r(percentile(lat, 50)),
        "p99_ms": _r(percentile(lat, 99)),
        "max_ms": _r(lat[-1] if lat else None),
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def _statuses(records: list[Record]) -> dict[str, int]:
    return dict(collections.Counter(str(r.status) for r in records if _failed(r)))


def _analyse(
    moves: list[dict[str, Any]], records: list[Record], sampler: CoreSampler
) -> dict[str, Any]:
    windows = [(m["t0"], m["t_served"] + WINDOW_TAIL_S) for m in moves]
    failures = []
    for r in sorted(records, key=lambda r: r.sent):
        if not _failed(r):
            continue
        before = [(i, m) for i, m in enumerate(moves, 1) if m["t0"] <= r.sent]
        where: dict[str, Any] = (
            {"before the first move": True}
            if not before
            else {
                "after_move": before[-1][0],
                "sent_after_publish_s": round(r.sent - before[-1][1]["t0"], 3),
                "sent_after_served_s": round(r.sent - before[-1][1]["t_served"], 3),
            }
        )
        failures.append(
            {
                **where,
                "latency_ms": round(r.latency * 1000, 1),
                "status": r.status,
                "member": r.member,
                "kind": r.kind,
                "group": r.group,
                "detail": r.detail,
            }
        )
    for m in moves:
        lo, hi = m["t0"], m["t_served"] + WINDOW_TAIL_S
        inside = [r for r in records if lo <= r.sent <= hi]
        moving = [r for r in inside if r.group == "moving"]
        m["moving"] = _lat_stats(moving)
        m["others"] = _lat_stats([r for r in inside if r.group != "moving"])
        m["failed"] = sum(1 for r in inside if _failed(r))
        m["failed_moving"] = sum(1 for r in moving if _failed(r))
        m["failed_statuses"] = _statuses(inside)
        m["window_s"] = round(hi - lo, 3)
        m["core0_others_pct"] = sampler.others_pct(lo, hi)
    for m in moves:
        del m["t0"], m["t_served"]
    outside = [r for r in records if not any(lo <= r.sent <= hi for lo, hi in windows)]
    return {
        "steady_moving": _lat_stats([r for r in outside if r.group == "moving"]),
        "steady_other": _lat_stats([r for r in outside if r.group != "moving"]),
        "failed_outside_moves": sum(1 for r in outside if _failed(r)),
        "failures": failures[:30],
    }


def _worst(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def _problems(log_path: Path, limit: int = 20) -> list[str]:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [
        line[:300]
        for line in lines
        if " WARNING " in line or " ERROR " in line or "Traceback" in line
    ][:limit]


async def _run(p: Profile, work: Path, services: Any, kubeconfig: str) -> dict[str, Any]:
    from kubernetes_asyncio import client

    tests_support_importable()
    from tests.support.cluster_driver import ClusterDriver
    from tests.support.runtime_process import RuntimeProcess
    from threadweaver.adapters.kube.client import api_client
    from threadweaver.shards import ShardMap, ShardRange

    shards = p.handoff_shards
    dynalite = Dynalite(work / "dynalite").start()
    api = await api_client(kubeconfig)
    core = client.CoreV1Api(api)
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    await core.create_namespace({"metadata": {"name": namespace}})
    members: dict[str, RuntimeProcess] = {}

    def kill_members() -> None:
        for proc in members.values():
            proc.kill()

    atexit.register(kill_members)
    try:
        async with fresh_production_backends(services.mysql, dynalite.url) as backends:
            log(f"w6 handoff: backends ready; starting 2 members ({shards} shards)")
            driver = ClusterDriver(api, namespace, CLUSTER)
            names = [f"{CLUSTER}-a", f"{CLUSTER}-b"]
            for name in names:
                proc = RuntimeProcess(
                    work / name,
                    name=name,
                    args=[
                        "--cluster",
                        CLUSTER,
                        "--namespace",
                        namespace,
                        "--kubeconfig",
                        kubeconfig,
                        *backends.serve_args(),
                        "--shards",
                        str(shards),
                    ],
                )
                proc.args += ["--peer-address", f"127.0.0.1:{proc.port}"]
                members[name] = proc.start(wait=False)
                _pin(proc.proc.pid, SERVER_CORE)
            addresses = {n: f"127.0.0.1:{m.port}" for n, m in members.items()}
            await driver.publish(ShardMap.initial(shards, names, addresses))
            for proc in members.values():
                try:
                    await asyncio.to_thread(proc.wait_ready, 90)
                except (RuntimeError, TimeoutError) as exc:
                    raise BenchError(f"w6 handoff: a member did not start: {exc}") from None
                _pin(proc.proc.pid, SERVER_CORE)
            pids = [m.proc.pid for m in members.values()] + [dynalite.proc.pid]
            startup_idle_s = await asyncio.to_thread(wait_idle, pids, 60.0)
            log(f"w6 handoff: members ready, idle after {startup_idle_s}s")
            idle: dict[str, Any] = {}
            if p.handoff_idle:  # what the cluster costs with no commands at all
                cpu0 = {n: proc_cpu_seconds(m.proc.pid) for n, m in members.items()}
                meter, t_idle = CpuMeter(dynalite), time.monotonic()
                await asyncio.sleep(p.handoff_idle)
                wall = time.monotonic() - t_idle
                idle = {
                    "seconds": round(wall, 1),
                    "member_cpu_pct": {
                        n: round(100 * (proc_cpu_seconds(m.proc.pid) - cpu0[n]) / wall, 1)
                        for n, m in members.items()
                    },
                    **meter.result(),
                }
            a, b = names
            block = driver.map.assignments[a]
            first = next(iter(block))
            size = max(1, len(first) // 4)
            rng = ShardRange(first.end - size, first.end)  # the last quarter of A's block
            urls = {n: m.url for n, m in members.items()}
            moving, other = await _create_threads(urls, shards, rng, 8)
            log(f"w6 handoff: {len(moving) + len(other)} threads; load at {p.handoff_rate:g}/s")
            load = Load(urls, moving, other, p.handoff_rate, shards)
            cpu0 = {n: proc_cpu_seconds(m.proc.pid) for n, m in members.items()}
            meter = CpuMeter(dynalite)
            t_load = time.monotonic()
            load_task = asyncio.create_task(load.run())
            sampler = CoreSampler(pids)
            sampler_task = asyncio.create_task(sampler.run())
            moves: list[dict[str, Any]] = []
            try:
                await asyncio.sleep(p.handoff_warmup)
                for i in range(p.handoff_moves):
                    source, target = (a, b) if i % 2 == 0 else (b, a)
                    log(f"w6 handoff: move {i + 1}/{p.handoff_moves}: {rng} {source} -> {target}")
                    moves.append(await _move(driver, rng, source, target))
                    await asyncio.sleep(p.handoff_settle)
            finally:
                load.stop.set()
                await asyncio.wait_for(load_task, REQUEST_TIMEOUT_S + 15)
                sampler.stop.set()
                await asyncio.wait_for(sampler_task, 10)
            wall = time.monotonic() - t_load
            cpu = {
                n: round(100 * (proc_cpu_seconds(m.proc.pid) - cpu0[n]) / wall, 1)
                for n, m in members.items()
            }
            services_cpu = meter.result()
            records = load.records
            extra = _analyse(moves, records, sampler)
            extra["core0_others_pct"] = sampler.others_pct(t_load, time.monotonic())
            failed = [r for r in records if _failed(r)]
            problems = {n: _problems(m.log_path) for n, m in members.items()}
            for name in names:
                code = members[name].stop()
                if code not in (0, None):
                    problems[name].append(f"exit code {code}")
    finally:
        atexit.unregister(kill_members)
        for proc in members.values():
            proc.stop(timeout=10)
        try:
            await core.delete_namespace(namespace)
        except Exception as exc:
            log(f"w6 handoff: deleting namespace {namespace} failed: {exc}")
        await api.close()
        dynalite.stop()
    durations = [m["duration_s"] for m in moves]
    out: dict[str, Any] = {
        "shards": shards,
        "members": names,
        "range": str(rng),
        "range_shards": len(rng),
        "rate": p.handoff_rate,
        "moves_requested": p.handoff_moves,
        "settle_s": p.handoff_settle,
        "warmup_s": p.handoff_warmup,
        "startup_idle_s": startup_idle_s,
        "idle": idle,
        "threads": {"moving": len(moving), "other": len(other)},
        "moves": moves,
        "duration_s_median": median(durations),
        "duration_s_worst": _worst(durations),
        "acked_s_median": median(m["acked_s"] for m in moves),
        "complete_s_median": median(m["complete_s"] for m in moves),
        "moving_max_ms_median": median(m["moving"]["max_ms"] for m in moves),
        "moving_max_ms_worst": _worst([m["moving"]["max_ms"] for m in moves]),
        "moving_p99_ms_median": median(m["moving"]["p99_ms"] for m in moves),
        "moving_p99_ms_worst": _worst([m["moving"]["p99_ms"] for m in moves]),
        "failed_per_move_median": median(m["failed"] for m in moves),
        "failed_per_move_worst": _worst([m["failed"] for m in moves]),
        "requests": len(records),
        "failed": len(failed),
        "failed_statuses": _statuses(records),
        "achieved_rps": round(len(records) / wall, 1),
        "load_s": round(wall, 1),
        "member_cpu_pct": cpu,
        **services_cpu,
        **extra,
        "member_log_problems": {n: v for n, v in problems.items() if v},
    }
    return out


def run(p: Profile, work: Path, services: Any) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    log("w6 handoff: hack/controlplane.sh up")
    kubeconfig = ensure_kube()
    return asyncio.run(_run(p, work, services, kubeconfig))
