"""Helpers of the operator e2e suite (imported by conftest.py and the tests)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threadweaver.shards import SHARDMAP_KEY, MemberStatus, RmuState, ShardMap
from threadweaver_operator.kube import Kube

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent


def run(cmd: list[str], timeout: float = 3600, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def kubectl(
    *args: str, input: str | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["kubectl", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
    return proc


async def eventually(
    check: Callable[[], Awaitable[Any]],
    timeout: float = 60,
    interval: float = 0.5,
    what: str = "condition",
    on_fail: Callable[[], str] | None = None,
) -> Any:
    """Await ``check()`` until it returns a truthy value (returned) or the timeout passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            error = None
            if last:
                return last
        except AssertionError as exc:
            error = exc
        await asyncio.sleep(interval)
    extra = on_fail() if on_fail else ""
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}; last: {error or last!r}\n{extra}"
    )


# -- objects --------------------------------------------------------------------------------


def secret(ns: str, name: str, data: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def cluster_manifest(ns: str, name: str, prefix: str, **spec: Any) -> dict:
    body = {
        "apiVersion": "threadweaver.io/v1alpha1",
        "kind": "ThreadWeaverCluster",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 3,
            "image": "thread-weaver:e2e",
            "imagePullPolicy": "IfNotPresent",
            "shards": 64,
            "journal": {
                "dynamodb": {
                    "endpoint": "http://127.0.0.1:8000",
                    "tablePrefix": prefix,
                    "credentialsSecret": {"name": f"{name}-aws"},
                }
            },
            "readModel": {
                "mysql": {
                    "host": "127.0.0.1",
                    "port": 3306,
                    "passwordSecret": {"name": f"{name}-mysql"},
                }
            },
        },
    }
    body["spec"].update(spec)
    return body


def apply_yaml(*objs: dict) -> None:
    kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))


async def get_cluster(api: Kube, ns: str, name: str) -> dict | None:
    return await api.get("ThreadWeaverCluster", ns, name)


def condition(obj: dict | None, ctype: str) -> dict:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return {}


async def shard_map(api: Kube, ns: str, name: str) -> ShardMap | None:
    cm = await api.get("ConfigMap", ns, f"{name}-shardmap")
    return ShardMap.from_json(cm["data"][SHARDMAP_KEY]) if cm else None


async def play_members(
    api: Kube,
    ns: str,
    name: str,
    *,
    ack: bool = True,
    stopped_rmus: dict[str, list[str]] | None = None,
) -> None:
    """One heartbeat of every runtime pod that exists: renew its Lease, acknowledge the epoch it
    applied (what `threadweaver serve --cluster` does), report its RMUs; pods that are gone
    release their Lease (as a clean shutdown does)."""
    smap = await shard_map(api, ns, name)
    pods = {
        p["metadata"]["name"]
        for p in await api.list(
            "Pod",
            ns,
            label_selector=f"app.kubernetes.io/instance={name},app.kubernetes.io/component=runtime",
        )
    }
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for member in sorted(pods):
        serving = smap.serving_ranges(member) if smap else None
        rmus = tuple(
            RmuState(r, running=str(r) not in (stopped_rmus or {}).get(member, []))
            for r in (serving or ())
        )
        status = MemberStatus(
            member,
            acked_epoch=smap.epoch if (smap and ack) else 0,
            owned=serving if serving is not None else MemberStatus(member).owned,
            rmus=rmus,
        )
        lease = await api.get("Lease", ns, member)
        acked = status.acked_epoch
        if lease is not None and not ack:
            try:
                acked = int(
                    (lease["metadata"].get("annotations") or {}).get("threadweaver.io/acked-epoch")
                    or 0
                )
            except ValueError:
                acked = 0
        annotations = MemberStatus(member, acked, status.owned, status.rmus).to_annotations()
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": member,
                "namespace": ns,
                "annotations": annotations,
                "labels": {"threadweaver.io/cluster": name, "threadweaver.io/member": member},
            },
            "spec": {"holderIdentity": member, "leaseDurationSeconds": 15, "renewTime": now},
        }
        if lease is None:
            body["spec"]["acquireTime"] = now
            await api.create(body)
        else:
            await api.merge_patch(
                "Lease",
                ns,
                member,
                {"metadata": {"annotations": annotations}, "spec": body["spec"]},
            )
    for lease in await api.list("Lease", ns, label_selector=f"threadweaver.io/cluster={name}"):
        if lease["metadata"]["name"] not in pods:
            await api.delete("Lease", ns, lease["metadata"]["name"])


def dynamodb_tables() -> list[str]:
    import boto3

    client = boto3.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:8000",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    names: list[str] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = client.list_tables(**kwargs)
        names += page.get("TableNames", [])
        if "LastEvaluatedTableName" not in page:
            return names
        kwargs = {"ExclusiveStartTableName": page["LastEvaluatedTableName"]}


def events_of(ns: str, name: str) -> list[dict]:
    out = kubectl(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    return json.loads(out)["items"]


async def migrate_like_the_job(api, ns: str, name: str) -> str:
    """Run `threadweaver migrate` with the Job's environment (the password file is the Secret's
    value written locally, as the kubelet would mount it). Returns the Job's name."""
    jobs = await eventually(
        lambda: api.list("Job", ns, label_selector=f"app.kubernetes.io/instance={name}"),
        60,
        what="the migration Job",
    )
    job = jobs[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["threadweaver", "migrate"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    pw_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"{name}-{uuid.uuid4().hex}.pw"
    pw_file.write_text("threadweaver")
    env["THREADWEAVER_READ_MODEL_PASSWORD_FILE"] = str(pw_file)
    env["THREADWEAVER_DATA_DIR"] = str(pw_file.parent / f"{name}-data")
    proc = await asyncio.to_thread(
        subprocess.run,
        [str(VENV_BIN / "threadweaver"), "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    pw_file.unlink()
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return job["metadata"]["name"]


async def job_succeeded(api, ns: str, job: str) -> None:
    """Wait for the Job to complete: KWOK's stock `pod-complete` stage moves the Job's pod to
    Succeeded and the Job controller (kube-controller-manager) marks the Job Complete."""

    async def done():
        j = await api.get("Job", ns, job)
        return any(
            c.get("type") == "Complete" and c.get("status") == "True"
            for c in (j.get("status") or {}).get("conditions") or []
        )

    await eventually(done, 90, what=f"Job {job} Complete")


def dump(ns: str, name: str, operator) -> str:
    return (
        kubectl("get", "twc,sts,job,pod,lease,cm", "-n", ns, "-o", "wide", check=False).stdout
        + kubectl("get", "twc", name, "-n", ns, "-o", "yaml", check=False).stdout
        + "\n--- operator log ---\n"
        + operator.output()[-6000:]
    )
