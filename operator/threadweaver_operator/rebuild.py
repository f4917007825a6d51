"""Pure planning of a read-model rebuild with no downtime (docs/operator.md, "Rebuilding the
read model"; the members' side is threadweaver.shards.readmodel).

When the target database (:mod:`.read_models`) is not the one served, each pass moves the
rebuild on by one step, derived from the Jobs, the published directive and the members' reports:

========== ============================================================= ======================
phase      what runs                                                     next when
========== ============================================================= ======================
Migrating  the migration Job on the target (``threadweaver migrate``)    it succeeded
Projecting the project Job (``threadweaver project``); directive ``fill`` it succeeded
CatchingUp directive ``catch-up``: the members' shadow RMUs on the target every served shard
                                                                         within 1 s
HandingOver directive ``handover``: RMUs on the target, queries on the   every member handed
           old database                                                  over
Complete   directive ``serving: target`` with ``switchAt`` (now + 2 s)   (done)
========== ============================================================= ======================

A failed Job ends the rebuild (phase ``Failed``, a ``RebuildFailed`` Warning, the Rebuilding
condition False): the directive drops its target, so the members stop whatever they ran on it and
keep serving the old database. Deleting the failed Job retries (the next pass creates it again).
Setting the spec back to the served database cancels a rebuild the same way. The old database is
never dropped: ``status.readModel.previousDatabase`` names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from threadweaver.shards import ReadModelDirective, ReadModelReport, ShardMap

from . import builders
from .events import Event
from .migration import job_state
from .observation import Observation
from .read_models import rebuild_jobs, serving_database
from .spec import ClusterSpec
from .status import Condition
from .steps import Create, Step
from .supervision import MemberView

__all__ = ["SWITCH_DELAY_SECONDS", "RebuildOutcome", "plan_rebuild"]

SWITCH_DELAY_SECONDS = 2.0
"""How far ahead of the directive's publication the members move their queries (all at once)."""

ACTIVE = ("Migrating", "Projecting", "CatchingUp", "HandingOver")


@dataclass(frozen=True)
class RebuildOutcome:
    serving: str  # the database the members serve after this pass's directive
    directive: ReadModelDirective | None  # to publish beside the shard map (None: none)
    steps: tuple[Step, ...] = ()  # the Jobs to create
    directive_events: tuple[Event, ...] = ()  # posted once the directive is published
    warning: tuple[str, str] | None = None  # (reason, message), posted once
    status: Mapping[str, Any] = field(default_factory=dict)  # status.readModel
    condition: Condition | None = None  # Rebuilding (None: never rebuilt)


def plan_rebuild(
    o: Observation,
    spec: ClusterSpec,
    views: Mapping[str, MemberView],
    shard_map: ShardMap | None,
) -> RebuildOutcome:
    """This pass's step of the rebuild, if any (see the module docstring)."""
    directive = o.read_model_directive
    serving = serving_database(spec, directive, o.statefulset)
    target = spec.target_database()
    previous = o.previous.get("readModel")
    previous = dict(previous) if isinstance(previous, Mapping) else {}
    last = previous.get("rebuild") if isinstance(previous.get("rebuild"), Mapping) else None
    if target == serving:
        return _steady(directive, serving, previous, last, o.now)
    return _rebuilding(o, spec, views, shard_map, directive, serving, target, previous, last)


def _steady(
    directive: ReadModelDirective | None,
    serving: str,
    previous: Mapping[str, Any],
    last: Mapping[str, Any] | None,
    now: datetime,
) -> RebuildOutcome:
    status: dict[str, Any] = {"database": serving}
    if previous.get("previousDatabase"):
        status["previousDatabase"] = previous["previousDatabase"]
    events: tuple[Event, ...] = ()
    if directive is not None and directive.target is not None:  # the spec went back: cancel
        events = (
            Event(
                "Normal",
                "RebuildCancelled",
                f"rebuild into {directive.target} cancelled: the spec names {serving} again; "
                f"{directive.target} is kept",
            ),
        )
        directive = _without_target(directive)
        last = {**(last or {}), "phase": "Cancelled", "finishedAt": _stamp(now)}
    elif last is not None and last.get("phase") in (*ACTIVE, "Failed"):
        last = {**last, "phase": "Cancelled", "finishedAt": _stamp(now)}
    if last is not None:
        status["rebuild"] = dict(last)
    return RebuildOutcome(
        serving, directive, (), events, None, status, _condition(last) if last else None
    )


def _rebuilding(
    o: Observation,
    spec: ClusterSpec,
    views: Mapping[str, MemberView],
    shard_map: ShardMap | None,
    directive: ReadModelDirective | None,
    serving: str,
    target: str,
    previous: Mapping[str, Any],
    last: Mapping[str, Any] | None,
) -> RebuildOutcome:
    target_spec = spec.with_database(target)
    revision = target_spec.migration_revision()
    same = (
        last
        if last is not None
        and last.get("database") == target
        and last.get("previousDatabase") == serving
        and last.get("revision") == revision
        else None
    )
    migrated = bool(same and same.get("migrated")) or not spec.mysql.migrate
    projected = bool(same and same.get("projected"))
    migration_name, project_name = rebuild_jobs(spec, target)
    steps: list[Step] = []
    failed: str | None = None
    phase = "Migrating"
    if not migrated:
        state, message = job_state(o.rebuild_migration_job or {})
        if o.rebuild_migration_job is None:
            steps.append(
                Create(
                    builders.migration_job(target_spec, o.owner),
                    (
                        Event(
                            "Normal",
                            "RebuildStarted",
                            f"rebuilding the read model into {target} while {serving} serves: "
                            f"created migration Job {migration_name}",
                        ),
                    ),
                )
            )
        elif state == "Succeeded":
            migrated = True
        elif state == "Failed":
            failed = f"migration Job {migration_name} failed: {message}"
    if migrated and not failed:
        phase = "Projecting"
        state, message = job_state(o.project_job or {})
        if o.project_job is None:
            steps.append(
                Create(
                    builders.project_job(target_spec, o.owner),
                    (
                        Event(
                            "Normal",
                            "RebuildProjecting",
                            f"created Job {project_name}: threadweaver project into {target}",
                        ),
                    ),
                )
            )
        elif state == "Succeeded":
            projected = True
        elif state == "Failed":
            failed = f"project Job {project_name} failed: {message}"

    reports = _reports(views, shard_map, target)
    status: dict[str, Any] = {"database": serving}
    if previous.get("previousDatabase"):
        status["previousDatabase"] = previous["previousDatabase"]
    rebuild: dict[str, Any] = {
        "database": target,
        "previousDatabase": serving,
        "revision": revision,
        "migrated": migrated,
        "projected": projected,
        "startedAt": (same or {}).get("startedAt") or _stamp(o.now),
    }
    if spec.read_model_rebuild:
        rebuild["token"] = spec.read_model_rebuild
    progress = _progress(reports, spec.shards)
    if progress:
        rebuild["progress"] = progress
    events: tuple[Event, ...] = ()
    warning = None
    stage = directive.stage if directive is not None and directive.target == target else None
    base = _without_target(directive) if directive is not None else None
    new: ReadModelDirective | None = base
    if failed:
        phase = "Failed"
        message = (
            f"{failed}; {serving} keeps serving. See the Job's pods' logs, fix the cause and "
            "delete the Job to retry"
        )
        rebuild.update(message=message, finishedAt=(same or {}).get("finishedAt") or _stamp(o.now))
        warning = ("RebuildFailed", message)
    elif not projected:
        if phase == "Projecting":
            new = _with_target(directive, serving, target, "fill")
        rebuild["message"] = (
            f"migrating {target}" if phase == "Migrating" else f"Job {project_name} fills {target}"
        )
    elif stage not in ("catch-up", "handover"):
        phase = "CatchingUp"
        new = _with_target(directive, serving, target, "catch-up")
        events = (
            Event(
                "Normal",
                "RebuildCatchingUp",
                f"{target} is filled: the members catch it up beside {serving}",
            ),
        )
        rebuild["message"] = "the members' RMUs on the target catch up"
    elif stage == "catch-up" and not _ready(reports, shard_map, "catch-up"):
        phase = "CatchingUp"
        new = directive
        rebuild["message"] = "waiting for every served shard within 1 s of the journal"
    elif stage == "catch-up":
        phase = "HandingOver"
        new = _with_target(directive, serving, target, "handover")
        events = (
            Event(
                "Normal",
                "RebuildHandingOver",
                f"{target} is within 1 s of the journal: the RMUs move to it, queries stay on "
                f"{serving} until every member passed it",
            ),
        )
        rebuild["message"] = "the members' RMUs move to the target"
    elif not _ready(reports, shard_map, "handover"):
        phase = "HandingOver"
        new = directive
        rebuild["message"] = "waiting for every member to pass the checkpoints of the old database"
    else:
        phase = "Complete"
        switch_at = round(o.now.timestamp() + SWITCH_DELAY_SECONDS, 3)
        new = ReadModelDirective(target, previous=serving, switch_at=switch_at)
        status = {"database": target, "previousDatabase": serving}
        message = f"queries and RMUs on {target} from {_stamp_epoch(switch_at)}; {serving} is kept"
        events = (Event("Normal", "RebuildSwitched", message),)
        rebuild.update(message=message, finishedAt=_stamp(o.now), switchAt=_stamp_epoch(switch_at))
        rebuild.pop("progress", None)
    rebuild["phase"] = phase
    status["rebuild"] = rebuild
    return RebuildOutcome(
        status["database"],
        new,
        tuple(steps),
        events,
        warning,
        status,
        _condition(rebuild),
    )


def _without_target(directive: ReadModelDirective) -> ReadModelDirective:
    return ReadModelDirective(
        directive.serving, previous=directive.previous, switch_at=directive.switch_at
    )


def _with_target(
    directive: ReadModelDirective | None, serving: str, target: str, stage: str
) -> ReadModelDirective:
    previous = directive.previous if directive is not None else None
    switch_at = directive.switch_at if directive is not None else None
    return ReadModelDirective(serving, target, stage, previous, switch_at)


def _reports(
    views: Mapping[str, MemberView], shard_map: ShardMap | None, target: str
) -> dict[str, ReadModelReport | None]:
    """The read-model report of every member holding shards (None: absent, dead, or about
    another target)."""
    if shard_map is None:
        return {}
    out: dict[str, ReadModelReport | None] = {}
    for member, ranges in shard_map.assignments.items():
        if ranges.is_empty():
            continue
        view = views.get(member)
        report = view.status.read_model if view and view.live and view.status else None
        out[member] = report if report is not None and report.target == target else None
    return out


def _ready(
    reports: Mapping[str, ReadModelReport | None], shard_map: ShardMap | None, stage: str
) -> bool:
    """Every member holding shards reports ``stage`` done for all of them (no handoff)."""
    if shard_map is None or shard_map.in_handoff or not reports:
        return False
    counts = shard_map.counts()
    for member, report in reports.items():
        if report is None or report.stage != stage or report.shards != counts.get(member):
            return False
        done = report.handed_over if stage == "handover" else report.caught_up >= report.shards
        if not done:
            return False
    return True


def _progress(reports: Mapping[str, ReadModelReport | None], shards: int) -> dict[str, Any]:
    known = [r for r in reports.values() if r is not None]
    if not known:
        return {}
    lags = [r.lag_seconds for r in known if r.lag_seconds is not None]
    out: dict[str, Any] = {
        "shards": shards,
        "caughtUp": sum(r.caught_up for r in known),
        "members": len(reports),
        "membersReporting": len(known),
        "membersHandedOver": sum(r.handed_over for r in known),
    }
    if lags:
        out["lagSeconds"] = round(max(lags), 3)
    return out


def _condition(rebuild: Mapping[str, Any]) -> Condition:
    phase = str(rebuild.get("phase") or "")
    message = str(rebuild.get("message") or "")
    target = rebuild.get("database")
    if phase in ACTIVE:
        return Condition("Rebuilding", "True", phase, f"{target}: {message}")
    if phase == "Failed":
        return Condition("Rebuilding", "False", "RebuildFailed", message)
    if phase == "Cancelled":
        return Condition("Rebuilding", "False", "Cancelled", f"the rebuild into {target} stopped")
    return Condition("Rebuilding", "False", "Switched", message)


def _stamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp_epoch(seconds: float) -> str:
    return _stamp(datetime.fromtimestamp(seconds, UTC))
