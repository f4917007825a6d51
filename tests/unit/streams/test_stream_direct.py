"""A caught-up thread stream written to from its tail's broadcast (DirectWakeup), and the
cases that wake its task instead; the HTTP adapter's sink that writes one chunk."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace

from threadweaver.adapters.http.stream_wire import frame
from threadweaver.adapters.http.streams import DIRECT_WRITE_ROOM, _direct_sink
from threadweaver.application.read_your_writes import ReadYourWrites
from threadweaver.application.settings import StreamSettings
from threadweaver.application.stream_wakeup import DirectWakeup
from threadweaver.application.streams import (
    StreamHub,
    TailCursor,
    TailEvent,
    ThreadStream,
    ThreadTail,
)
from threadweaver.domain import new_ulid
from threadweaver.domain.events import AddedMessage, MemberIdsLeft, MessagesAdded

T, A, M = new_ulid(), new_ulid(), new_ulid()


class Visible:
    """A read model that shows the thread to `members`, and has applied everything."""

    def __init__(self) -> None:
        self.members = {A, M}

    async def get_thread(self, thread_id: str, account_id: str) -> object | None:
        return object() if account_id in self.members else None

    async def applied_seq(self, thread_id: str) -> int:
        return 1 << 40


class Sink:
    """Records what it was given; refuses while `full`."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.full = False

    def __call__(self, chunk: bytes) -> bool:
        if self.full:
            return False
        self.written.append(chunk)
        return True


def hub_over(read_model: Visible) -> StreamHub:
    """A hub whose streams need no journal (their tails are fed by the test)."""
    return StreamHub(
        None,  # type: ignore[arg-type]
        read_model,  # type: ignore[arg-type]
        ReadYourWrites(read_model, 1.0),  # type: ignore[arg-type]
        StreamSettings(stream_heartbeat=3600),
        frame,
    )


def posted(seq: int) -> TailEvent:
    event = MessagesAdded(T, A, seq, (AddedMessage(f"m{seq}", f"text {seq}", None, ()),))
    return TailEvent(seq, event, frame(seq, event))


def left(seq: int, account: str) -> TailEvent:
    event = MemberIdsLeft(T, A, seq, (account,))
    return TailEvent(seq, event, frame(seq, event), frozenset({account}))


async def parked(stream: ThreadStream) -> asyncio.Task[bytes]:
    """The stream's next chunk, asked for; returns once the stream waits, caught up."""
    task = asyncio.ensure_future(anext(stream.frames_iter))  # type: ignore[attr-defined]
    for _ in range(100):
        if stream.wakeup.parked:
            return task
        await asyncio.sleep(0)
    raise AssertionError("the stream did not park")


async def stop(task: asyncio.Task[bytes]) -> None:
    """Cancel the stream's wait (its generator ends, as when the client goes away)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def open_stream(hub: StreamHub, sink: Sink | None) -> tuple[ThreadTail, ThreadStream]:
    tail = ThreadTail(T, "pid", 0, buffer=4)
    stream = ThreadStream(hub, tail, M, 0, sink)
    stream.frames_iter = stream.frames()  # type: ignore[attr-defined]
    return tail, stream


async def test_a_caught_up_stream_is_written_to_without_waking_its_task():
    hub = hub_over(Visible())
    sink = Sink()
    tail, stream = open_stream(hub, sink)
    task = await parked(stream)
    tail.extend([posted(1)])
    tail.extend([posted(2), posted(3)])
    assert sink.written == [posted(1).frame, posted(2).frame + posted(3).frame]
    assert not stream.wakeup.event.is_set() and not task.done()
    assert stream.cursor.pos == 3 and hub.stats.delivered["thread"] == 3
    await stop(task)


async def test_a_refusing_sink_hands_the_events_to_the_task_in_order_exactly_once():
    hub = hub_over(Visible())
    sink = Sink()
    tail, stream = open_stream(hub, sink)
    task = await parked(stream)
    tail.extend([posted(1)])
    sink.full = True  # the connection's buffer is not nearly empty
    tail.extend([posted(2)])
    assert await task == posted(2).frame  # the task writes it (with its time-out)
    sink.full = False
    task = await parked(stream)  # caught up again
    tail.extend([posted(3)])
    assert sink.written == [posted(1).frame, posted(3).frame] and not task.done()
    assert stream.cursor.pos == 3 and hub.stats.delivered["thread"] == 3
    await stop(task)


async def test_an_event_that_may_remove_the_account_is_checked_on_the_task():
    read_model = Visible()
    hub = hub_over(read_model)
    sink = Sink()
    tail, stream = open_stream(hub, sink)
    task = await parked(stream)
    read_model.members.discard(M)
    tail.extend([posted(1), left(2, M)])
    assert sink.written == []
    assert await task == posted(1).frame + left(2, M).frame
    assert [c async for c in stream.frames_iter] == []  # type: ignore[attr-defined]
    assert stream.ended_by == "access"


async def test_another_accounts_removal_is_written_directly():
    hub = hub_over(Visible())
    sink = Sink()
    tail, stream = open_stream(hub, sink)
    task = await parked(stream)
    tail.extend([left(1, A)])
    assert sink.written == [left(1, A).frame] and not task.done()
    await stop(task)


def wakeup(hub: StreamHub, tail: ThreadTail, sink: Sink, *, live: bool = True) -> DirectWakeup:
    cursor = TailCursor(tail, tail.last_seq)
    cursor.live = live
    w = DirectWakeup(hub, cursor, M, "thread", float("inf"))
    w.sink, w.parked = sink, True
    return w


async def test_the_task_is_woken_when_not_parked_closing_expired_failing_or_not_live():
    hub = hub_over(Visible())
    cases = {
        "not parked": lambda w: setattr(w, "parked", False),
        "already woken": lambda w: w.event.set(),
        "expired": lambda w: setattr(w, "ends", 0.0),
        "not live": lambda w: setattr(w.cursor, "live", False),
        "no sink": lambda w: setattr(w, "sink", None),
    }
    for why, change in cases.items():
        tail = ThreadTail(T, "pid", 0, buffer=4)
        sink = Sink()
        w = wakeup(hub, tail, sink)
        change(w)
        tail.subscribers.add(w)
        tail.extend([posted(1)])
        assert sink.written == [] and w.event.is_set() and w.dirty == {tail}, why
        assert w.cursor.pos == 0, why
    tail = ThreadTail(T, "pid", 0, buffer=4)
    w = wakeup(hub, tail, sink := Sink())
    w.sink = lambda chunk: 1 / 0  # type: ignore[assignment,return-value]
    tail.subscribers.add(w)
    tail.extend([posted(1)])  # the broadcast (the append path) goes on
    assert w.event.is_set() and w.cursor.pos == 0, "failing sink"
    hub.closing.set()
    tail = ThreadTail(T, "pid", 0, buffer=4)
    w = wakeup(hub, tail, sink := Sink())
    tail.subscribers.add(w)
    tail.extend([posted(1)])
    assert sink.written == [] and w.event.is_set(), "closing"


async def test_a_cursor_the_tail_no_longer_covers_goes_to_the_task():
    hub = hub_over(Visible())
    tail = ThreadTail(T, "pid", 0, buffer=2)
    sink = Sink()
    w = wakeup(hub, tail, sink)
    tail.subscribers.add(w)
    tail.extend([posted(1), posted(2), posted(3)])  # one more than the tail remembers
    assert sink.written == [] and w.event.is_set() and w.cursor.pos == 0


class Transport:
    def __init__(self) -> None:
        self.data = b""
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered


def http_sink(chunked: bool = True) -> tuple[object, Transport, SimpleNamespace, SimpleNamespace]:
    transport = Transport()
    protocol = SimpleNamespace(writing_paused=False)
    request = SimpleNamespace(transport=transport, protocol=protocol)
    response = SimpleNamespace(chunked=chunked, prepared=True)
    return _direct_sink(request, response), transport, protocol, response  # type: ignore[arg-type]


def test_the_http_sink_writes_one_chunk_into_a_nearly_empty_buffer():
    sink, transport, protocol, response = http_sink()
    assert sink(b"id: 1\ndata: {}\n\n")  # type: ignore[operator]
    assert transport.data == b"10\r\nid: 1\ndata: {}\n\n\r\n"
    transport.buffered = DIRECT_WRITE_ROOM - 3
    assert not sink(b"four")  # type: ignore[operator]
    transport.buffered = 0
    protocol.writing_paused = True
    assert not sink(b"x")  # type: ignore[operator]
    protocol.writing_paused = False
    transport.closing = True
    assert not sink(b"x")  # type: ignore[operator]
    transport.closing = False
    response.prepared = False
    assert not sink(b"x")  # type: ignore[operator]
    assert transport.data == b"10\r\nid: 1\ndata: {}\n\n\r\n"


def test_no_http_sink_for_a_response_that_is_not_chunked():
    sink, *_ = http_sink(chunked=False)
    assert sink is None
