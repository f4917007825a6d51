"""The replay-check gate of an image rollout: the Upgraded condition, pure.

Before the StatefulSet is rolled to a new image, ``threadweaver replay-check`` runs with that
image as the Job ``<name>-replay-<hash>`` (:func:`replay_check_job`; the hash is of the image and
``spec.upgrade.replayCheck``): it decodes and replays journal events with the new code
(docs/operations.md, "Upgrading safely"). The template waits until the Job succeeded
(``Upgraded=True``, reason ``ReplayCheckPassed``); while it runs, or when it failed
(``Upgraded=False``, reasons ``ReplayCheckRunning``, ``ReplayCheckFailed``), the old pods keep
serving. A failure's message, and its Warning Event, name the first event the image cannot read,
from the Job pod's termination message (the check writes its JSON result there).

The gate is per image: ``status.replayCheckedImage`` remembers the last image that passed, so a
retried image is not checked again and the Job may be gone (``ttlSecondsAfterFinished``). The
first image of a cluster (no StatefulSet yet) is not checked: nothing older serves. A rollback
is an image change like any other, and is checked: the newer image may have written events the
older one cannot read. A failed Job is kept for inspection; deleting it retries the check.
``replayCheck: off`` skips the gate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import builders, names

# the builders' own pieces, so that the Job's pods look like the migration Job's
from .builders import Owner, _aws_env, _container, _meta, _pod_common
from .migration import job_state
from .spec import ClusterSpec
from .status import Condition

__all__ = [
    "REPLAY_IMAGE_LABEL",
    "GateOutcome",
    "check_needed",
    "failure_summary",
    "job_name",
    "plan_gate",
    "replay_check_job",
]

REPLAY_IMAGE_LABEL = "threadweaver.io/replay-check"
RESULT_FILE = "/dev/termination-log"
#: a check of all the journal may take long; a sample a few minutes at most
DEADLINE_SECONDS = {"sample": builders.JOB_DEADLINE_SECONDS, "all": 6 * 3600}
MESSAGE_LIMIT = 600


def _hash(spec: ClusterSpec) -> str:
    key = {"image": spec.image, "mode": spec.upgrade.replay_check}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def job_name(spec: ClusterSpec) -> str:
    return names.replay_check_job(spec.name, _hash(spec))


def serving_image(statefulset: Mapping[str, Any] | None) -> str | None:
    """The image of the StatefulSet's pod template (None: no StatefulSet)."""
    if statefulset is None:
        return None
    pod = ((statefulset.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod.get("containers") or [{}]
    return containers[0].get("image")


def check_needed(
    spec: ClusterSpec, statefulset: Mapping[str, Any] | None, checked_image: str | None
) -> bool:
    """Whether rolling out ``spec.image`` waits for a replay check: a StatefulSet serves another
    image, the check is on and this image has not passed it."""
    serving = serving_image(statefulset)
    return (
        spec.upgrade.replay_check != "off"
        and serving is not None
        and serving != spec.image
        and checked_image != spec.image
    )


def replay_check_job(spec: ClusterSpec, owner: Owner = None) -> dict[str, Any]:
    """``threadweaver replay-check`` of the journal with ``spec.image``. No retries: the check
    is deterministic (an unreachable journal is reported like a failure, with its error)."""
    mode = spec.upgrade.replay_check
    command = ["threadweaver", "replay-check", "--result-file", RESULT_FILE]
    command += ["--all"] if mode == "all" else ["--sample", str(spec.upgrade.sample_size)]
    env = [
        {"name": "THREADWEAVER_JOURNAL", "value": spec.journal_url()},
        {"name": "THREADWEAVER_SHARDS", "value": str(spec.shards)},
        {"name": "THREADWEAVER_LOG_FORMAT", "value": "json"},
        {"name": "THREADWEAVER_DATA_DIR", "value": builders.DATA_DIR},
        *_aws_env(spec),
    ]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    container = _container(spec, "replay-check", command, env, mounts)
    container["terminationMessagePath"] = RESULT_FILE
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    labels = {REPLAY_IMAGE_LABEL: _hash(spec)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(spec, job_name(spec), owner, "replay-check", labels),
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": builders.JOB_TTL_SECONDS,
            "activeDeadlineSeconds": DEADLINE_SECONDS.get(mode, builders.JOB_DEADLINE_SECONDS),
            "template": {
                "metadata": {"labels": {**names.labels(spec.name, "replay-check"), **labels}},
                "spec": {
                    **_pod_common(spec),
                    "restartPolicy": "Never",
                    "serviceAccountName": names.runtime_account(spec.name),
                    "automountServiceAccountToken": False,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def termination_message(pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The replay-check container's termination message, of the Job's pods (the last one)."""
    found = None
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if terminated.get("message"):
                found = str(terminated["message"])
    return found


def failure_summary(message: str | None) -> str | None:
    """What a failed check reports: the first event it could not read (``pid seq N (type):
    error``) or the journal error, from its JSON result; the text itself otherwise."""
    if not message:
        return None
    for line in reversed(message.strip().splitlines()):
        try:
            result = json.loads(line)
        except ValueError:
            continue
        if not isinstance(result, dict):
            continue
        failure = result.get("failure")
        if isinstance(failure, dict):
            return (
                f"first unreadable event: {failure.get('pid')} seq {failure.get('seq')} "
                f"({failure.get('type')}): {failure.get('error')}"
            )
        if result.get("error"):
            return str(result["error"])
    return message.strip()[-MESSAGE_LIMIT:]


@dataclass(frozen=True)
class GateOutcome:
    condition: Condition
    checked_image: str | None  # status.replayCheckedImage after the pass
    create_job: Mapping[str, Any] | None = None  # the Job to create, if any
    passed: bool = False  # this pass saw the check succeed (a Normal Event)
    failed: bool = False  # the check failed (a Warning Event with the condition's message)


def plan_gate(
    spec: ClusterSpec,
    statefulset: Mapping[str, Any] | None,
    checked_image: str | None,
    job: Mapping[str, Any] | None,
    job_pods: Iterable[Mapping[str, Any]],
    journal_ready: bool,
    owner: Owner = None,
) -> GateOutcome:
    """The Upgraded condition of this pass, the Job to create and what to announce. ``job``:
    the Job of :func:`job_name` (read only while :func:`check_needed`)."""
    upgraded = "Upgraded"
    if spec.upgrade.replay_check == "off":
        return GateOutcome(
            Condition(upgraded, "True", "ReplayCheckOff", "spec.upgrade.replayCheck is off"),
            checked_image,
        )
    if not check_needed(spec, statefulset, checked_image):
        if checked_image == spec.image:
            message = f"image {spec.image} passed the replay check"
            return GateOutcome(
                Condition(upgraded, "True", "ReplayCheckPassed", message), checked_image
            )
        if statefulset is None:
            message = f"image {spec.image} is the cluster's first: nothing older serves"
            return GateOutcome(Condition(upgraded, "True", "FirstImage", message), checked_image)
        return GateOutcome(
            Condition(upgraded, "True", "UpToDate", f"the pods run image {spec.image}"),
            checked_image,
        )
    name = job_name(spec)
    old = serving_image(statefulset)
    keeping = f"the pods keep image {old}"
    if not journal_ready:
        message = f"the replay check of image {spec.image} waits for the journal; {keeping}"
        return GateOutcome(Condition(upgraded, "False", "WaitingForTables", message), checked_image)
    if job is None:
        message = f"replay check of image {spec.image} (Job {name}) starting; {keeping}"
        return GateOutcome(
            Condition(upgraded, "False", "ReplayCheckRunning", message),
            checked_image,
            create_job=replay_check_job(spec, owner),
        )
    state, detail = job_state(job)
    if state == "Succeeded":
        message = f"image {spec.image} passed the replay check (Job {name})"
        return GateOutcome(
            Condition(upgraded, "True", "ReplayCheckPassed", message), spec.image, passed=True
        )
    if state == "Failed":
        summary = failure_summary(termination_message(job_pods)) or detail
        message = (
            f"image {spec.image} failed the replay check (Job {name}): {summary}; {keeping}. "
            f"Fix the image (or set spec.image back), or delete the Job to check again"
        )
        return GateOutcome(
            Condition(upgraded, "False", "ReplayCheckFailed", message), checked_image, failed=True
        )
    message = f"replay check of image {spec.image} (Job {name}): {detail}; {keeping}"
    return GateOutcome(Condition(upgraded, "False", "ReplayCheckRunning", message), checked_image)
