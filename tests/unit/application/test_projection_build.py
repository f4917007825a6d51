"""The projection build of `threadweaver project` (application/projection_build.py) against the
real SQLite journal and read model: everything once, resumed from the checkpoints, a gap
repaired without the checkpoint passing it, passes until caught up; and its pure progress
figures."""

import asyncio
from dataclasses import replace

import pytest

from tests.support.journal_fill import append_messages, fill_journal, read_model_rows
from threadweaver.adapters.journal.sqlite import SqliteJournal
from threadweaver.adapters.readmodel import ReadModelSettings, SqlReadModel
from threadweaver.application.ports import JournalError
from threadweaver.application.projection_build import (
    BuildError,
    BuildProgress,
    BuildSettings,
    ProjectionBuild,
    estimate_eta,
)
from threadweaver.application.projector import PROJECTION

SHARDS = 16


@pytest.fixture
async def stores(tmp_path):
    j = SqliteJournal(tmp_path / "j.db", shards=SHARDS, synchronous="off")
    rm = SqlReadModel(ReadModelSettings.sqlite(tmp_path / "rm.db"))
    await j.start()
    await rm.migrate()
    yield j, rm, f"sqlite+aiosqlite:///{tmp_path / 'rm.db'}"
    await j.close()
    await rm.close()


def small(**kw):
    return BuildSettings(**{"batch_size": 7, "page_size": 5, "until_lag": 0.0, **kw})


async def test_builds_every_event_once(stores):
    j, rm, url = stores
    filled = await fill_journal(j, 12, 9, per_append=2)
    build = ProjectionBuild(j, rm, range(SHARDS), small())
    progress = await build.run()
    assert progress.applied == filled.events
    assert progress.skipped == 0
    assert progress.done and progress.lag_seconds == 0.0
    assert progress.passes == 2  # the second one found nothing new
    assert await read_model_rows(url) == filled.rows()
    offsets = await rm.load_offsets(PROJECTION, 0, SHARDS)
    assert offsets == progress.checkpoints and offsets


async def test_a_second_build_resumes_from_the_checkpoints(stores):
    j, rm, url = stores
    filled = await fill_journal(j, 10, 6)
    await ProjectionBuild(j, rm, range(SHARDS), small()).run()
    await append_messages(j, filled, 15)
    again = await ProjectionBuild(j, rm, range(SHARDS), small()).run()
    assert again.resumed
    assert again.applied == 15 and again.skipped == 0  # read from the checkpoints, not from 0
    assert await read_model_rows(url) == filled.rows()


async def test_a_build_interrupted_mid_batch_resumes_without_loss(stores):
    j, rm, url = stores
    filled = await fill_journal(j, 10, 8)

    class Failing:
        """The read model, failing its third transaction (a kill between two batches)."""

        def __init__(self) -> None:
            self.calls = 0

        def __getattr__(self, name):
            return getattr(rm, name)

        async def apply(self, projection, events):
            self.calls += 1
            if self.calls == 3:
                raise ConnectionError("gone")
            return await rm.apply(projection, events)

    with pytest.raises(ConnectionError):
        await ProjectionBuild(j, Failing(), range(SHARDS), small()).run()
    resumed = await ProjectionBuild(j, rm, range(SHARDS), small()).run()
    assert resumed.resumed and 0 < resumed.applied < filled.events
    assert await read_model_rows(url) == filled.rows()


async def test_a_shard_subset_builds_only_its_shards(stores):
    j, rm, url = stores
    filled = await fill_journal(j, 20, 3)
    progress = await ProjectionBuild(j, rm, range(0, 8), small()).run()
    offsets = await rm.load_offsets(PROJECTION, 0, SHARDS)
    assert offsets and max(offsets) < 8
    rows = await read_model_rows(url)
    assert rows["thread"] < filled.rows()["thread"]
    assert progress.applied == sum(filled.seq[tid] for tid, _ in rows["thread"])
    await ProjectionBuild(j, rm, range(8, SHARDS), small()).run()
    assert await read_model_rows(url) == filled.rows()


class HidingJournal:
    """The journal whose shard reads do not show some events yet (an eventually consistent
    index, or offsets from several clocks ordering a thread's events out of sequence); reads by
    thread (strongly consistent) show them."""

    def __init__(self, inner, hidden):
        self.inner = inner
        self.hidden = hidden
        self.reads_by_thread = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def read_shard_set(self, shards, after, limit):
        got = await self.inner.read_shard_set(shards, after, limit)
        return [e for e in got if (e.pid, e.seq) not in self.hidden]

    async def read(self, pid, from_seq=1):
        self.reads_by_thread += 1
        return await self.inner.read(pid, from_seq)


async def test_a_gap_is_repaired_by_reading_the_thread_and_nothing_is_lost(stores):
    j, rm, url = stores
    filled = await fill_journal(j, 6, 10)
    pid = f"thread-{sorted(filled.seq)[0]}"
    hiding = HidingJournal(j, {(pid, 4), (pid, 5)})
    progress = await ProjectionBuild(hiding, rm, range(SHARDS), small()).run()
    assert hiding.reads_by_thread >= 1 and progress.repairs >= 1
    assert await read_model_rows(url) == filled.rows()
    # the checkpoints are the journal's: a resumed build applies nothing more
    again = await ProjectionBuild(j, rm, range(SHARDS), small()).run()
    assert again.applied == 0


async def test_an_event_missing_from_the_journal_stops_the_build_with_its_thread(stores):
    j, rm, _ = stores
    filled = await fill_journal(j, 3, 6)
    pid = f"thread-{sorted(filled.seq)[0]}"

    class Lost(HidingJournal):
        async def read(self, pid_, from_seq=1):
            return [e for e in await self.inner.read(pid_, from_seq) if (e.pid, e.seq) != (pid, 3)]

    with pytest.raises(BuildError, match="event 3 is not in the journal"):
        await ProjectionBuild(Lost(j, {(pid, 3)}), rm, range(SHARDS), small()).run()


async def test_a_journal_failing_part_way_fails_the_build_instead_of_hanging_it(stores):
    j, rm, _ = stores
    await fill_journal(j, 10, 5)
    reads = 0

    class Failing(HidingJournal):
        async def read_shard_set(self, shards, after, limit):
            nonlocal reads
            reads += 1
            if reads == 4:
                raise JournalError("the journal went away")
            return await self.inner.read_shard_set(shards, after, limit)

    with pytest.raises(JournalError, match="went away"):
        await asyncio.wait_for(
            ProjectionBuild(Failing(j, set()), rm, range(SHARDS), small()).run(), 30
        )


async def test_an_event_that_cannot_be_decoded_stops_the_build_naming_it(stores):
    j, rm, _ = stores
    await fill_journal(j, 3, 3)

    class Bogus(HidingJournal):
        async def read_shard_set(self, shards, after, limit):
            got = await self.inner.read_shard_set(shards, after, limit)
            return [replace(e, type="NoSuchEvent") if e.seq == 2 else e for e in got]

    with pytest.raises(BuildError, match=r"cannot be decoded.*NoSuchEvent"):
        await ProjectionBuild(Bogus(j, set()), rm, range(SHARDS), small()).run()


async def test_passes_go_on_while_new_events_arrive_until_within_the_lag(stores):
    j, rm, url = stores
    filled = await fill_journal(j, 8, 4)
    appended_in: set[int] = set()

    class Appending(HidingJournal):
        async def read_shard_set(self, shards, after, limit):
            p = build.progress
            if p.passes in (1, 2) and p.passes not in appended_in and p.shards_done == SHARDS - 1:
                appended_in.add(p.passes)  # another writer, while the last shard is read
                await append_messages(self.inner, filled, len(filled.seq))
            return await self.inner.read_shard_set(shards, after, limit)

    build = ProjectionBuild(Appending(j, set()), rm, range(SHARDS), small())
    progress = await build.run()
    assert appended_in == {1, 2}
    assert progress.passes == 4 and progress.lag_seconds == 0.0
    assert progress.applied == filled.events
    assert await read_model_rows(url) == filled.rows()


async def test_until_lag_accepts_a_short_last_pass(stores):
    j, rm, _ = stores
    await fill_journal(j, 5, 3)
    times = iter(range(0, 10_000, 1))
    build = ProjectionBuild(
        j, rm, range(SHARDS), small(until_lag=1000.0), clock=lambda: float(next(times))
    )
    progress = await build.run()
    assert progress.passes == 1 and 0 < progress.lag_seconds <= 1000.0


# -- progress figures (pure) ---------------------------------------------------------------------


def test_the_eta_extrapolates_the_pace_and_is_unknown_at_the_start():
    assert estimate_eta(0.0, 10.0) is None
    assert estimate_eta(0.5, 0.0) is None
    assert estimate_eta(0.25, 10.0) == pytest.approx(30.0)
    assert estimate_eta(1.0, 10.0) == 0.0


def test_the_pass_fraction_counts_whole_shards_and_the_history_of_the_current_one():
    p = BuildProgress(shards=4, started_at=0.0, pass_started_at=1000.0, shards_done=1)
    assert p.pass_fraction(1000.0) == pytest.approx(0.25)
    p.shard_first_ts, p.shard_latest_ts = 800.0, 900.0  # half of the shard's history read
    assert p.pass_fraction(1000.0) == pytest.approx((1 + 0.5) / 4)
    p.shards_done = 4
    assert p.pass_fraction(1000.0) == 1.0
    assert BuildProgress(shards=0, started_at=0.0).pass_fraction(1.0) == 1.0


def test_the_rate_counts_applied_and_skipped_events():
    p = BuildProgress(shards=1, started_at=10.0, applied=300, skipped=100)
    assert p.events_per_second(14.0) == pytest.approx(100.0)
    assert p.events_per_second(10.0) == 0.0
    p.done = True
    assert p.eta_seconds(20.0) == 0.0
