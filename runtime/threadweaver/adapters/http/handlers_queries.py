"""GET handlers: query string -> ReadModel query -> upstream-shaped JSON.

A thread the ReadModel does not show to `account_id` (missing, destroyed, or the account is
neither administrator nor member) is a 404 `thread is not found`, as upstream's get-thread.
Threads add `unreadCount` for the querying account; messages given `cursor` are keyset pages
that add `next_cursor` (message_cursors.py).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import message_cursors
from .deadlines import Deadlines
from .errors import ApiError
from .handlers_commands import timed_out
from .validation import query_params
from .wire import json_response

if TYPE_CHECKING:
    from ...application.ports import MessageView, ReadModel, ThreadView
    from .settings import HttpSettings

THREAD_NOT_FOUND = "thread is not found"


def thread_json(v: ThreadView) -> dict[str, Any]:
    return {
        "id": v.id,
        "creatorId": v.creator_id,
        "parentThreadId": v.parent_thread_id,
        "title": v.title,
        "remarks": v.remarks,
        "createdAt": v.created_at,
        "updatedAt": v.updated_at,
        "unreadCount": v.unread_count,
    }


def message_json(v: MessageView) -> dict[str, Any]:
    """Upstream's ThreadMessageJson plus `replyMessageId` (an addition)."""
    return {
        "id": v.id,
        "threadId": v.thread_id,
        "senderId": v.sender_id,
        "type": v.type,
        "body": v.body,
        "replyMessageId": v.reply_message_id,
        "createdAt": v.created_at,
        "updatedAt": v.updated_at,
    }


class QueryHandlers:
    __slots__ = ("_deadlines", "_default_limit", "_max_limit", "_q")

    def __init__(self, queries: ReadModel, settings: HttpSettings) -> None:
        self._q = queries
        timeout = settings.request_timeout_seconds
        self._deadlines = (
            Deadlines(timeout, lambda: timed_out("query", timeout)) if timeout else None
        )
        self._default_limit = settings.default_limit
        self._max_limit = settings.max_limit

    async def _run(self, awaitable: Awaitable[Any]) -> Any:
        if self._deadlines is None:
            return await awaitable
        return await self._deadlines.run(awaitable)

    def _params(
        self, request: web.Request, with_thread: bool = True, paged: bool = True
    ) -> tuple[Any, str, int, int]:
        return query_params(
            request.query,
            self._default_limit,
            self._max_limit,
            request.match_info["thread_id"] if with_thread else None,
            paged,
        )

    async def get_thread(self, request: web.Request) -> web.Response:
        thread_id, account_id, _, _ = self._params(request, paged=False)
        view = await self._run(self._q.get_thread(thread_id, account_id))
        if view is None:
            raise ApiError(404, [THREAD_NOT_FOUND])
        return json_response({"result": thread_json(view), "error_messages": []})

    async def list_threads(self, request: web.Request) -> web.Response:
        _, account_id, offset, limit = self._params(request, with_thread=False)
        views = await self._run(self._q.list_threads(account_id, offset, limit))
        return json_response({"results": [thread_json(v) for v in views], "error_messages": []})

    async def list_administrator_ids(self, request: web.Request) -> web.Response:
        thread_id, account_id, offset, limit = self._params(request)
        ids = await self._run(self._q.list_administrator_ids(thread_id, account_id, offset, limit))
        if ids is None:
            raise ApiError(404, [THREAD_NOT_FOUND])
        return json_response({"results": ids, "error_messages": []})

    async def list_member_ids(self, request: web.Request) -> web.Response:
        thread_id, account_id, offset, limit = self._params(request)
        ids = await self._run(self._q.list_member_ids(thread_id, account_id, offset, limit))
        if ids is None:
            raise ApiError(404, [THREAD_NOT_FOUND])
        return json_response({"results": ids, "error_messages": []})

    async def list_messages(self, request: web.Request) -> web.Response:
        thread_id, account_id, offset, limit = self._params(request)
        if message_cursors.CURSOR in request.query:
            return await self._message_page(request, thread_id, account_id, offset, limit)
        views = await self._run(self._q.list_messages(thread_id, account_id, offset, limit))
        if views is None:
            raise ApiError(404, [THREAD_NOT_FOUND])
        return json_response({"result": [message_json(v) for v in views], "error_messages": []})

    async def _message_page(
        self, request: web.Request, thread_id: str, account_id: str, offset: int, limit: int
    ) -> web.Response:
        """A keyset page: `offset` (if given) skips that many messages after the cursor."""
        after = message_cursors.decode(request.query[message_cursors.CURSOR])
        page = await self._run(
            self._q.list_messages_page(thread_id, account_id, after, offset, limit)
        )
        if page is None:
            raise ApiError(404, [THREAD_NOT_FOUND])
        last = page.last_position
        return json_response(
            {
                "result": [message_json(v) for v in page.messages],
                "next_cursor": None if last is None else message_cursors.encode(last),
                "error_messages": [],
            }
        )
