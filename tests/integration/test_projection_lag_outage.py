"""The projection-lag gauges follow a read model that is stopped, then started again: a real
`threadweaver serve` (SQLite journal) on a MariaDB server of this module's own (the shared one is
never stopped), stopped while commands go on and started again.

While it is down: commands still succeed (they need only the journal), the lag in events is
what was appended since, and the lag in seconds keeps growing. Once it is back: both fall to 0
and the read model holds every thread.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pymysql
import pytest

from tests.support.private_mariadb import PrivateMariaDB
from tests.support.runtime_process import RuntimeProcess

PORT = 27310  # this engineer's range (docs: tests use their own ports)
ACCOUNT = "01H8XGJWBWBAQ4Z4G2V6K8M3PJ"
LAG = re.compile(r'^(threadweaver_projection_lag_(?:seconds|events))\{range="([^"]+)"\} (\S+)$')


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    db = PrivateMariaDB(tmp_path_factory.mktemp("mariadb"), PORT)
    db.init()
    db.start()
    yield db
    db.stop()


def lag(rt: RuntimeProcess) -> tuple[float, int]:
    """(seconds, events) of the embedded runtime's one range, from /metrics."""
    with urllib.request.urlopen(rt.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    found = {m.group(1): float(m.group(3)) for m in map(LAG.match, text.splitlines()) if m}
    return (
        found["threadweaver_projection_lag_seconds"],
        int(found["threadweaver_projection_lag_events"]),
    )


def create_thread(rt: RuntimeProcess) -> str:
    body = {
        "accountId": ACCOUNT,
        "title": "lag",
        "remarks": None,
        "parentThreadId": None,
        "administratorIds": [ACCOUNT],
        "memberIds": [],
        "createAt": int(time.time() * 1000),
    }
    request = urllib.request.Request(
        rt.url + "/v1/threads/create",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())["thread_id"]


def wait_until(what: str, condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


def threads_in(db: PrivateMariaDB) -> int:
    conn = pymysql.connect(host="127.0.0.1", port=db.port, user="root", database=db.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM thread")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_the_lag_grows_while_the_read_model_is_down_and_returns_to_zero(mariadb, tmp_path):
    rt = RuntimeProcess(
        tmp_path / "runtime",
        args=[
            "--read-model",
            mariadb.url,
            "--auto-migrate",
            "true",
            "--shards",
            "16",
            "--sync-mode",
            "off",
        ],
    ).start()
    try:
        for _ in range(5):
            create_thread(rt)
        wait_until("caught up", lambda: lag(rt) == (0.0, 0), 30)

        mariadb.stop()
        for _ in range(7):
            create_thread(rt)  # commands need only the journal
        seconds, events = lag(rt)
        assert events == 7
        time.sleep(2.0)
        later, events_later = lag(rt)
        assert events_later == 7
        assert later >= seconds + 1.5 and later >= 2.0, (seconds, later)

        mariadb.start()
        wait_until("caught up after the outage", lambda: lag(rt) == (0.0, 0), 60)
        assert threads_in(mariadb) == 12
    finally:
        rt.stop()
        print(rt.log_tail())
