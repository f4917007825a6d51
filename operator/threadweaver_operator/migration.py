"""Pure migration gate: the Migrated condition from the observed migration Job.

``threadweaver migrate`` runs once per migration revision (:meth:`ClusterSpec.migration_revision`:
a new image or read model is a new revision) as the Job ``<name>-migrate-<revision>``. The
StatefulSet is created or rolled to a new template only once that Job succeeded.
``status.migratedRevision`` remembers the success, so the Job may then be gone
(``ttlSecondsAfterFinished``) and is not recreated. A failed Job is left for inspection; delete
it to retry (the next pass creates it again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from . import builders, names
from .spec import ClusterSpec
from .status import Condition

__all__ = ["job_state", "migration_condition", "superseded_jobs"]


def job_state(job: Mapping[str, Any]) -> tuple[str, str]:
    """``("Succeeded"|"Failed"|"Running", message)`` of a Job object."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Succeeded", cond.get("message") or "completed"
        if cond.get("type") in ("Failed", "FailureTarget"):
            return "Failed", cond.get("message") or cond.get("reason") or "failed"
    if (status.get("succeeded") or 0) >= 1:
        return "Succeeded", "completed"
    return (
        "Running",
        f"active {status.get('active') or 0}, failed attempts {status.get('failed') or 0}",
    )


def migration_condition(
    spec: ClusterSpec, job: Mapping[str, Any] | None, migrated_revision: str | None
) -> Condition:
    """The Migrated condition of this spec's revision; ``job`` is its Job (None: not created
    yet, or not read because ``migrated_revision`` is already this revision)."""
    if not spec.mysql.migrate:
        return Condition(
            "Migrated", "True", "Disabled", "migrate is false: the schema is managed outside"
        )
    job_name = names.migration_job(spec.name, spec.migration_revision())
    if migrated_revision == spec.migration_revision():
        return Condition("Migrated", "True", "JobSucceeded", f"migration Job {job_name} succeeded")
    state, message = job_state(job or {})
    if state == "Succeeded":
        return Condition("Migrated", "True", "JobSucceeded", f"migration Job {job_name} succeeded")
    if state == "Failed":
        return Condition(
            "Migrated",
            "False",
            "JobFailed",
            f"migration Job {job_name} failed: {message}; see its pods' logs, "
            "fix the read model and delete the Job to retry",
        )
    return Condition("Migrated", "False", "JobRunning", f"migration Job {job_name}: {message}")


def superseded_jobs(jobs: Iterable[Mapping[str, Any]], keep_revision: str) -> list[str]:
    """Names of the finished migration Jobs of other revisions than ``keep_revision`` (deleted
    once the current one succeeded)."""
    out = []
    for job in jobs:
        labels = (job.get("metadata") or {}).get("labels") or {}
        if labels.get(builders.MIGRATION_REVISION_LABEL) == keep_revision:
            continue
        if job_state(job)[0] == "Running":
            continue
        out.append(job["metadata"]["name"])
    return out
