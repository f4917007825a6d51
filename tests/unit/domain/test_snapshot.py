"""Snapshots: Thread.to_snapshot/from_snapshot is lossless, and a snapshot plus the tail of the
journal replays to the same state as the whole journal."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadweaver.domain.commands import (
    AddMessages,
    CreateThread,
    DestroyThread,
    EditMessage,
    JoinAdministratorIds,
    JoinMemberIds,
    LeaveAdministratorIds,
    LeaveMemberIds,
    MoveReadMarker,
    NewMessage,
    RemoveMessages,
)
from threadweaver.domain.errors import DomainError, ValidationError
from threadweaver.domain.thread import Thread, decide, evolve, replay

TID = "01HZX3J5K6M7N8P9Q0R1S2T3V4"
ACCOUNTS = ["acc-0", "acc-1", "acc-2", "acc-3", "acc-4"]
account = st.sampled_from(ACCOUNTS)
accounts = st.lists(account, max_size=3).map(tuple)
# An actor is an account name, or an index (even: into the thread's current administrators,
# odd: into its members) so that most generated commands are allowed rather than refused.
actor = st.one_of(st.integers(0, 9), account)

specs = st.one_of(
    st.tuples(st.just("add"), actor, st.integers(1, 3), st.sampled_from([None, 0, 1]), accounts),
    st.tuples(st.just("join_members"), actor, accounts),
    st.tuples(st.just("join_admins"), actor, accounts),
    st.tuples(st.just("remove"), actor, st.lists(st.integers(0, 50), max_size=3), st.booleans()),
    st.tuples(st.just("leave_members"), actor, accounts),
    st.tuples(st.just("leave_admins"), actor, accounts),
    st.tuples(st.just("add"), actor, st.just(0), st.none(), st.just(())),
    st.tuples(st.just("destroy"), actor, st.integers(0, 5)),
    st.tuples(st.just("edit"), actor, st.integers(0, 50)),
    st.tuples(st.just("mark"), actor, st.integers(0, 50)),
    st.tuples(
        st.just("create"),
        actor,
        st.lists(account, min_size=1, max_size=3).map(tuple),
        accounts,
        st.sampled_from([None, "parent"]),
        st.sampled_from([None, "", "rem"]),
    ),
)
first_create = st.tuples(
    st.just("create"),
    account,
    st.lists(account, min_size=1, max_size=3).map(tuple),
    accounts,
    st.sampled_from([None, "parent"]),
    st.sampled_from([None, "rem"]),
)


def command_for(spec, thread: Thread | None, step: int, issued: list[str]):
    """One spec -> a command against the current state (None: nothing to send)."""
    at = 1_000 + 10 * step
    kind, who = spec[0], spec[1]
    if isinstance(who, int):
        people = (
            []
            if thread is None
            else list(thread.member_ids if who % 2 else thread.administrator_ids)
        )
        people = people or ACCOUNTS
        who = people[who // 2 % len(people)]
    if kind == "create":
        return CreateThread(TID, who, f"title {step}", spec[2], spec[3], spec[4], spec[5], at)
    if kind == "destroy":
        # Rarely: a destroyed thread ends the interesting part of a history.
        return DestroyThread(TID, who, at) if spec[2] == 0 else None
    if kind == "add":
        new = []
        for i in range(spec[2]):
            reply = None if spec[3] is None or not issued else issued[spec[3] % len(issued)]
            new.append(NewMessage(f"msg-{step}-{i}", f"text {step}/{i}", reply, spec[4]))
            issued.append(new[-1].id)
        return AddMessages(TID, who, tuple(new), at)
    if kind in ("edit", "mark"):  # any message ever issued: removed ones are refused
        if not issued:
            return None
        message_id = issued[spec[2] % len(issued)]
        if kind == "edit":
            return EditMessage(TID, who, message_id, f"edited {step}", at)
        return MoveReadMarker(TID, who, message_id, at)
    if kind == "remove":
        pool = issued
        if spec[3] and thread is not None:  # own live messages only
            pool = [m.id for m in thread.messages.values() if m.sender_id == who]
        picked = tuple(pool[i % len(pool)] for i in spec[2]) if pool else ()
        return RemoveMessages(TID, who, picked, at)
    cls = {
        "join_admins": JoinAdministratorIds,
        "leave_admins": LeaveAdministratorIds,
        "join_members": JoinMemberIds,
        "leave_members": LeaveMemberIds,
    }[kind]
    return cls(TID, who, spec[2], at)


def run(spec_list):
    """Send the specs' commands, applying those the rules accept; returns (state, events)."""
    thread: Thread | None = None
    events: list = []
    issued: list[str] = []
    for step, spec in enumerate(spec_list):
        command = command_for(spec, thread, step, issued)
        if command is None:
            continue
        try:
            new = decide(thread, command)
        except (DomainError, ValidationError):
            continue
        for event in new:
            thread = evolve(thread, event)
        events.extend(new)
    return thread, events


histories = st.tuples(first_create, st.lists(specs, min_size=5, max_size=30)).map(
    lambda t: [t[0], *t[1]]
)


@settings(max_examples=100, deadline=None)
@given(histories)
def test_snapshot_round_trip_and_snapshot_plus_tail(history) -> None:
    live, events = run(history)
    full = replay(events)
    assert full == live
    assert full.to_snapshot() == live.to_snapshot()
    for k in range(1, len(events) + 1):
        prefix = replay(events[:k])
        stored = json.loads(json.dumps(prefix.to_snapshot()))
        restored = Thread.from_snapshot(stored)
        assert restored == prefix
        assert restored.to_snapshot() == prefix.to_snapshot()
        resumed = replay(events[k:], restored)
        assert resumed == full
        assert resumed.to_snapshot() == full.to_snapshot()


@settings(max_examples=100, deadline=None)
@given(histories, st.lists(specs, min_size=1, max_size=5))
def test_restored_thread_decides_like_the_original(history, more_specs) -> None:
    live, _ = run(history)
    restored = Thread.from_snapshot(json.loads(json.dumps(live.to_snapshot())))
    issued = list(live.messages)
    for step, spec in enumerate(more_specs, start=len(history)):
        command = command_for(spec, live, step, issued)
        if command is None:
            continue
        outcomes = []
        for thread in (live, restored):
            try:
                outcomes.append(("events", decide(thread, command)))
            except DomainError as e:
                outcomes.append(("refused", e.kind, e.message))
            except ValidationError as e:
                outcomes.append(("invalid", e.messages))
        assert outcomes[0] == outcomes[1]
        if outcomes[0][0] == "events":
            for event in outcomes[0][1]:
                live = evolve(live, event)
                restored = evolve(restored, event)
        assert restored.to_snapshot() == live.to_snapshot()


def _sample_thread() -> Thread:
    thread = None
    for command in (
        CreateThread(TID, "c", "title", ("a", "b"), ("m",), "parent", "remarks", 1),
        AddMessages(
            TID, "m", (NewMessage("x1", "hi", None, ("a",)), NewMessage("x2", "re", "x1", ())), 2
        ),
        DestroyThread(TID, "a", 3),
    ):
        thread = replay(decide(thread, command), thread)
    return thread


def test_snapshot_layout() -> None:
    assert _sample_thread().to_snapshot() == {
        "schema": 2,
        "id": TID,
        "creatorId": "c",
        "title": "title",
        "parentThreadId": "parent",
        "remarks": "remarks",
        "administratorIds": ["a", "b"],
        "memberIds": ["m"],
        "messages": [["x1", "m", "hi", None, ["a"], 2], ["x2", "m", "re", "x1", [], 2]],
        "createdAt": 1,
        "updatedAt": 3,
        "removedAt": 3,
        "readMarkers": [],
    }


def test_snapshot_and_thread_share_nothing() -> None:
    thread = _sample_thread()
    snap = thread.to_snapshot()
    kept = copy.deepcopy(snap)
    restored = Thread.from_snapshot(snap)
    restored.administrator_ids["z"] = None
    restored.member_ids.clear()
    restored.messages.pop("x1")
    assert snap == kept
    snap["administratorIds"].append("y")
    snap["messages"].clear()
    assert thread.to_snapshot() == kept
    assert Thread.from_snapshot(kept) == thread


@pytest.mark.parametrize("schema", [None, 0, -1, 3, "1", True])
def test_unknown_snapshot_schema_is_refused(schema) -> None:
    snap = _sample_thread().to_snapshot()
    if schema is None:
        del snap["schema"]
    else:
        snap["schema"] = schema
    with pytest.raises(ValueError):
        Thread.from_snapshot(snap)
