"""The one mapping between domain events and the journal's stored events.

A stored event is an envelope: the domain event as its type name and JSON payload
(`domain.events`), plus metadata that the request which caused it adds: the idempotency record of
a keyed command (application/idempotency.py) and a slot for the request's trace context. The
metadata is never part of the domain payload.

Every consumer decodes stored events here (the entities when they replay, the projector before
it projects); every journal backend passes what it reads through `from_storage`, so that an
event of a journal written before the envelope existed (the idempotency record inside the
payload, under `_meta`) comes out exactly like a new one.

Schema versions: a payload is written at its type's current version and read at any version
this image can upcast (application/event_schema.py); snapshots likewise carry their version and
one of another version is ignored (the entity replays its events). `EventMapper` is the mapping
of one `SchemaRegistry`; the module's functions are those of this image's (`MAPPER`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..domain import Event, Thread
from .event_schema import SchemaRegistry, default_registry
from .ports import NewEvent, StoredEvent

# Keys of the stored metadata object.
IDEMPOTENCY = "idempotency"  # a keyed command's record: idempotency.meta()
TRACE_CONTEXT = "traceContext"  # W3C trace context of the request (traceparent, tracestate)
# Where journals written before the envelope kept the idempotency record: in the payload.
LEGACY_PAYLOAD_META = "_meta"


@dataclass(frozen=True, slots=True)
class RequestMetadata:
    """What a request adds to one of the events it causes, kept on the stored event's envelope."""

    idempotency: Mapping[str, Any] | None = None
    trace_context: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.idempotency is not None:
            data[IDEMPOTENCY] = dict(self.idempotency)
        if self.trace_context is not None:
            data[TRACE_CONTEXT] = dict(self.trace_context)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestMetadata:
        idempotency, trace = data.get(IDEMPOTENCY), data.get(TRACE_CONTEXT)
        return cls(
            idempotency if isinstance(idempotency, dict) else None,
            trace if isinstance(trace, dict) else None,
        )


class EventMapper:
    """Domain <-> stored events and snapshots under one schema registry."""

    __slots__ = ("schemas",)

    def __init__(self, schemas: SchemaRegistry | None = None) -> None:
        self.schemas = schemas if schemas is not None else default_registry()

    def to_new_events(
        self, events: Sequence[Event], metadata: Sequence[RequestMetadata] | None = None
    ) -> list[NewEvent]:
        """Domain events as the journal appends them; `metadata[i]` goes on event i's
        envelope."""
        payload = self.schemas.to_payload
        if metadata is None:
            return [NewEvent(e.TYPE, payload(e)) for e in events]
        return [NewEvent(e.TYPE, payload(e), m.to_json()) for e, m in zip(events, metadata)]

    def to_domain(self, stored: StoredEvent) -> Event:
        """The domain event of a stored one, upcast to the current version; raises ValueError
        (event_schema.SchemaError for versions) for unknown types or schemas."""
        return self.schemas.to_domain(stored.type, stored.payload)

    def snapshot_state(self, thread: Thread) -> dict[str, Any]:
        """The snapshot dict of a Thread, at the current snapshot version."""
        return self.schemas.snapshot_state(thread)

    def thread_from_snapshot(self, state: dict[str, Any]) -> Thread | None:
        """The Thread of a snapshot dict; None for a snapshot of another version (replay)."""
        return self.schemas.thread_from_snapshot(state)


#: the mapping of this image's schema registry
MAPPER = EventMapper()


def to_new_events(
    events: Sequence[Event], metadata: Sequence[RequestMetadata] | None = None
) -> list[NewEvent]:
    """Domain events as the journal appends them; `metadata[i]` goes on event i's envelope."""
    return MAPPER.to_new_events(events, metadata)


def to_domain(stored: StoredEvent) -> Event:
    """The domain event of a stored one; raises ValueError for unknown types or schemas."""
    return MAPPER.to_domain(stored)


def idempotency_record(stored: StoredEvent) -> Mapping[str, Any] | None:
    """The idempotency record on a stored event's envelope (None for unkeyed commands)."""
    record = stored.metadata.get(IDEMPOTENCY) if stored.metadata else None
    return record if isinstance(record, dict) else None


def trace_contexts(events: Sequence[StoredEvent]) -> list[Mapping[str, str]]:
    """The distinct trace contexts on the envelopes of `events`, in order (the spans of the
    requests that caused them, which the projection's span links to)."""
    seen: dict[str, Mapping[str, str]] = {}
    for e in events:
        context = e.metadata.get(TRACE_CONTEXT) if e.metadata else None
        if isinstance(context, dict) and isinstance(context.get("traceparent"), str):
            seen.setdefault(context["traceparent"], context)
    return list(seen.values())


def from_storage(
    payload: dict[str, Any], metadata: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(domain payload, envelope metadata) of a record a journal read. An old record keeps its
    idempotency record in the payload: it is moved to the metadata."""
    if LEGACY_PAYLOAD_META not in payload:
        return payload, metadata or {}
    payload = dict(payload)
    legacy = payload.pop(LEGACY_PAYLOAD_META)
    metadata = dict(metadata or {})
    if isinstance(legacy, dict):
        metadata.setdefault(IDEMPOTENCY, legacy)
    return payload, metadata
