"""Event payloads: the JSON form the journal stores (camelCase keys, a `schema` version)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadweaver.domain.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    AddedMessage,
    AdministratorIdsJoined,
    AdministratorIdsLeft,
    MemberIdsJoined,
    MemberIdsLeft,
    MessageEdited,
    MessagesAdded,
    MessagesRemoved,
    ReadMarkerMoved,
    ThreadCreated,
    ThreadDestroyed,
    event_from_payload,
    event_to_payload,
)

TID, ACTOR, AT = "01HZX3J5K6M7N8P9Q0R1S2T3V4", "01HZX3J5K6M7N8P9Q0R1S2T3V5", 1_718_000_000_123

SAMPLES = {
    "ThreadCreated": ThreadCreated(
        TID, ACTOR, AT, "title", ("a1", "a2"), ("m1",), "parent", "remarks"
    ),
    "ThreadDestroyed": ThreadDestroyed(TID, ACTOR, AT),
    "AdministratorIdsJoined": AdministratorIdsJoined(TID, ACTOR, AT, ("a3", "a4")),
    "AdministratorIdsLeft": AdministratorIdsLeft(TID, ACTOR, AT, ("a1",)),
    "MemberIdsJoined": MemberIdsJoined(TID, ACTOR, AT, ("m2", "m3")),
    "MemberIdsLeft": MemberIdsLeft(TID, ACTOR, AT, ("m1",)),
    "MessagesAdded": MessagesAdded(
        TID,
        ACTOR,
        AT,
        (
            AddedMessage("x1", "hello", None, ()),
            AddedMessage("x2", "re: hello", "x1", ("a1", "m1")),
        ),
    ),
    "MessagesRemoved": MessagesRemoved(TID, ACTOR, AT, ("x1", "x2")),
    "MessageEdited": MessageEdited(TID, ACTOR, AT, "x1", "hello, edited"),
    "ReadMarkerMoved": ReadMarkerMoved(TID, ACTOR, AT, "x2"),
}

EXPECTED_PAYLOADS = {
    "ThreadCreated": {
        "title": "title",
        "remarks": "remarks",
        "parentThreadId": "parent",
        "administratorIds": ["a1", "a2"],
        "memberIds": ["m1"],
    },
    "ThreadDestroyed": {},
    "AdministratorIdsJoined": {"administratorIds": ["a3", "a4"]},
    "AdministratorIdsLeft": {"administratorIds": ["a1"]},
    "MemberIdsJoined": {"memberIds": ["m2", "m3"]},
    "MemberIdsLeft": {"memberIds": ["m1"]},
    "MessagesAdded": {
        "messages": [
            {"id": "x1", "text": "hello", "replyMessageId": None, "toAccountIds": []},
            {"id": "x2", "text": "re: hello", "replyMessageId": "x1", "toAccountIds": ["a1", "m1"]},
        ]
    },
    "MessagesRemoved": {"messageIds": ["x1", "x2"]},
    "MessageEdited": {"messageId": "x1", "text": "hello, edited"},
    "ReadMarkerMoved": {"messageId": "x2"},
}

CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def test_the_ten_event_types() -> None:
    assert (
        set(EVENT_TYPES)
        == set(SAMPLES)
        == {
            "ThreadCreated",
            "ThreadDestroyed",
            "AdministratorIdsJoined",
            "AdministratorIdsLeft",
            "MemberIdsJoined",
            "MemberIdsLeft",
            "MessagesAdded",
            "MessagesRemoved",
            "MessageEdited",
            "ReadMarkerMoved",
        }
    )
    for name, cls in EVENT_TYPES.items():
        assert name == cls.TYPE
        assert type(SAMPLES[name]) is cls


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_payload_exact(name: str) -> None:
    expected = {
        "schema": SCHEMA_VERSION,
        "threadId": TID,
        "accountId": ACTOR,
        "occurredAt": AT,
        **EXPECTED_PAYLOADS[name],
    }
    assert event_to_payload(SAMPLES[name]) == expected
    assert SCHEMA_VERSION == 1


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_through_json(name: str) -> None:
    event = SAMPLES[name]
    payload = event_to_payload(event)
    assert event_from_payload(name, payload) == event
    stored = json.loads(json.dumps(payload))
    back = event_from_payload(name, stored)
    assert back == event and type(back) is type(event)
    assert event_to_payload(back) == payload


def _keys(value) -> list[str]:
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in [k, *_keys(v)]]
    if isinstance(value, list):
        return [k for item in value for k in _keys(item)]
    return []


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_payload_keys_are_camel_case_with_common_fields(name: str) -> None:
    payload = event_to_payload(SAMPLES[name])
    assert {"schema", "threadId", "accountId", "occurredAt"} <= set(payload)
    assert payload["schema"] == SCHEMA_VERSION
    bad = [k for k in _keys(payload) if not CAMEL.match(k)]
    assert bad == []
    json.dumps(payload)  # plain JSON types only


def test_optional_fields_round_trip_as_null() -> None:
    event = ThreadCreated(TID, ACTOR, AT, "t", ("a",), ())
    payload = event_to_payload(event)
    assert payload["parentThreadId"] is None and payload["remarks"] is None
    assert payload["memberIds"] == []
    assert event_from_payload("ThreadCreated", payload) == event


def test_unknown_type_is_refused() -> None:
    payload = event_to_payload(SAMPLES["ThreadDestroyed"])
    for name in ("ThreadRemoved", "threadDestroyed", "", "MemberIdsAdded"):
        with pytest.raises(ValueError):
            event_from_payload(name, payload)


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("schema", [0, 2, 99, "1", None])
def test_unknown_schema_is_refused(name: str, schema) -> None:
    payload = event_to_payload(SAMPLES[name]) | {"schema": schema}
    with pytest.raises(ValueError):
        event_from_payload(name, payload)


# ---------------------------------------------------------------- generated events
ids = st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=1, max_size=26)
id_tuples = st.lists(ids, max_size=4).map(tuple)
texts = st.text(max_size=40)
common = dict(thread_id=ids, account_id=ids, occurred_at=st.integers(0, 2**48 - 1))
events = st.one_of(
    st.builds(
        ThreadCreated,
        **common,
        title=texts,
        administrator_ids=id_tuples,
        member_ids=id_tuples,
        parent_thread_id=st.none() | ids,
        remarks=st.none() | texts,
    ),
    st.builds(ThreadDestroyed, **common),
    st.builds(AdministratorIdsJoined, **common, administrator_ids=id_tuples),
    st.builds(AdministratorIdsLeft, **common, administrator_ids=id_tuples),
    st.builds(MemberIdsJoined, **common, member_ids=id_tuples),
    st.builds(MemberIdsLeft, **common, member_ids=id_tuples),
    st.builds(
        MessagesAdded,
        **common,
        messages=st.lists(
            st.builds(
                AddedMessage,
                id=ids,
                text=texts,
                reply_message_id=st.none() | ids,
                to_account_ids=id_tuples,
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(MessagesRemoved, **common, message_ids=id_tuples),
    st.builds(MessageEdited, **common, message_id=ids, text=texts),
    st.builds(ReadMarkerMoved, **common, message_id=ids),
)


@settings(max_examples=100, deadline=None)
@given(events)
def test_any_event_round_trips(event) -> None:
    payload = json.loads(json.dumps(event_to_payload(event)))
    assert event_from_payload(event.TYPE, payload) == event
