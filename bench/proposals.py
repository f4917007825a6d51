"""Micro-benchmarks behind the optimisation proposals of docs/benchmarks.md ("Profile"): each
measures the current runtime code against a prototype of the proposed change, written here (the
runtime code is not edited by the benchmarks). Run in a fresh process pinned to the server core.

    python -m bench.proposals [--scale 1.0]

(Numbers as in docs/benchmarks.md, "Proposals"; P2, P5, P6, P9, P11 have no micro-benchmark.)
P0  projector: the shards an append touched read with one query and applied in one read-model
    transaction, vs one read + one transaction per run of consecutive shards (live throughput
    with appends pushed in group commits; with P1).
P1  read-model projection: SqlReadModel.apply (a statement, i.e. ~3 aiosqlite thread hops, per
    row) vs a batched apply (executemany per table per batch; same final rows, checked).
P3  EntityManager._evict: list(all entity keys) per eviction at the bound vs islice.
P4  EntityManager._persist: asyncio.ensure_future(journal.append(...)) + shield (a Task per
    command) vs shielding the journal's own future (no Task).
P7  new_ulid: a 26-step Python loop + one os.urandom syscall per id vs 13 lookups in a
    1,024-entry table of character pairs on buffered randomness (same output, checked).
P8  ulid_error: a Python loop over 26 characters vs one precompiled regex on the valid path.
P10 journal group commit: SqliteJournal._write_batch (a SAVEPOINT per append, an INSERT per
    event) vs one executemany per batch, savepoints only on the rare conflict path.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson

from threadweaver.domain.ids import ulid_error as _ulid_error_slow

from .common import PYTHON, SERVER_CORE, log, run_json
from .profiles import Profile

ACCOUNT = "01H8XGJWBWBAQ4Z4G2V6K8M3PJ"


def proposal_status() -> dict[str, str]:
    """Which proposals the measured runtime code already has (read from its source: the
    runtime is being changed while these figures are taken). "pending" or "applied"."""
    import inspect

    from threadweaver.adapters.http import app as http_app
    from threadweaver.adapters.http.handlers_commands import CommandHandlers
    from threadweaver.adapters.journal.sqlite import SqliteJournal
    from threadweaver.adapters.readmodel import sql as rm_sql
    from threadweaver.application import sharding
    from threadweaver.application.entities import EntityManager
    from threadweaver.application.projector import Projector
    from threadweaver.domain import ids

    def src(obj: Any) -> str:
        try:
            return inspect.getsource(obj)
        except (OSError, TypeError):
            return ""

    checks = {
        "P0": "_runs(dirty)" not in src(Projector._run),
        "P1": "executemany" in src(rm_sql) or hasattr(rm_sql.SqlReadModel, "_apply_events"),
        "P3": "islice" in src(EntityManager._evict),
        "P4": hasattr(SqliteJournal, "append_nowait"),
        "P5": src(http_app.create_app).count("middleware") < 3,
        "P6": "_draining" in src(sharding.Member),
        "P7": "range(26)" not in src(ids.new_ulid),
        "P8": "fullmatch" in src(ids.ulid_error) or "match(" in src(ids.ulid_error),
        "P9": "asyncio.timeout(" not in src(CommandHandlers._run),
        "P10": "executemany" in src(SqliteJournal._write_batch),
        "P11": "_row_to_event" not in src(SqliteJournal._read_sync),
        "P12": "< self._pushed.get(s, 0)" not in src(Projector._run),
    }
    return {k: "applied" if v else "pending" for k, v in checks.items()}


def _best(fn: Callable[[], Any], repeat: int = 5) -> float:
    """Seconds of the fastest of `repeat` calls (the least disturbed by a noisy machine)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# ---------------------------------------------------------------------------------------------
# P7, P8: ULIDs
# ---------------------------------------------------------------------------------------------

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]     # 10 bits -> 2 characters


class _Random:
    """os.urandom in 4 KiB blocks instead of a syscall per id."""
    __slots__ = ("buf", "pos")

    def __init__(self) -> None:
        self.buf, self.pos = b"", 0


_rnd = _Random()
_from_bytes = int.from_bytes


def _random10() -> bytes:
    pos = _rnd.pos
    if pos + 10 > len(_rnd.buf):
        _rnd.buf, pos = os.urandom(4096), 0
    _rnd.pos = pos + 10
    return _rnd.buf[pos:pos + 10]


def new_ulid_proposed(timestamp_ms: int | None = None, randomness: bytes | None = None) -> str:
    """Same output as domain.ids.new_ulid: 13 table lookups of 10 bits instead of 26 loop steps
    of 5 bits, and buffered randomness instead of a syscall per id."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    v = (ts << 80) | _from_bytes(_random10() if randomness is None else randomness, "big")
    e = _PAIRS
    return (e[v >> 120] + e[(v >> 110) & 1023] + e[(v >> 100) & 1023] + e[(v >> 90) & 1023]
            + e[(v >> 80) & 1023] + e[(v >> 70) & 1023] + e[(v >> 60) & 1023]
            + e[(v >> 50) & 1023] + e[(v >> 40) & 1023] + e[(v >> 30) & 1023]
            + e[(v >> 20) & 1023] + e[(v >> 10) & 1023] + e[v & 1023])


_ULID_RE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}")
_valid_ulid = _ULID_RE.fullmatch


def ulid_error_proposed(text: object) -> str | None:
    if type(text) is str and _valid_ulid(text):
        return None
    return _ulid_error_slow(text)     # the slow path only to word the error


def p7_p8() -> dict[str, Any]:
    from threadweaver.domain.ids import new_ulid, ulid_error
    n = 20_000
    # same output for the same inputs
    for _ in range(200):
        ts, rnd = int(time.time() * 1000), os.urandom(10)
        assert new_ulid(ts, rnd) == new_ulid_proposed(ts, rnd)
    ids = [new_ulid() for _ in range(n)]
    bad = ["x" * 26, "8" + "0" * 25, "0" * 25, 5]
    for t in ids[:100] + bad:
        assert ulid_error(t) == ulid_error_proposed(t)
    cur = _best(lambda: [new_ulid() for _ in range(n)])
    new = _best(lambda: [new_ulid_proposed() for _ in range(n)])
    cur_v = _best(lambda: [ulid_error(t) for t in ids])
    new_v = _best(lambda: [ulid_error_proposed(t) for t in ids])
    return {
        "P7_new_ulid": {"current_us": cur / n * 1e6, "proposed_us": new / n * 1e6,
                        "speedup": cur / new},
        "P8_ulid_error": {"current_us": cur_v / n * 1e6, "proposed_us": new_v / n * 1e6,
                          "speedup": cur_v / new_v},
    }


# ---------------------------------------------------------------------------------------------
# P3: eviction at the entity bound
# ---------------------------------------------------------------------------------------------

def p3(bound: int = 10_000) -> dict[str, Any]:
    from threadweaver.adapters.journal.sqlite import SqliteJournal
    from threadweaver.application.entities import EntityManager, EntitySettings

    class Islice(EntityManager):
        def _evict(self, count: int) -> None:           # the proposal
            for pid in list(itertools.islice(self._entities, count * 2)):
                if count <= 0:
                    break
                if not self._entities[pid].lock.locked():
                    del self._entities[pid]
                    self.stats.passivated += 1
                    count -= 1

    journal = SqliteJournal(":memory:")    # never started: _entity does no I/O
    out = {}
    for name, cls in (("current", EntityManager), ("proposed", Islice)):
        times = []
        for rep in range(3):
            m = cls(journal, EntitySettings(max_entities=bound, passivate_after=0))
            for i in range(bound):
                m._entity(f"thread-fill{rep}-{i}")
            t0 = time.perf_counter()
            for i in range(bound):
                m._entity(f"thread-new{rep}-{i}")
            times.append(time.perf_counter() - t0)
            assert len(m) == bound
        out[name] = min(times) / bound * 1e6
    return {"P3_evict_at_bound": {"bound": bound, "current_us": out["current"],
                                  "proposed_us": out["proposed"],
                                  "speedup": out["current"] / out["proposed"]}}


# ---------------------------------------------------------------------------------------------
# P4: a Task per command in _persist
# ---------------------------------------------------------------------------------------------

async def _p4_async(n: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()

    def pending() -> asyncio.Future:
        fut = loop.create_future()
        loop.call_soon(fut.set_result, None)    # the journal resolving it after the commit
        return fut

    async def append() -> None:                 # today: a coroutine awaiting the future
        return await pending()

    async def current() -> None:
        for _ in range(n):
            await asyncio.shield(asyncio.ensure_future(append()))

    async def proposed() -> None:
        for _ in range(n):
            await asyncio.shield(pending())     # append_nowait(...) -> Future: no Task

    res = {}
    for name, fn in (("current", current), ("proposed", proposed)):
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            await fn()
            best = min(best, time.perf_counter() - t0)
        res[name] = best / n * 1e6
    return res


def p4() -> dict[str, Any]:
    import uvloop
    res = uvloop.run(_p4_async(20_000))
    return {"P4_task_per_command": {"current_us": res["current"], "proposed_us": res["proposed"],
                                    "speedup": res["current"] / res["proposed"]}}


# ---------------------------------------------------------------------------------------------
# P10: journal batch write
# ---------------------------------------------------------------------------------------------

_INSERT = ("INSERT INTO journal (pid, seq, shard, ts, type, payload, writer)"
           " VALUES (?, ?, ?, ?, ?, ?, ?)")


def write_batch_proposed(journal: Any, batch: list[Any]) -> list[Any]:
    """One executemany per batch; orderings are consecutive (one writer holds the write lock,
    AUTOINCREMENT), read back from sqlite_sequence. A UNIQUE(pid, seq) conflict rolls back and
    falls back to today's per-append savepoints, so one conflict still fails only its append."""
    from threadweaver.application.ports import StoredEvent
    from threadweaver.shards.hashing import shard_of

    conn = journal._conn()
    ts = time.time_ns() // 1000
    rows = []
    for item in batch:
        shard = shard_of(item.pid, journal.shards)
        for i, event in enumerate(item.events):
            rows.append((item.pid, item.expected_seq + i + 1, shard, ts, event.type,
                         orjson.dumps(event.payload), item.writer))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_INSERT, rows)
        last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal'").fetchone()[0]
        conn.execute("COMMIT")
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK")
        return journal._write_batch(batch)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    first = last - len(rows) + 1
    out, k = [], 0
    for item in batch:
        stored = []
        for event in item.events:
            r = rows[k]
            stored.append(StoredEvent(r[0], r[1], r[2], event.type, event.payload, ts, first + k,
                                      item.writer))
            k += 1
        out.append(stored)
    return out


def p10(work: Path, appends: int = 64, batches: int = 60) -> dict[str, Any]:
    from threadweaver.adapters.journal.sqlite import SqliteJournal, _Append
    from threadweaver.application.ports import NewEvent

    def payload(a: int, n: int) -> dict[str, Any]:
        return {"schema": 1, "threadId": f"T{a:025d}", "accountId": ACCOUNT,
                "occurredAt": 1_700_000_000_000 + n,
                "messages": [{"id": f"M{a:012d}{n:013d}", "text": f"message {n}",
                              "replyMessageId": None, "toAccountIds": []}]}

    res: dict[str, float] = {}
    results: dict[str, list[tuple]] = {}
    for name in ("current", "proposed"):
        path = work / f"p2-{name}.db"
        for s in ("", "-wal", "-shm"):
            Path(str(path) + s).unlink(missing_ok=True)
        journal = SqliteJournal(path, synchronous="off")   # CPU only: no fsync in the figure
        journal._init_schema()
        write = journal._write_batch if name == "current" else \
            (lambda b, j=journal: write_batch_proposed(j, b))
        elapsed = 0.0
        for n in range(batches):
            batch = [_Append(f"thread-T{a:025d}", n, [NewEvent("MessagesAdded", payload(a, n))],
                             "bench", None) for a in range(appends)]
            t0 = time.perf_counter()
            out = write(batch)
            elapsed += time.perf_counter() - t0
            assert all(len(x) == 1 for x in out)
        # a conflicting append fails alone, its neighbours commit
        batch = [_Append("thread-T0000000000000000000000001", 0,
                         [NewEvent("MessagesAdded", payload(1, 0))], "bench", None),
                 _Append("thread-Tnew", 0, [NewEvent("MessagesAdded", payload(9, 0))], "bench",
                         None)]
        out = write(batch)
        assert isinstance(out[0], Exception) and not isinstance(out[1], Exception), out
        results[name] = [(e.pid, e.seq, e.offset) for e in out[1]]
        rows = journal._conn().execute(
            "SELECT pid, seq, ordering FROM journal ORDER BY ordering").fetchall()
        results[name + "_rows"] = rows
        journal._close_conn()
        res[name] = elapsed / (appends * batches) * 1e6
        for s in ("", "-wal", "-shm"):
            Path(str(path) + s).unlink(missing_ok=True)
    assert results["current_rows"] == results["proposed_rows"]
    return {"P10_journal_write_batch": {"appends_per_batch": appends,
                                       "current_us_per_append": res["current"],
                                       "proposed_us_per_append": res["proposed"],
                                       "speedup": res["current"] / res["proposed"]}}


# ---------------------------------------------------------------------------------------------
# P1: batched read-model apply
# ---------------------------------------------------------------------------------------------

def read_shard_set_sync(journal: Any, shards: list[int], after: dict[int, int],
                        limit: int) -> list[Any]:
    """Prototype journal read (P0): the events of a *set* of shards after their offsets, in
    ordering order, in one query per 500 shards (`shard IN (...)` uses the (shard, ordering)
    index per shard), instead of one read per run of consecutive shards."""
    from threadweaver.adapters.journal.sqlite import _row_to_event
    conn = journal._conn()
    out: list[Any] = []
    for i in range(0, len(shards), 500):
        chunk = shards[i:i + 500]
        floor = min(after.get(s, 0) for s in chunk)
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            "SELECT pid, seq, shard, type, payload, ts, ordering, writer FROM journal"
            f" WHERE shard IN ({marks}) AND ordering > ? ORDER BY ordering LIMIT ?",
            (*chunk, floor, limit * 4)).fetchall()
        out.extend(_row_to_event(r) for r in rows if r[6] > after.get(r[2], 0))
    out.sort(key=lambda e: e.offset)
    return out[:limit]


def p0_projector_class(batch_reads: bool = True, snapshot_pushed: bool = True) -> type:
    """The runtime's Projector with
    - P0 (`batch_reads`): the shards an append touched are read together (one query) and
      applied together (one read-model transaction), instead of one read + one transaction per
      run of consecutive shards;
    - P12 (`snapshot_pushed`): a dirty shard is "behind" (retry with a growing sleep, up to the
      poll interval) only if it is behind the offset pushed *before* the read started; today an
      append pushed during the read marks it behind too, so under continuous load the projector
      sleeps up to a second per loop (that append is already back in the dirty set anyway).
    The rest of `_run` is the runtime's (copied from runtime/threadweaver/application/
    projector.py at the time of writing)."""
    from threadweaver.application import projector as pm

    class P0Projector(pm.Projector):
        async def _read_and_apply_set(self, shards: list[int]) -> Sequence[Any]:
            loop = asyncio.get_running_loop()
            events = await loop.run_in_executor(
                self.journal._read_executor, read_shard_set_sync, self.journal, shards,
                dict(self._offsets), self.settings.batch_size)
            if events:
                result = await self.read_model.apply(self.projection, events)
                self._offsets.update(result.offsets)
                self._record(events, result.applied, result.skipped)
                if self.on_applied:
                    self.on_applied(events)
            return events

        async def _run(self) -> None:
            self._offsets = await self.read_model.load_offsets(self.projection,
                                                               self.start_shard, self.end_shard)
            sweep = self._new_sweep()
            retry = 0.0
            while True:
                self._wake.clear()
                dirty, self._dirty = sorted(self._dirty), set()
                pushed = {s: self._pushed.get(s, 0) for s in dirty}          # P12
                if dirty and batch_reads:                   # P0: one read, one transaction
                    while len(await self._read_and_apply_set(dirty)) >= self.settings.batch_size:
                        pass
                elif dirty:
                    for start, end in pm._runs(dirty):
                        while len(await self._read_and_apply(start, end, self._offsets)) >= \
                                self.settings.batch_size:
                            pass
                target = pushed if snapshot_pushed else self._pushed
                behind = {s for s in dirty if self._offsets.get(s, 0) < target.get(s, 0)}
                if behind:
                    self._dirty |= behind
                    retry = min(self.settings.poll_interval, max(0.02, retry * 2))
                else:
                    retry = 0.0
                if sweep is not None:
                    end = min(self.end_shard, sweep.next + self.settings.sweep_chunk)
                    events = await self._read_and_apply(sweep.next, end, sweep.cursor)
                    for ev in events:
                        sweep.cursor[ev.shard] = max(sweep.cursor.get(ev.shard, 0), ev.offset)
                    if len(events) >= self.settings.batch_size:
                        self.state.lag_events = len(events)
                        continue
                    sweep.next = end
                    if end < self.end_shard:
                        continue
                    sweep = None
                if self._dirty and not retry:
                    continue
                if retry:
                    await asyncio.sleep(retry)
                    continue
                self.state.lag_events = 0
                self.state.lag_seconds = 0.0
                if not self._wake.is_set():
                    self._caught_up.set()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
                except asyncio.TimeoutError:
                    sweep = self._new_sweep()

    return P0Projector


async def _p0_async(work: Path, events_per_kind: int) -> dict[str, Any]:
    """Live projection throughput: appends arrive in group commits of 32 (the journal pushes
    them to the projector), the projector keeps up as it can; time from the first append to the
    read model having them all. create: new threads (random shards); hot: posts to 16 threads.
    The read model is the runtime's own SqlReadModel in both variants."""
    from threadweaver.adapters.journal.sqlite import SqliteJournal
    from threadweaver.adapters.readmodel.sql import ReadModelSettings, SqlReadModel
    from threadweaver.application.ports import NewEvent
    from threadweaver.application.projector import Projector, ProjectorSettings
    from threadweaver.domain import (
        AddMessages, CreateThread, NewMessage, decide, event_to_payload, new_ulid,
        thread_persistence_id,
    )

    variants = (("current", Projector, SqlReadModel),
                ("P12", p0_projector_class(batch_reads=False), SqlReadModel),
                ("P0+P12", p0_projector_class(), SqlReadModel))
    out: dict[str, Any] = {}
    for kind in ("create", "hot"):
        for name, pcls, rcls in variants:
            tag = f"{kind}-{name.replace('+', '')}"
            for s in ("", "-wal", "-shm"):
                for f in ("j", "r"):
                    Path(str(work / f"p0-{tag}-{f}.db") + s).unlink(missing_ok=True)
            journal = SqliteJournal(work / f"p0-{tag}-j.db", synchronous="off")
            await journal.start()
            rm = rcls(ReadModelSettings.sqlite(work / f"p0-{tag}-r.db"))
            await rm.migrate()
            seqs: dict[str, int] = {}
            hot = [new_ulid() for _ in range(16)]
            if kind == "hot":     # the 16 threads exist before the timed part
                for tid in hot:
                    [e] = decide(None, CreateThread(thread_id=tid, account_id=ACCOUNT,
                                                    title="hot", administrator_ids=(ACCOUNT,)))
                    await journal.append(thread_persistence_id(tid), 0,
                                         [NewEvent(e.TYPE, event_to_payload(e))])
                    seqs[tid] = 1
            proj = pcls(journal, rm, 0, journal.shards, ProjectorSettings())
            proj.start()
            await asyncio.wait_for(proj.wait_caught_up(), 60)
            base = proj.state.applied
            t0 = time.perf_counter()
            made = 0
            while made < events_per_kind:
                appends = []
                for _ in range(32):
                    if kind == "create":
                        tid = new_ulid()
                        [e] = decide(None, CreateThread(thread_id=tid, account_id=ACCOUNT,
                                                        title=f"t{made}",
                                                        administrator_ids=(ACCOUNT,)))
                        seq = 0
                    else:
                        tid = hot[made % 16]
                        e = AddMessages(thread_id=tid, account_id=ACCOUNT, messages=(
                            NewMessage(new_ulid(), f"m{made}"),))
                        from threadweaver.domain.events import AddedMessage, MessagesAdded
                        e = MessagesAdded(tid, ACCOUNT, 0, (AddedMessage(
                            e.messages[0].id, e.messages[0].text, None, ()),))
                        seq = seqs[tid]
                        seqs[tid] = seq + 1
                    appends.append(journal.append(thread_persistence_id(tid), seq,
                                                  [NewEvent(e.TYPE, event_to_payload(e))]))
                    made += 1
                await asyncio.gather(*appends)
                await asyncio.sleep(0.002)      # the next group of commands
            deadline = time.monotonic() + 300
            while proj.state.applied - base < made and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - t0
            done = proj.state.applied - base
            await proj.stop()
            await rm.close()
            await journal.close()
            out.setdefault(kind, {})[name] = {"events": done, "seconds": round(elapsed, 3),
                                              "events_per_s": round(done / elapsed, 1)}
    return {"P0_projection_throughput": out}


def p0(work: Path, events_per_kind: int = 3000) -> dict[str, Any]:
    import uvloop
    return uvloop.run(_p0_async(work, events_per_kind))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tw-proposals-"))
    out: dict[str, Any] = {"status": proposal_status()}
    try:
        out.update(p0(work, max(1000, int(3000 * a.scale))))
        out.update(p10(work, batches=max(10, int(60 * a.scale))))
        out.update(p7_p8())
        out.update(p3())
        out.update(p4())
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))
    return 0


E2E_VARIANTS = (("current", None), ("P12", "p12-projector"), ("P0+P12", "p0-projector"))


def end_to_end_lag(p: Profile, work: Path, level: str = "steady") -> dict[str, Any]:
    """P0/P1 end to end: projection lag under workload 3's load, on the current server and on
    servers with the prototypes swapped in (bench/run_patched.py), interleaved run by run."""
    from . import w3_lag
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in E2E_VARIANTS}
    for r in range(p.lag_runs):
        for name, variant in E2E_VARIANTS:
            log(f"proposals: end to end ({name}), {level} load, run {r + 1}/{p.lag_runs}")
            runs[name].append(w3_lag.one_run(p, work, level, r, variant))
    return {name: w3_lag.summarise(v) for name, v in runs.items()}


def run(p: Profile, work: Path) -> dict[str, Any]:
    log("proposals: micro-benchmarks of the current code vs the proposed changes")
    out = run_json([PYTHON, "-m", "bench.proposals", "--scale",
                    "1.0" if p.name == "full" else "0.5"], core=SERVER_CORE, timeout=600)
    out["end_to_end_lag"] = {"steady": end_to_end_lag(p, work, "steady")}
    return out


if __name__ == "__main__":
    sys.exit(main())
