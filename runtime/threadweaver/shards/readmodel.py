"""The read model a cluster serves, and a rebuild of it: what the operator tells the members and
what they answer (docs/architecture.md, "Rebuilding the read model in a cluster").

The operator publishes a :class:`ReadModelDirective` beside the shard map, in the same
ConfigMap (key ``readmodel.json``; absent: every member uses the database it was started with).
Each member reports a :class:`ReadModelReport` in its Lease (annotation
``threadweaver.io/read-model``). Databases are named only: every database of a cluster is on the
same server, with the same user and password, so a member opens one by replacing the database
of its own read-model URL.

A rebuild moves the cluster from database ``X`` (``serving``) to ``Y`` (``target``) in stages:

1. ``fill``: the operator's project Job fills ``Y`` from the journal; members report how far
   ``Y``'s checkpoints are behind their RMUs' (progress).
2. ``catch-up``: every member runs a second RMU per served range on ``Y`` (a *shadow*), fed like
   its RMU on ``X``; members report when the shadows are within a second of the journal.
3. ``handover``: members stop their RMUs on ``X`` (``X`` no longer moves), start them on ``Y``,
   and report ``handedOver`` once ``Y``'s checkpoints passed what ``X`` had reached. Queries
   still read ``X``.
4. the switch: ``serving`` becomes ``Y`` (``previous`` ``X``) with ``switchAt``, a wall-clock
   instant a little ahead: every member moves its queries to ``Y`` at that instant. ``Y`` holds
   everything ``X`` showed, so no query sees an older state than one before it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ANNOTATION_READ_MODEL",
    "READ_MODEL_KEY",
    "STAGES",
    "ReadModelDirective",
    "ReadModelError",
    "ReadModelReport",
    "database_problem",
]

READ_MODEL_KEY = "readmodel.json"
"""Key of the directive in the cluster's shard-map ConfigMap."""
ANNOTATION_READ_MODEL = "threadweaver.io/read-model"
"""Lease annotation of a member's :class:`ReadModelReport` (empty: no report)."""

STAGES = ("fill", "catch-up", "handover")
_DATABASE = re.compile(r"^[A-Za-z0-9_$]{1,64}$")


class ReadModelError(ValueError):
    """A directive or report that cannot be parsed (the message names the field)."""


def database_problem(name: object) -> str | None:
    """Why ``name`` cannot name a MySQL database here (None when fine): 1 to 64 characters of
    letters, digits, ``_`` and ``$``, so it can go into a URL and a statement unquoted."""
    if not isinstance(name, str) or not _DATABASE.match(name):
        return f"database name {name!r} is not 1 to 64 of [A-Za-z0-9_$]"
    return None


def _database(value: Any, path: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    problem = database_problem(value)
    if problem:
        raise ReadModelError(f"{path}: {problem}")
    return str(value)


@dataclass(frozen=True, slots=True)
class ReadModelDirective:
    """Which database the members serve, and the rebuild in progress (see the module doc)."""

    serving: str
    target: str | None = None
    stage: str | None = None  # one of STAGES while target is set
    previous: str | None = None  # the database served before the last switch
    switch_at: float | None = None  # epoch seconds: when queries moved to ``serving``

    def __post_init__(self) -> None:
        _database(self.serving, "serving")
        _database(self.target, "target", optional=True)
        _database(self.previous, "previous", optional=True)
        if (self.target is None) != (self.stage is None):
            raise ReadModelError("target and stage: both or neither")
        if self.stage is not None and self.stage not in STAGES:
            raise ReadModelError(f"stage: one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.target is not None and self.target == self.serving:
            raise ReadModelError(f"target: {self.target!r} is the database served already")
        if self.switch_at is not None and (
            isinstance(self.switch_at, bool)
            or not isinstance(self.switch_at, int | float)
            or not math.isfinite(self.switch_at)
        ):
            raise ReadModelError(f"switchAt: expected a number, got {self.switch_at!r}")

    @property
    def rmu_database(self) -> str:
        """Where the members' RMUs write: the target from the handover on, else ``serving``."""
        return self.target if self.stage == "handover" and self.target else self.serving

    @property
    def shadow_database(self) -> str | None:
        """Where the members run shadow RMUs (the catch-up stage only)."""
        return self.target if self.stage == "catch-up" else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"serving": self.serving}
        if self.target is not None:
            out["target"] = self.target
            out["stage"] = self.stage
        if self.previous is not None:
            out["previous"] = self.previous
        if self.switch_at is not None:
            out["switchAt"] = self.switch_at
        return out

    def dumps(self) -> str:
        """Compact, key-sorted JSON (equal directives, equal text)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> ReadModelDirective:
        if isinstance(data, str | bytes | bytearray):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise ReadModelError(f"read-model directive is not valid JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise ReadModelError("read-model directive must be a JSON object")
        unknown = sorted(set(data) - {"serving", "target", "stage", "previous", "switchAt"})
        if unknown:
            raise ReadModelError(f"read-model directive has unknown fields {unknown}")
        if "serving" not in data:
            raise ReadModelError("read-model directive is missing 'serving'")
        try:
            return cls(
                serving=data["serving"],
                target=data.get("target"),
                stage=data.get("stage"),
                previous=data.get("previous"),
                switch_at=data.get("switchAt"),
            )
        except TypeError as exc:  # pragma: no cover - defensive
            raise ReadModelError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class ReadModelReport:
    """A member's read model: where its queries and RMUs are, and how far the target is.

    ``shards``: the shards it serves; ``caught_up``: how many of them the target holds to within
    a second of the journal (fill: its checkpoints against the RMUs'; catch-up: the shadows');
    ``lag_seconds``: the largest such lag it can tell (None: unknown); ``handed_over``: in the
    handover stage, the target's checkpoints passed the previous database's for every shard."""

    queries: str
    rmus: str
    target: str | None = None
    stage: str | None = None
    shards: int = 0
    caught_up: int = 0
    lag_seconds: float | None = None
    handed_over: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"queries": self.queries, "rmus": self.rmus}
        if self.target is not None:
            out.update(
                target=self.target,
                stage=self.stage,
                shards=self.shards,
                caughtUp=self.caught_up,
                lagSeconds=None if self.lag_seconds is None else round(self.lag_seconds, 3),
                handedOver=self.handed_over,
            )
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Any) -> ReadModelReport:
        if isinstance(data, str | bytes | bytearray):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise ReadModelError(f"read-model report is not valid JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise ReadModelError("read-model report must be a JSON object")
        lag = data.get("lagSeconds")
        if lag is not None and (isinstance(lag, bool) or not isinstance(lag, int | float)):
            raise ReadModelError(f"lagSeconds: expected a number, got {lag!r}")
        counts = {k: data.get(k, 0) for k in ("shards", "caughtUp")}
        for key, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ReadModelError(f"{key}: expected an integer >= 0, got {value!r}")
        stage = data.get("stage")
        if stage is not None and stage not in STAGES:
            raise ReadModelError(f"stage: one of {', '.join(STAGES)}, got {stage!r}")
        return cls(
            queries=_database(data.get("queries"), "queries") or "",
            rmus=_database(data.get("rmus"), "rmus") or "",
            target=_database(data.get("target"), "target", optional=True),
            stage=stage,
            shards=counts["shards"],
            caught_up=counts["caughtUp"],
            lag_seconds=None if lag is None else float(lag),
            handed_over=data.get("handedOver") is True,
        )
