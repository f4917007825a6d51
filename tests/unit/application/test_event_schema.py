"""Schema versions and upcasters (application/event_schema.py) through the event mapper: every
type at v1 by default, older payloads upcast step by step, newer ones refused with a message,
snapshots of another version ignored; the v2 evolution of tests/support/evolved_schema.py."""

from __future__ import annotations

import copy

import pytest

from tests.support.evolved_schema import (
    DEFAULT_PRIORITY,
    MessagesAddedV2,
    evolved_mapper,
    evolved_registry,
)
from threadweaver.application import codec, event_mapper
from threadweaver.application.event_mapper import MAPPER, EventMapper
from threadweaver.application.event_schema import (
    SNAPSHOT_VERSION,
    SchemaError,
    SchemaRegistry,
    default_registry,
)
from threadweaver.application.ports import StoredEvent
from threadweaver.domain import EVENT_TYPES, event_to_payload, evolve
from threadweaver.domain.events import (
    AddedMessage,
    MessagesAdded,
    ThreadCreated,
    ThreadDestroyed,
)

CREATED = ThreadCreated("T", "A", 1, "title", ("A",), ())
ADDED = MessagesAdded("T", "A", 2, (AddedMessage("M1", "hi", None, ()),))


def stored(event_type: str, payload: dict, seq: int = 1) -> StoredEvent:
    return StoredEvent("thread-T", seq, 0, event_type, payload, 0, seq)


def test_every_event_type_is_at_v1_by_default() -> None:
    registry = default_registry()
    assert {t: registry.current(t) for t in EVENT_TYPES} == dict.fromkeys(EVENT_TYPES, 1)
    assert registry.current("SomeEventAddedLater") == 1  # a new type needs no registration


def test_payloads_are_written_with_their_version() -> None:
    (new,) = event_mapper.to_new_events([ADDED])
    assert new.payload["schema"] == 1
    assert new.payload == event_to_payload(ADDED)


def test_a_payload_without_a_version_reads_as_v1() -> None:
    payload = event_to_payload(ADDED)
    del payload["schema"]
    assert event_mapper.to_domain(stored("MessagesAdded", payload)) == ADDED


@pytest.mark.parametrize("version", [0, -1, "1", None, 1.0, True])
def test_a_version_that_is_not_a_positive_integer_is_refused(version) -> None:
    payload = event_to_payload(ADDED) | {"schema": version}
    with pytest.raises(SchemaError, match="not a positive integer"):
        event_mapper.to_domain(stored("MessagesAdded", payload))


def test_a_newer_version_is_refused_naming_both_versions() -> None:
    payload = event_to_payload(ADDED) | {"schema": 2}
    with pytest.raises(SchemaError, match=r"MessagesAdded v2 is newer than this image's v1"):
        event_mapper.to_domain(stored("MessagesAdded", payload))
    with pytest.raises(ValueError):  # SchemaError is a ValueError, as before versions
        MAPPER.to_domain(stored("MessagesAdded", payload))


def test_a_registry_without_an_upcaster_for_a_step_is_refused() -> None:
    with pytest.raises(SchemaError, match="MessagesAdded is at v3 but has no upcaster from v2"):
        SchemaRegistry(versions={"MessagesAdded": 3}, upcasters={("MessagesAdded", 1): lambda p: p})


def test_upcasters_run_in_order_from_the_stored_version_to_the_current() -> None:
    calls: list[tuple[int, dict]] = []

    def step(version: int):
        def upcast(payload: dict) -> dict:
            calls.append((version, dict(payload)))
            payload[f"added_by_v{version}"] = True
            return payload

        return upcast

    registry = SchemaRegistry(
        versions={"ThreadDestroyed": 3},
        upcasters={("ThreadDestroyed", 1): step(1), ("ThreadDestroyed", 2): step(2)},
    )
    original = event_to_payload(ThreadDestroyed("T", "A", 5))
    kept = copy.deepcopy(original)
    out = registry.upcast("ThreadDestroyed", original)
    assert [v for v, _ in calls] == [1, 2]
    assert calls[1][1]["schema"] == 2 and calls[1][1]["added_by_v1"]
    assert out["schema"] == 3 and out["added_by_v1"] and out["added_by_v2"]
    assert original == kept  # the stored payload is not changed
    assert registry.upcast("ThreadDestroyed", out) is out  # current: untouched
    # a v2 payload runs only the last step
    calls.clear()
    registry.upcast("ThreadDestroyed", kept | {"schema": 2})
    assert [v for v, _ in calls] == [2]


def test_the_evolved_registry_reads_v1_events_with_the_new_fields_default() -> None:
    mapper = evolved_mapper()
    v1 = stored("MessagesAdded", event_to_payload(ADDED))
    event = mapper.to_domain(v1)
    assert isinstance(event, MessagesAddedV2)
    assert event.priority == DEFAULT_PRIORITY
    assert event.messages == ADDED.messages
    # the other types are untouched at v1
    assert mapper.to_domain(stored("ThreadCreated", event_to_payload(CREATED))) == CREATED


def test_the_evolved_registry_writes_and_reads_v2() -> None:
    mapper = evolved_mapper()
    urgent = MessagesAddedV2("T", "A", 2, ADDED.messages, priority="urgent")
    (new,) = mapper.to_new_events([urgent])
    assert new.payload["schema"] == 2 and new.payload["priority"] == "urgent"
    assert mapper.to_domain(stored(new.type, new.payload)) == urgent
    # the previous image cannot read it, and says why
    with pytest.raises(SchemaError, match="v2 is newer than this image's v1"):
        MAPPER.to_domain(stored(new.type, new.payload))


def test_events_folded_by_evolve_whatever_their_version() -> None:
    mapper = evolved_mapper()
    state = None
    for i, e in enumerate([CREATED, ADDED], 1):
        state = evolve(state, mapper.to_domain(stored(e.TYPE, event_to_payload(e), i)))
    assert state is not None and list(state.messages) == ["M1"]


def test_snapshots_carry_their_version_and_another_one_is_ignored() -> None:
    thread = evolve(evolve(None, CREATED), ADDED)
    state = MAPPER.snapshot_state(thread)
    assert state["schema"] == SNAPSHOT_VERSION == 2  # the layout with read markers
    assert MAPPER.thread_from_snapshot(state) == thread
    unversioned = {k: v for k, v in state.items() if k != "schema"}
    assert MAPPER.thread_from_snapshot(unversioned) is None  # no version: v1, older: replay
    # an evolution that changed the snapshot ignores current snapshots (replay), writes new ones
    changed = evolved_mapper(snapshot_version=SNAPSHOT_VERSION + 1)
    assert changed.thread_from_snapshot(state) is None
    newer = changed.snapshot_state(thread)
    assert newer["schema"] == SNAPSHOT_VERSION + 1
    assert changed.thread_from_snapshot(newer) == thread
    assert MAPPER.thread_from_snapshot(newer) is None  # the previous image: replay too
    # one that did not change it keeps reading the current snapshots
    assert evolved_mapper(snapshot_version=SNAPSHOT_VERSION).thread_from_snapshot(state) == thread


def test_forwarded_events_travel_through_the_registry() -> None:
    data = codec.events_to_json([CREATED, ADDED])
    assert [d["payload"]["schema"] for d in data] == [1, 1]
    assert codec.events_from_json(data) == [CREATED, ADDED]
    newer = [{"type": "MessagesAdded", "payload": event_to_payload(ADDED) | {"schema": 9}}]
    with pytest.raises(SchemaError):
        codec.events_from_json(newer)


def test_a_mapper_defaults_to_this_images_registry() -> None:
    assert EventMapper().schemas == default_registry()
    assert evolved_registry().current("MessagesAdded") == 2
