"""Fixtures of the operator e2e suite: the real control plane (hack/controlplane.sh: etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, KWOK with a fake node; the session
fixture `kube` of tests/e2e/conftest.py brings it up), MariaDB and
dynalite (hack/services.sh), the CRD, the operator as a subprocess (the real console script)
and a namespace per test. Helpers live in operator_e2e_support.py.

Nothing is skipped: a missing piece fails the session fixture with its log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from operator_e2e_support import ROOT, VENV_BIN, kubectl

from tests.support.services import ensure_services
from threadweaver_operator.kube import Kube


@pytest.fixture(scope="session")
def controlplane(kube) -> dict[str, str]:
    """The cluster of tests/e2e/conftest.py (`kube`: hack/controlplane.sh up, KUBECONFIG and
    PATH with its kubectl/helm exported to this process)."""
    return {"KUBECONFIG": kube.kubeconfig, "PATH": kube.env["PATH"]}


@pytest.fixture(scope="session")
def services() -> dict[str, str]:
    """MariaDB and dynalite, as every suite gets them (tests/support/services.py)."""
    urls = ensure_services()
    return {"mysql": urls.mysql, "dynamodb": urls.dynamodb}


@pytest.fixture(scope="session")
def crd(controlplane) -> None:
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(ROOT / "crds" / "threadweavercluster.yaml"),
    )
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/threadweaverclusters.threadweaver.io",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Namespaces of this test session; the session's operator watches only these.
NAMESPACE_PREFIX = f"twe2e-{uuid.uuid4().hex[:4]}-"


class OperatorProcess:
    """`threadweaver-operator` as a subprocess against the test control plane, watching
    ``namespaces`` only (none: every namespace)."""

    def __init__(self, log_dir: Path, namespaces: tuple[str, ...] = ()) -> None:
        self.log_dir = log_dir
        self.namespaces = namespaces
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.port = _free_port()

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        env = os.environ.copy()
        env["PYTHONUNBUFFERED"] = "1"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (open while it runs; stop() closes it)
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "threadweaver-operator"),
                # the session's operator: only this session's namespaces, so that other
                # checkouts' e2e runs on the same control plane keep to their own clusters
                *(
                    [f"--namespace={n}" for n in self.namespaces]
                    or ["--namespace", f"{NAMESPACE_PREFIX}*"]
                ),
                f"--liveness=http://127.0.0.1:{self.port}/healthz",
                "--log-level=info",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/healthz", timeout=2
                ) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"operator not healthy after 60s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc:
            self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text()[-20000:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def operator(crd, services, tmp_path_factory):
    op = OperatorProcess(tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


@pytest.fixture
def ns_operator(crd, services, ns, tmp_path):
    """An operator watching only this test's namespace ``ns`` (operators of other test runs on
    the same control plane keep theirs). It finalizes the test's clusters before it stops."""
    log_dir = tmp_path / "operator"
    log_dir.mkdir()
    op = OperatorProcess(log_dir, namespaces=(ns,))
    op.start()
    yield op
    kubectl("delete", "twc", "--all", "-n", ns, "--wait=true", "--timeout=60s", check=False)
    op.stop()


@pytest.fixture
def ns(controlplane, request):
    # a test with an operator of its own (ns_operator) gets a namespace the session's does not
    # watch
    solo = "ns_operator" in request.fixturenames
    name = f"{NAMESPACE_PREFIX.rstrip('-')}{'solo-' if solo else '-'}{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    # clusters first (the operator finalizes them), then the namespace
    kubectl("delete", "twc", "--all", "-n", name, "--wait=true", "--timeout=60s", check=False)
    leftovers = kubectl("get", "twc", "-n", name, "-o", "name", check=False).stdout.split()
    for obj in leftovers:  # operator gone or stuck: do not leave a namespace stuck terminating
        kubectl(
            "patch",
            obj,
            "-n",
            name,
            "--type=json",
            "-p",
            '[{"op":"remove","path":"/metadata/finalizers"}]',
            check=False,
        )
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
async def api(controlplane):
    kube = await Kube.connect()
    yield kube
    await kube.close()
