import asyncio

import pytest

from tests.support.waiting import eventually
from threadweaver.adapters.http.deadlines import Deadlines


class Late(Exception):
    pass


async def test_a_request_past_its_deadline_raises_the_expiry_error_not_a_cancellation():
    deadlines = Deadlines(0.05, Late, resolution=0.01)
    with pytest.raises(Late):
        await deadlines.run(asyncio.sleep(5))
    assert asyncio.current_task().cancelling() == 0  # the cancel request was undone
    await asyncio.sleep(0)  # and the task is not cancelled later
    assert deadlines._sweep is None and not deadlines._waiting and not deadlines._expired


async def test_a_request_in_time_is_untouched_and_the_sweep_stops():
    deadlines = Deadlines(0.2, Late, resolution=0.01)
    assert await deadlines.run(asyncio.sleep(0.02, result="done")) == "done"
    assert deadlines._sweep is not None  # still armed: it stops at its next tick
    await eventually(lambda: deadlines._sweep is None, what="the sweep to stop once idle")


async def test_only_the_late_requests_are_cancelled():
    deadlines = Deadlines(0.1, Late, resolution=0.01)
    early = asyncio.create_task(deadlines.run(asyncio.sleep(1)))
    await asyncio.sleep(0.06)  # this test is about time passing: `later` starts 60 ms after
    later = asyncio.create_task(deadlines.run(asyncio.sleep(0.08, result="in time")))
    with pytest.raises(Late):
        await early
    assert await later == "in time"


async def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    deadlines = Deadlines(5, Late, resolution=0.01)
    task = asyncio.create_task(deadlines.run(asyncio.sleep(1)))
    await eventually(
        lambda: task in deadlines._waiting, what="the request to be tracked", interval=0
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadlines._waiting


async def test_errors_of_the_request_pass_through():
    deadlines = Deadlines(5, Late)

    async def fail():
        raise TimeoutError("a socket's own time-out")

    with pytest.raises(TimeoutError):
        await deadlines.run(fail())
