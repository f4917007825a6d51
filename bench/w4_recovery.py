"""Workload 4: recovery, loading a thread with 5,000 messages into an EntityManager on
SqliteJournal, without and with a snapshot.

Set-up (not timed): one thread, then 5,000 MessagesAdded events (one message each) appended
through the journal (sync off for speed: the set-up's durability is irrelevant); the snapshot
variant also stores the last snapshot the runtime would have written (snapshot_every=100 and
a tenth of the thread's size: at seq 4,842, so 159 events are replayed after it). Timed: a fresh EntityManager (cold: not in memory;
the file is in the OS page cache) runs a no-op command on the thread (joining a member that is
already there: load, decide, no append) — the load is the whole cost. Each variant is run
`recovery_runs` times in a fresh process pinned to the server core; figures are medians.

    python -m bench.w4_recovery --path FILE --messages 5000 --runs N
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from .base import ACCOUNT, PYTHON, SERVER_CORE, log
from .processes import run_json
from .profiles import Profile
from .stats import median, ratio

MEMBER = "01H8XGJWBWBAQ4Z4G2V6K8M3PK"


async def _setup(path: Path, messages: int) -> tuple[str, int]:
    from threadweaver.adapters.journal.sqlite import SqliteJournal
    from threadweaver.application.ports import NewEvent, Snapshot
    from threadweaver.domain import (
        AddMessages,
        CreateThread,
        NewMessage,
        Thread,
        decide,
        event_to_payload,
        evolve,
        new_ulid,
        thread_persistence_id,
    )

    journal = SqliteJournal(path, synchronous="off")
    await journal.start()
    tid = new_ulid()
    pid = thread_persistence_id(tid)
    state: Thread | None = None
    seq = 0
    batch: list[NewEvent] = []
    create = CreateThread(
        thread_id=tid,
        account_id=ACCOUNT,
        title="recovery",
        administrator_ids=(ACCOUNT,),
        member_ids=(MEMBER,),
        at=1,
    )
    pending_events = decide(state, create)
    for i in range(messages + 1):
        if i:
            cmd = AddMessages(
                thread_id=tid,
                account_id=ACCOUNT,
                at=1 + i,
                messages=(
                    NewMessage(id=new_ulid(), text=f"message number {i} of the recovery thread"),
                ),
            )
            pending_events = decide(state, cmd)
        for e in pending_events:
            state = evolve(state, e)
            batch.append(NewEvent(e.TYPE, event_to_payload(e)))
        if len(batch) >= 500 or i == messages:
            await journal.append(pid, seq, batch)
            seq += len(batch)
            batch = []
    # The runtime's last snapshot (EntitySettings.snapshot_due, snapshot_every=100: every 100
    # events, or a tenth of the thread's size once that is more), rebuilt from the journal.
    stored = await journal.read(pid, 1)
    from threadweaver.application.entities import EntitySettings
    from threadweaver.domain import event_from_payload

    rule = EntitySettings(snapshot_every=100)
    snapshot_seq, snap_state, state_at = 0, None, {}
    for ev in stored:
        snap_state = evolve(snap_state, event_from_payload(ev.type, ev.payload))
        if rule.snapshot_due(ev.seq - snapshot_seq, snap_state.size):
            snapshot_seq, state_at = ev.seq, snap_state.to_snapshot()
    snap_state = type(snap_state).from_snapshot(state_at)
    await journal.save_snapshot(Snapshot(pid, snapshot_seq, snap_state.to_snapshot()))
    await journal.close()
    return tid, seq


async def _load_once(path: Path, tid: str, snapshots: bool) -> dict[str, Any]:
    from threadweaver.adapters.journal.sqlite import SqliteJournal
    from threadweaver.application.entities import EntityManager, EntitySettings
    from threadweaver.domain import JoinMemberIds

    journal = SqliteJournal(path, synchronous="full")
    await journal.start()
    try:
        manager = EntityManager(
            journal, EntitySettings(snapshot_every=100 if snapshots else 0, passivate_after=0)
        )
        cmd = JoinMemberIds(thread_id=tid, account_id=ACCOUNT, account_ids=(MEMBER,), at=10**12)
        t0 = time.perf_counter()
        events = await asyncio.wait_for(manager.execute(cmd), 120)
        elapsed = time.perf_counter() - t0
        assert events == [], events
        stats = manager.stats
        return {
            "elapsed_s": elapsed,
            "events_replayed": stats.events_replayed,
            "loads": stats.loads,
        }
    finally:
        await journal.close()


def _remove_journal(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


async def _main(path: Path, messages: int, runs: int) -> dict[str, Any]:
    # Set-up and clean-up run before and after the measured loads: blocking file calls are fine.
    _remove_journal(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tid, seq = await _setup(path, messages)
    out: dict[str, Any] = {"events_in_journal": seq, "messages": messages}
    samples: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    for _ in range(runs):
        for variant in ("without", "with"):  # interleaved
            samples[variant].append(await _load_once(path, tid, variant == "with"))
    for variant, runs_ in samples.items():
        t = median(r["elapsed_s"] for r in runs_)
        replayed = runs_[0]["events_replayed"]
        out[variant] = {
            "load_ms": t * 1000,
            "events_replayed": replayed,
            "replayed_per_s": replayed / t if replayed else None,
            "state_events_per_s": seq / t,
            "runs_ms": [r["elapsed_s"] * 1000 for r in runs_],
        }
    out["breakdown_without_ms"] = await _breakdown(path, tid)
    _remove_journal(path)
    return out


async def _breakdown(path: Path, tid: str) -> dict[str, float]:
    """Where a snapshot-less load spends its time: journal read (SQL, orjson, StoredEvent),
    payload -> event objects, evolve. Median of 3."""
    from threadweaver.adapters.journal.sqlite import SqliteJournal
    from threadweaver.domain import event_from_payload, evolve, thread_persistence_id

    journal = SqliteJournal(path, synchronous="full")
    await journal.start()
    parts: dict[str, list[float]] = {"journal_read": [], "decode_events": [], "evolve": []}
    try:
        for _ in range(3):
            t0 = time.perf_counter()
            stored = await journal.read(thread_persistence_id(tid), 1)
            t1 = time.perf_counter()
            events = [event_from_payload(e.type, e.payload) for e in stored]
            t2 = time.perf_counter()
            state = None
            for e in events:
                state = evolve(state, e)
            t3 = time.perf_counter()
            parts["journal_read"].append(t1 - t0)
            parts["decode_events"].append(t2 - t1)
            parts["evolve"].append(t3 - t2)
    finally:
        await journal.close()
    return {k: round(median(v) * 1000, 2) for k, v in parts.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--path", type=Path, required=True)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    try:
        import uvloop

        res = uvloop.run(_main(a.path, a.messages, a.runs))
    except ImportError:
        res = asyncio.run(_main(a.path, a.messages, a.runs))
    print(json.dumps(res))
    return 0


def run(p: Profile, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    log(f"w4: recovery of a thread with {p.recovery_messages} messages, {p.recovery_runs} runs")
    res = run_json(
        [
            PYTHON,
            "-m",
            "bench.w4_recovery",
            "--path",
            str(work / "recovery.db"),
            "--messages",
            str(p.recovery_messages),
            "--runs",
            str(p.recovery_runs),
        ],
        core=SERVER_CORE,
        timeout=600,
    )
    res["speedup_with_snapshot"] = ratio(res["without"]["load_ms"], res["with"]["load_ms"])
    return res


if __name__ == "__main__":
    sys.exit(main())
