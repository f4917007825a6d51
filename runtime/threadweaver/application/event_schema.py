"""Schema versions of stored events and snapshots, and the upcasters between them.

Every event type has a current version: 1 unless `CURRENT_VERSIONS` says otherwise, so a new
event type needs no line here. A stored payload keeps its version under `schema` (the domain's
`event_to_payload` has always written 1 there; a payload without it is v1). Reading an older
version runs the upcasters registered for that type, one per `(type, from_version)`, each
turning a payload of `from_version` into one of `from_version + 1`, until the current version;
the domain then decodes the current shape. A payload of a version above the current one was
written by a newer image: it cannot be read, and says so (the replay check of an upgrade, or of a
rollback, finds it first: docs/operations.md, "Upgrading safely").

Evolving an event type (docs/architecture.md, "Schema versions"): change its domain payload
codec to the new shape, set its version in `CURRENT_VERSIONS` and register the upcaster from the
previous version in `UPCASTERS`.

Snapshots carry a version too (`schema` of the snapshot dict, which `Thread.to_snapshot` writes).
They are not upcast: a snapshot of another version than the current one is ignored and the
entity replays its events (`SchemaRegistry.thread_from_snapshot`), because a snapshot is only a
cache of the fold of events that stay readable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..domain import Event, Thread, event_from_payload, event_to_payload
from ..domain.thread import SNAPSHOT_SCHEMA

#: the key of a payload's (and a snapshot's) schema version
VERSION_KEY = "schema"
#: the version of a payload stored without one (before versions were written)
DEFAULT_VERSION = 1

Payload = dict[str, Any]
#: a payload of version v -> one of version v + 1. It gets a shallow copy: it may set and remove
#: top-level keys in place, never change nested values in place (they are the stored event's).
Upcaster = Callable[[Payload], Payload]

#: event type -> current version, for the types that evolved past v1
CURRENT_VERSIONS: dict[str, int] = {}
#: (event type, from version) -> the upcaster to from version + 1
UPCASTERS: dict[tuple[str, int], Upcaster] = {}
#: the version of `Thread.to_snapshot`'s dict: the domain's own layout version
SNAPSHOT_VERSION = SNAPSHOT_SCHEMA


class SchemaError(ValueError):
    """A stored payload cannot be brought to this image's schema: its version is newer than
    the current one, or no upcaster is registered for a step, or it is not a version at all."""


def _version_of(payload: Mapping[str, Any]) -> int:
    version = payload.get(VERSION_KEY, DEFAULT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SchemaError(f"schema version {version!r} is not a positive integer")
    return version


@dataclass(frozen=True)
class SchemaRegistry:
    """The versions, upcasters and codecs the event mapper reads and writes with.

    `decode`/`encode` are the domain's payload codec of the current versions, and
    `decode_snapshot`/`encode_snapshot` the Thread's snapshot codec; a test that evolves an event
    builds a registry of its own (the production one is `default_registry()`)."""

    versions: Mapping[str, int] = field(default_factory=dict)
    upcasters: Mapping[tuple[str, int], Upcaster] = field(default_factory=dict)
    snapshot_version: int = SNAPSHOT_VERSION
    decode: Callable[[str, Payload], Event] = event_from_payload
    encode: Callable[[Event], Payload] = event_to_payload
    decode_snapshot: Callable[[Payload], Thread] = Thread.from_snapshot
    encode_snapshot: Callable[[Thread], Payload] = Thread.to_snapshot

    def __post_init__(self) -> None:
        for event_type, current in self.versions.items():
            missing = [v for v in range(1, current) if (event_type, v) not in self.upcasters]
            if missing:
                raise SchemaError(
                    f"{event_type} is at v{current} but has no upcaster from "
                    + ", ".join(f"v{v}" for v in missing)
                )

    def current(self, event_type: str) -> int:
        """The version this image writes (and reads) for `event_type`."""
        return self.versions.get(event_type, DEFAULT_VERSION)

    def upcast(self, event_type: str, payload: Payload) -> Payload:
        """`payload` brought to the current version of `event_type` (the same object when it
        is at it already); raises SchemaError when that is not possible."""
        version, current = _version_of(payload), self.current(event_type)
        if version == current:
            return payload
        if version > current:
            raise SchemaError(
                f"{event_type} v{version} is newer than this image's v{current} "
                "(written by a newer version)"
            )
        payload = dict(payload)
        while version < current:
            upcaster = self.upcasters.get((event_type, version))
            if upcaster is None:  # pragma: no cover - __post_init__ refuses such a registry
                raise SchemaError(f"no upcaster of {event_type} from v{version}")
            payload = upcaster(payload)
            version += 1
            payload[VERSION_KEY] = version
        return payload

    def to_domain(self, event_type: str, payload: Payload) -> Event:
        """The domain event of a stored payload of any readable version."""
        current = self.upcast(event_type, payload)
        if current.get(VERSION_KEY, DEFAULT_VERSION) != DEFAULT_VERSION:
            # the version is this registry's business: the domain decodes the current shape
            current = {k: v for k, v in current.items() if k != VERSION_KEY}
        return self.decode(event_type, current)

    def to_payload(self, event: Event) -> Payload:
        """The payload of `event` at its type's current version."""
        payload = self.encode(event)
        current = self.current(event.TYPE)
        if payload.get(VERSION_KEY) != current:
            payload[VERSION_KEY] = current
        return payload

    # -- snapshots --------------------------------------------------------------------------

    def snapshot_state(self, thread: Thread) -> Payload:
        """The snapshot dict of `thread`, marked with the current snapshot version."""
        state = self.encode_snapshot(thread)
        state[VERSION_KEY] = self.snapshot_version
        return state

    def snapshot_readable(self, state: Mapping[str, Any]) -> bool:
        """Whether a stored snapshot is of the current snapshot version."""
        return bool(state.get(VERSION_KEY, DEFAULT_VERSION) == self.snapshot_version)

    def thread_from_snapshot(self, state: Mapping[str, Any]) -> Thread | None:
        """The Thread of a stored snapshot; None for one of another version (too old, or
        written by a newer image): the caller replays the events from the start instead."""
        if not self.snapshot_readable(state):
            return None
        current = dict(state)
        current[VERSION_KEY] = SNAPSHOT_VERSION  # the domain's codec checks its own version
        return self.decode_snapshot(current)


def default_registry() -> SchemaRegistry:
    """The registry of this image: `CURRENT_VERSIONS`, `UPCASTERS`, the domain's codecs."""
    return SchemaRegistry(dict(CURRENT_VERSIONS), dict(UPCASTERS), SNAPSHOT_VERSION)
