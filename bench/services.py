"""The production services (MariaDB, dynalite) of hack/services.sh and the local Kubernetes
control plane of hack/controlplane.sh, and MariaDB databases for single measurements."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .base import HOST, REPO, THREADWEAVER, BenchError, log


def _tests_support() -> None:
    """tests/support is importable from the repository root (pytest's pythonpath is ".")."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def ensure_services() -> Any:
    """MariaDB and dynalite of hack/services.sh (started when down; idempotent), exactly as the
    test suites get them (tests/support/services.py): a ServiceURLs (.mysql, .dynamodb). A
    service that cannot start is a BenchError, never a silent skip."""
    _tests_support()
    import pytest

    from tests.support.services import ensure_services as _ensure

    try:
        return _ensure()
    except pytest.fail.Exception as exc:  # the helper reports with pytest.fail
        raise BenchError(f"the production services are not available: {exc}") from None


def ensure_kube() -> str:
    """The local Kubernetes control plane (hack/controlplane.sh up, idempotent; as the e2e
    suite's conftest does) and the path of its kubeconfig."""
    _tests_support()
    from tests.support.services import parse_exports

    script = REPO / "hack" / "controlplane.sh"
    out = ""
    for args, timeout in ((["up"], 3600), (["env"], 120)):
        try:
            proc = subprocess.run(
                [str(script), *args],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BenchError(f"hack/controlplane.sh {args[0]} could not run: {exc}") from None
        if proc.returncode != 0:
            raise BenchError(
                f"hack/controlplane.sh {args[0]} failed ({proc.returncode}): the "
                f"handoff benchmark needs the local control plane\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        out = proc.stdout
    kubeconfig = parse_exports(out).get("KUBECONFIG", "")
    if not kubeconfig or not Path(kubeconfig).is_file():
        raise BenchError(f"hack/controlplane.sh env printed no usable KUBECONFIG: {out[-1000:]}")
    return kubeconfig


def _mysql_connect(url: str, database: str | None = None) -> Any:
    """A pymysql (sync) connection from a mysql+aiomysql:// URL, autocommit (every SELECT sees
    the latest committed rows)."""
    from urllib.parse import unquote, urlsplit

    import pymysql

    u = urlsplit(url)
    return pymysql.connect(
        host=u.hostname or HOST,
        port=u.port or 3306,
        user=unquote(u.username or ""),
        password=unquote(u.password or ""),
        database=database,
        autocommit=True,
        connect_timeout=5,
        read_timeout=30,
        write_timeout=30,
    )


def mysql_version(url: str) -> str:
    """`SELECT VERSION()` of the MySQL server at a mysql+aiomysql:// URL."""
    conn = _mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            return str(cur.fetchone()[0])
    finally:
        conn.close()


class MysqlDatabase:
    """A fresh, migrated MariaDB database for one measurement (`with MysqlDatabase(url) as
    db: db.url`), dropped afterwards. `url` names the server (the services' URL)."""

    def __init__(self, server_url: str, tag: str = "bench") -> None:
        import secrets as _secrets

        self.server_url = server_url
        self.name = f"tw_bench_{tag}_{_secrets.token_hex(4)}"  # granted: `tw\_%`
        self.url = server_url.rsplit("/", 1)[0] + "/" + self.name

    def __enter__(self) -> MysqlDatabase:
        conn = _mysql_connect(self.server_url)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{self.name}`")
        finally:
            conn.close()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("THREADWEAVER_")}
            res = subprocess.run(
                [THREADWEAVER, "migrate", "--read-model", self.url],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=REPO,
                env=env,
            )
        except subprocess.TimeoutExpired:
            self.drop()
            raise BenchError(f"threadweaver migrate --read-model {self.url} timed out") from None
        if res.returncode != 0:
            self.drop()
            raise BenchError(
                f"threadweaver migrate failed ({res.returncode}):\n"
                f"{res.stderr[-2000:]}{res.stdout[-1000:]}"
            )
        return self

    def drop(self) -> None:
        try:
            conn = _mysql_connect(self.server_url)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
            finally:
                conn.close()
        except Exception as exc:  # reported, not fatal: the database is uniquely named
            log(f"could not drop the MariaDB database {self.name}: {exc}")

    def __exit__(self, *exc: Any) -> None:
        self.drop()

    def connect(self) -> Any:
        return _mysql_connect(self.url, self.name)


def mysqld_pid() -> int | None:
    """The pid of the MariaDB server of hack/services.sh (for its CPU time), if it runs here."""
    path = REPO / ".cache" / "services" / "mariadb" / "mariadbd.pid"
    try:
        pid = int(path.read_text().strip())
        return pid if Path(f"/proc/{pid}").exists() else None
    except (OSError, ValueError):
        return None
