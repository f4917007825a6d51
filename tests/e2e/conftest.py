"""Session fixtures of the e2e suite: a real Kubernetes cluster and tools to talk to it.

By default the cluster is the local control plane of ``hack/controlplane.sh`` (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and KWOK with one fake node, built from
upstream sources; see docs/controlplane.md). ``hack/controlplane.sh up`` is idempotent, so the
session fixture just runs it (a cold build takes a while; a warm start a few seconds).

To run the suite against an existing cluster (kind, EKS, ...) instead, set both
``KUBECONFIG=/path/to/kubeconfig`` and ``THREADWEAVER_E2E_USE_KUBECONFIG=1``. kubectl and helm
are still the ones built by ``hack/controlplane.sh build``.

Fixtures:
  kube            session: a ``Kube`` (kubeconfig path, ``kubectl(...)``, helm path, helpers);
                  also exports KUBECONFIG (and PATH with kubectl/helm) to this process, so that
                  in-process clients (kubernetes_asyncio, kopf) reach the same cluster.
  kube_namespace  function: a fresh namespace (name), deleted after the test.

On the local plane, pods of every namespace without the label ``threadweaver.io/real-pods`` are
sent to the KWOK node (a MutatingAdmissionPolicy adds its toleration and ``type: kwok``): the
suites written for KWOK keep their fake pods, while tests/e2e/realpods labels its namespaces to
run real containers on the plane's kubelet node.

Nothing here skips: a missing tool or a broken cluster fails the session fixture with the output.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.support.services import parse_exports

ROOT = Path(__file__).resolve().parents[2]
CONTROLPLANE = ROOT / "hack" / "controlplane.sh"
USE_KUBECONFIG = "THREADWEAVER_E2E_USE_KUBECONFIG"
T = TypeVar("T")


class KubectlError(AssertionError):
    """A kubectl/helm command failed (with check=True); carries the CompletedProcess."""

    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.proc = proc
        super().__init__(
            f"{shlex.join(proc.args)} exited with {proc.returncode}:\n"
            f"{proc.stderr[-4000:]}{proc.stdout[-4000:]}"
        )


def _run_script(*args: str, timeout: float) -> str:
    """Run hack/controlplane.sh; on failure raise with its output (which ends with the log tail)."""
    try:
        proc = subprocess.run(
            [str(CONTROLPLANE), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"hack/controlplane.sh {' '.join(args)} did not finish in {timeout}s:\n"
            f"{exc.stderr or ''}"
        ) from None
    if proc.returncode != 0:
        raise RuntimeError(
            f"hack/controlplane.sh {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc.stdout


def to_yaml(*objects: Any) -> str:
    """Dicts (or YAML strings) as one multi-document YAML stream for ``kubectl apply -f -``."""
    return "\n---\n".join(
        o if isinstance(o, str) else yaml.safe_dump(o, sort_keys=False) for o in objects
    )


def eventually(
    check: Callable[[], T], timeout: float = 60, interval: float = 0.5, what: str = "condition"
) -> T:
    """Call ``check()`` until it returns something truthy (returned); fail after ``timeout``
    seconds with the last value or exception."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


@dataclass(frozen=True)
class Kube:
    kubeconfig: str  # absolute path of the kubeconfig
    kubectl_path: str  # the kubectl built by hack/controlplane.sh (same release as the apiserver)
    helm: str  # the helm binary path
    bin_dir: str  # directory of kubectl/helm (already prepended to PATH)
    external: bool = False  # True when using the user's KUBECONFIG instead of the local plane
    env: dict[str, str] = field(default_factory=dict, repr=False)

    # Helpers reachable from the fixture, so test modules need not import this conftest.
    Error = KubectlError
    eventually = staticmethod(eventually)
    to_yaml = staticmethod(to_yaml)

    def kubectl(
        self, *args: Any, input: str | bytes | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """Run kubectl with this kubeconfig; returns the CompletedProcess (text mode unless
        ``input`` is bytes). With ``check``, a non-zero exit raises KubectlError."""
        return self._run(
            [self.kubectl_path, "--kubeconfig", self.kubeconfig, *map(str, args)],
            input=input,
            check=check,
            timeout=timeout,
        )

    def helm_run(
        self, *args: Any, input: str | bytes | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        """Run helm against this cluster (``--kubeconfig`` passed)."""
        return self._run(
            [self.helm, "--kubeconfig", self.kubeconfig, *map(str, args)],
            input=input,
            check=check,
            timeout=timeout,
        )

    def kubectl_json(self, *args: Any, timeout: float = 120) -> Any:
        """``kubectl <args> -o json``, parsed."""
        return json.loads(self.kubectl(*args, "-o", "json", timeout=timeout).stdout)

    def apply(self, *objects: Any, namespace: str | None = None) -> subprocess.CompletedProcess:
        """``kubectl apply -f -`` of dicts or YAML strings."""
        ns = ["-n", namespace] if namespace else []
        return self.kubectl("apply", *ns, "-f", "-", input=to_yaml(*objects))

    def _run(
        self, cmd: list[str], *, input: str | bytes | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess:
        text = not isinstance(input, bytes)
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
            env=self.env,
            cwd=ROOT,
        )
        if check and proc.returncode != 0:
            raise KubectlError(proc)
        return proc


def _start_kube() -> Kube:
    external = os.environ.get(USE_KUBECONFIG) == "1"
    if external:
        kubeconfig = os.environ.get("KUBECONFIG", "")
        if not kubeconfig:
            raise RuntimeError(
                f"{USE_KUBECONFIG}=1 needs KUBECONFIG set to the cluster's kubeconfig"
            )
        kubeconfig = os.path.abspath(kubeconfig.split(os.pathsep)[0])
        if not os.path.isfile(kubeconfig):
            raise RuntimeError(f"KUBECONFIG={kubeconfig} does not exist")
        _run_script("build", timeout=3600)  # kubectl and helm only; no local cluster
    else:
        _run_script("up", timeout=3600)  # idempotent; builds on a cold machine
    exported = parse_exports(_run_script("env", timeout=120))
    bin_dir = exported["THREADWEAVER_CP_BIN"]
    if not external:
        kubeconfig = exported["KUBECONFIG"]
    env = os.environ.copy()
    env["KUBECONFIG"] = kubeconfig
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    kube = Kube(
        kubeconfig=kubeconfig,
        kubectl_path=os.path.join(bin_dir, "kubectl"),
        helm=os.path.join(bin_dir, "helm"),
        bin_dir=bin_dir,
        external=external,
        env=env,
    )
    for tool in (kube.kubectl_path, kube.helm):
        if not os.access(tool, os.X_OK):
            raise RuntimeError(f"{tool} is missing after hack/controlplane.sh build")
    kube.kubectl("get", "--raw", "/readyz", timeout=30)
    if not external:
        kube.kubectl("apply", "-f", "-", input=PODS_ON_KWOK_POLICY)
    return kube


# The KWOK node is tainted so that ordinary users' pods run on the real node; the suites
# written for KWOK get the toleration and a nodeSelector for it in every namespace that does
# not ask for real pods.
PODS_ON_KWOK_POLICY = """
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata: {name: threadweaver-e2e-pods-on-kwok}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}
  failurePolicy: Fail
  reinvocationPolicy: Never
  mutations:
  - patchType: JSONPatch
    jsonPatch:
      expression: >
        [
          has(object.spec.tolerations)
          ? JSONPatch{op: "add", path: "/spec/tolerations/-", value: Object.spec.tolerations{
              key: "kwok.x-k8s.io/node", operator: "Exists", effect: "NoSchedule"}}
          : JSONPatch{op: "add", path: "/spec/tolerations", value: [Object.spec.tolerations{
              key: "kwok.x-k8s.io/node", operator: "Exists", effect: "NoSchedule"}]},
          has(object.spec.nodeSelector)
          ? JSONPatch{op: "add", path: "/spec/nodeSelector/type", value: "kwok"}
          : JSONPatch{op: "add", path: "/spec/nodeSelector", value: {"type": "kwok"}}
        ]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata: {name: threadweaver-e2e-pods-on-kwok}
spec:
  policyName: threadweaver-e2e-pods-on-kwok
  matchResources:
    namespaceSelector:
      matchExpressions: [{key: threadweaver.io/real-pods, operator: DoesNotExist}]
"""


_started: Kube | BaseException | None = None
_HERE = Path(__file__).resolve().parent


def pytest_collection_finish(session: pytest.Session) -> None:
    """Bring the cluster up once collection is done, outside any test's timeout (a cold build of
    the control plane takes longer than pytest-timeout allows a test), if an e2e test is selected.
    An error is kept and raised by the `kube` fixture, so the tests fail with it."""
    global _started
    if session.config.option.collectonly or _started is not None:
        return
    if not any(_HERE in Path(str(item.path)).resolve().parents for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        if os.environ.get(USE_KUBECONFIG) == "1":
            reporter.write_line(
                f"e2e: using KUBECONFIG={os.environ.get('KUBECONFIG', '')} ({USE_KUBECONFIG}=1)"
            )
        else:
            reporter.write_line(
                "e2e: hack/controlplane.sh up (a cold build of the control plane takes ~20 min)"
            )
    try:
        _started = _start_kube()
    except Exception as exc:
        _started = exc


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    global _started
    if _started is None:
        _started = _start_kube()
    if isinstance(_started, BaseException):
        raise _started
    kube = _started
    saved = {k: os.environ.get(k) for k in ("KUBECONFIG", "PATH")}
    os.environ["KUBECONFIG"] = kube.kubeconfig
    os.environ["PATH"] = kube.env["PATH"]
    try:
        yield kube
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def kube_namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one test, with its default ServiceAccount (so pods can be created);
    deleted (without waiting) afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    kube.kubectl("create", "namespace", name)
    eventually(
        lambda: (
            kube.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        timeout=60,
        interval=0.2,
        what=f"the default ServiceAccount in {name}",
    )
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
