"""A StreamHub for the HTTP adapter's tests over the fakes: a journal of the events the
FakeGateway's commands caused (in memory), and a read model that applied everything."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from tests.unit.http_adapter.fakes import FakeGateway, FakeQueries
from threadweaver.adapters.http.stream_wire import frame
from threadweaver.application import event_mapper
from threadweaver.application.ports import Changes, StoredEvent
from threadweaver.application.read_your_writes import ReadYourWrites
from threadweaver.application.settings import StreamSettings
from threadweaver.application.streams import StreamHub
from threadweaver.domain import Command, Event, thread_persistence_id


class MemoryJournal:
    """The part of the Journal port a StreamHub uses, in memory."""

    shards = 1024
    offset_slack = 0

    def __init__(self) -> None:
        self.events: dict[str, list[StoredEvent]] = {}
        self.listeners: list[Any] = []
        self._offsets = itertools.count(1)

    def record(self, events: Sequence[Event]) -> None:
        stored = []
        for new in event_mapper.to_new_events(list(events)):
            pid = thread_persistence_id(new.payload["threadId"])
            log = self.events.setdefault(pid, [])
            e = StoredEvent(pid, len(log) + 1, 0, new.type, new.payload, 0, next(self._offsets))
            log.append(e)
            stored.append(e)
        for listener in self.listeners:
            listener(stored)

    async def highest_seq(self, pid: str) -> int:
        return len(self.events.get(pid, ()))

    async def read(self, pid: str, from_seq: int = 1) -> list[StoredEvent]:
        return self.events.get(pid, [])[from_seq - 1 :]

    def subscribe(self, listener: Any) -> Any:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    async def changes(self, cursor: int | None) -> Changes:
        return Changes(0)


class JournaledGateway(FakeGateway):
    """FakeGateway whose events also go to a MemoryJournal."""

    def __init__(self, journal: MemoryJournal) -> None:
        super().__init__()
        self.journal = journal

    async def execute(self, command: Command) -> list[Event]:
        events = await super().execute(command)
        self.journal.record(events)
        return events


class AllApplied:
    async def applied_seq(self, thread_id: str) -> int:
        return (1 << 63) - 1


def stream_hub(
    journal: MemoryJournal, queries: FakeQueries, **settings: Any
) -> tuple[StreamHub, ReadYourWrites]:
    waiter = ReadYourWrites(AllApplied(), 0.5)
    hub = StreamHub(journal, queries, waiter, StreamSettings(**settings), frame)  # type: ignore[arg-type]
    return hub, waiter
