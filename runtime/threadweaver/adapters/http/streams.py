"""The live event stream routes (text/event-stream) over the member's StreamHub
(application/streams.py, application/stream_accounts.py):

- `GET /v1/threads/{thread_id}/events?account_id=A[&after=N][&min_seq=N]`: one thread's events,
  `id:` its seq. Resume point: `Last-Event-ID: N` or `after=N` (N+1 comes next; 0 replays from
  the start); none: from the live end. Refused as the thread's queries refuse (404 `thread is
  not found`).
- `GET /v1/accounts/{account_id}/events`: the events of every thread the account belongs to;
  `Last-Event-ID` is the opaque id of the last event received (one it cannot read: from the
  live end).

Before the stream starts every refusal is a JSON error (400 naming the field, 403 with `--auth
jwt` for another subject, 404, 429 with Retry-After above the per-account cap, 503); once it
started, it ends (and the client resumes from its last id) when the client is too slow, when
the account may no longer read the thread, after `--stream-max-duration`, or at shutdown.
Nothing read from the client reaches the journal: a stream only reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import HttpVersion11, web

from ...application import stream_cursor
from ...application.read_your_writes import NotAppliedYet
from ...application.stream_accounts import AccountStream
from ...application.stream_wakeup import Sink
from ...application.streams import OPENED, StreamHub, ThreadStream, TooManyStreams
from ...domain.ids import ulid_error
from .auth import SUBJECT, SUBJECT_MISMATCH
from .cors import add_cors_headers
from .errors import ApiError, retry_after
from .handlers_queries import THREAD_NOT_FOUND  # refused exactly as the thread's queries
from .validation import REQUIRED, Errors, path_thread_id, ulid

LAST_EVENT_ID = "Last-Event-ID"
SEQ_MAX = (1 << 63) - 1
SEQ_INVALID = f"must be an integer between 0 and {SEQ_MAX}"
EVENT_STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def parse_seq(errors: Errors, field: str, raw: str | None) -> int | None:
    """A non-negative seq, or None when absent (an error recorded when malformed)."""
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= SEQ_MAX:
        return int(raw)
    errors.add(field, SEQ_INVALID)
    return None


def not_applied(exc: NotAppliedYet) -> ApiError:
    return ApiError(503, [str(exc)], {"Retry-After": "1"})


class StreamHandlers:
    """The stream routes; `hub` None (an app without a runtime) answers 503."""

    __slots__ = ("_hub",)

    def __init__(self, hub: StreamHub | None) -> None:
        self._hub = hub

    def _require_hub(self) -> StreamHub:
        if self._hub is None:
            raise ApiError(503, ["live streams are not served here"], {"Retry-After": "1"})
        return self._hub

    async def thread_events(self, request: web.Request) -> web.StreamResponse:
        hub = self._require_hub()
        e = Errors()
        thread_id = path_thread_id(e, request.match_info["thread_id"])
        raw_account = request.query.get("account_id")
        account_id = None
        if raw_account is None:
            e.add("account_id", REQUIRED)
        else:
            account_id = ulid(e, "account_id", raw_account)
        after = parse_seq(e, "after", request.query.get("after"))
        header = parse_seq(e, LAST_EVENT_ID, request.headers.get(LAST_EVENT_ID))
        min_seq = parse_seq(e, "min_seq", request.query.get("min_seq")) or 0
        e.raise_if_any()
        assert thread_id is not None and account_id is not None
        resume = header if header is not None else after  # the header wins: it is the newer
        _check_subject(request, account_id)
        try:
            visible = await hub.can_read(thread_id, account_id, min_seq)
        except NotAppliedYet as exc:
            raise not_applied(exc) from None
        if not visible:
            raise ApiError(404, [THREAD_NOT_FOUND])
        _admit(hub, account_id, ThreadStream.KIND)
        try:
            tail = await hub.open_tail(thread_id)
            try:
                start = tail.last_seq if resume is None else resume
                response = _event_stream(request)
                sink = _direct_sink(request, response)
                stream = ThreadStream(hub, tail, account_id, start, sink)
                return await _serve(request, stream.frames(), hub, response)
            finally:
                hub.close_tail(tail)
        finally:
            hub.release(account_id, ThreadStream.KIND)

    async def account_events(self, request: web.Request) -> web.StreamResponse:
        hub = self._require_hub()
        raw = request.match_info["account_id"]
        err = ulid_error(raw)
        if err is not None:
            raise ApiError(400, [f"account_id: {err}"])
        account_id = raw.upper()
        resume = None
        token = request.headers.get(LAST_EVENT_ID)
        if token is not None:
            # An id this server cannot read (another version's, a client's own) starts from
            # the live end, as no id does: EventSource gives up for good after a 400.
            with contextlib.suppress(stream_cursor.BadCursor):
                resume = stream_cursor.decode(token.strip())
        _check_subject(request, account_id)
        _admit(hub, account_id, AccountStream.KIND)
        try:
            stream = AccountStream(hub, account_id, resume)
            try:
                await stream.open()
                return await _serve(request, stream.frames(), hub)
            finally:
                stream.close()
        finally:
            hub.release(account_id, AccountStream.KIND)


def _check_subject(request: web.Request, account_id: str) -> None:
    """With `--auth jwt` the stream's account must be the token's subject (the middleware
    checks `account_id` in the query; the account route has it in its path)."""
    subject = request.get(SUBJECT)
    if subject is not None and subject != account_id:
        raise ApiError(403, [SUBJECT_MISMATCH])


def _admit(hub: StreamHub, account_id: str, kind: str) -> None:
    try:
        hub.admit(account_id, kind)
    except TooManyStreams as exc:
        raise ApiError(429, [str(exc)], {"Retry-After": retry_after(5)}) from None


def _event_stream(request: web.Request) -> web.StreamResponse:
    """The stream's response; chunked (said, not left to aiohttp) on HTTP/1.1, which is the
    framing `_direct_sink` writes."""
    response = web.StreamResponse(headers=EVENT_STREAM_HEADERS)
    if request.version >= HttpVersion11:
        response.enable_chunked_encoding()
    add_cors_headers(request, response)
    return response


#: a direct write only into a nearly empty socket buffer (below half the 64 KiB high-water mark
#: that pauses writing): beyond it the stream's task writes, waiting with its time-out
DIRECT_WRITE_ROOM = 32768


def _direct_sink(request: web.Request, response: web.StreamResponse) -> Sink | None:
    """Writes a chunk of SSE frames to the connection now (one HTTP/1.1 chunk, the framing of
    aiohttp's own chunked writes), once the response started; False when it cannot: not
    started, the transport is closing, paused or its buffer is not nearly empty. None (no
    direct writes) for a response that is not chunked."""
    if not response.chunked:
        return None
    protocol = request.protocol

    def write_now(chunk: bytes) -> bool:
        transport = request.transport
        if (
            not response.prepared
            or transport is None
            or transport.is_closing()
            or protocol.writing_paused
            or transport.get_write_buffer_size() + len(chunk) > DIRECT_WRITE_ROOM
        ):
            return False
        transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        return True

    return write_now


async def _serve(
    request: web.Request,
    frames: AsyncIterator[bytes],
    hub: StreamHub,
    response: web.StreamResponse | None = None,
) -> web.StreamResponse:
    if response is None:
        response = _event_stream(request)
    write_timeout = hub.settings.stream_write_timeout
    transport = request.transport
    try:
        await response.prepare(request)
        await response.write(OPENED)
        async for chunk in frames:
            # A write blocks only once the socket's buffer is past its high-water mark (64 KiB):
            # below half of it there is no time-out to arm (a timer per event is what costs).
            if (
                transport is None
                or transport.get_write_buffer_size() + len(chunk) > DIRECT_WRITE_ROOM
            ):
                async with asyncio.timeout(write_timeout):
                    await response.write(chunk)
            else:
                await response.write(chunk)
    except (ConnectionError, TimeoutError):
        pass  # the client went away or does not read: it resumes from its last id
    finally:
        await _close(frames)
    return response


async def _close(frames: Any) -> None:
    aclose = getattr(frames, "aclose", None)
    if aclose is not None:
        await aclose()
