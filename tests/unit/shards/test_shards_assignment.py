"""assign / plan_moves / limit_moves: balance, exclusivity, provably minimal movement, rounds."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadweaver.shards import (
    Move,
    RangeSet,
    ShardRange,
    assign,
    limit_moves,
    plan_moves,
    target_counts,
)

FAST = settings(max_examples=120, deadline=None)
POOL = [f"pod-{i}" for i in range(40)]

shard_counts = st.one_of(st.integers(1, 64), st.integers(1, 4096), st.sampled_from([1024, 4096]))
member_sets = st.lists(st.sampled_from(POOL), min_size=1, max_size=24, unique=True)
scale_sequences = st.lists(member_sets, min_size=1, max_size=6)


def assert_exclusive_cover(shards: int, assignment: Mapping[str, RangeSet]) -> None:
    """Every shard has exactly one owner."""
    seen = RangeSet()
    for ranges in assignment.values():
        assert seen.isdisjoint(ranges), "a shard has two owners"
        seen = seen | ranges
    assert seen == RangeSet.full(shards), "a shard has no owner"


def assert_partition(shards: int, assignment: Mapping[str, RangeSet]) -> None:
    """Every shard exactly one owner; counts within one of each other."""
    assert_exclusive_cover(shards, assignment)
    counts = [rs.count() for rs in assignment.values()]
    assert max(counts) - min(counts) <= 1


def minimal_movement(shards: int, members: list[str], current: Mapping[str, RangeSet]) -> int:
    """Lower bound on shards that must change owner for any balanced assignment.

    Each member can keep at most min(held, its count); with q = S // n and r = S % n, exactly r
    members may hold q + 1 and that extra keeps one more shard only for a member holding
    > q. Shards of removed members and unowned shards always move."""
    n = len(members)
    q, r = divmod(shards, n)
    held = [current.get(m, RangeSet()).count() for m in members]
    keepable = sum(min(h, q) for h in held) + min(r, sum(1 for h in held if h > q))
    return shards - keepable


def moved_shards(current: Mapping[str, RangeSet], new: Mapping[str, RangeSet]) -> int:
    return sum((rs - current.get(m, RangeSet())).count() for m, rs in new.items())


def apply(current: Mapping[str, RangeSet], moves: list[Move]) -> dict[str, RangeSet]:
    out = dict(current)
    for mv in moves:
        one = RangeSet((mv.range,))
        if mv.source is not None:
            assert one.issubset(out[mv.source]), f"{mv} moves shards its source does not hold"
            out[mv.source] = out[mv.source] - one
        out[mv.target] = out.get(mv.target, RangeSet()) | one
    return {m: rs for m, rs in out.items() if not rs.is_empty()}


def nonempty(assignment: Mapping[str, RangeSet]) -> dict[str, RangeSet]:
    return {m: rs for m, rs in assignment.items() if not rs.is_empty()}


def test_initial_assignment_is_contiguous_blocks_in_name_order() -> None:
    a = assign(1024, ["pod-2", "pod-0", "pod-1"])
    assert list(a) == ["pod-0", "pod-1", "pod-2"]
    assert {m: str(rs) for m, rs in a.items()} == {
        "pod-0": "0-342",
        "pod-1": "342-683",
        "pod-2": "683-1024",
    }
    assert assign(1024, ["a"]) == {"a": RangeSet.full(1024)}
    assert assign(1024, []) == {}


def test_more_members_than_shards() -> None:
    a = assign(3, ["a", "b", "c", "d", "e"])
    assert [rs.count() for rs in a.values()] == [1, 1, 1, 0, 0]
    b = assign(3, ["a", "b", "c", "d", "e", "f"], a)
    assert b["a"] == a["a"] and b["b"] == a["b"] and b["c"] == a["c"]


def test_scale_up_moves_only_surplus_and_stays_contiguous() -> None:
    cur = assign(1024, ["pod-0", "pod-1", "pod-2"])
    new = assign(1024, ["pod-0", "pod-1", "pod-2", "pod-3"], cur)
    assert_partition(1024, new)
    assert moved_shards(cur, new) == 256
    for m in ("pod-0", "pod-1", "pod-2"):
        assert new[m].issubset(cur[m]) and len(new[m]) == 1
    assert len(new["pod-3"]) <= 3
    moves = plan_moves(cur, new)
    assert all(mv.target == "pod-3" for mv in moves)
    assert apply(cur, moves) == nonempty(new)


def test_scale_down_gives_removed_shards_to_adjacent_members_first() -> None:
    cur = assign(1024, ["a", "b", "c", "d"])
    new = assign(1024, ["a", "b", "d"], cur)
    assert_partition(1024, new)
    assert moved_shards(cur, new) == 256
    # b and d border c's block and absorb its edges; a gets the middle.
    assert (
        str(new["b"]) == "256-597"
        and str(new["d"]) == "683-1024"
        and str(new["a"]) == "0-256,597-683"
    )
    assert {(mv.source, mv.target) for mv in plan_moves(cur, new)} == {
        ("c", "a"),
        ("c", "b"),
        ("c", "d"),
    }


def test_extra_shard_goes_to_members_holding_more() -> None:
    # 10 shards over 3 members: one of them keeps 4. It must be the one already holding most.
    cur = {"a": RangeSet.parse("0-3"), "b": RangeSet.parse("3-4"), "c": RangeSet.parse("4-10")}
    assert target_counts(10, ["a", "b", "c"], cur) == {"a": 3, "b": 3, "c": 4}
    new = assign(10, ["a", "b", "c"], cur)
    assert moved_shards(cur, new) == 2 and new["a"] == cur["a"]


def test_assign_is_deterministic_and_idempotent() -> None:
    cur = assign(4096, [f"p{i}" for i in range(7)])
    new = assign(4096, [f"p{i}" for i in range(2, 11)], cur)
    assert new == assign(
        4096, list(reversed([f"p{i}" for i in range(2, 11)])), dict(reversed(list(cur.items())))
    )
    assert assign(4096, list(new), new) == new


def test_assign_tolerates_overlapping_or_oversized_current() -> None:
    # Not a valid map, but assign must still produce one: overlaps go to the first name.
    new = assign(10, ["a", "b"], {"a": RangeSet.parse("0-6"), "b": RangeSet.parse("4-12")})
    assert {m: str(rs) for m, rs in new.items()} == {"a": "0-5", "b": "5-10"}


def test_assign_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        assign(0, ["a"])
    with pytest.raises(ValueError):
        assign(10, ["a", ""])


def test_plan_moves_reports_unowned_and_merges_ranges() -> None:
    cur = {"a": RangeSet.parse("0-5")}
    tgt = {"a": RangeSet.parse("0-2"), "b": RangeSet.parse("2-10")}
    assert plan_moves(cur, tgt) == [
        Move(ShardRange(2, 5), "a", "b"),
        Move(ShardRange(5, 10), None, "b"),
    ]
    with pytest.raises(ValueError, match="both"):
        plan_moves({"a": RangeSet.parse("0-5"), "b": RangeSet.parse("4-6")}, tgt)


def test_limit_moves_applies_mandatory_moves_first_and_caps_the_rest() -> None:
    cur = {
        "a": RangeSet.parse("0-10"),
        "b": RangeSet.parse("10-20"),
        "gone": RangeSet.parse("20-30"),
    }
    tgt = assign(30, ["a", "b", "c"], cur)
    step = limit_moves(cur, tgt, 1)
    assert "gone" not in step and set(step) == {"a", "b", "c"}
    assert_exclusive_cover(30, step)
    assert cur["gone"].issubset(step["c"])
    live_moves = [mv for mv in plan_moves(cur, step) if mv.source in tgt]
    assert len(live_moves) <= 1
    with pytest.raises(ValueError):
        limit_moves(cur, tgt, 0)


@FAST
@given(shard_counts, scale_sequences)
def test_scaling_keeps_a_balanced_partition_with_minimal_movement(
    shards: int, steps: list[list[str]]
) -> None:
    current: dict[str, RangeSet] = {}
    for members in steps:
        new = assign(shards, members, current)
        assert list(new) == sorted(members)
        assert_partition(shards, new)
        assert new == assign(shards, members, current), "deterministic"
        counts = target_counts(shards, members, current)
        assert {m: rs.count() for m, rs in new.items()} == counts
        if current:
            assert moved_shards(current, new) == minimal_movement(shards, sorted(members), current)
        # Shards leave only members above target (or gone/nobody) and reach only members below.
        for mv in plan_moves(current, new):
            if mv.source in new:
                assert current[mv.source].count() > counts[mv.source]
            held = current.get(mv.target, RangeSet()).count() if mv.target in current else 0
            assert held < counts[mv.target]
        assert apply(current, plan_moves(current, new)) == nonempty(new)
        current = new


@FAST
@given(shard_counts, scale_sequences, member_sets, st.integers(1, 4))
def test_limit_moves_converges_in_rounds(
    shards: int, history: list[list[str]], members: list[str], k: int
) -> None:
    current: dict[str, RangeSet] = {}
    for step in history:
        current = assign(shards, step, current)
    target = assign(shards, members, current)
    live = [mv for mv in plan_moves(current, target) if mv.source in target]
    start = current
    rounds = total = 0
    while current != target:
        nxt = limit_moves(current, target, k)
        assert_exclusive_cover(shards, nxt)
        assert len([mv for mv in plan_moves(current, nxt) if mv.source in target]) <= k
        for m in target:  # counts only ever move toward the target
            before, after, goal = (a.get(m, RangeSet()).count() for a in (current, nxt, target))
            assert min(before, goal) <= after <= max(before, goal)
        total += moved_shards(current, nxt)
        current = nxt
        rounds += 1
    # Every round but the last uses the whole budget: ceil(live / k) rounds (one if only
    # mandatory moves), and the total movement is the one-shot movement.
    assert rounds == (max(1, math.ceil(len(live) / k)) if start != target else 0)
    assert total == moved_shards(start, target)


@settings(max_examples=40, deadline=None)
@given(st.integers(64, 65536), st.integers(1, 30))
def test_fragmentation_stays_low_when_adding_one_member_at_a_time(shards: int, n: int) -> None:
    """Minimal movement forces a newcomer to take shards from every donor; neighbours release
    touching ends so pieces pair up. Bound: a member never holds more than n ranges."""
    members: list[str] = []
    current: dict[str, RangeSet] = {}
    for i in range(n):
        members.append(f"m{i:02d}")
        current = assign(shards, members, current)
        assert max(len(rs) for rs in current.values()) <= max(1, i)
