"""`threadweaver project` as a process: a read model built from an SQLite journal into SQLite and
into MariaDB, killed with SIGKILL part way and run again (the result equals the journal), and
its refusals: a foreign target (exit 5), an unreachable journal (3) or read model (4)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import pymysql
import pytest

from tests.support.journal_fill import Filled, fill_journal, read_model_rows
from threadweaver.adapters.journal.sqlite import SqliteJournal

SHARDS = 64


def project(journal: str, read_model: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "threadweaver.cli",
        "project",
        "--journal",
        journal,
        "--read-model",
        read_model,
        "--shard-count",
        str(SHARDS),
        "--progress",
        "json",
        *extra,
    ]


def run_project(journal: str, read_model: str, *extra: str) -> tuple[int, list[dict], str]:
    proc = subprocess.run(
        project(journal, read_model, *extra), capture_output=True, text=True, timeout=300
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, lines, proc.stderr


def kill_part_way(journal: str, read_model: str) -> int:
    """Start a build and SIGKILL it once it reported applied events; what it had applied."""
    proc = subprocess.Popen(
        project(journal, read_model, "--batch-size", "100", "--progress-interval", "0.05"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        for line in proc.stdout:
            data = json.loads(line)
            assert data["event"] == "progress", data
            if data["applied"] > 0:
                os.kill(proc.pid, signal.SIGKILL)
                return int(data["applied"])
            assert time.monotonic() < deadline, "no progress reported"
        raise AssertionError(f"the build ended before it was killed (exit {proc.wait()})")
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def journal(tmp_path_factory) -> tuple[str, Filled]:
    """An SQLite journal of 600 threads, 50 events each (30,000 events), in 64 shards."""
    path = tmp_path_factory.mktemp("journal") / "journal.db"

    async def fill() -> Filled:
        j = SqliteJournal(path, shards=SHARDS, synchronous="off")
        await j.start()
        try:
            return await fill_journal(j, 600, 50, per_append=5, concurrency=128)
        finally:
            await j.close()

    return f"sqlite:///{path}", asyncio.run(fill())


def _mysql(url: str, database: str | None = None):
    u = urlsplit(url)
    return pymysql.connect(
        host=u.hostname,
        port=u.port or 3306,
        user=u.username,
        password=u.password or "",
        database=database,
        autocommit=True,
    )


@pytest.fixture
def mysql_database(services):
    """A fresh database per test (`tw_proj_<random>`), dropped afterwards: its URL."""
    name = f"tw_proj_{uuid.uuid4().hex[:10]}"
    conn = _mysql(services.mysql)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()
    yield urlsplit(services.mysql)._replace(path=f"/{name}").geturl()
    conn = _mysql(services.mysql)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def check_killed_and_resumed(journal: tuple[str, Filled], target: str) -> None:
    url, filled = journal
    applied_before = kill_part_way(url, target)
    partial = asyncio.run(read_model_rows(target))
    assert 0 < sum(seq for _, seq in partial["thread"]) < filled.events, "killed part way"
    code, lines, err = run_project(url, target)
    assert code == 0, err
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["resumed"] is True
    assert summary["lag_seconds"] == 0.0 and summary["percent"] == 100.0
    # resumed from the checkpoints: what the killed run committed is not applied again
    assert summary["applied"] <= filled.events - applied_before + 100
    assert summary["applied"] + summary["skipped"] < filled.events
    assert asyncio.run(read_model_rows(target)) == filled.rows()
    code, lines, _ = run_project(url, target)  # built: a run applies nothing
    assert code == 0 and lines[-1]["applied"] == 0


def test_into_sqlite_killed_and_resumed_equals_the_journal(journal, tmp_path):
    check_killed_and_resumed(journal, f"sqlite+aiosqlite:///{tmp_path / 'rm.db'}")


def test_into_mariadb_killed_and_resumed_equals_the_journal(journal, mysql_database):
    check_killed_and_resumed(journal, mysql_database)


def test_a_shard_range_builds_its_shards_only(journal, tmp_path):
    url, filled = journal
    target = f"sqlite+aiosqlite:///{tmp_path / 'rm.db'}"
    code, lines, err = run_project(url, target, "--shards", "0-32")
    assert code == 0, err
    assert lines[-1]["shards"] == 32
    code, _, err = run_project(url, target, "--shards", "32-64")
    assert code == 0, err
    assert asyncio.run(read_model_rows(target)) == filled.rows()


def expect_foreign(journal_url: str, target: str, reason: str) -> None:
    code, lines, err = run_project(journal_url, target)
    assert code == 5, err
    assert lines[-1]["event"] == "error" and lines[-1]["exit_code"] == 5
    assert "not empty and not this journal's" in err and reason in err, err


def test_a_database_of_something_else_is_refused(journal, tmp_path, mysql_database):
    url, _ = journal
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    expect_foreign(url, f"sqlite+aiosqlite:///{path}", "not a thread-weaver read model")
    u = urlsplit(mysql_database)
    conn = _mysql(mysql_database, u.path.lstrip("/"))
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE customers (id INT PRIMARY KEY)")
    conn.close()
    expect_foreign(url, mysql_database, "customers")


def test_a_read_model_of_another_journal_is_refused(journal, tmp_path):
    url, _ = journal
    other = tmp_path / "other-journal.db"

    async def fill() -> None:
        j = SqliteJournal(other, shards=SHARDS, synchronous="off")
        await j.start()
        await fill_journal(j, 30, 3)
        await j.close()

    asyncio.run(fill())
    target = f"sqlite+aiosqlite:///{tmp_path / 'rm.db'}"
    code, _, err = run_project(f"sqlite:///{other}", target)
    assert code == 0, err
    expect_foreign(url, target, "ahead of the journal")


def test_a_read_model_of_another_shard_count_is_refused(journal, tmp_path):
    url, _ = journal
    path = tmp_path / "rm.db"
    target = f"sqlite+aiosqlite:///{path}"
    code, _, err = run_project(url, target, "--shards", "0-1")
    assert code == 0, err
    with sqlite3.connect(path) as conn:  # as a 1,024-shard cluster's read model would hold
        conn.execute("INSERT INTO projection_offset VALUES ('threads', 1000, 5, 0)")
    expect_foreign(url, target, "shards up to 1000")


def test_an_unreachable_journal_or_read_model_is_an_exit_code_and_a_message(journal, tmp_path):
    url, _ = journal
    code, lines, err = run_project(
        f"sqlite:///{tmp_path / 'missing.db'}", f"sqlite+aiosqlite:///{tmp_path / 'rm.db'}"
    )
    assert code == 3 and "does not exist" in err and lines[-1]["exit_code"] == 3
    code, lines, err = run_project(
        url, "mysql+aiomysql://threadweaver:threadweaver@127.0.0.1:27399/nowhere"
    )
    assert code == 4 and "cannot reach the read model" in err, err
    assert "threadweaver:***@" in err  # the password is not shown


async def test_from_a_dynamodb_journal_equals_the_journal_and_resumes(dynamodb_settings, tmp_path):
    """The DynamoDB journal (dynalite): offsets are write times with a slack, so a run reads
    each shard to an empty page and a resumed one re-reads the slack and skips it."""
    from threadweaver.adapters.journal.dynamodb import DynamoDBJournal

    journal = DynamoDBJournal(dynamodb_settings, shards=16)
    await journal.start()
    try:
        filled = await fill_journal(journal, 30, 8, per_append=4, concurrency=8)
    finally:
        await journal.close()
    s = dynamodb_settings
    url = f"dynamodb://{s.endpoint_url.split('://', 1)[1]}?region={s.region}&table-prefix={s.table_prefix}"
    target = f"sqlite+aiosqlite:///{tmp_path / 'rm.db'}"
    code, lines, err = run_project(url, target, "--shards", "16")
    assert code == 0, err
    assert lines[-1]["applied"] == filled.events
    assert await read_model_rows(target) == filled.rows()
    code, lines, err = run_project(url, target, "--shards", "16")
    assert code == 0, err
    assert lines[-1]["resumed"] is True and lines[-1]["applied"] == 0
