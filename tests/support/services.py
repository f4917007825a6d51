"""The test services (MariaDB and dynalite on 127.0.0.1), started by hack/services.sh unless the
environment names existing ones. Never skips: a service that cannot start fails the test."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "hack" / "services.sh"
MYSQL_ENV = "THREADWEAVER_TEST_MYSQL_URL"
DYNAMODB_ENV = "THREADWEAVER_TEST_DYNAMODB_URL"


@dataclass(frozen=True)
class ServiceURLs:
    mysql: str  # mysql+aiomysql://threadweaver:threadweaver@127.0.0.1:3306/threadweaver
    dynamodb: str  # dynamodb://127.0.0.1:8000?region=us-east-1


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_services(*args: str) -> str:
    try:
        proc = subprocess.run(
            [str(SERVICES), *args], cwd=REPO, capture_output=True, text=True, timeout=900
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"`hack/services.sh {' '.join(args)}` could not run: {exc}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"`hack/services.sh {' '.join(args)}` failed (exit {proc.returncode}): these "
            f"tests need MariaDB and dynalite.\n{_tail(proc.stderr)}\n{_tail(proc.stdout)}",
            pytrace=False,
        )
    return proc.stdout


def parse_exports(text: str) -> dict[str, str]:
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
        pytest.fail(
            f"{what} at {host}:{port} does not accept connections ({exc}); start it with "
            "`hack/services.sh up` (or fix the THREADWEAVER_TEST_* URL)",
            pytrace=False,
        )


def ensure_services() -> ServiceURLs:
    mysql, dynamodb = os.environ.get(MYSQL_ENV), os.environ.get(DYNAMODB_ENV)
    if not (mysql and dynamodb):
        run_services("up")
        exports = parse_exports(run_services("env"))
        mysql = mysql or exports.get(MYSQL_ENV)
        dynamodb = dynamodb or exports.get(DYNAMODB_ENV)
        if not (mysql and dynamodb):
            pytest.fail(
                f"`hack/services.sh env` did not print {MYSQL_ENV} and {DYNAMODB_ENV}",
                pytrace=False,
            )
    m, d = urlsplit(mysql), urlsplit(dynamodb)
    check_port("MySQL/MariaDB", m.hostname or "127.0.0.1", m.port or 3306)
    check_port("DynamoDB (dynalite)", d.hostname or "127.0.0.1", d.port or 8000)
    return ServiceURLs(mysql=mysql, dynamodb=dynamodb)
