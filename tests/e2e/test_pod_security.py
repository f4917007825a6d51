"""Pods run as non-root with a read-only root filesystem and no capabilities, proven by the API
server itself: Pod Security admission in `enforce=restricted` mode accepts the runtime pods the
operator builds (StatefulSet template), its migration Job's pod and the operator's own pod, and
refuses a pod that runs as root (so the check is live, not vacuous)."""

from __future__ import annotations

from pathlib import Path

import yaml

from threadweaver_operator import builders
from threadweaver_operator.spec import ClusterSpec

ROOT = Path(__file__).resolve().parents[2]


def _pod(name: str, template: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template.get("metadata", {}).get("labels", {})},
        "spec": template["spec"],
    }


def test_pods_pass_the_restricted_pod_security_standard(kube, kube_namespace):
    ns = kube_namespace
    kube.kubectl(
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "--overwrite",
    )
    spec = ClusterSpec.from_resource(
        "psa",
        ns,
        {
            "image": "threadweaver:test",
            "replicas": 1,
            "journal": {"dynamodb": {"credentialsSecret": {"name": "aws"}}},
            "readModel": {"mysql": {"host": "db", "passwordSecret": {"name": "db"}}},
        },
    )
    runtime = builders.statefulset(spec, 1)["spec"]["template"]
    job = builders.migration_job(spec)["spec"]["template"]
    operator = next(
        d
        for d in yaml.safe_load_all((ROOT / "config/operator/deployment.yaml").read_text())
        if d and d.get("kind") == "Deployment"
    )["spec"]["template"]
    for name, template in (("runtime", runtime), ("migrate", job), ("operator", operator)):
        account = template["spec"].get("serviceAccountName")
        if account:
            kube.kubectl("create", "serviceaccount", account, "-n", ns, check=False)
        result = kube.kubectl(
            "apply", "-n", ns, "-f", "-", input=kube.to_yaml(_pod(name, template)), check=False
        )
        assert result.returncode == 0, (
            f"{name} pod refused by Pod Security admission:\n{result.stderr}"
        )
        assert "violate" not in result.stderr, result.stderr

    root_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "as-root"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "securityContext": {"runAsUser": 0}}]
        },
    }
    refused = kube.kubectl("apply", "-n", ns, "-f", "-", input=kube.to_yaml(root_pod), check=False)
    assert refused.returncode != 0 and "restricted" in refused.stderr, refused.stderr
