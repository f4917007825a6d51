"""ShardRange / RangeSet: examples plus properties against a plain-set model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadweaver.shards import DEFAULT_SHARDS, RangeSet, ShardRange, shard_of

FAST = settings(max_examples=150, deadline=None)


def test_shard_of_is_crc32_mod_shards() -> None:
    import zlib

    pid = "thread-01HZX3J7Q9V1T2A8B4C5D6E7F8"
    assert shard_of(pid, DEFAULT_SHARDS) == zlib.crc32(pid.encode()) % 1024
    assert shard_of("thread-é", 7) == zlib.crc32("thread-é".encode()) % 7
    assert shard_of("anything", 1) == 0
    with pytest.raises(ValueError):
        shard_of("x", 0)


@pytest.mark.parametrize("bounds", [(-1, 3), (3, 3), (4, 3), (1.0, 2), (True, 2)])
def test_shard_range_rejects_invalid_bounds(bounds: tuple[object, object]) -> None:
    with pytest.raises(ValueError):
        ShardRange(*bounds)  # type: ignore[arg-type]


def test_shard_range_basics() -> None:
    r = ShardRange(3, 7)
    assert len(r) == 4 and 3 in r and 6 in r and 7 not in r and "3" not in r
    assert str(r) == "3-7" and ShardRange.parse("3-7") == r and ShardRange.from_json([3, 7]) == r
    assert list(r.shards()) == [3, 4, 5, 6]
    for bad in ("3", "7-3", "a-b", "", "3-3"):
        with pytest.raises(ValueError):
            ShardRange.parse(bad)


def test_range_set_normalizes_and_formats() -> None:
    rs = RangeSet.from_ranges([(700, 800), (0, 100), (100, 341), (750, 760)])
    assert rs.to_json() == [[0, 341], [700, 800]]
    assert str(rs) == "0-341,700-800" and RangeSet.parse("0-341,700-800") == rs
    assert len(rs) == 2 and rs.count() == 441
    assert 340 in rs and 341 not in rs and 699 not in rs and 700 in rs and -1 not in rs
    assert RangeSet.from_json([[700, 800], [0, 341]]) == rs and hash(
        RangeSet.from_json(rs.to_json())
    ) == hash(rs)
    assert RangeSet.parse("") == RangeSet() and RangeSet().is_empty() and not RangeSet()
    assert RangeSet.full(1024).to_json() == [[0, 1024]]
    assert rs.first(342).to_json() == [[0, 341], [700, 701]] and rs.last(101).to_json() == [
        [340, 341],
        [700, 800],
    ]
    assert rs.range_of(720) == ShardRange(700, 800) and rs.range_of(500) is None


def test_range_set_algebra_examples() -> None:
    a = RangeSet.parse("0-10,20-30")
    b = RangeSet.parse("5-25")
    assert str(a | b) == "0-30"
    assert str(a & b) == "5-10,20-25"
    assert str(a - b) == "0-5,25-30"
    assert str(b - a) == "10-20"
    assert str(RangeSet.full(65536) - RangeSet.parse("1-65535")) == "0-1,65535-65536"


@pytest.mark.parametrize("bad", ["x", [[1]], [[2, 1]], [[0, "1"]], [(0, 1, 2)], {"0": 1}])
def test_range_set_from_json_rejects_malformed(bad: object) -> None:
    with pytest.raises(ValueError):
        RangeSet.from_json(bad)


def test_full_rejects_non_positive() -> None:
    with pytest.raises(ValueError):
        RangeSet.full(0)


SHARDS = 300
pairs = st.tuples(st.integers(0, SHARDS - 1), st.integers(1, 40)).map(
    lambda t: (t[0], min(SHARDS, t[0] + t[1]))
)
range_sets = st.lists(pairs, max_size=8).map(RangeSet.from_ranges)


def model(rs: RangeSet) -> set[int]:
    return set(rs.shards())


def well_formed(rs: RangeSet) -> bool:
    return all(a.end < b.start for a, b in zip(rs.ranges, rs.ranges[1:]))


@FAST
@given(range_sets, range_sets)
def test_set_operations_match_the_set_model(a: RangeSet, b: RangeSet) -> None:
    for result, expected in (
        (a | b, model(a) | model(b)),
        (a & b, model(a) & model(b)),
        (a - b, model(a) - model(b)),
    ):
        assert well_formed(result)
        assert model(result) == expected
        assert result.count() == len(expected)
    assert a.isdisjoint(b) == model(a).isdisjoint(model(b))
    assert a.issubset(b) == (model(a) <= model(b))
    assert all((s in a) == (s in model(a)) for s in range(-1, SHARDS + 1))


@FAST
@given(range_sets)
def test_text_and_json_round_trip(a: RangeSet) -> None:
    assert RangeSet.parse(str(a)) == a
    assert RangeSet.from_json(a.to_json()) == a
    assert RangeSet.from_ranges(reversed(list(a))) == a
