"""The test services (MariaDB and dynalite on 127.0.0.1), started by hack/services.sh unless the
environment names existing ones. Never skips: a service that cannot start fails the test (or,
for the benchmarks, which use `find_services` without pytest, raises `ServiceError`)."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
MYSQL_ENV = "THREADWEAVER_TEST_MYSQL_URL"
DYNAMODB_ENV = "THREADWEAVER_TEST_DYNAMODB_URL"
NEEDED = "these tests need MariaDB and dynalite"


class ServiceError(RuntimeError):
    """A service the tests or benchmarks need is not available; the message says why."""


@dataclass(frozen=True)
class ServiceURLs:
    mysql: str  # mysql+aiomysql://threadweaver:threadweaver@127.0.0.1:3306/threadweaver
    dynamodb: str  # dynamodb://127.0.0.1:8000?region=us-east-1


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_hack(script: str, *args: str, timeout: float, needed: str) -> str:
    """The stdout of `hack/<script> <args>`; a ServiceError saying what needs it if it fails."""
    command = f"hack/{script} {' '.join(args)}"
    try:
        proc = subprocess.run(
            [str(REPO / "hack" / script), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"`{command}` could not run: {exc}") from None
    if proc.returncode != 0:
        raise ServiceError(
            f"`{command}` failed (exit {proc.returncode}): {needed}.\n"
            f"{_tail(proc.stderr)}\n{_tail(proc.stdout)}"
        )
    return proc.stdout


def parse_exports(text: str) -> dict[str, str]:
    """The `export NAME=value` lines of a hack script's `env` output."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            out[key] = value
    return out


def check_port(what: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=5):
            return
    except OSError as exc:
        raise ServiceError(
            f"{what} at {host}:{port} does not accept connections ({exc}); start it with "
            "`hack/services.sh up` (or fix the THREADWEAVER_TEST_* URL)"
        ) from None


def find_services(needed: str = NEEDED) -> ServiceURLs:
    """The THREADWEAVER_TEST_* URLs when both are set, else those of hack/services.sh (started
    when down; idempotent); both must accept connections. ServiceError otherwise."""
    mysql, dynamodb = os.environ.get(MYSQL_ENV), os.environ.get(DYNAMODB_ENV)
    if not (mysql and dynamodb):
        run_hack("services.sh", "up", timeout=900, needed=needed)
        exports = parse_exports(run_hack("services.sh", "env", timeout=120, needed=needed))
        mysql = mysql or exports.get(MYSQL_ENV)
        dynamodb = dynamodb or exports.get(DYNAMODB_ENV)
        if not (mysql and dynamodb):
            raise ServiceError(
                f"`hack/services.sh env` did not print {MYSQL_ENV} and {DYNAMODB_ENV}"
            )
    m, d = urlsplit(mysql), urlsplit(dynamodb)
    check_port("MySQL/MariaDB", m.hostname or "127.0.0.1", m.port or 3306)
    check_port("DynamoDB (dynalite)", d.hostname or "127.0.0.1", d.port or 8000)
    return ServiceURLs(mysql=mysql, dynamodb=dynamodb)


def ensure_services() -> ServiceURLs:
    """`find_services` for a test: a missing service fails the test with the reason."""
    try:
        return find_services()
    except ServiceError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    import pytest  # only the tests have pytest; the benchmarks call find_services

    pytest.fail(message, pytrace=False)
