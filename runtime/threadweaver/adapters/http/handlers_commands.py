"""POST handlers: JSON body -> domain command -> CommandGateway -> upstream-shaped JSON.

Responses keep upstream's field names (`thread_id` for create, `threadId` for the others,
`messageIds` for messages) and always carry `"error_messages": []` on success; failures are
raised and turned into JSON errors by `edge.edge_middleware` (errors.py).

An `Idempotency-Key` header makes a command idempotent (application/idempotency.py): the key goes
into the domain command; a keyed create gets a thread id derived from (accountId, key); answers
are built from the events the gateway returns, which for a retry are the first request's.
Every answer adds `seq`, the thread's sequence number after the command (read your writes: a
query with `min_seq` answers once the read model has applied it, read_your_writes.py).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...application.idempotency import derive_thread_id
from ...application.read_your_writes import seq_of
from ...domain.commands import Command
from ...domain.events import Event, MessagesAdded, MessagesRemoved
from . import validation
from .deadlines import Deadlines
from .errors import ApiError
from .wire import json_response, read_json_object

if TYPE_CHECKING:
    from ...application.gateway import CommandGateway
    from .settings import HttpSettings


def timed_out(what: str, seconds: float) -> ApiError:
    return ApiError(
        503,
        [
            f"The {what} did not complete within {seconds:g} seconds; "
            "retry later (a command may or may not have been applied)."
        ],
    )


def answer(body: dict[str, Any], events: list[Event]) -> web.Response:
    """A command's 200: `body` plus `seq` when the gateway knows it."""
    seq = seq_of(events)
    if seq is not None:
        body["seq"] = seq
    return json_response(body)


class CommandHandlers:
    """One instance per app; its bound methods are the route handlers."""

    __slots__ = ("_deadlines", "_execute", "_max_body", "_new_id")

    def __init__(self, gateway: CommandGateway, settings: HttpSettings) -> None:
        self._execute = gateway.execute
        timeout = settings.request_timeout_seconds
        self._deadlines = (
            Deadlines(timeout, lambda: timed_out("command", timeout)) if timeout else None
        )
        self._max_body = settings.max_body_bytes
        self._new_id = settings.id_generator

    async def _run(self, command: Command, key: str | None = None) -> list[Event]:
        """Execute with the request time-out. On time-out the gateway call is cancelled (the
        journal's conditional append keeps the aggregate consistent) and 503 is answered."""
        if key is not None:
            command = dataclasses.replace(command, idempotency_key=key)
        if self._deadlines is None:
            return await self._execute(command)
        return await self._deadlines.run(self._execute(command))

    async def _body(self, request: web.Request) -> tuple[dict[str, Any], str | None]:
        """The JSON body and the Idempotency-Key (checked first: a bad key is a 400 naming it)."""
        key = validation.idempotency_key(request.headers)
        return await read_json_object(request, self._max_body), key

    async def create_thread(self, request: web.Request) -> web.Response:
        body, key = await self._body(request)
        command = validation.create_thread(body, self._new_id)
        if key is not None:  # a retry must reach the same thread: derive its id from the key
            command = dataclasses.replace(
                command, thread_id=derive_thread_id(command.account_id, key)
            )
        events = await self._run(command, key)
        return answer({"thread_id": command.thread_id, "error_messages": []}, events)

    async def destroy_thread(self, request: web.Request) -> web.Response:
        body, key = await self._body(request)
        command = validation.destroy_thread(request.match_info["thread_id"], body)
        events = await self._run(command, key)
        return answer({"threadId": command.thread_id, "error_messages": []}, events)

    async def join_administrator_ids(self, request: web.Request) -> web.Response:
        body, key = await self._body(request)
        command = validation.join_administrator_ids(request.match_info["thread_id"], body)
        events = await self._run(command, key)
        return answer({"threadId": command.thread_id, "error_messages": []}, events)

    async def leave_administrator_ids(self, request: web.Request) -> web.Response:
        body, key = await self._body(request)
        command = validation.leave_administrator_ids(request.match_info["thread_id"], body)
        events = await self._run(command, key)
        return answer({"threadId": command.thread_id, "error_messages": []}, events)

    async def join_member_ids(self, request: web.Request) -> web.Response:
        body, key = await self._body(request)
        command = validation.join_member_ids(request.match_info["thread_id"], body)
        events = await self._run(command, key)
        return answer({"threadId": command.thread_id, "error_messages": []}, events)

    async def leave_member_ids(self, request: web.Request) -> web.Response:
        body, key = await self._body(request)
        command = validation.leave_member_ids(request.match_info["thread_id"], body)
        events = await self._run(command, key)
        return answer({"threadId": command.thread_id, "error_messages": []}, events)

    async def add_messages(self, request: web.Request) -> web.Response:
        body, key = await self._body(request)
        command = validation.add_messages(request.match_info["thread_id"], body, self._new_id)
        events = await self._run(command, key)
        # from the events: a retried request answers the ids its first attempt generated
        added = [m.id for e in events if type(e) is MessagesAdded for m in e.messages]
        return answer({"messageIds": added, "error_messages": []}, events)

    async def remove_messages(self, request: web.Request) -> web.Response:
        body, key = await self._body(request)
        command = validation.remove_messages(request.match_info["thread_id"], body)
        events = await self._run(command, key)
        removed = [i for e in events if type(e) is MessagesRemoved for i in e.message_ids]
        return answer({"messageIds": removed, "error_messages": []}, events)
