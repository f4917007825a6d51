"""The upgrade gate against the real API server: a new image rolls out only after its replay
check (`threadweaver replay-check`, run by the operator as a Job with the new image) passed; a
check that fails keeps the StatefulSet on the old image with Upgraded=False/ReplayCheckFailed and
a Warning Event naming the first event the image cannot read.

KWOK runs no containers, and its stock stages complete every Job pod they run, so the cluster's
pods are kept off every node (a nodeSelector no node has: they stay Pending) and the test plays
the kubelet: it runs the Job's container command as a host process with the Job's environment
(as `migrate_like_the_job` does for the migration), against the cluster's DynamoDB tables in
dynalite, then reports the process's exit status and result to the Job's pod (its status: phase,
and the terminated container with its exit code and termination message). The Job controller
then marks the Job Complete or Failed, and the operator reads the outcome as it would from a
kubelet."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from operator_e2e_support import (
    ROOT,
    VENV_BIN,
    apply_yaml,
    cluster_manifest,
    condition,
    dump,
    events_of,
    eventually,
    get_cluster,
    kubectl,
    secret,
)

from threadweaver.adapters.journal.dynamodb import DynamoDBJournal, DynamoDBSettings
from threadweaver.application.entities import EntityManager, EntitySettings
from threadweaver.application.ports import NewEvent
from threadweaver.domain import AddMessages, CreateThread, NewMessage, new_ulid
from threadweaver.domain import thread_persistence_id as pid_of

pytestmark = pytest.mark.e2e

NOWHERE = {"threadweaver.io/e2e": "nowhere"}  # no node has it: every pod stays Pending
SHARDS = 64
AWS = {"access-key-id": "e2e", "secret-access-key": "e2e"}


def _sts_image(sts: dict | None) -> str | None:
    if not sts:
        return None
    return sts["spec"]["template"]["spec"]["containers"][0]["image"]


async def _journal(services: dict, prefix: str) -> DynamoDBJournal:
    base = DynamoDBSettings.from_url(services["dynamodb"], environ={})
    journal = DynamoDBJournal(replace(base, table_prefix=prefix), shards=SHARDS)
    await journal.start()
    return journal


async def _write_threads(journal: DynamoDBJournal, count: int = 5) -> list[str]:
    admin = new_ulid()
    entities = EntityManager(journal, EntitySettings(snapshot_every=5))
    tids = [new_ulid() for _ in range(count)]
    for tid in tids:
        await entities.execute(CreateThread(tid, admin, "t", (admin,), (), None, None, 1))
        for i in range(6):
            await entities.execute(AddMessages(tid, admin, (NewMessage(new_ulid(), f"{i}"),), 2))
    await entities.close()
    return tids


async def _set_image(api, ns: str, name: str, image: str) -> None:
    await api.merge_patch("ThreadWeaverCluster", ns, name, {"spec": {"image": image}})


async def replay_check_like_the_job(api, ns: str, job_name: str, tmp: Path) -> dict:
    """Run the Job's `threadweaver replay-check` with its environment (the AWS keys are the
    Secret's values, as the kubelet would resolve them), then report its outcome to the Job's
    pod as the kubelet would. Returns the check's JSON result."""
    job = await api.get("Job", ns, job_name)
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:2] == ["threadweaver", "replay-check"], command
    result_file = tmp / f"{job_name}.termination-log"
    args = [
        str(result_file) if a == container["terminationMessagePath"] else a for a in command[1:]
    ]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = (
        AWS["access-key-id"],
        AWS["secret-access-key"],
    )
    env["THREADWEAVER_DATA_DIR"] = str(tmp / "data")
    proc = await asyncio.to_thread(
        subprocess.run,
        [str(VENV_BIN / "threadweaver"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    message = result_file.read_text()
    assert proc.returncode in (0, 1), proc.stderr + proc.stdout  # a verdict, not a broken check

    pods = await eventually(
        lambda: api.list("Pod", ns, label_selector=f"job-name={job_name}"), 60, what="its pod"
    )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    terminated = {
        "exitCode": proc.returncode,
        "reason": "Completed" if proc.returncode == 0 else "Error",
        "message": message,
        "startedAt": now,
        "finishedAt": now,
    }
    status = {
        "phase": "Succeeded" if proc.returncode == 0 else "Failed",
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }
    await api.merge_patch(
        "Pod", ns, pods[0]["metadata"]["name"], {"status": status}, subresource="status"
    )
    return json.loads(message)


async def test_a_new_image_rolls_out_only_after_its_replay_check(
    operator, services, ns, api, tmp_path
):
    name, prefix = "chat", f"e2e-{uuid.uuid4().hex[:8]}"
    apply_yaml(
        secret(ns, "chat-aws", AWS),
        cluster_manifest(
            ns,
            name,
            prefix,
            replicas=1,
            image="thread-weaver:e2e-a",
            nodeSelector=NOWHERE,
            readModel={"mysql": {"host": "127.0.0.1", "port": 3306, "migrate": False}},
        ),
    )
    fail = lambda: dump(ns, name, operator)  # noqa: E731
    sts = await eventually(
        lambda: api.get("StatefulSet", ns, name), 90, what="the StatefulSet", on_fail=fail
    )
    assert _sts_image(sts) == "thread-weaver:e2e-a"
    twc = await get_cluster(api, ns, name)
    # the first image is not checked: nothing older serves (UpToDate once the StatefulSet is)
    assert condition(twc, "Upgraded")["reason"] in ("FirstImage", "UpToDate")
    assert not await api.list("Job", ns, label_selector="app.kubernetes.io/component=replay-check")

    journal = await _journal(services, prefix)
    try:
        tids = await _write_threads(journal)

        # a new image that reads the journal: checked, then rolled out
        await _set_image(api, ns, name, "thread-weaver:e2e-b")

        async def replay_job():
            jobs = await api.list(
                "Job", ns, label_selector="app.kubernetes.io/component=replay-check"
            )
            running = [j for j in jobs if not (j.get("status") or {}).get("conditions")]
            return running[0]["metadata"]["name"] if running else None

        job_b = await eventually(
            replay_job, 60, what="the replay-check Job of image b", on_fail=fail
        )
        twc = await get_cluster(api, ns, name)
        assert condition(twc, "Upgraded")["reason"] == "ReplayCheckRunning"
        assert _sts_image(await api.get("StatefulSet", ns, name)) == "thread-weaver:e2e-a"
        result = await replay_check_like_the_job(api, ns, job_b, tmp_path)
        assert result["ok"] is True and result["entities"] == len(tids), result

        async def rolled_out_to_b():
            return _sts_image(await api.get("StatefulSet", ns, name)) == "thread-weaver:e2e-b"

        await eventually(rolled_out_to_b, 90, what="the rollout of image b", on_fail=fail)
        twc = await get_cluster(api, ns, name)
        upgraded = condition(twc, "Upgraded")
        assert (upgraded["status"], upgraded["reason"]) == ("True", "ReplayCheckPassed")
        assert twc["status"]["replayCheckedImage"] == "thread-weaver:e2e-b"

        # the journal gets an event this code cannot decode: the next image fails its check
        bad_pid = pid_of(tids[2])
        seq = await journal.highest_seq(bad_pid)
        await journal.append(
            bad_pid, seq, [NewEvent("MessagePinned", {"schema": 1, "threadId": tids[2]})]
        )
    finally:
        await journal.close()

    await _set_image(api, ns, name, "thread-weaver:e2e-c")
    job_c = await eventually(replay_job, 60, what="the replay-check Job of image c", on_fail=fail)
    assert job_c != job_b
    result = await replay_check_like_the_job(api, ns, job_c, tmp_path)
    assert result["ok"] is False
    assert result["failure"] == {
        "pid": bad_pid,
        "seq": seq + 1,
        "type": "MessagePinned",
        "error": "ValueError: unknown event type 'MessagePinned'",
    }

    async def failed():
        c = condition(await get_cluster(api, ns, name), "Upgraded")
        return c if c.get("reason") == "ReplayCheckFailed" else None

    upgraded = await eventually(failed, 90, what="Upgraded=False ReplayCheckFailed", on_fail=fail)
    assert upgraded["status"] == "False"
    named = f"{bad_pid} seq {seq + 1} (MessagePinned)"
    assert named in upgraded["message"]
    assert "the pods keep image thread-weaver:e2e-b" in upgraded["message"]

    async def warning():
        return [
            e
            for e in events_of(ns, name)
            if e["reason"] == "ReplayCheckFailed" and e["type"] == "Warning"
        ]

    (event,) = await eventually(warning, 60, what="the ReplayCheckFailed Event", on_fail=fail)
    assert named in event["message"]
    # the old image keeps serving: the StatefulSet is not rolled, on later passes either
    await asyncio.sleep(6)
    assert _sts_image(await api.get("StatefulSet", ns, name)) == "thread-weaver:e2e-b"
    twc = await get_cluster(api, ns, name)
    assert condition(twc, "Upgraded")["reason"] == "ReplayCheckFailed"
    assert twc["status"]["replayCheckedImage"] == "thread-weaver:e2e-b"
    out = kubectl(
        "get", "job", job_c, "-n", ns, "-o", "jsonpath={.status.conditions[*].type}"
    ).stdout
    assert "Failed" in out
