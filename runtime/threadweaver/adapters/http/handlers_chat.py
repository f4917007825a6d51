"""POST handlers of the chat additions: editing a message and moving a read marker.

They are command handlers like those of handlers_commands.py (same body reading, Idempotency-Key,
time-out and errors); answers are `{"messageIds": [id]}` for an edit (also when the text was
already that: nothing changes) and `{"threadId": id}` for a marker (also when it would have moved
back: a marker only moves forward, so nothing changes), each with `seq`, the thread's sequence
number after the command (`answer`, as every command).
"""

from __future__ import annotations

from aiohttp import web

from . import chat_validation
from .handlers_commands import CommandHandlers, answer


class ChatCommandHandlers(CommandHandlers):
    __slots__ = ()

    async def edit_message(self, request: web.Request) -> web.Response:
        body, key = await self._body(request)
        command = chat_validation.edit_message(request.match_info["thread_id"], body)
        events = await self._run(command, key)
        return answer({"messageIds": [command.message_id], "error_messages": []}, events)

    async def move_read_marker(self, request: web.Request) -> web.Response:
        body, key = await self._body(request)
        command = chat_validation.move_read_marker(request.match_info["thread_id"], body)
        events = await self._run(command, key)
        return answer({"threadId": command.thread_id, "error_messages": []}, events)
