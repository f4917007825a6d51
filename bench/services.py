"""The production services (MariaDB, dynalite) of hack/services.sh and the local Kubernetes
control plane of hack/controlplane.sh, found as the test suites find them; fresh backends and
MariaDB databases for single measurements. A service that cannot start is a BenchError, never a
silent skip."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.services import (
    ServiceError,
    ServiceURLs,
    find_services,
    parse_exports,
    run_hack,
)

from .base import HOST, REPO, THREADWEAVER, BenchError, log


def tests_support_importable() -> None:
    """tests/support (the e2e suite's ClusterDriver, RuntimeProcess) is importable from the
    repository root (pytest's pythonpath is "."; `python -m bench` runs from the root too)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def ensure_services() -> ServiceURLs:
    """MariaDB and dynalite, found (and started) as the test suites find them; a BenchError
    if they are not available."""
    try:
        return find_services("the production services are not available (MariaDB and dynalite)")
    except ServiceError as exc:
        raise BenchError(str(exc)) from None


def ensure_kube() -> str:
    """The local Kubernetes control plane (hack/controlplane.sh up, idempotent; as the e2e
    suite's conftest does) and the path of its kubeconfig. As in tests/e2e/conftest.py,
    THREADWEAVER_E2E_USE_KUBECONFIG=1 uses the cluster of KUBECONFIG instead (one already
    running, e.g. another checkout's)."""
    needed = "the handoff benchmark needs the local control plane"
    if os.environ.get("THREADWEAVER_E2E_USE_KUBECONFIG") == "1":
        kubeconfig = os.environ.get("KUBECONFIG", "")
        if not kubeconfig or not Path(kubeconfig).is_file():
            raise BenchError(f"THREADWEAVER_E2E_USE_KUBECONFIG=1: no kubeconfig at {kubeconfig!r}")
        return kubeconfig
    try:
        run_hack("controlplane.sh", "up", timeout=3600, needed=needed)
        out = run_hack("controlplane.sh", "env", timeout=120, needed=needed)
    except ServiceError as exc:
        raise BenchError(str(exc)) from None
    kubeconfig = parse_exports(out).get("KUBECONFIG", "")
    if not kubeconfig or not Path(kubeconfig).is_file():
        raise BenchError(f"hack/controlplane.sh env printed no usable KUBECONFIG: {out[-1000:]}")
    return kubeconfig


def mysql_connect(url: str, database: str | None = None) -> Any:
    """A pymysql (sync) connection from a mysql+aiomysql:// URL, autocommit (every SELECT sees
    the latest committed rows)."""
    from urllib.parse import unquote

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
    conn = mysql_connect(url)
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
        conn = mysql_connect(self.server_url)
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
            conn = mysql_connect(self.server_url)
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
        return mysql_connect(self.url, self.name)


def mysqld_pid() -> int | None:
    """The pid of the MariaDB server of hack/services.sh (for its CPU time), if it runs here."""
    path = REPO / ".cache" / "services" / "mariadb" / "mariadbd.pid"
    try:
        pid = int(path.read_text().strip())
        return pid if Path(f"/proc/{pid}").exists() else None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class ProductionBackends:
    journal_url: str  # dynamodb://...&table-prefix=...
    read_model_url: str  # mysql+aiomysql://.../tw_bench_...

    def serve_args(self) -> list[str]:
        return ["--journal", self.journal_url, "--read-model", self.read_model_url]


@contextlib.asynccontextmanager
async def fresh_production_backends(
    mysql_url: str, dynamodb_url: str, tag: str = "prod"
) -> AsyncIterator[ProductionBackends]:
    """Fresh DynamoDB tables (a unique prefix) at `dynamodb_url` and a fresh, migrated MariaDB
    database on the server of `mysql_url` (as tests/support/backends.py makes them for a test);
    removed afterwards."""
    from threadweaver.adapters.journal.dynamodb.settings import DynamoDBSettings
    from threadweaver.adapters.journal.dynamodb.tables import create_tables, delete_tables

    prefix = f"tw-{uuid.uuid4().hex[:10]}"
    dynamo = replace(DynamoDBSettings.from_url(dynamodb_url, environ={}), table_prefix=prefix)
    await create_tables(dynamo, timeout=60)
    try:
        database = await asyncio.to_thread(MysqlDatabase(mysql_url, tag).__enter__)
        try:
            sep = "&" if "?" in dynamodb_url else "?"
            yield ProductionBackends(f"{dynamodb_url}{sep}table-prefix={prefix}", database.url)
        finally:
            await asyncio.to_thread(database.drop)
    finally:
        await delete_tables(dynamo, wait=False)
