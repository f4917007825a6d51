"""`kubectl threadweaver` against the real API server: kubectl finds the plugin on PATH (a
`kubectl-threadweaver` that runs the console script's entry point), and every command works
with a kubeconfig and RBAC only. The members' Leases are played by the test (see
test_operator_e2e.py); the operator watches only the test's namespace.

RBAC refusals use ServiceAccount tokens in kubeconfigs of their own: one with no role, one
with the read-only role docs/operator.md lists for `status`, `shards` and `rebalance`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from operator_e2e_support import (
    ROOT,
    apply_yaml,
    cluster_manifest,
    dump,
    events_of,
    eventually,
    get_cluster,
    job_succeeded,
    kubectl,
    migrate_like_the_job,
    play_members,
    secret,
    shard_map,
)

from threadweaver.shards import shard_of

pytestmark = pytest.mark.e2e

READ_ONLY_RULES = [
    {"apiGroups": ["threadweaver.io"], "resources": ["threadweaverclusters"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["list"]},
    {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get"]},
]


@pytest.fixture
def plugin_path(tmp_path) -> str:
    """A PATH whose `kubectl-threadweaver` runs the console script's entry point with this
    interpreter (and this worktree's PYTHONPATH), as the installed script does."""
    bin_dir = tmp_path / "plugin-bin"
    bin_dir.mkdir()
    script = bin_dir / "kubectl-threadweaver"
    script.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c "
        "'import sys; from threadweaver_operator.kubectl.main import main; sys.exit(main())' "
        '"$@"\n'
    )
    script.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def plugin(path: str, *args: str, kubeconfig: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path}
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    return subprocess.run(
        ["kubectl", "threadweaver", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def service_account_kubeconfig(ns: str, account: str, directory: Path) -> str:
    """A kubeconfig that authenticates as ServiceAccount ``account`` (a token), whose context's
    namespace is ``ns``; the server and CA of the admin kubeconfig."""
    kubectl("create", "serviceaccount", account, "-n", ns)
    token = kubectl("create", "token", account, "-n", ns, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": account,
                "context": {"cluster": cluster["name"], "user": account, "namespace": ns},
            }
        ],
        "current-context": account,
    }
    path = directory / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def grant(ns: str, account: str, rules: list[dict]) -> None:
    apply_yaml(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": account, "namespace": ns},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": account, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
        },
    )


async def test_kubectl_threadweaver(ns_operator, services, ns, api, plugin_path, tmp_path):
    name = "plug"
    apply_yaml(
        secret(ns, f"{name}-aws", {"access-key-id": "e2e", "secret-access-key": "e2e"}),
        secret(ns, f"{name}-mysql", {"password": "threadweaver"}),
        cluster_manifest(
            ns,
            name,
            f"e2e-{uuid.uuid4().hex[:8]}",
            deletionPolicy="Delete",
            rebalance={"mode": "manual"},
        ),
    )
    fail = lambda: dump(ns, name, ns_operator)  # noqa: E731
    job = await migrate_like_the_job(api, ns, name)
    await job_succeeded(api, ns, job)

    async def phase(wanted: str, **members):
        await play_members(api, ns, name, **members)
        twc = await get_cluster(api, ns, name)
        return ((twc or {}).get("status") or {}).get("phase") == wanted

    await eventually(lambda: phase("Running"), 120, what="Running", on_fail=fail)

    # status, as a table and as JSON
    table = ok(plugin(plugin_path, "status", name, "-n", ns))
    for text in ("Phase:      Running", "Rebalance: manual", f"{name}-2", "LEASE AGE", "Ready"):
        assert text in table, (text, table)
    status = json.loads(ok(plugin(plugin_path, "status", name, "-n", ns, "-o", "json")))
    assert [m["member"] for m in status["members"]] == [f"{name}-{i}" for i in range(3)]
    assert sum(m["shards"] for m in status["members"]) == 64
    assert all(m["lease"]["valid"] and m["lease"]["ageSeconds"] >= 0 for m in status["members"])
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "Rebalancing"}

    # shards, and the owner of a thread
    smap = await shard_map(api, ns, name)
    thread = "01HZX3Y7Q8M9N0P1R2S3T4V5W6"
    owner = json.loads(
        ok(plugin(plugin_path, "shards", name, "-n", ns, "--thread", thread, "-o", "json"))
    )
    assert owner["epoch"] == smap.epoch
    shard = shard_of(f"thread-{thread}", 64)
    assert owner["thread"]["shard"] == shard
    assert owner["thread"]["owner"] == smap.owner_of(shard)
    assert f"owned by {smap.owner_of(shard)}" in ok(
        plugin(plugin_path, "shards", name, "-n", ns, "--thread", thread)
    )

    # a scale-up in manual mode: the dry run shows the plan the operator proposes
    kubectl("scale", "twc", name, "-n", ns, "--replicas=4")

    async def proposed():
        await play_members(api, ns, name)
        twc = await get_cluster(api, ns, name)
        plan = ((twc or {}).get("status") or {}).get("proposedPlan") or {}
        return plan if len(plan.get("members") or ()) == 4 else None

    plan = await eventually(proposed, 120, what="the proposed plan", on_fail=fail)
    dry = json.loads(
        ok(plugin(plugin_path, "rebalance", name, "-n", ns, "--dry-run", "-o", "json"))
    )
    assert dry["plan"]["id"] == plan["id"] and dry["plan"]["rounds"] == plan["rounds"]
    assert dry["now"]["reason"] == "AwaitingApproval"
    assert plan["id"] in ok(plugin(plugin_path, "rebalance", name, "-n", ns, "--dry-run"))
    assert plan["id"] in ok(plugin(plugin_path, "status", name, "-n", ns))

    # approve: a wrong id is refused, the right one runs the plan
    wrong = plugin(plugin_path, "approve", name, "e0-00000000", "-n", ns)
    assert wrong.returncode == 1 and "not the proposed plan" in wrong.stderr
    assert "approved" in ok(plugin(plugin_path, "approve", name, plan["id"], "-n", ns))

    async def balanced():
        await play_members(api, ns, name)
        smap = await shard_map(api, ns, name)
        twc = await get_cluster(api, ns, name)
        status = (twc or {}).get("status") or {}
        return (
            smap is not None
            and len(smap.assignments) == 4
            and not smap.in_handoff
            and "proposedPlan" not in status
            and status.get("phase") == "Running"
        )

    await eventually(balanced, 120, what="the approved plan ran", on_fail=fail)
    dry = json.loads(
        ok(plugin(plugin_path, "rebalance", name, "-n", ns, "--dry-run", "-o", "json"))
    )
    assert dry["plan"] is None and dry["now"]["reason"] == "Balanced"

    # restart-rmu goes through the API server: the operator adds the request to the shard map
    assert "requested" in ok(plugin(plugin_path, "restart-rmu", name, "0-8", "-n", ns))

    async def restart_requested():
        smap = await shard_map(api, ns, name)
        return smap.restart_generations(smap.owner_of(0)).get("0-8") == 1

    await eventually(restart_requested, 60, what="the restart request", on_fail=fail)
    assert "RmuRestartRequested" in [e["reason"] for e in events_of(ns, name)]
    bad = plugin(plugin_path, "restart-rmu", name, "60-99", "-n", ns)
    assert bad.returncode == 1 and "exceeds" in bad.stderr

    # a missing cluster
    missing = plugin(plugin_path, "status", "nope", "-n", ns)
    assert missing.returncode == 1
    assert f'threadweavercluster "nope" not found in namespace "{ns}"' in missing.stderr

    # RBAC: nothing granted, then read-only
    nobody = service_account_kubeconfig(ns, "nobody", tmp_path)
    refused = plugin(plugin_path, "status", name, kubeconfig=nobody)  # namespace of the context
    assert refused.returncode == 1, refused.stdout
    assert "forbidden: you cannot get threadweaverclusters.threadweaver.io" in refused.stderr
    assert "system:serviceaccount:" in refused.stderr
    viewer = service_account_kubeconfig(ns, "viewer", tmp_path)
    grant(ns, "viewer", READ_ONLY_RULES[:2])  # cluster and shard map only

    async def shards_allowed():
        proc = plugin(plugin_path, "shards", name, kubeconfig=viewer)
        return proc.returncode == 0 and f"{name}-3" in proc.stdout

    await eventually(shards_allowed, 30, what="RBAC of the viewer in effect")
    no_leases = plugin(plugin_path, "status", name, kubeconfig=viewer)
    assert no_leases.returncode == 1
    assert "cannot list leases.coordination.k8s.io" in no_leases.stderr
    grant(ns, "viewer", READ_ONLY_RULES)

    async def read_only_works():
        proc = plugin(plugin_path, "status", name, kubeconfig=viewer)
        return proc.returncode == 0 and f"{name}-3" in proc.stdout

    await eventually(read_only_works, 30, what="the viewer's read-only role in effect")
    ok(plugin(plugin_path, "rebalance", name, "--dry-run", kubeconfig=viewer))
    denied = plugin(plugin_path, "restart-rmu", name, "0-8", kubeconfig=viewer)
    assert denied.returncode == 1
    assert "forbidden: you cannot patch threadweaverclusters.threadweaver.io" in denied.stderr
