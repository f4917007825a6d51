"""The steps of a pass: what :func:`.planning.plan` decides and :func:`.acting.act` carries out,
in order.

Each write step carries the Events that announce it; they are posted once the write succeeded
(for a create or a delete: only when it took effect). The other steps post a standalone Event or
update the cluster's state in the memo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .events import Event
from .spec import ClusterSpec

__all__ = [
    "Apply",
    "Create",
    "CreatePeerToken",
    "Delete",
    "ForgetWarnings",
    "Plan",
    "Post",
    "RememberRestarts",
    "ScaleStatefulSet",
    "Step",
    "WriteStatus",
]


@dataclass(frozen=True)
class Apply:
    """Server-side apply of ``obj``."""

    obj: Mapping[str, Any]
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Create:
    """Create ``obj`` (once: if it exists already, nothing happens and no Event is posted)."""

    obj: Mapping[str, Any]
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class CreatePeerToken:
    """Create the members' peer-token Secret with a fresh random token (once)."""

    spec: ClusterSpec
    owner: Mapping[str, Any] | None
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Delete:
    """Delete an object of the cluster's namespace (Events only if it existed)."""

    kind: str
    name: str
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class ScaleStatefulSet:
    """Set only the StatefulSet's replicas (its template waits for the migration)."""

    name: str
    replicas: int
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Post:
    """Post an Event; a Warning's ``warning_key`` is remembered (posted once)."""

    event: Event
    warning_key: str | None = None


@dataclass(frozen=True)
class ForgetWarnings:
    """The problem of ``reason`` went away: its Warnings may be posted again."""

    reason: str


@dataclass(frozen=True)
class RememberRestarts:
    """The RMU restart cooldowns after this pass's supervision (monotonic seconds)."""

    times: Mapping[str, float]


@dataclass(frozen=True)
class WriteStatus:
    """Merge-patch ``status`` with ``patch`` (None: unchanged, nothing to write) and remember
    ``status`` as the last status."""

    status: Mapping[str, Any]
    patch: Mapping[str, Any] | None = None
    events: tuple[Event, ...] = ()


Step = (
    Apply
    | Create
    | CreatePeerToken
    | Delete
    | ScaleStatefulSet
    | Post
    | ForgetWarnings
    | RememberRestarts
    | WriteStatus
)


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()

    def of(self, kind: type) -> list[Any]:
        """The steps of one type, in order (for tests and logs)."""
        return [s for s in self.steps if isinstance(s, kind)]
