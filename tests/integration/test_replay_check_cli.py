"""`threadweaver replay-check` as a subprocess against real journals (an SQLite file, dynalite):
a journal this code can read passes (exit 0, a JSON summary: entities, events, snapshots, time);
one holding an event this code cannot decode fails (exit 1) naming that event (pid, seq, type,
error), also in `--result-file`; an unreachable or missing journal is exit 3 with a clear error.
`--sample N` checks N entities, `--all` every one."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.runtime_process import REPO, THREADWEAVER
from threadweaver.application.entities import EntityManager, EntitySettings
from threadweaver.application.ports import NewEvent
from threadweaver.domain import (
    AddMessages,
    CreateThread,
    NewMessage,
    event_to_payload,
    new_ulid,
    thread_persistence_id,
)
from threadweaver.domain.events import AddedMessage, MessagesAdded

SHARDS = 16
THREADS = 12
ADMIN = new_ulid()


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def journal_url(backend: str, request: Any, tmp_path: Path) -> str:
    """The URL of the journal `open_journal` opens (the same storage)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'journal.db'}"
    services = request.getfixturevalue("services")
    prefix = request.getfixturevalue("dynamodb_base_settings").table_prefix
    sep = "&" if "?" in services.dynamodb else "?"
    return f"{services.dynamodb}{sep}table-prefix={prefix}"


async def write_threads(journal: Any, threads: int = THREADS) -> list[str]:
    """`threads` threads of 1 + 11 events each, snapshots at seq 10."""
    mgr = EntityManager(journal, EntitySettings(snapshot_every=10))
    tids = [new_ulid() for _ in range(threads)]
    for tid in tids:
        await mgr.execute(CreateThread(tid, ADMIN, "t", (ADMIN,), (), None, None, 1))
        for i in range(11):
            await mgr.execute(AddMessages(tid, ADMIN, (NewMessage(new_ulid(), f"m{i}"),), 2 + i))
    await mgr.close()
    return tids


async def replay_check(journal_url: str, *args: str) -> tuple[int, dict[str, Any]]:
    proc = await asyncio.to_thread(
        subprocess.run,
        [str(THREADWEAVER), "replay-check", "--journal", journal_url, "--shards", str(SHARDS)]
        + list(args),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    return proc.returncode, json.loads(lines[-1])  # not a terminal: JSON


async def test_a_readable_journal_passes(open_journal, journal_url) -> None:
    journal = await open_journal(SHARDS)
    await write_threads(journal)
    await journal.close()
    code, result = await replay_check(journal_url, "--all")
    assert code == 0, result
    assert result["ok"] is True
    assert (result["entities"], result["events"]) == (THREADS, THREADS * 12)
    assert result["snapshots"] == THREADS  # each snapshot equals the replay up to it
    assert result["snapshotsToReplay"] == 0
    assert result["scope"] == "all" and result["shards"] == SHARDS
    assert result["seconds"] >= 0
    code, result = await replay_check(journal_url, "--sample", "5")
    assert code == 0 and result["entities"] == 5 and result["scope"] == "sample of 5"
    code, result = await replay_check(journal_url)  # default: a sample of 100, so all 12 here
    assert code == 0 and result["entities"] == THREADS


async def test_an_event_this_code_cannot_decode_fails_naming_it(
    open_journal, journal_url, tmp_path
) -> None:
    journal = await open_journal(SHARDS)
    tids = await write_threads(journal, 3)
    pid = thread_persistence_id(tids[1])
    newer = event_to_payload(
        MessagesAdded(tids[1], ADMIN, 99, (AddedMessage(new_ulid(), "v9", None, ()),))
    ) | {"schema": 9}
    await journal.append(pid, 12, [NewEvent("MessagesAdded", newer)])
    await journal.close()
    result_file = tmp_path / "termination-log"
    code, result = await replay_check(journal_url, "--all", "--result-file", str(result_file))
    assert code == 1, result
    assert result["ok"] is False
    failure = result["failure"]
    assert (failure["pid"], failure["seq"], failure["type"]) == (pid, 13, "MessagesAdded")
    assert "MessagesAdded v9 is newer than this image's v1" in failure["error"]
    assert json.loads(result_file.read_text())["failure"] == failure


async def test_an_unknown_event_type_fails_naming_it(open_journal, journal_url) -> None:
    journal = await open_journal(SHARDS)
    (tid,) = await write_threads(journal, 1)
    pid = thread_persistence_id(tid)
    await journal.append(pid, 12, [NewEvent("MessagePinned", {"schema": 1, "threadId": tid})])
    await journal.close()
    code, result = await replay_check(journal_url, "--sample", "1")
    assert code == 1
    assert result["failure"] == {
        "pid": pid,
        "seq": 13,
        "type": "MessagePinned",
        "error": "ValueError: unknown event type 'MessagePinned'",
    }


async def test_a_missing_journal_file_is_a_clear_error(tmp_path) -> None:
    code, result = await replay_check(f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 3
    assert result["error"] == f"cannot read the journal: no journal file at {tmp_path / 'none.db'}"
    assert not (tmp_path / "none.db").exists()  # the check never creates a journal


async def test_an_unreachable_or_missing_dynamodb_journal_is_a_clear_error(
    services, dynamodb_base_settings
) -> None:
    code, result = await replay_check("dynamodb://127.0.0.1:27599?region=us-east-1")
    assert code == 3 and result["ok"] is False
    assert "cannot read the journal" in result["error"]
    assert "cannot connect to 127.0.0.1:27599" in result["error"]
    # reachable, but no such tables (the fixture's prefix has none created here)
    sep = "&" if "?" in services.dynamodb else "?"
    prefix = dynamodb_base_settings.table_prefix
    code, result = await replay_check(f"{services.dynamodb}{sep}table-prefix={prefix}")
    assert code == 3 and "cannot read the journal" in result["error"]
