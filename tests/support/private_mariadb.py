"""A MariaDB server of a test's own (its datadir under a temporary directory, its own port and
socket), started and stopped by the test, as hack/services.sh starts the shared one: for tests
that stop the read model's server, which the shared one on 3306 must never be.

Grant tables are skipped (any user connects without a password): the server listens on
127.0.0.1 only and lives for one test module.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pymysql


class PrivateMariaDB:
    def __init__(self, base: Path, port: int, database: str = "threadweaver") -> None:
        self.base = Path(base)
        self.port = port
        self.database = database
        self.datadir = self.base / "data"
        self.tmpdir = self.base / "tmp"
        # a Unix socket path must fit in 107 bytes
        self.socket = Path(f"/tmp/tw-private-mariadb-{port}.sock")
        self.log = self.base / "mariadbd.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mysql+aiomysql://threadweaver@127.0.0.1:{self.port}/{self.database}"

    def _user(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def init(self) -> None:
        if shutil.which("mariadbd") is None:
            raise RuntimeError("mariadbd is not installed (hack/services.sh up installs it)")
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                *self._user(),
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self, timeout: float = 60.0) -> None:
        self.socket.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "mariadbd",
                    "--no-defaults",
                    *self._user(),
                    f"--datadir={self.datadir}",
                    f"--tmpdir={self.tmpdir}",
                    f"--socket={self.socket}",
                    f"--pid-file={self.base / 'mariadbd.pid'}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    "--skip-name-resolve",
                    "--skip-grant-tables",
                    "--character-set-server=utf8mb4",
                    "--collation-server=utf8mb4_unicode_ci",
                    "--innodb-buffer-pool-size=32M",
                    "--innodb-log-file-size=16M",
                    "--innodb-flush-log-at-trx-commit=2",
                    "--innodb-use-native-aio=0",
                    "--skip-log-bin",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mariadbd did not answer: {self.log_tail()}") from None
                time.sleep(0.2)
                continue
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
            conn.close()
            return

    def stop(self, timeout: float = 60.0) -> None:
        """A clean shutdown (SIGTERM), waited for: the port is closed afterwards."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
