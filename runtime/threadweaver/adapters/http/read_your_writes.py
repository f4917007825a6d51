"""`?min_seq=N` on the thread's query routes (read your writes): the query answers once the
read model has applied seq N of the thread (application/read_your_writes.py), or 503 with
Retry-After after `--read-your-writes-timeout`. The routes that take it are those whose route
table entry lists `min_seq` (routes.py); their handlers are wrapped, so no other request pays
for it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...application.read_your_writes import NotAppliedYet, ReadYourWrites
from ...domain.ids import ulid_error
from .errors import ApiError, Handler
from .routes import ROUTES

MIN_SEQ = "min_seq"
MIN_SEQ_MAX = (1 << 63) - 1
MIN_SEQ_INVALID = f"must be an integer between 0 and {MIN_SEQ_MAX}"
#: handler names (`<group>.<method>`) of the routes that accept `min_seq`
MIN_SEQ_HANDLERS = frozenset(r.handler for r in ROUTES if MIN_SEQ in r.query)


def min_seq_of(request: web.Request) -> int | None:
    raw = request.query.get(MIN_SEQ)
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= MIN_SEQ_MAX:
        return int(raw)
    raise ApiError(400, [f"{MIN_SEQ}: {MIN_SEQ_INVALID}"])


def waiting_for(handler: Handler, waiter: ReadYourWrites | None) -> Handler:
    """`handler`, answering only once the read model applied the request's `min_seq` (without
    a waiter: `min_seq` is only validated)."""

    async def wait_then_answer(request: web.Request) -> web.StreamResponse:
        min_seq = min_seq_of(request)
        raw_thread = request.match_info.get("thread_id", "")
        if min_seq and waiter is not None and ulid_error(raw_thread) is None:
            try:
                await waiter.wait(raw_thread.upper(), min_seq)
            except NotAppliedYet as exc:
                raise ApiError(503, [str(exc)], {"Retry-After": "1"}) from None
        return await handler(request)

    return wait_then_answer


class ReadYourWritesGroup:
    """A handler group whose `min_seq` routes wait (the others are the group's own)."""

    def __init__(self, group: str, handlers: Any, waiter: ReadYourWrites | None) -> None:
        self._handlers = handlers
        self._wrapped: dict[str, Handler] = {}
        for name in MIN_SEQ_HANDLERS:
            owner, method = name.split(".")
            if owner == group:
                inner = getattr(handlers, method)
                self._wrapped[method] = waiting_for(inner, waiter)

    def __getattr__(self, name: str) -> Any:
        wrapped = self.__dict__.get("_wrapped", {}).get(name)
        return wrapped if wrapped is not None else getattr(self._handlers, name)
