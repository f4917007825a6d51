"""The Helm chart: lint, template, and a real install into the test control plane."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
import yaml
from operator_e2e_support import ROOT, kubectl

pytestmark = pytest.mark.e2e
CHART = ROOT / "charts" / "thread-weaver-operator"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    import os

    proc = subprocess.run(
        ["helm", *args], capture_output=True, text=True, timeout=300, env=os.environ.copy()
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
    return proc


def test_helm_lint_and_template(controlplane):
    out = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out.stdout, out.stdout
    docs = [
        d
        for d in yaml.safe_load_all(
            helm("template", "tw", str(CHART), "--namespace", "ops", "--include-crds").stdout
        )
        if d
    ]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "ServiceAccount",
    ]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["spec"]["strategy"]["type"] == "Recreate" and dep["spec"]["replicas"] == 1
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args
    scoped = [
        d
        for d in yaml.safe_load_all(
            helm("template", "tw", str(CHART), "--set", "operator.watchNamespaces={a,b}").stdout
        )
        if d
    ]
    dep = next(d for d in scoped if d["kind"] == "Deployment")
    assert {"--namespace=a", "--namespace=b"} <= set(
        dep["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_helm_install_brings_up_the_operator_objects(crd):
    ns = f"twhelm-{uuid.uuid4().hex[:6]}"
    release = f"op-{uuid.uuid4().hex[:4]}"
    try:
        helm(
            "install",
            release,
            str(CHART),
            "--namespace",
            ns,
            "--create-namespace",
            "--set",
            "image.repository=thread-weaver",
            "--set",
            "image.tag=e2e",
        )
        full = f"{release}-thread-weaver-operator"
        dep = json.loads(kubectl("get", "deploy", full, "-n", ns, "-o", "json").stdout)
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == full
        kubectl("get", "serviceaccount", full, "-n", ns)
        role = json.loads(kubectl("get", "clusterrole", full, "-o", "json").stdout)
        assert any("threadweaverclusters" in r["resources"] for r in role["rules"])
        binding = json.loads(kubectl("get", "clusterrolebinding", full, "-o", "json").stdout)
        assert binding["subjects"][0] == {"kind": "ServiceAccount", "name": full, "namespace": ns}
        # KWOK plays the kubelet: the operator pod is scheduled and reported Ready
        kubectl("rollout", "status", f"deploy/{full}", "-n", ns, "--timeout=90s")
        # the operator's ServiceAccount may do what the operator needs (and not more)
        sa = f"system:serviceaccount:{ns}:{full}"
        for verb, res in [
            ("patch", "statefulsets.apps"),
            ("create", "jobs.batch"),
            ("list", "leases.coordination.k8s.io"),
            ("patch", "threadweaverclusters.threadweaver.io/status"),
            ("create", "events"),
        ]:
            assert (
                kubectl("auth", "can-i", verb, res, "--as", sa, "-A", check=False).stdout.strip()
                == "yes"
            ), (verb, res)
        assert (
            kubectl(
                "auth", "can-i", "delete", "statefulsets.apps", "--as", sa, "-A", check=False
            ).stdout.strip()
            == "no"
        )
    finally:
        helm("uninstall", release, "--namespace", ns, check=False)
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
