"""Fixtures of the real-pod e2e suite: the local plane's kubelet node (hack/controlplane.sh up
starts it beside the KWOK node), the project's images built with podman and imported into it
(hack/images.sh), the operator installed in the cluster with the Helm chart from its image, and
per module a namespace with the sample's MariaDB and dynalite pods
(config/samples/local-services.yaml).

Run it in a pytest session of its own (`make e2e-realpods`; `make test` does): the KWOK suites
run an operator on the host that watches every namespace, while here the operator runs in the
cluster and watches only this suite's namespaces.

Nothing is skipped: a missing piece fails the fixture with its output."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from realpods_support import NODE, REAL_PODS_LABEL, ROOT

RELEASE = "tw-realpods"


def _script(*args: str, timeout: float = 1800) -> str:
    proc = subprocess.run(
        [str(ROOT / "hack" / args[0]), *args[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"hack/{' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-6000:]}"
        )
    return proc.stdout


def _namespace(kube, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", name)
    kube.kubectl("label", "namespace", name, REAL_PODS_LABEL)
    kube.eventually(
        lambda: kube.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        timeout=60,
        interval=0.3,
        what=f"the default ServiceAccount of {name}",
    )
    return name


@pytest.fixture(scope="session")
def real_node(kube) -> str:
    """The kubelet node is Ready and holds the current images (a warm build takes seconds)."""
    assert not kube.external, "the real-pod suite runs on the local plane (hack/controlplane.sh)"
    ready = kube.kubectl(
        "get", "node", NODE, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    ).stdout
    assert ready == "True", f"node {NODE} is not Ready ({ready!r}); hack/controlplane.sh status"
    _script("images.sh", "build")
    _script("controlplane.sh", "import-images")
    return NODE


@pytest.fixture(scope="session")
def watched(kube) -> list[str]:
    """Namespaces of this session: the operator watches exactly these."""
    return [f"rp-{uuid.uuid4().hex[:6]}", f"rp-{uuid.uuid4().hex[:6]}"]


@pytest.fixture(scope="session")
def in_cluster_operator(kube, real_node, watched) -> Iterator[str]:
    """The operator as a Deployment of the Helm chart, from localhost/thread-weaver:dev; yields
    its namespace. Uninstalled at the end."""
    kube.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(ROOT / "crds" / "threadweavercluster.yaml"),
    )
    ns = _namespace(kube, "rp-operator")
    for name in watched:
        kube.kubectl("create", "namespace", name)
        kube.kubectl("label", "namespace", name, REAL_PODS_LABEL)
    subprocess.run(
        [
            kube.helm,
            "install",
            RELEASE,
            str(ROOT / "charts" / "thread-weaver-operator"),
            "--namespace",
            ns,
            "--set",
            f"fullnameOverride={RELEASE}",
            "--set",
            "image.repository=localhost/thread-weaver",
            "--set",
            "image.tag=dev",
            "--set",
            "image.pullPolicy=Never",
            "--set",
            "operator.logFormat=text",
            "--set",
            "operator.watchNamespaces={" + ",".join(watched) + "}",
            "--wait",
            "--timeout",
            "180s",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=kube.env,
        timeout=240,
    )
    try:
        yield ns
    finally:
        for name in watched:
            kube.kubectl(
                "delete", "twc", "--all", "-n", name, "--wait=true", "--timeout=90s", check=False
            )
        subprocess.run(
            [kube.helm, "uninstall", RELEASE, "--namespace", ns, "--wait", "--timeout", "120s"],
            capture_output=True,
            env=kube.env,
            timeout=180,
        )
        for name in [*watched, ns]:
            kube.kubectl("delete", "namespace", name, "--wait=false", check=False)
