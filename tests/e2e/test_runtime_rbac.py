"""Least privilege of the runtime, proven against the real API server: the Role the operator
builds lets a member read its cluster's shard map and write the member Leases, and nothing else
(`kubectl auth can-i`); and a real `threadweaver serve --cluster` member running with that
ServiceAccount's own token works (watches the map, acknowledges it in its Lease)."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from tests.support.runtime_process import RuntimeProcess
from threadweaver.shards import ShardMap, shardmap_configmap_name
from threadweaver.shards.membership import MemberStatus
from threadweaver_operator import builders, names
from threadweaver_operator.spec import ClusterSpec

CLUSTER = "rbac"


def _can(kube, ns, sa, *args) -> str:
    return kube.kubectl(
        "auth", "can-i", *args, "--as", f"system:serviceaccount:{ns}:{sa}", "-n", ns, check=False
    ).stdout.strip()


def test_runtime_service_account_reads_its_map_and_writes_member_leases_only(
    kube, kube_namespace, tmp_path
):
    ns = kube_namespace
    spec = ClusterSpec.from_resource(
        CLUSTER,
        ns,
        {
            "image": "threadweaver:test",
            "replicas": 2,
            "shards": 16,
            "readModel": {"mysql": {"host": "db"}},
        },
    )
    sa = names.runtime_account(CLUSTER)
    kube.apply(
        builders.service_account(spec),
        builders.role(spec, 2),
        builders.role_binding(spec),
        namespace=ns,
    )
    shardmap = shardmap_configmap_name(CLUSTER)
    member = names.members(CLUSTER, 2)[0]

    allowed = [
        ("get", f"configmaps/{shardmap}"),
        ("watch", f"configmaps/{shardmap}"),
        ("create", "leases.coordination.k8s.io"),
        ("patch", f"leases.coordination.k8s.io/{member}"),
        ("update", f"leases.coordination.k8s.io/{member}"),
    ]
    denied = [
        ("get", "configmaps/other"),
        ("list", "configmaps"),
        ("get", "secrets"),
        ("list", "secrets"),
        ("list", "leases.coordination.k8s.io"),
        ("patch", "leases.coordination.k8s.io/somebody-else"),
        ("update", f"configmaps/{shardmap}"),
        ("list", "pods"),
        ("create", "pods"),
        ("get", "threadweaverclusters.threadweaver.io"),
    ]
    for verb, resource in allowed:
        assert _can(kube, ns, sa, verb, resource) == "yes", (verb, resource)
    for verb, resource in denied:
        assert _can(kube, ns, sa, verb, resource) == "no", (verb, resource)
    # nothing outside its namespace
    assert (
        kube.kubectl(
            "auth",
            "can-i",
            "get",
            f"configmaps/{shardmap}",
            "--as",
            f"system:serviceaccount:{ns}:{sa}",
            "-n",
            "default",
            check=False,
        ).stdout.strip()
        == "no"
    )

    # A member running with the ServiceAccount's own token.
    token = kube.kubectl("create", "token", sa, "-n", ns, "--duration", "1h").stdout.strip()
    admin_config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    cluster = admin_config["clusters"][0]
    sa_config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [
            {"name": sa, "context": {"cluster": cluster["name"], "user": sa, "namespace": ns}}
        ],
        "current-context": sa,
    }
    kubeconfig = tmp_path / "runtime-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(sa_config))
    smap = ShardMap.initial(16, [member])
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": shardmap},
            "data": {"shardmap.json": smap.dumps()},
        },
        namespace=ns,
    )
    proc = RuntimeProcess(
        tmp_path / member,
        name=member,
        args=[
            "--cluster",
            CLUSTER,
            "--namespace",
            ns,
            "--kubeconfig",
            str(kubeconfig),
            "--shards",
            "16",
            "--lease-renew-every",
            "1",
        ],
    ).start(timeout=60)
    try:
        deadline = time.monotonic() + 30
        while True:
            lease = (
                kube.kubectl_json("get", "lease", member, "-n", ns)
                if kube.kubectl("get", "lease", member, "-n", ns, check=False).returncode == 0
                else None
            )
            status = MemberStatus.from_annotations(
                member, (lease or {}).get("metadata", {}).get("annotations")
            )
            if status.acked_epoch == smap.epoch:
                break
            assert time.monotonic() < deadline, f"member did not acknowledge: {proc.log_tail()}"
            time.sleep(0.5)
        assert str(status.owned) == "0-16"
        log = proc.log_tail(200)  # an API refusal logs as "(403) Reason: Forbidden"
        assert "Forbidden" not in log and "(403)" not in log, log
    finally:
        assert proc.stop() == 0, proc.log_tail()
    # a clean stop releases (deletes) the lease, within the Role's rights
    assert kube.kubectl("get", "lease", member, "-n", ns, check=False).returncode != 0
