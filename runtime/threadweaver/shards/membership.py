"""What a runtime pod reports about itself, and the names both sides agree on.

Each pod renews a ``coordination.k8s.io/v1`` Lease named after itself and writes its
:class:`MemberStatus` into the Lease's annotations; the operator only ever reads Leases (it never
calls pods). A valid lease is the member's liveness; its annotations are the handoff
acknowledgement (``acked-epoch``) and the RMU health the operator uses to find orphaned ranges.

All five annotations are always written (empty string for "none") so that a merge patch also
clears stale values; reading tolerates missing keys (a pod that has not reported yet).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from .ranges import RangeSet, ShardRange
from .readmodel import ANNOTATION_READ_MODEL, ReadModelError, ReadModelReport

__all__ = [
    "ANNOTATION_ACKED_EPOCH",
    "ANNOTATION_ADDRESS",
    "ANNOTATION_OWNED_RANGES",
    "ANNOTATION_READ_MODEL",
    "ANNOTATION_RMUS",
    "MAX_ERROR_CHARS",
    "MemberStatus",
    "MembershipError",
    "RmuState",
    "is_lease_expired",
    "lease_name",
    "shardmap_configmap_name",
]

ANNOTATION_ACKED_EPOCH = "threadweaver.io/acked-epoch"
ANNOTATION_OWNED_RANGES = "threadweaver.io/owned-ranges"
ANNOTATION_RMUS = "threadweaver.io/rmus"
ANNOTATION_ADDRESS = "threadweaver.io/address"

MAX_ERROR_CHARS = 300
"""``last_error`` is cut to this length when written: annotations share a 256 KiB budget."""


class MembershipError(ValueError):
    """A Lease annotation that cannot be parsed."""


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class RmuState:
    """Health of the read-model updater of one range, as its member sees it."""

    range: ShardRange
    running: bool
    offset: int = 0
    lag_events: int = 0
    lag_seconds: float = 0.0
    restarts: int = 0
    last_error: str | None = None

    def __post_init__(self) -> None:
        for name in ("offset", "lag_events", "restarts"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ValueError(f"RmuState.{name} must be an integer >= 0, got {value!r}")
        lag = self.lag_seconds
        if (
            isinstance(lag, bool)
            or not isinstance(lag, (int, float))
            or not math.isfinite(lag)
            or lag < 0
        ):
            raise ValueError(f"RmuState.lag_seconds must be a finite number >= 0, got {lag!r}")
        object.__setattr__(self, "lag_seconds", float(lag))

    def to_json(self) -> dict[str, Any]:
        error = self.last_error
        if error is not None and len(error) > MAX_ERROR_CHARS:
            error = error[: MAX_ERROR_CHARS - 1] + "…"
        return {
            "range": str(self.range),
            "running": self.running,
            "offset": self.offset,
            "lagEvents": self.lag_events,
            "lagSeconds": round(self.lag_seconds, 3),
            "restarts": self.restarts,
            "lastError": error,
        }

    @classmethod
    def from_json(cls, data: Any) -> RmuState:
        if not isinstance(data, Mapping) or not isinstance(data.get("range"), str):
            raise ValueError(f"expected an object with a 'range' string, got {data!r}")
        running = data.get("running", False)
        error = data.get("lastError")
        if not isinstance(running, bool):
            raise ValueError(f"'running' must be a boolean, got {running!r}")
        if error is not None and not isinstance(error, str):
            raise ValueError(f"'lastError' must be a string or null, got {error!r}")
        return cls(
            range=ShardRange.parse(data["range"]),
            running=running,
            offset=data.get("offset", 0),
            lag_events=data.get("lagEvents", 0),
            lag_seconds=data.get("lagSeconds", 0.0),
            restarts=data.get("restarts", 0),
            last_error=error,
        )


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """A member's report: the epoch it acknowledged, what it serves, its RMUs, its address and
    its read model (shards/readmodel.py; None: it has not received a directive)."""

    member: str
    acked_epoch: int = 0
    owned: RangeSet = field(default_factory=RangeSet)
    rmus: tuple[RmuState, ...] = ()
    address: str | None = None
    read_model: ReadModelReport | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.member, str) or not self.member:
            raise ValueError(f"member must be a non-empty string, got {self.member!r}")
        if not _is_int(self.acked_epoch) or self.acked_epoch < 0:
            raise ValueError(f"acked_epoch must be an integer >= 0, got {self.acked_epoch!r}")
        object.__setattr__(self, "rmus", tuple(sorted(self.rmus, key=lambda s: s.range)))

    def stopped_rmus(self) -> tuple[RmuState, ...]:
        """RMUs reported as not running: orphan candidates for the operator."""
        return tuple(s for s in self.rmus if not s.running)

    def to_annotations(self) -> dict[str, str]:
        return {
            ANNOTATION_ACKED_EPOCH: str(self.acked_epoch),
            ANNOTATION_OWNED_RANGES: str(self.owned),
            ANNOTATION_RMUS: json.dumps(
                [s.to_json() for s in self.rmus], separators=(",", ":"), ensure_ascii=False
            ),
            ANNOTATION_ADDRESS: self.address or "",
            ANNOTATION_READ_MODEL: self.read_model.dumps() if self.read_model else "",
        }

    @classmethod
    def from_annotations(cls, member: str, annotations: Mapping[str, str] | None) -> MemberStatus:
        """Read a Lease's annotations; missing keys give defaults, malformed values raise
        :class:`MembershipError` naming the member and the annotation."""
        annotations = annotations or {}

        def fail(key: str, why: object) -> MembershipError:
            return MembershipError(
                f"lease of member {member!r}: annotation {key} is malformed: {why}"
            )

        raw_epoch = (annotations.get(ANNOTATION_ACKED_EPOCH) or "").strip()
        try:
            acked_epoch = int(raw_epoch) if raw_epoch else 0
            if acked_epoch < 0:
                raise ValueError(f"negative epoch {acked_epoch}")
        except ValueError as exc:
            raise fail(ANNOTATION_ACKED_EPOCH, exc) from None
        try:
            owned = RangeSet.parse(annotations.get(ANNOTATION_OWNED_RANGES) or "")
        except ValueError as exc:
            raise fail(ANNOTATION_OWNED_RANGES, exc) from None
        raw_rmus = (annotations.get(ANNOTATION_RMUS) or "").strip()
        try:
            items = json.loads(raw_rmus) if raw_rmus else []
            if not isinstance(items, list):
                raise ValueError(f"expected a JSON list, got {type(items).__name__}")
            rmus = tuple(RmuState.from_json(item) for item in items)
        except ValueError as exc:
            raise fail(ANNOTATION_RMUS, exc) from None
        address = (annotations.get(ANNOTATION_ADDRESS) or "").strip() or None
        raw_read_model = (annotations.get(ANNOTATION_READ_MODEL) or "").strip()
        try:
            read_model = ReadModelReport.from_json(raw_read_model) if raw_read_model else None
        except ReadModelError as exc:
            raise fail(ANNOTATION_READ_MODEL, exc) from None
        return cls(
            member=member,
            acked_epoch=acked_epoch,
            owned=owned,
            rmus=rmus,
            address=address,
            read_model=read_model,
        )


def lease_name(cluster: str, member: str) -> str:
    """Name of a member's Lease: the pod name itself (pod names are unique per namespace;
    ``cluster`` is accepted so the rule can change without touching callers)."""
    return member


def shardmap_configmap_name(cluster: str) -> str:
    """Name of the ConfigMap holding the cluster's shard map (key ``shardmap.json``)."""
    return f"{cluster}-shardmap"


def is_lease_expired(renew_time: datetime | None, duration_seconds: int, now: datetime) -> bool:
    """True when the lease was not renewed within its duration (as client-go decides:
    valid while ``renew_time + duration > now``). Naive datetimes are taken as UTC; a lease
    never renewed is expired."""
    if renew_time is None:
        return True
    if renew_time.tzinfo is None:
        renew_time = renew_time.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return renew_time + timedelta(seconds=duration_seconds) <= now
