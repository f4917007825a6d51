"""Prometheus and promtool for the monitoring tests (built by hack/prometheus.sh from the Go module
proxy and cached), and a real Prometheus server on a free loopback port that scrapes given
targets and evaluates given rule files."""

from __future__ import annotations

import functools
import json
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.runtime_process import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "prometheus.sh"
CHART = REPO / "charts" / "thread-weaver-operator"
RULES = CHART / "files" / "alerts" / "thread-weaver.rules.yaml"
DASHBOARD = CHART / "files" / "dashboards" / "thread-weaver.json"
#: what the dashboard's variables become in the tests ($namespace: every namespace, none too)
DASHBOARD_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*"}


@functools.cache
def binaries() -> Path:
    """The directory holding `prometheus` and `promtool` (built once, minutes on a cold cache)."""
    try:
        proc = subprocess.run(
            [str(SCRIPT), "bin"], cwd=REPO, capture_output=True, text=True, timeout=1800
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"hack/prometheus.sh bin could not run: {exc}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"hack/prometheus.sh bin failed (exit {proc.returncode}): the monitoring tests need "
            f"Prometheus and promtool.\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    return Path(proc.stdout.strip().splitlines()[-1])


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(binaries() / "promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with the variables replaced) of every target of the dashboard."""
    out = []

    def walk(panels: Iterable[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for var, value in DASHBOARD_VARIABLES.items():
                    expr = expr.replace(var, value)
                out.append((panel["title"], expr))
            walk(panel.get("panels", []))

    walk(dashboard()["panels"])
    return out


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


_NAME = re.compile(r"\b((?:threadweaver|process|python)_[a-zA-Z0-9_]+)\b")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label values and strings left out)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(_NAME.findall(without_strings))


class PrometheusServer:
    """`prometheus` scraping ``targets`` (host:port) every ``interval`` and evaluating
    ``rule_files`` as often, its data in ``data_dir``; on 127.0.0.1 only."""

    def __init__(
        self,
        data_dir: Path,
        targets: Sequence[str],
        rule_files: Sequence[Path] = (),
        interval: str = "1s",
        job_targets: dict[str, Sequence[str]] | None = None,
    ) -> None:
        self.dir = Path(data_dir)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        jobs = dict(job_targets or {})
        if targets:
            jobs.setdefault("threadweaver", targets)
        self.config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(t)}]}
                for job, t in jobs.items()
            ],
        }
        self.log_path = self.dir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config))
        rules = [str(p) for p in self.config["rule_files"]]
        if rules:
            check = promtool("check", "rules", *rules)
            assert check.returncode == 0, check.stdout + check.stderr
        data = self.dir / "data"
        shutil.rmtree(data, ignore_errors=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(binaries() / "prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query (a vector's samples, or a scalar as one sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def targets_up(self) -> dict[str, str]:
        return {t["scrapeUrl"]: t["health"] for t in self.api("targets")["activeTargets"]}

    def alerts(self) -> list[dict[str, Any]]:
        return self.api("alerts")["alerts"]

    def rule_groups(self) -> list[dict[str, Any]]:
        return self.api("rules")["groups"]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
