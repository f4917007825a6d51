"""In-memory fakes for the HTTP adapter tests, driven by the real domain (decide/evolve).

`FakeGateway` keeps each thread's state in a dict; `FakeQueries` derives the read model's
views from the same states, so a request flows end to end through the real rules.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from threadweaver.application.ports import MessagePage, MessageView, ThreadView
from threadweaver.domain import Thread, decide, evolve, new_ulid
from threadweaver.domain.commands import Command
from threadweaver.domain.events import Event, MessagesAdded


def ulid() -> str:
    return new_ulid()


def counter_ids(prefix_ms: int = 1_600_000_000_000):
    """A deterministic id generator: ULIDs with increasing time parts."""
    counter = itertools.count(1)
    return lambda: new_ulid(prefix_ms + next(counter), b"\x00" * 10)


class FakeGateway:
    """A CommandGateway over a dict of domain Thread states."""

    def __init__(self) -> None:
        self.states: dict[str, Thread] = {}
        self.commands: list[Command] = []
        self.fail: BaseException | None = None
        self.delay: float = 0.0
        self.positions: dict[str, int] = {}  # message id -> its place in posting order

    async def execute(self, command: Command) -> list[Event]:
        self.commands.append(command)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        thread = self.states.get(command.thread_id)
        events = decide(thread, command)
        for event in events:
            thread = evolve(thread, event)
            if isinstance(event, MessagesAdded):
                for m in event.messages:
                    self.positions[m.id] = len(self.positions)
        if thread is not None:
            self.states[command.thread_id] = thread
        return events


class FakeQueries:
    """The ReadModel's query side, derived from FakeGateway's states."""

    def __init__(self, gateway: FakeGateway) -> None:
        self.gateway = gateway
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.ping_error: BaseException | None = None
        self.fail: BaseException | None = None
        self.delay: float = 0.0

    async def _enter(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail

    def _visible(self, thread_id: str, account_id: str) -> Thread | None:
        t = self.gateway.states.get(thread_id)
        if t is None or t.is_removed or not t.is_member(account_id):
            return None
        return t

    @staticmethod
    def _unread(t: Thread, account_id: str) -> int:
        """As the read model counts: others' live messages after the account's marker."""
        live = list(t.messages.values())
        if account_id in t.read_markers:
            marked = t.read_markers[account_id]  # None: before every live message
            live = live[list(t.messages).index(marked) + 1 :] if marked is not None else live
        return sum(1 for m in live if m.sender_id != account_id)

    @classmethod
    def _view(cls, t: Thread, account_id: str) -> ThreadView:
        return ThreadView(
            id=t.id,
            creator_id=t.creator_id,
            parent_thread_id=t.parent_thread_id,
            title=t.title,
            remarks=t.remarks,
            created_at=t.created_at,
            updated_at=t.updated_at,
            unread_count=cls._unread(t, account_id),
        )

    async def get_thread(self, thread_id: str, account_id: str) -> ThreadView | None:
        await self._enter("get_thread", thread_id, account_id)
        t = self._visible(thread_id, account_id)
        return None if t is None else self._view(t, account_id)

    async def list_threads(self, account_id: str, offset: int, limit: int) -> list[ThreadView]:
        await self._enter("list_threads", account_id, offset, limit)
        threads = sorted(
            (
                t
                for t in self.gateway.states.values()
                if not t.is_removed and t.is_member(account_id)
            ),
            key=lambda t: (t.created_at, t.id),
        )
        return [self._view(t, account_id) for t in threads[offset : offset + limit]]

    async def list_administrator_ids(
        self, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[str] | None:
        await self._enter("list_administrator_ids", thread_id, account_id, offset, limit)
        t = self._visible(thread_id, account_id)
        return None if t is None else list(t.administrator_ids)[offset : offset + limit]

    async def list_member_ids(
        self, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[str] | None:
        await self._enter("list_member_ids", thread_id, account_id, offset, limit)
        t = self._visible(thread_id, account_id)
        return None if t is None else list(t.member_ids)[offset : offset + limit]

    async def list_messages(
        self, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[MessageView] | None:
        await self._enter("list_messages", thread_id, account_id, offset, limit)
        t = self._visible(thread_id, account_id)
        if t is None:
            return None
        return [
            MessageView(
                id=m.id,
                thread_id=t.id,
                sender_id=m.sender_id,
                type="text",
                body=m.text,
                reply_message_id=m.reply_message_id,
                created_at=m.created_at,
                updated_at=m.created_at,
            )
            for m in list(t.messages.values())[offset : offset + limit]
        ]

    async def list_messages_page(
        self, thread_id: str, account_id: str, after: int | None, offset: int, limit: int
    ) -> MessagePage | None:
        await self._enter("list_messages_page", thread_id, account_id, after, offset, limit)
        t = self._visible(thread_id, account_id)
        if t is None:
            return None
        positions = self.gateway.positions
        rest = [m for m in t.messages.values() if after is None or positions[m.id] > after]
        page = rest[offset : offset + limit]
        views = [
            MessageView(m.id, t.id, m.sender_id, "text", m.text, m.reply_message_id, 0, 0)
            for m in page
        ]
        more = len(rest) > offset + limit
        return MessagePage(views, positions[page[-1].id] if more and page else None)

    async def ping(self) -> None:
        self.calls.append(("ping", ()))
        if self.ping_error is not None:
            raise self.ping_error


class Api:
    """Thin helpers over an aiohttp TestClient for the common requests."""

    def __init__(self, client: Any, gateway: FakeGateway, queries: FakeQueries) -> None:
        self.client = client
        self.gateway = gateway
        self.queries = queries
        self.now = 1_700_000_000_000

    def at(self) -> int:
        self.now += 1
        return self.now

    async def post(self, path: str, body: Any, status: int = 200, **kw: Any) -> Any:
        resp = await self.client.post(path, json=body, **kw)
        data = await resp.json()
        assert resp.status == status, (resp.status, data)
        assert resp.headers["Content-Type"] == "application/json"
        return data

    async def get(self, path: str, status: int = 200, **params: Any) -> Any:
        resp = await self.client.get(path, params=params)
        data = await resp.json()
        assert resp.status == status, (resp.status, data)
        assert resp.headers["Content-Type"] == "application/json"
        return data

    async def create(self, admin: str, members: list[str] = (), **extra: Any) -> str:
        body = {
            "accountId": admin,
            "parentThreadId": None,
            "title": "title",
            "remarks": None,
            "administratorIds": [admin],
            "memberIds": list(members),
            "createAt": self.at(),
            **extra,
        }
        data = await self.post("/v1/threads/create", body)
        return data["thread_id"]

    async def add(self, thread_id: str, sender: str, *texts: str) -> list[str]:
        data = await self.post(
            f"/v1/threads/{thread_id}/messages/add",
            {
                "accountId": sender,
                "createAt": self.at(),
                "messages": [
                    {"replyMessageId": None, "toAccountIds": [], "text": t} for t in texts
                ],
            },
        )
        return data["messageIds"]
