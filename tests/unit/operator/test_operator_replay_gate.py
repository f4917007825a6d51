"""The replay-check gate of an image rollout (replay_gate.py): when a check is needed, the Job,
what a failure reports, the Upgraded condition; and through the reconcile loop against the
in-memory API of test_operator_reconcile.py: a failed check keeps the old image with
Upgraded=False/ReplayCheckFailed and a Warning Event naming the first unreadable event, a passed
one rolls out (Upgraded=True) and is not run again for that image, a rollback is checked."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_operator_reconcile import (  # noqa: F401  (env is a fixture)
    NS,
    SECRETS,
    ack_all,
    add_secret,
    body,
    cluster,
    cond,
    env,
    finish_job,
    reconcile,
    run_pods,
    status,
)

from threadweaver_operator import builders, events, replay_gate
from threadweaver_operator.network_policies import replay_check_policy
from threadweaver_operator.replay_gate import (
    check_needed,
    failure_summary,
    job_name,
    plan_gate,
    replay_check_job,
)
from threadweaver_operator.spec import ClusterSpec
from threadweaver_operator.spec_operations import UpgradeSpec

FAILURE = {
    "ok": False,
    "journal": "dynamodb://ddb:8000",
    "entities": 3,
    "events": 40,
    "failure": {
        "pid": "thread-01J",
        "seq": 7,
        "type": "MessagePinned",
        "error": "ValueError: unknown event type 'MessagePinned'",
    },
}
NAMED = (
    "first unreadable event: thread-01J seq 7 (MessagePinned): "
    "ValueError: unknown event type 'MessagePinned'"
)


def spec(image: str = "img:2", **upgrade) -> ClusterSpec:
    parsed = ClusterSpec.from_resource(
        "chat",
        NS,
        {
            "image": image,
            "journal": {"dynamodb": {"endpoint": "http://ddb:8000"}},
            "readModel": {"mysql": {"host": "db"}},
            "upgrade": upgrade,
        },
    )
    assert not parsed.problems()
    return parsed


def serving(image: str) -> dict:
    return builders.statefulset(spec(image), 3)


def job_with(state: dict) -> dict:
    return {**replay_check_job(spec()), "status": state}


FAILED = {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "X"}]}
SUCCEEDED = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}


def failed_pod(message: str) -> dict:
    terminated = {"exitCode": 1, "reason": "Error", "message": message}
    return {
        "status": {
            "containerStatuses": [{"name": "replay-check", "state": {"terminated": terminated}}]
        }
    }


# -- pure ----------------------------------------------------------------------------------------


def test_the_spec_defaults_to_a_sample_and_validates_the_mode() -> None:
    assert spec().upgrade == UpgradeSpec("sample", 100)
    assert spec(replayCheck="all", sampleSize=5).upgrade == UpgradeSpec("all", 5)
    bad = replace(spec(), upgrade=UpgradeSpec("sometimes", 0))
    assert bad.problems() == [
        "spec.upgrade.replayCheck: one of sample, all, off, got 'sometimes'",
        "spec.upgrade.sampleSize: must be >= 1",
    ]


def test_a_check_is_needed_only_to_roll_a_new_unchecked_image_out() -> None:
    assert check_needed(spec("img:2"), serving("img:1"), None)
    assert check_needed(spec("img:2"), serving("img:1"), "img:1")
    assert not check_needed(spec("img:2"), serving("img:1"), "img:2")  # passed before
    assert not check_needed(spec("img:2"), serving("img:2"), None)  # rolled out already
    assert not check_needed(spec("img:2"), None, None)  # the cluster's first image
    assert not check_needed(spec("img:2", replayCheck="off"), serving("img:1"), None)
    assert check_needed(spec("img:1"), serving("img:2"), "img:2")  # a rollback is checked


def test_the_job_runs_the_new_images_replay_check() -> None:
    job = replay_check_job(spec("img:2"), {"uid": "u"})
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "img:2"
    assert container["command"] == [
        "threadweaver",
        "replay-check",
        "--result-file",
        "/dev/termination-log",
        "--sample",
        "100",
    ]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    variables = builders.env_dict(container)
    assert variables["THREADWEAVER_JOURNAL"] == spec().journal_url()
    assert variables["THREADWEAVER_SHARDS"] == str(spec().shards)
    assert "THREADWEAVER_READ_MODEL" not in variables  # the journal is all it reads
    assert job["spec"]["backoffLimit"] == 0  # deterministic: no retries
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert job["metadata"]["ownerReferences"] == [{"uid": "u"}]
    assert job["metadata"]["name"] == job_name(spec("img:2")).lower()
    assert job_name(spec("img:2")) != job_name(spec("img:3"))
    assert job_name(spec("img:2")) != job_name(spec("img:2", replayCheck="all"))
    everything = replay_check_job(spec(replayCheck="all"))["spec"]["template"]["spec"]
    assert everything["containers"][0]["command"][-1] == "--all"


def test_the_jobs_pods_reach_only_dns_and_dynamodb() -> None:
    policy = replay_check_policy(spec())
    assert policy["metadata"]["name"] == "chat-replay-check"
    pod_labels = replay_check_job(spec())["spec"]["template"]["metadata"]["labels"]
    assert set(policy["spec"]["podSelector"]["matchLabels"].items()) <= set(pod_labels.items())
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == []
    assert [r["ports"] for r in policy["spec"]["egress"]] == [
        [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        [{"protocol": "TCP", "port": 8000}],
    ]


def test_a_failure_names_the_first_unreadable_event() -> None:
    assert failure_summary(json.dumps(FAILURE)) == NAMED
    # the check's result is the last JSON line of the logs (FallbackToLogsOnError)
    assert failure_summary('{"level": "info"}\nnoise\n' + json.dumps(FAILURE)) == NAMED
    journal = {"ok": False, "error": "cannot read the journal: not reachable within 60 s"}
    assert failure_summary(json.dumps(journal)) == journal["error"]
    assert failure_summary("Traceback: boom") == "Traceback: boom"
    assert failure_summary(None) is None


@pytest.mark.parametrize(
    ("image", "sts", "checked", "job", "reason", "status_"),
    [
        ("img:2", None, None, None, "FirstImage", "True"),
        ("img:2", "img:2", None, None, "UpToDate", "True"),
        ("img:2", "img:2", "img:2", None, "ReplayCheckPassed", "True"),
        ("img:2", "img:1", None, None, "ReplayCheckRunning", "False"),
        ("img:2", "img:1", None, {"active": 1}, "ReplayCheckRunning", "False"),
        ("img:2", "img:1", None, SUCCEEDED, "ReplayCheckPassed", "True"),
        ("img:2", "img:1", None, FAILED, "ReplayCheckFailed", "False"),
    ],
)
def test_the_upgraded_condition(image, sts, checked, job, reason, status_) -> None:
    gate = plan_gate(
        spec(image),
        serving(sts) if sts else None,
        checked,
        job_with(job) if job is not None else None,
        [failed_pod(json.dumps(FAILURE))],
        True,
    )
    assert (gate.condition.type, gate.condition.reason, gate.condition.status) == (
        "Upgraded",
        reason,
        status_,
    )
    assert (gate.create_job is not None) == (sts == "img:1" and job is None)
    assert gate.checked_image == ("img:2" if reason == "ReplayCheckPassed" else checked)
    if reason == "ReplayCheckFailed":
        assert (
            NAMED in gate.condition.message
            and "the pods keep image img:1" in gate.condition.message
        )
        assert gate.failed


def test_the_check_waits_for_the_journal_and_is_skipped_when_off() -> None:
    waiting = plan_gate(spec(), serving("img:1"), None, None, [], False)
    assert (waiting.condition.reason, waiting.create_job) == ("WaitingForTables", None)
    off = plan_gate(spec(replayCheck="off"), serving("img:1"), None, None, [], True)
    assert (off.condition.status, off.condition.reason) == ("True", "ReplayCheckOff")


# -- through the reconcile loop ------------------------------------------------------------------


def replay_jobs(kube) -> list[str]:
    return [
        k[2]
        for k, obj in kube.objects.items()
        if k[0] == "Job"
        and (obj["metadata"].get("labels") or {}).get(replay_gate.REPLAY_IMAGE_LABEL)
    ]


def sts_image(kube) -> str:
    sts = kube.objects[("StatefulSet", NS, "chat")]
    return sts["spec"]["template"]["spec"]["containers"][0]["image"]


async def running_cluster(kube) -> None:
    add_secret(kube, "aws", SECRETS["aws"])
    add_secret(kube, "mysql", SECRETS["mysql"])
    cluster(kube)
    await reconcile(kube, body(kube))
    finish_job(kube)  # the first image's migration (its first image is not replay-checked)
    await reconcile(kube, body(kube))
    run_pods(kube)
    ack_all(kube)
    await reconcile(kube, body(kube))
    assert replay_jobs(kube) == [] and sts_image(kube) == "img:1"
    assert cond(kube, "Upgraded")["reason"] == "UpToDate"


async def set_image(kube, image: str) -> None:
    obj = kube.objects[("ThreadWeaverCluster", NS, "chat")]
    obj["spec"]["image"] = image
    obj["metadata"]["generation"] += 1
    await reconcile(kube, body(kube))
    for key, job in kube.objects.items():  # its migration succeeds: only the gate is left
        if key[0] == "Job" and "migrate" in key[2] and not job.get("status"):
            job["status"] = SUCCEEDED


def finish_replay(kube, name: str, ok: bool) -> None:
    kube.objects[("Job", NS, name)]["status"] = SUCCEEDED if ok else FAILED
    if not ok:  # what the Job controller and the kubelet leave: the failed pod
        pod = failed_pod(json.dumps(FAILURE))
        pod.update(
            kind="Pod",
            metadata={"name": f"{name}-x", "namespace": NS, "labels": {"job-name": name}},
        )
        kube.objects[("Pod", NS, f"{name}-x")] = pod


async def test_a_failed_check_keeps_the_old_image_and_a_passed_one_rolls_out(env, monkeypatch):  # noqa: F811
    kube = env
    posted: list[tuple[str, str, str]] = []
    monkeypatch.setattr(
        events, "post", lambda b, type_, reason, message: posted.append((type_, reason, message))
    )
    await running_cluster(kube)

    await set_image(kube, "img:2")
    await reconcile(kube, body(kube))
    (job,) = replay_jobs(kube)
    container = kube.objects[("Job", NS, job)]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "img:2" and container["command"][:2] == [
        "threadweaver",
        "replay-check",
    ]
    assert ("Normal", "ReplayCheckStarted") in [(t, r) for t, r, _ in posted]
    assert cond(kube, "Upgraded")["reason"] == "ReplayCheckRunning"
    assert sts_image(kube) == "img:1"

    finish_replay(kube, job, ok=False)
    for _ in range(2):
        await reconcile(kube, body(kube))
    upgraded = cond(kube, "Upgraded")
    assert (upgraded["status"], upgraded["reason"]) == ("False", "ReplayCheckFailed")
    assert NAMED in upgraded["message"]
    warnings = [m for t, r, m in posted if (t, r) == ("Warning", "ReplayCheckFailed")]
    assert len(warnings) == 1 and NAMED in warnings[0]  # once, not on every pass
    assert sts_image(kube) == "img:1"  # the old pods keep serving
    assert cond(kube, "Ready")["status"] == "True"
    assert "replayCheckedImage" not in status(kube)

    # deleting the failed Job checks again; this time the check passes and the image rolls out
    del kube.objects[("Job", NS, job)]
    del kube.objects[("Pod", NS, f"{job}-x")]  # its pods go with it
    await reconcile(kube, body(kube))
    assert replay_jobs(kube) == [job]
    finish_replay(kube, job, ok=True)
    await reconcile(kube, body(kube))
    assert sts_image(kube) == "img:2"
    upgraded = cond(kube, "Upgraded")
    assert (upgraded["status"], upgraded["reason"]) == ("True", "ReplayCheckPassed")
    assert status(kube)["replayCheckedImage"] == "img:2"
    assert ("Normal", "ReplayCheckPassed") in [(t, r) for t, r, _ in posted]

    # per image: passes after it (the Job gone with its TTL) create no other check
    del kube.objects[("Job", NS, job)]
    run_pods(kube)
    ack_all(kube)
    await reconcile(kube, body(kube))
    assert replay_jobs(kube) == []
    assert cond(kube, "Upgraded")["reason"] == "ReplayCheckPassed"

    # a rollback to img:1 is an upgrade like another: checked before it rolls out
    await set_image(kube, "img:1")
    await reconcile(kube, body(kube))
    (rollback,) = replay_jobs(kube)
    assert (
        kube.objects[("Job", NS, rollback)]["spec"]["template"]["spec"]["containers"][0]["image"]
        == "img:1"
    )
    assert sts_image(kube) == "img:2"


async def test_replay_check_off_rolls_out_unchecked(env):  # noqa: F811
    kube = env
    await running_cluster(kube)
    kube.objects[("ThreadWeaverCluster", NS, "chat")]["spec"]["upgrade"] = {"replayCheck": "off"}
    await set_image(kube, "img:2")
    await reconcile(kube, body(kube))
    assert replay_jobs(kube) == []
    assert sts_image(kube) == "img:2"
    assert cond(kube, "Upgraded")["reason"] == "ReplayCheckOff"
