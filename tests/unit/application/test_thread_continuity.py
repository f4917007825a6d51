"""The bookkeeping of a read-model updater (pure): per-thread continuity (what passes to the read
model, what is held behind a gap, when a gap is repaired) and the shard reads it owes."""

from __future__ import annotations

import pytest

from threadweaver.application.ports import StoredEvent
from threadweaver.application.shard_reads import ShardReads
from threadweaver.application.thread_continuity import Continuity


def ev(pid: str, seq: int, offset: int, shard: int = 0) -> StoredEvent:
    return StoredEvent(pid, seq, shard, "T", {}, offset, offset)


def keys(events):
    return [(e.pid, e.seq) for e in events]


# ---------------------------------------------------------------------------------------------
# Continuity
# ---------------------------------------------------------------------------------------------


def test_unknown_threads_pass_and_their_seq_is_learnt_from_the_result():
    c = Continuity()
    batch = c.admit([ev("b", 4, 20), ev("a", 1, 10), ev("a", 2, 11)], now=0)
    assert keys(batch) == [("a", 1), ("a", 2), ("b", 4)]  # the journal's order
    assert c.applied(batch, stalled=(), gaps={}, now=0) == []
    assert c.known_seq("a") == 2 and c.known_seq("b") == 4
    # what was applied is dropped when it comes again; the next event passes
    assert keys(c.admit([ev("a", 2, 11), ev("a", 3, 12)], now=0)) == [("a", 3)]


def test_events_behind_a_gap_are_held_until_the_missing_one_comes():
    c = Continuity(repair_after=0.1)
    c.applied(c.admit([ev("a", 1, 10)], now=0), (), {}, now=0)
    assert c.admit([ev("a", 3, 30), ev("a", 4, 31), ev("b", 1, 32)], now=1.0) == [ev("b", 1, 32)]
    assert c.held == 2 and c.held_floors() == {0: 30}
    assert c.due_repairs(now=1.05, limit=10) == []  # the missing event may still come by itself
    assert c.next_repair() == 1.1
    # it comes: the held run follows it, in order
    assert keys(c.admit([ev("a", 2, 12)], now=1.06)) == [("a", 2), ("a", 3), ("a", 4)]
    assert c.held == 0 and c.next_repair() is None and c.held_floors() == {}


def test_a_gap_is_repaired_from_its_first_missing_seq_then_backs_off():
    c = Continuity(repair_after=0.1, max_repair_delay=1.0)
    c.applied(c.admit([ev("a", 1, 10), ev("a", 2, 11)], now=0), (), {}, now=0)
    c.admit([ev("a", 5, 50)], now=0)
    assert c.due_repairs(now=0.1, limit=10) == [("a", 3)]
    assert c.due_repairs(now=0.1, limit=10) == []  # due again later, not in a loop
    assert 0.1 < c.next_repair() <= 1.1
    assert c.due_repairs(now=5, limit=10) == [("a", 3)]
    assert c.next_repair() == pytest.approx(5.4)  # 0.1 * 2**2: backing off
    c.due_repairs(now=9, limit=10)
    c.due_repairs(now=20, limit=10)
    assert c.next_repair() == 21.0  # up to max_repair_delay
    # the repair read brings the missing events (and the held one again)
    batch = c.admit([ev("a", 3, 30), ev("a", 4, 31), ev("a", 5, 50)], now=21)
    assert keys(batch) == [("a", 3), ("a", 4), ("a", 5)]
    assert c.next_repair() is None and c.repairs == 4


def test_a_gap_the_read_model_reports_holds_the_thread_and_passes_the_shard_again():
    c = Continuity()
    batch = c.admit([ev("a", 7, 10), ev("b", 1, 11), ev("c", 1, 12, shard=1)], now=0)
    # the read model's row of a is at 5: a#7 stalled shard 0; b#1 was not reached
    again = c.applied(batch, stalled={0}, gaps={"a": 5}, now=0)
    assert keys(again) == [("b", 1)]
    assert c.known_seq("a") == 5 and c.known_seq("c") == 1 and c.known_seq("b") is None
    assert c.held == 1 and c.due_repairs(now=1, limit=10) == [("a", 6)]


def test_the_known_threads_are_bounded_but_a_held_thread_is_kept():
    c = Continuity(capacity=3)
    c.applied(c.admit([ev("h", 1, 1)], now=0), (), {}, now=0)
    c.admit([ev("h", 3, 3)], now=0)  # h is behind a gap
    for i in range(10):
        c.applied(c.admit([ev(f"t{i}", 1, 10 + i)], now=0), (), {}, now=0)
    assert c.known_seq("h") == 1 and c.known_seq("t9") == 1 and c.known_seq("t0") is None


# ---------------------------------------------------------------------------------------------
# ShardReads
# ---------------------------------------------------------------------------------------------


def test_a_shard_owed_twice_is_read_from_the_lower_offset():
    r = ShardReads()
    r.owe(3, 50)
    r.owe(3, 20)
    r.owe(4, 10)
    assert r.chunk(10) == {3: 20, 4: 10}
    assert r.chunk(1) == {3: 20}


def test_a_read_settles_its_shards_only_when_it_returns_nothing():
    r = ShardReads()
    r.owe(1, 0)
    r.owe(2, 0)
    chunk = r.chunk(10)
    # a short result may still be cut: shard 1 has events at the last offset (20), shard 2 not
    r.advance(chunk, [ev("a", 1, 10, shard=1), ev("b", 1, 20, shard=1)])
    assert r.chunk(10) == {1: 20, 2: 19}
    r.advance(r.chunk(10), [])
    assert not r and len(r) == 0


def test_a_shard_owed_again_during_a_read_keeps_the_lower_offset():
    r = ShardReads()
    r.owe(1, 100)
    chunk = r.chunk(10)
    r.owe(1, 5)  # e.g. a notice of an older event while the read ran
    r.advance(chunk, [])
    assert r.chunk(10) == {1: 5}


def test_later_reads_are_owed_when_due():
    r = ShardReads()
    r.owe_later(2.0, 7, 30)
    r.owe_later(1.0, 8, 40)
    assert not r and r.next_due() == 1.0
    r.promote(1.5)
    assert r.chunk(10) == {8: 40} and r.next_due() == 2.0
    r.promote(3)
    assert 7 in r and r.next_due() is None
