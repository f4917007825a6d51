"""ShardMap: the handoff protocol, exclusivity of serving, rounds, JSON and validation."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadweaver.shards import (
    SHARDMAP_KEY,
    Handoff,
    Move,
    RangeSet,
    ShardMap,
    ShardMapError,
    ShardRange,
    assign,
)

FAST = settings(max_examples=100, deadline=None)
POOL = [f"pod-{i}" for i in range(16)]
member_sets = st.lists(st.sampled_from(POOL), min_size=1, max_size=10, unique=True)


def assert_serving_is_exclusive(m: ShardMap) -> None:
    """No shard is served by two members; a shard nobody serves is moving."""
    served = RangeSet()
    for member in m.assignments:
        mine = m.serving_ranges(member)
        assert served.isdisjoint(mine), f"{member} serves shards another member serves"
        served |= mine
    moving = m.handoff.ranges() if m.in_handoff else RangeSet()  # type: ignore[union-attr]
    assert served.isdisjoint(moving), "a moving range is served during the handoff"
    assert (served | moving) == RangeSet.full(m.shards) or not m.assignments


def test_initial_map() -> None:
    m = ShardMap.initial(1024, ["pod-1", "pod-0"])
    assert m.epoch == 1 and m.handoff is None and m.members == ("pod-0", "pod-1")
    assert m.owner_of(0) == "pod-0" and m.owner_of(1023) == "pod-1"
    assert (
        m.serving_ranges("pod-0") == RangeSet.parse("0-512")
        and m.serving_ranges("nobody") == RangeSet()
    )
    assert m.counts() == {"pod-0": 512, "pod-1": 512}
    assert SHARDMAP_KEY == "shardmap.json"
    with pytest.raises(ValueError):
        m.owner_of(1024)


def test_handoff_sequence() -> None:
    m1 = ShardMap.initial(1024, ["pod-0", "pod-1", "pod-2"])
    m2 = m1.rebalance(["pod-0", "pod-1", "pod-2", "pod-3"])
    assert m2.epoch == 2 and m2.in_handoff and m2.handoff is not None and m2.handoff.epoch == 2
    assert m2.handoff.losing_members() == {"pod-0", "pod-1", "pod-2"}
    # The newcomer is assigned its ranges but may not serve them yet; the losers lost them.
    assert not m2.assignments["pod-3"].is_empty() and m2.serving_ranges("pod-3").is_empty()
    assert m2.gaining("pod-3") == m2.assignments["pod-3"]
    lost = m2.losing("pod-0")
    assert not lost.is_empty() and lost.isdisjoint(m2.serving_ranges("pod-0"))
    shard = lost.ranges[0].start
    assert m2.owner_of(shard) == "pod-3" and m2.moving(shard) == Move(
        lost.ranges[0], "pod-0", "pod-3"
    )
    assert m2.moving(0) is None
    # Acks: live losers must ack epoch 2; a loser absent from the leases is gone.
    assert m2.pending_acks({"pod-0": 1, "pod-1": 2, "pod-3": 1}) == {"pod-0"}
    assert m2.pending_acks({"pod-0": 2, "pod-1": 2, "pod-2": 2}) == frozenset()
    with pytest.raises(ShardMapError, match="not complete"):
        m2.rebalance(["pod-0", "pod-1"])
    assert m2.rebalance(["pod-0", "pod-1", "pod-2", "pod-3"]) is m2  # nothing to change: fine
    m3 = m2.complete_handoff()
    assert m3.epoch == 2 and not m3.in_handoff and m3.complete_handoff() is m3
    assert m3.serving_ranges("pod-3") == m3.assignments["pod-3"] and m3.moving(shard) is None
    assert m3.losing("pod-0").is_empty() and m3.pending_acks({}) == frozenset()
    assert m3.rebalance(["pod-3", "pod-2", "pod-1", "pod-0"]) is m3


def test_rebalance_to_zero_members_and_back() -> None:
    m = ShardMap.initial(64, ["a"]).rebalance([])
    assert m.epoch == 2 and m.assignments == {} and m.handoff is None and m.owner_of(5) is None
    back = m.rebalance(["a", "b"])
    assert back.handoff is not None and {mv.source for mv in back.handoff.moves} == {None}
    assert back.pending_acks({}) == frozenset()  # nobody to wait for: complete at once


def test_member_set_change_without_moves_bumps_epoch_without_handoff() -> None:
    m = ShardMap.initial(2, ["a", "b"])
    m2 = m.rebalance(["a", "b", "c"])  # c holds nothing: 2 shards, 3 members
    assert m2.epoch == 2 and m2.handoff is None and m2.assignments["c"] == RangeSet()


def test_restart_requests() -> None:
    m = ShardMap.initial(1024, ["pod-0", "pod-1"])
    r = (
        m.request_restart("pod-0", ShardRange(0, 512))
        .request_restart("pod-0", "0-512")
        .request_restart("pod-1", "600-700")
    )
    assert r.epoch == m.epoch and r.restart_generations("pod-0") == {"0-512": 2}
    assert r.restart_generations("pod-9") == {}
    assert ShardMap.from_json(r.to_json()) == r
    with pytest.raises(ShardMapError, match="not a member"):
        m.request_restart("pod-9", "0-1")
    with pytest.raises(ShardMapError):
        m.request_restart("pod-0", "0-2048")
    with pytest.raises(ShardMapError):
        m.request_restart("pod-0", "nonsense")
    # Requests of a member that leaves are dropped; the others' generations survive.
    after = r.rebalance(["pod-0"])
    assert dict(after.restarts) == {"pod-0": {"0-512": 2}}


def test_addresses() -> None:
    m = ShardMap.initial(8, ["a", "b"], addresses={"a": "127.0.0.1:8081", "b": "[::1]:8082"})
    assert m.address_of("a") == "127.0.0.1:8081" and m.address_of("c") is None
    assert m.rebalance(["a"]).addresses == m.addresses
    with pytest.raises(ShardMapError, match="host:port"):
        m.with_addresses({"a": "localhost"})


def test_json_shape_is_stable() -> None:
    m = ShardMap.initial(4, ["a", "b"]).rebalance(["a", "b", "c"])
    assert m.to_json() == {
        "epoch": 2,
        "shards": 4,
        "assignments": {"a": [[0, 2]], "b": [[2, 3]], "c": [[3, 4]]},
        "handoff": {
            "epoch": 2,
            "moves": [{"range": [3, 4], "from": "b", "to": "c"}],
            "complete": False,
        },
        "restarts": {},
        "addresses": {},
    }
    assert ShardMap.from_json(m.dumps()) == m and ShardMap.from_json(m.dumps().encode()) == m
    assert json.loads(m.dumps()) == m.to_json()


def valid_doc() -> dict[str, Any]:
    return (
        ShardMap.initial(10, ["a", "b"])
        .rebalance(["a", "b", "c"])
        .request_restart("a", "0-3")
        .to_json()
    )


def mutate(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(valid_doc())
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["assignments", "b"], [[0, 6]], "owned by both"),
        (["assignments", "b"], [], "have no owner"),
        (["assignments", "b"], [[4, 11]], "exceeds"),
        (["assignments", "b"], [[5, 4]], "start < end"),
        (["assignments", "b"], "4-7", "list of"),
        (["assignments", "b"], [["4", 7]], "integers"),
        (["assignments"], [], "expected an object"),
        (["epoch"], "3", "expected an integer"),
        (["epoch"], -1, "epoch must be"),
        (["shards"], 0, "shards must be"),
        (["shards"], True, "expected an integer"),
        (["epoch"], KeyError, "missing 'epoch'"),
        (["colour"], "blue", "unknown fields"),
        (["handoff", "epoch"], 1, "does not match"),
        (["handoff", "complete"], "yes", "boolean"),
        (["handoff", "moves", 0, "to"], "b", "assignments disagree"),
        (["handoff", "moves", 0, "from"], 7, "expected a string"),
        (["handoff", "moves", 0, "range"], [0, 1], "assignments disagree"),
        (["handoff", "moves", 0, "extra"], 1, "exactly the fields"),
        (["handoff", "bogus"], 1, "unknown fields"),
        (["restarts", "a"], {"3-0": 1}, "restarts"),
        (["restarts", "a"], {"0-3": "1"}, "expected an integer"),
        (["restarts", "a"], {"0-03": 1}, "invalid range key"),
        (["addresses"], {"a": 8080}, "expected a string"),
    ],
)
def test_validation_errors_are_clear(path: list[Any], value: Any, message: str) -> None:
    with pytest.raises(ShardMapError, match=message):
        ShardMap.from_json(mutate(path, value))


def test_validation_of_documents() -> None:
    with pytest.raises(ShardMapError, match="not valid JSON"):
        ShardMap.from_json("{nope")
    with pytest.raises(ShardMapError, match="JSON object"):
        ShardMap.from_json("[]")
    with pytest.raises(ShardMapError, match="move more than once"):
        ShardMap(
            1,
            4,
            {"a": RangeSet.parse("0-4")},
            Handoff(1, (Move(ShardRange(0, 2), None, "a"), Move(ShardRange(1, 3), None, "a"))),
        )
    with pytest.raises(ShardMapError, match="to itself"):
        ShardMap(
            1, 4, {"a": RangeSet.parse("0-4")}, Handoff(1, (Move(ShardRange(0, 2), "a", "a"),))
        )
    # Optional fields may be absent or null.
    assert (
        ShardMap.from_json(
            {"epoch": 1, "shards": 4, "assignments": {"a": [[0, 4]]}, "restarts": None}
        ).handoff
        is None
    )


@FAST
@given(st.integers(1, 2048), st.lists(member_sets, min_size=1, max_size=5), st.data())
def test_protocol_keeps_serving_exclusive_and_round_trips(
    shards: int, steps: list[list[str]], data: st.DataObject
) -> None:
    m = ShardMap.initial(shards, steps[0])
    assert_serving_is_exclusive(m)
    for members in steps[1:]:
        k = data.draw(st.none() | st.integers(1, 3), label="max_ranges_per_round")
        nxt = m.rebalance(members, k)
        if nxt is m:
            continue
        assert nxt.epoch == m.epoch + 1
        assert_serving_is_exclusive(nxt)
        assert ShardMap.from_json(nxt.dumps()) == nxt
        # A new epoch never grants serving rights; only completion does.
        for member in nxt.assignments:
            assert nxt.serving_ranges(member).issubset(m.serving_ranges(member))
        if data.draw(st.booleans(), label="restart"):
            member = data.draw(st.sampled_from(sorted(nxt.assignments)), label="member")
            nxt = nxt.request_restart(member, ShardRange(0, shards))
            assert ShardMap.from_json(nxt.to_json()) == nxt
        done = nxt.complete_handoff()
        assert_serving_is_exclusive(done)
        assert ShardMap.from_json(done.dumps()) == done
        if nxt.handoff is not None:
            gained = RangeSet()
            for member in done.assignments:
                gained |= done.serving_ranges(member) - nxt.serving_ranges(member)
            assert gained == nxt.handoff.ranges(), "completion starts exactly the moving ranges"
        m = done


@FAST
@given(st.integers(1, 2048), member_sets, member_sets, st.integers(1, 3))
def test_rebalance_in_rounds_converges_with_one_shot_movement(
    shards: int, before: list[str], after: list[str], k: int
) -> None:
    m = ShardMap.initial(shards, before)
    one_shot = assign(shards, after, m.assignments)
    expected = sum(
        (rs - m.assignments.get(name, RangeSet())).count() for name, rs in one_shot.items()
    )
    moved = rounds = 0
    while (nxt := m.rebalance(after, k)) is not m:
        live = [
            mv for mv in (nxt.handoff.moves if nxt.handoff else ()) if mv.source in nxt.assignments
        ]
        assert len(live) <= k
        moved += sum(
            (rs - m.assignments.get(name, RangeSet())).count()
            for name, rs in nxt.assignments.items()
        )
        m = nxt.complete_handoff()
        rounds += 1
        assert rounds <= 200
    assert sorted(m.assignments) == sorted(after)
    counts = [rs.count() for rs in m.assignments.values()]
    assert max(counts) - min(counts) <= 1
    assert moved == expected
