"""The kubectl plugin without a cluster: its views of a snapshot, that the dry run is the
operator's own decision, the annotations it writes, its error messages and its packaging."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from threadweaver.domain.ids import thread_persistence_id
from threadweaver.shards import MemberStatus, RmuState, ShardMap, ShardRange, shard_of
from threadweaver_operator import builders, planning
from threadweaver_operator.kube import KubeError, NotFound
from threadweaver_operator.kubectl import actions, main
from threadweaver_operator.kubectl.reading import PluginError, Session, Snapshot, observation
from threadweaver_operator.kubectl.rebalance_view import dry_run, render_dry_run
from threadweaver_operator.kubectl.shards_view import (
    THREAD_PID_PREFIX,
    render_shards,
    shard_table,
    thread_owner,
)
from threadweaver_operator.kubectl.status_view import cluster_status, render_status
from threadweaver_operator.observation import read_spec
from threadweaver_operator.steps import WriteStatus

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NS = "team"
SPEC = {
    "image": "img:1",
    "replicas": 4,
    "shards": 64,
    "readModel": {"mysql": {"host": "db"}},
    "rebalance": {"mode": "manual"},
}
THREE = ShardMap.initial(64, ["chat-0", "chat-1", "chat-2"])


def cluster(spec=None, status=None, annotations=None) -> dict:
    return {
        "apiVersion": "threadweaver.io/v1alpha1",
        "kind": "ThreadWeaverCluster",
        "metadata": {
            "name": "chat",
            "namespace": NS,
            "uid": "u",
            "generation": 1,
            "annotations": annotations or {},
        },
        "spec": {**SPEC, **(spec or {})},
        "status": status or {},
    }


def lease(member: str, acked: int, rmus=(), age: float = 2.0) -> dict:
    renewed = (NOW - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "metadata": {
            "name": member,
            "annotations": MemberStatus(
                member, acked, rmus=tuple(rmus), address=f"{member}:9080"
            ).to_annotations(),
        },
        "spec": {"renewTime": renewed, "leaseDurationSeconds": 15},
    }


def pod(member: str) -> dict:
    return {
        "metadata": {"name": member},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def snapshot(shard_map=THREE, members=4, **cluster_fields) -> Snapshot:
    body = cluster(**cluster_fields)
    spec, _ = read_spec(body)
    sts = builders.statefulset(spec, members)
    sts["status"] = {"replicas": members, "readyReplicas": members}
    names = [f"chat-{i}" for i in range(members)]
    return Snapshot(
        NS,
        body,
        builders.shardmap_configmap(spec, shard_map) if shard_map else None,
        tuple(lease(n, shard_map.epoch if shard_map else 0) for n in names),
        tuple(pod(n) for n in names),
        sts,
    )


# -- the views ------------------------------------------------------------------------------


def test_status_shows_members_ranges_leases_and_rmus():
    rmus = (RmuState(ShardRange(0, 22), running=False, lag_events=7, lag_seconds=3.5, restarts=2),)
    snap = snapshot(
        status={
            "phase": "Running",
            "readyReplicas": 3,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "ClusterReady", "message": "ok"}
            ],
        }
    )
    snap = Snapshot(
        NS, snap.cluster, snap.configmap, (lease("chat-0", 1, rmus, age=4.0),), snap.pods
    )
    s = cluster_status(snap, NOW)
    assert s["phase"] == "Running" and s["epoch"] == 1 and s["rebalanceMode"] == "manual"
    first = s["members"][0]
    assert first["member"] == "chat-0" and first["shards"] == 22 and first["ranges"] == "0-22"
    assert first["pod"] == "Ready"
    assert first["lease"]["ageSeconds"] == 4.0 and first["lease"]["valid"]
    assert first["rmus"][0]["lagEvents"] == 7 and first["rmus"][0]["running"] is False
    assert [m["member"] for m in s["members"]] == ["chat-0", "chat-1", "chat-2", "chat-3"]
    assert s["members"][3]["lease"] is None and s["members"][3]["shards"] == 0
    text = render_status(s)
    for expected in ("Phase:      Running", "ClusterReady", "LEASE AGE", "0-22", "4s", "NO"):
        assert expected in text, (expected, text)
    json.dumps(s)  # -o json


def test_status_shows_the_read_model_and_a_rebuild_in_progress():
    rebuilding = {
        "database": "threadweaver",
        "rebuild": {
            "phase": "CatchingUp",
            "database": "threadweaver_r2",
            "progress": {"shards": 64, "caughtUp": 40, "lagSeconds": 3.2},
        },
    }
    s = cluster_status(snapshot(status={"phase": "Running", "readModel": rebuilding}), NOW)
    assert s["readModel"] == rebuilding
    text = render_status(s)
    assert (
        "Read model: threadweaver; rebuild into threadweaver_r2: CatchingUp, 40/64 shards "
        "within 1 s, lag 3.2 s"
    ) in text
    done = {"database": "b", "previousDatabase": "a", "rebuild": {"phase": "Complete"}}
    s = cluster_status(snapshot(status={"phase": "Running", "readModel": done}), NOW)
    assert "Read model: b (previous: a)\n" in render_status(s) + "\n"


def test_shards_and_the_owner_of_a_thread():
    assert thread_persistence_id("01J") == THREAD_PID_PREFIX + "01J"
    thread = "01HZX3Y7Q8M9N0P1R2S3T4V5W6"
    owner = thread_owner(THREE, thread)
    shard = shard_of(thread_persistence_id(thread), 64)
    assert owner["shard"] == shard and owner["owner"] == THREE.owner_of(shard)
    assert owner["servedBy"] == owner["owner"] and owner["moving"] is None
    moving = THREE.rebalance(["chat-0", "chat-1", "chat-2", "chat-3"], 8)
    moved_shard = moving.handoff.moves[0].range.start
    thread_in_move = next(
        f"t{i}"
        for i in range(10_000)
        if shard_of(thread_persistence_id(f"t{i}"), 64) == moved_shard
    )
    o = thread_owner(moving, thread_in_move)
    assert o["servedBy"] is None and o["owner"] == "chat-3" and o["moving"]["from"]
    text = render_shards(shard_table(moving), o)
    assert "not served until the handoff completes" in text and "Moving:" in text


def test_the_dry_run_is_the_operators_decision():
    """The plan the dry run shows is the one the operator's pass publishes (same id, rounds)."""
    snap = snapshot()
    d = dry_run(snap, NOW)
    o = observation(snap, NOW)
    parsed = o.spec
    job = {
        **builders.migration_job(parsed),
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    }
    from dataclasses import replace

    from threadweaver_operator.status import Condition

    operator_view = replace(
        o,
        previous={"migratedRevision": parsed.migration_revision()},
        tables=Condition("Provisioned", "True", "TablesReady", ""),
        peer_token_exists=True,
        migration_job=job,
    )
    (write,) = planning.plan(operator_view).of(WriteStatus)
    proposed = write.status["proposedPlan"]
    assert d["plan"]["id"] == proposed["id"]
    assert d["plan"]["rounds"] == proposed["rounds"]
    assert d["now"]["reason"] == "AwaitingApproval" and not d["now"]["moves"]
    assert d["plan"]["approval"] == f"needed: kubectl threadweaver approve chat {proposed['id']}"
    text = render_dry_run(d)
    assert proposed["id"] in text and "chat-3" in text and "BEFORE" in text


def test_the_dry_run_in_auto_mode_shows_the_round_published_now_and_the_next_ones():
    snap = snapshot(spec={"rebalance": {"mode": "auto", "maxRangesPerRound": 1}}, members=6)
    d = dry_run(snap, NOW)
    assert d["now"]["action"] == "rebalance" and d["now"]["moves"]
    assert d["plan"]["approval"].startswith("not needed")
    text = render_dry_run(d)
    assert "\nnext " in text and "\n2 " in text


def test_the_dry_run_of_a_balanced_cluster_and_of_an_invalid_spec():
    balanced = ShardMap.initial(64, [f"chat-{i}" for i in range(4)])
    d = dry_run(snapshot(shard_map=balanced), NOW)
    assert d["plan"] is None and d["now"]["reason"] == "Balanced"
    assert "nothing to move" in render_dry_run(d)
    with pytest.raises(PluginError, match="spec is invalid"):
        dry_run(snapshot(spec={"rebalance": {"mode": "often"}}), NOW)


# -- the annotations ------------------------------------------------------------------------


class FakeKube:
    def __init__(self, obj: dict | None, status: int | None = None) -> None:
        self.obj, self.status, self.patches = obj, status, []

    async def request(self, method, path, **_):
        if self.status:
            raise KubeError(self.status, "nope", {"message": "denied by RBAC"})
        if self.obj is None:
            raise NotFound(404, "not found", {"details": {"name": "chat"}})
        return self.obj

    async def merge_patch(self, kind, ns, name, patch, subresource=None):
        self.patches.append(patch)
        return self.obj

    async def close(self):
        pass


def session(obj, status=None) -> Session:
    return Session(FakeKube(obj, status), NS)


def proposed_cluster(state="AwaitingApproval") -> dict:
    return cluster(status={"proposedPlan": {"id": "e1-abc", "state": state, "rounds": [{}]}})


def test_approve_annotates_the_proposed_plan_only():
    s = session(proposed_cluster())
    message = asyncio.run(actions.approve(s, "chat", "e1-abc"))
    assert "approved" in message
    assert s.kube.patches == [
        {"metadata": {"annotations": {"threadweaver.io/approve-rebalance": "e1-abc"}}}
    ]
    with pytest.raises(PluginError, match=r"not the proposed plan.*the proposal is e1-abc"):
        asyncio.run(actions.approve(session(proposed_cluster()), "chat", "e1-old"))
    with pytest.raises(PluginError, match="no rebalancing plan awaits approval"):
        asyncio.run(actions.approve(session(cluster()), "chat", "e1-abc"))
    auto = cluster(spec={"rebalance": {"mode": "auto"}})
    with pytest.raises(PluginError, match="rebalances by itself"):
        asyncio.run(actions.approve(session(auto), "chat", "e1-abc"))
    done = session(proposed_cluster("Approved"))
    assert "already" in asyncio.run(actions.approve(done, "chat", "e1-abc"))
    assert not done.kube.patches


def test_restart_rmu_annotates_a_checked_range_with_a_nonce():
    s = session(cluster())
    asyncio.run(actions.restart_rmu(s, "chat", "0-16", NOW))
    assert s.kube.patches == [
        {
            "metadata": {
                "annotations": {"threadweaver.io/restart-rmu": "0-16@20240501T120000.000000Z"}
            }
        }
    ]
    with pytest.raises(PluginError, match="exceeds the cluster's 64 shards"):
        asyncio.run(actions.restart_rmu(session(cluster()), "chat", "60-80", NOW))


def test_errors_name_the_missing_cluster_or_permission():
    with pytest.raises(PluginError, match='threadweavercluster "chat" not found in namespace'):
        asyncio.run(session(None).cluster("chat"))
    with pytest.raises(PluginError, match="forbidden: you cannot get threadweaverclusters"):
        asyncio.run(session(cluster(), 403).cluster("chat"))
    with pytest.raises(PluginError, match="unauthorized"):
        asyncio.run(session(cluster(), 401).cluster("chat"))


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main.main(["rebalance", "chat"])  # --dry-run is required
    assert exc.value.code == 2
    args = main.build_parser().parse_args(["-n", "a", "status", "chat", "-n", "b", "-o", "json"])
    assert args.namespace == "b" and args.output == "json"


# -- packaging ------------------------------------------------------------------------------


def test_the_console_script_is_kubectl_threadweaver():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-threadweaver"] == "threadweaver_operator.kubectl.main:main"


def test_the_plugin_runs_without_kopf():
    code = (
        "import sys; sys.modules['kopf'] = None\n"
        "from threadweaver_operator.kubectl.main import main\n"
        "sys.exit(main(['--help']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "restart-rmu" in proc.stdout
