"""A schema evolution that exists only in the tests: `MessagesAdded` v2, with a new field.

v2 adds `priority` (default "normal") to `MessagesAdded`; the production event stays as it is.
`evolved_registry()` is the schema registry of an image that made that change: `MessagesAdded`
at v2, the upcaster from v1 (which fills in the default), and the domain codec extended for the
new field. Its events are `MessagesAddedV2`, a subclass of the production `MessagesAdded`, so
the production `evolve` folds them. `snapshot_version=SNAPSHOT_VERSION + 1` models an evolution that also changed
the aggregate's snapshot (its v1 snapshots are then ignored and the events replayed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from threadweaver.application.event_mapper import EventMapper
from threadweaver.application.event_schema import SNAPSHOT_VERSION, SchemaRegistry
from threadweaver.domain import Event, event_from_payload, event_to_payload
from threadweaver.domain.events import MessagesAdded

DEFAULT_PRIORITY = "normal"


@dataclass(frozen=True, slots=True)
class MessagesAddedV2(MessagesAdded):
    priority: str = DEFAULT_PRIORITY


def upcast_messages_added_v1(payload: dict[str, Any]) -> dict[str, Any]:
    payload["priority"] = DEFAULT_PRIORITY
    return payload


def decode_v2(event_type: str, payload: dict[str, Any]) -> Event:
    if event_type != MessagesAdded.TYPE:
        return event_from_payload(event_type, payload)
    base = event_from_payload(event_type, {k: v for k, v in payload.items() if k != "priority"})
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return MessagesAddedV2(**fields, priority=payload["priority"])


def encode_v2(event: Event) -> dict[str, Any]:
    payload = event_to_payload(event)
    if isinstance(event, MessagesAdded):
        payload["priority"] = getattr(event, "priority", DEFAULT_PRIORITY)
    return payload


def evolved_registry(snapshot_version: int = SNAPSHOT_VERSION) -> SchemaRegistry:
    return SchemaRegistry(
        versions={MessagesAdded.TYPE: 2},
        upcasters={(MessagesAdded.TYPE, 1): upcast_messages_added_v1},
        snapshot_version=snapshot_version,
        decode=decode_v2,
        encode=encode_v2,
    )


def evolved_mapper(snapshot_version: int = SNAPSHOT_VERSION) -> EventMapper:
    return EventMapper(evolved_registry(snapshot_version))
